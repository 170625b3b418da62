"""Write the seed corpora: a few real-shaped bodies, plain and compressed.

`python fuzz/make_corpus.py` rewrites fuzz/corpus/framing/ (bodies as they arrive, sniffed) and
fuzz/corpus/decoders/ (two selector bytes, see fuzz_decoders.HEADERS, then a raw stream). The
files are committed; rerun this only to change the seeds. gzip's header time is fixed to 0 so the
output does not change from run to run.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from pathlib import Path

import orjson
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.samples import audit_event, envelope, network_event  # noqa: E402

HEADER_INDEX = {"identity": 1, "gzip": 2, "deflate": 4, "zstd": 5, "gzip, zstd": 6}
"""Positions in fuzz_decoders.HEADERS."""


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def bodies() -> dict[str, bytes]:
    network, audit = envelope(network_event()), envelope(audit_event())
    bare = dict(network_event("nBare"), logged="2026-06-03T15:33:01.552946176Z")
    tricky = {"time": 1780500777, "event": {"nodeId": 'n"}{"', "note": '}{ ] [ \\" é 😀'}}
    concatenated = orjson.dumps(network) + orjson.dumps(audit) + orjson.dumps(tricky)
    return {
        "concatenated.json": concatenated,
        "ndjson.json": b"\n".join(orjson.dumps(record) for record in (network, audit, bare)) + b"\n",
        "array.json": orjson.dumps([network, audit]),
        "logs-wrapper.json": orjson.dumps({"version": "1.1", "tailnet": "example.com", "logs": [bare, audit]}),
        "bom-pretty.json": b"\xef\xbb\xbf" + orjson.dumps(audit, option=orjson.OPT_INDENT_2),
        "gzip.bin": gz(concatenated),
        "gzip-members.bin": gz(orjson.dumps(network)) + gz(orjson.dumps(audit)),
        "zstd.bin": zst(concatenated),
        "zstd-frames.bin": zst(orjson.dumps(network)) + zst(orjson.dumps(audit)),
    }


def main() -> None:
    framing, decoders = HERE / "corpus" / "framing", HERE / "corpus" / "decoders"
    for directory in (framing, decoders):
        directory.mkdir(parents=True, exist_ok=True)
    for name, body in bodies().items():
        (framing / name).write_bytes(body)
    plain = bodies()["concatenated.json"]
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    streams = {
        "identity": ("identity", plain),
        "gzip": ("gzip", gz(plain) + gz(b"\n")),
        "deflate-zlib": ("deflate", zlib.compress(plain)),
        "deflate-raw": ("deflate", raw_deflate.compress(plain) + raw_deflate.flush()),
        "zstd": ("zstd", zst(plain) + zst(b"\n")),
        "gzip-then-zstd": ("gzip, zstd", zst(gz(plain))),
    }
    for name, (header, stream) in streams.items():
        (decoders / f"{name}.bin").write_bytes(bytes([HEADER_INDEX[header], 7]) + stream)


if __name__ == "__main__":
    main()
