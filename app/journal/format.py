"""The journal's on-disk format: segment files of checksummed entries, and how to read them back.

A segment is named after the sequence number of its first row (`00000000000000001234.log`), so
positions sort by name and an empty segment still says where numbering continues. An entry is one
request's accepted rows:

    header (32 bytes, little endian)                        payload
    ┌────────┬────────┬───────────┬─────────────┬──────────┐┌─────────────────────────┐
    │ length │ count  │ first_seq │ appended_at │ checksum ││ rows as NDJSON          │
    │ u32    │ u32    │ u64       │ f64 (unix)  │ u64      ││ (`length` bytes)        │
    └────────┴────────┴───────────┴─────────────┴──────────┘└─────────────────────────┘

`checksum` is XXH3-64 (https://xxhash.com) of the first 24 header bytes and the payload, so a torn
write (a crash or power loss part-way) is detected wherever it cut, and recovery truncates the
segment's tail back to the last whole entry.

A segment file may be a recycled one (`app.journal`, "Recycling"): past its last entry it can still
hold entries of its previous life, whole and with valid checksums. Those are told apart by their
sequence numbers: each entry's `first_seq` must be the one the entry before it ends at (the
segment's name for the first), and the old entries' numbers are all lower.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import xxhash

from app.jsonscan import split_lines

HEADER: Final = struct.Struct("<IIQdQ")
CHECKED: Final = struct.Struct("<IIQd")
"""The header fields covered by the checksum (all but the checksum itself)."""
SEGMENT_SUFFIX: Final = ".log"
SPARE_SUFFIX: Final = ".spare"
"""A released segment kept for reuse as a later segment's file."""
MAX_ENTRY_BYTES: Final = 1 << 31
"""Larger lengths cannot come from a real entry: a header claiming one is torn or corrupt."""


class Position(NamedTuple):
    """Where a reader stands: a segment (named by its first sequence number), a byte offset in it,
    and the sequence number of the next row. Positions order by (segment, offset)."""

    segment: int
    offset: int
    seq: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored batch: its rows' JSON lines, where it starts, and when it was appended."""

    lines: list[bytes]
    first_seq: int
    appended_at: float
    end: Position
    """The position just after this entry: a reader's checkpoint once the entry is delivered."""
    size: int
    """Bytes the entry takes in its segment, header included."""


def checksum(checked: bytes, payload: bytes | bytearray) -> int:
    """XXH3-64 of the checked header fields then the payload, without joining them (a payload may be MBs)."""
    digest = xxhash.xxh3_64(checked)
    digest.update(payload)
    return digest.intdigest()


def encode_header(payload: bytes | bytearray, count: int, first_seq: int, appended_at: float) -> bytes:
    """The header of an entry whose payload is `payload`, `count` NDJSON rows; the payload follows it as is."""
    checked = CHECKED.pack(len(payload), count, first_seq, appended_at)
    return checked + checksum(checked, payload).to_bytes(8, "little")


def segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """First sequence numbers of the segments in `directory`, oldest first."""
    return sorted(
        int(path.name.removesuffix(SEGMENT_SUFFIX))
        for path in directory.glob(f"*{SEGMENT_SUFFIX}")
        if path.name.removesuffix(SEGMENT_SUFFIX).isdigit()
    )


def read_entries(path: Path, start: Position, end_offset: int) -> Iterator[Entry]:
    """The whole, valid entries of one segment from `start.offset` up to `end_offset` bytes, numbered on
    from `start.seq`."""
    with path.open("rb") as segment:
        segment.seek(start.offset)
        offset, seq = start.offset, start.seq
        while offset + HEADER.size <= end_offset:
            header = segment.read(HEADER.size)
            length, count, first_seq, appended_at, expected = HEADER.unpack(header)
            if first_seq != seq or length > MAX_ENTRY_BYTES or offset + HEADER.size + length > end_offset:
                return  # a previous life's entry (recycled file), or a corrupt header
            payload = segment.read(length)
            if len(payload) < length or checksum(header[: CHECKED.size], payload) != expected:
                return
            offset += HEADER.size + length
            seq = first_seq + count
            yield Entry(
                split_lines(payload), first_seq, appended_at, Position(start.segment, offset, seq), HEADER.size + length
            )


def spare_path(directory: Path, first_seq: int) -> Path:
    return directory / f"{first_seq:020d}{SPARE_SUFFIX}"


def list_spares(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SPARE_SUFFIX}"))


def recover_tail(path: Path, first_seq: int) -> Position:
    """Truncate a torn or corrupt tail, or a recycled file's old entries, off the segment; return the
    position just after its last whole entry."""
    size = path.stat().st_size
    position = Position(first_seq, 0, first_seq)
    for entry in read_entries(path, position, size):
        position = entry.end
    if position.offset < size:
        with path.open("r+b") as segment:
            segment.truncate(position.offset)
            os.fsync(segment.fileno())
    return position
