"""Reading log files into records exactly as the receiver reads a request body.

`validate` and `send` must see the same records the receiver would, so a file goes through the
receiver's own steps: `decode_body` (gzip and zstd sniffed by their magic bytes, RFC 1952 / RFC 8878)
then `frame` (concatenated objects, NDJSON, an array or `{"logs": [...]}`), capped by the same
limits, whose defaults and bounds come from `Settings`. A record longer than `max_record_bytes` is
read as `Unparsed` bytes, as the receiver reads it: `validate` reports it quarantined and `send`
posts it as it is.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from pydantic import TypeAdapter, ValidationError

from app.errors import IngestError
from app.ingest.body import decode_body
from app.ingest.framing import frame
from app.settings import Settings

LIMIT_HELP: Final[dict[str, str]] = {
    "max_records": "most records in one file; a file over it fails as a whole, as a request body would",
    "max_depth": "deepest JSON nesting of one record; a file over it fails as a whole, as a request body would",
    "max_decompressed_bytes": "largest file after decompression, in bytes; a file over it fails as a whole",
    "max_record_bytes": "longest record, in bytes; a longer one is not parsed and fails alone, as in the receiver",
}
"""The receiver's settings that bound reading one body, applied here to one file, as flags describe them."""
LIMIT_SETTINGS: Final = tuple(LIMIT_HELP)


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of one file is read, with the receiver's meaning (one file = one request body)."""

    max_records: int
    max_depth: int
    max_decompressed_bytes: int
    max_record_bytes: int

    @classmethod
    def defaults(cls) -> Limits:
        fields = Settings.model_fields
        return cls(**{name: fields[name].default for name in LIMIT_SETTINGS})


@dataclass(frozen=True, slots=True)
class FileFailure:
    """Why a whole file could not be read as records; `offset` is a byte offset in the decompressed file."""

    reason: str
    detail: str
    offset: int | None = None

    @classmethod
    def from_error(cls, exc: IngestError) -> FileFailure:
        offset = exc.extra.get("offset")
        return cls(reason=exc.reason, detail=exc.detail, offset=offset if isinstance(offset, int) else None)


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """One file's records, or the reason it has none."""

    path: Path
    records: list[object]
    failure: FileFailure | None = None


def read_records(path: Path, limits: Limits) -> list[object]:
    """The records of one plain, gzip or zstd file; `IngestError` if it is not readable as records.

    `OSError` (missing or unreadable file) is left to the caller: it is a usage error, not bad data.
    """
    decoded = decode_body(path.read_bytes(), None, limit=limits.max_decompressed_bytes)
    return frame(
        decoded,
        max_records=limits.max_records,
        max_depth=limits.max_depth,
        max_record_bytes=limits.max_record_bytes,
    )


def load_files(paths: Sequence[Path], limits: Limits) -> Iterator[LoadedFile]:
    """Each file's records in turn, one file in memory at a time; bad data becomes a `FileFailure`."""
    for path in paths:
        try:
            yield LoadedFile(path, read_records(path, limits))
        except IngestError as exc:
            yield LoadedFile(path, [], FileFailure.from_error(exc))


def unreadable(paths: Sequence[Path]) -> list[str]:
    """A message for each path that cannot be opened for reading, checked before any work starts."""
    problems: list[str] = []
    for path in paths:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc.strerror or exc}")
    return problems


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """`--max-records`, `--max-depth`, `--max-decompressed-bytes`, `--max-record-bytes`, defaulting to and
    bounded like `Settings`."""
    for name in LIMIT_SETTINGS:
        field = Settings.model_fields[name]
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_setting_parser(name),
            default=field.default,
            metavar="N",
            help=f"{LIMIT_HELP[name]} (default: %(default)s)",
        )


def limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(**{name: getattr(args, name) for name in LIMIT_SETTINGS})


def _setting_parser(name: str) -> Callable[[str], int]:
    """An argparse `type` that checks a value against the setting's own bounds (`gt`, `le`)."""
    adapter: TypeAdapter[int] = TypeAdapter(Annotated[int, Settings.model_fields[name]])

    def parse(text: str) -> int:
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc.errors()[0]['msg']}") from exc

    parse.__name__ = name  # argparse names the type in some messages
    return parse
