"""atheris harness: a request body with no Content-Encoding, sniffed, decoded and framed.

This is what the receiver does with every body whose sender sent no Content-Encoding header
(Tailscale's case): `make_decoder(None)` sniffs gzip/zstd magic or passes the bytes through, and
`frame` splits the result into records. The whole input is the body, so the seed corpus
(fuzz/corpus/framing/) holds real-shaped bodies as they arrive.

A crash is any of:
- an exception that is not an `IngestError` escaping decode, flush or frame;
- decoding the body in one piece and in small chunks disagreeing (output, or which error);
- a decoded body over the decoded-size limit, more records than `max_records`, or a
  `FramingError` offset outside the body;
- framed again under a record cap that varies with the input: an `Unparsed` record that is not
  longer than the cap, or not the body's bytes where it says it starts;
- an input taking longer than libFuzzer's `-timeout` (framing promises linear time).

Run: `python fuzz/fuzz_framing.py -max_total_time=60 fuzz/work/framing fuzz/corpus/framing`
(fuzz/README.md has the rest).
"""

from __future__ import annotations

from _harness import instrumented, main

with instrumented():
    from app.errors import FramingError, IngestError
    from app.ingest.body import decode_body
    from app.ingest.framing import Unparsed, frame

LIMIT = 1 << 20
"""Decoded-size cap: small, so bombs are cut at once and each input stays fast."""
MAX_RECORDS = 1000
MAX_DEPTH = 64


def sniffed(body: bytes, step: int) -> bytes | type[IngestError]:
    """The decoded body, fed `step` bytes at a time, or the class of the error it raised."""
    try:
        out = decode_body(body, None, limit=LIMIT, step=step)
    except IngestError as exc:
        return type(exc)
    if len(out) > LIMIT:
        raise AssertionError(f"decoded {len(out)} bytes, over the {LIMIT}-byte limit")
    return out


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    whole = sniffed(data, max(len(data), 1))
    # A chunk size that varies with the input, so both tiny and odd-sized chunks are tried.
    chunked = sniffed(data, 1 + len(data) % 13)
    if whole != chunked:
        raise AssertionError(f"decoding in one piece gave {whole!r:.80}, in chunks {chunked!r:.80}")
    if not isinstance(whole, bytes):
        return
    try:
        records = frame(whole, max_records=MAX_RECORDS, max_depth=MAX_DEPTH)
    except FramingError as exc:
        if not 0 <= exc.offset <= len(whole):
            raise AssertionError(f"offset {exc.offset} outside a {len(whole)}-byte body") from exc
        return
    except IngestError:
        return
    if len(records) > MAX_RECORDS:
        raise AssertionError(f"{len(records)} records passed max_records={MAX_RECORDS}")
    cap = len(data) % 257
    for record in frame(whole, max_records=MAX_RECORDS, max_depth=MAX_DEPTH, max_record_bytes=cap):
        if isinstance(record, Unparsed) and (
            len(record.data) <= cap or whole[record.offset : record.offset + len(record.data)] != record.data
        ):
            raise AssertionError(f"Unparsed of {len(record.data)} bytes at {record.offset} under a cap of {cap}")


if __name__ == "__main__":
    main(TestOneInput)
