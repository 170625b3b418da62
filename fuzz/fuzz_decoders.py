"""atheris harness: every Content-Encoding decoder, alone and stacked, under any chunking.

Separate from fuzz_framing.py because it must choose the header: the first input byte picks a
Content-Encoding from `HEADERS`, the second a chunk size, and the rest is the raw body. Seeds in
fuzz/corpus/decoders/ carry those two bytes in front of real gzip, zstd and deflate streams
(fuzz/make_corpus.py writes them).

A crash is any of:
- an exception that is not an `IngestError` escaping `decode_body` (its decoders' `decode` and `flush`);
- decoding in one piece and in chunks disagreeing (output, or which error);
- output over the decoded-size limit.

Run: `python fuzz/fuzz_decoders.py -max_total_time=60 fuzz/work/decoders fuzz/corpus/decoders`.
"""

from __future__ import annotations

from _harness import instrumented, main

with instrumented():
    from app.errors import IngestError
    from app.ingest.body import decode_body

LIMIT = 1 << 20
HEADERS: tuple[str | None, ...] = (
    None,
    "identity",
    "gzip",
    "x-gzip",
    "deflate",
    "zstd",
    "gzip, zstd",
    "zstd, gzip",
    "deflate, gzip",
    " GZIP ,, identity ",
)
"""Index = first input byte modulo its length; make_corpus.py relies on this order."""


def decoded(header: str | None, body: bytes, step: int) -> bytes | type[IngestError]:
    try:
        out = decode_body(body, header, limit=LIMIT, step=step)
    except IngestError as exc:
        return type(exc)
    if len(out) > LIMIT:
        raise AssertionError(f"{header}: decoded {len(out)} bytes, over the {LIMIT}-byte limit")
    return out


def zstd_input(header: str | None, body: bytes) -> bytes:
    """What the zstd stage of `header` is fed: the body, or what the encodings applied after zstd undo to."""
    if header is None:
        return body
    names = [name.strip().lower() for name in header.split(",") if name.strip()]
    if "zstd" not in names:
        return b""
    outer = [name for name in names[names.index("zstd") + 1 :] if name != "identity"]
    if not outer:
        return body
    inner = decoded(", ".join(outer), body, max(len(body), 1))
    return inner if isinstance(inner, bytes) else b""


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    if len(data) < 2:
        return
    header = HEADERS[data[0] % len(HEADERS)]
    step = 1 + data[1]
    body = data[2:]
    whole = decoded(header, body, max(len(body), 1))
    chunked = decoded(header, body, step)
    if whole != chunked:
        raise AssertionError(f"{header}: in one piece {whole!r:.80}, in {step}-byte chunks {chunked!r:.80}")


if __name__ == "__main__":
    main(TestOneInput)
