"""Split a decoded request body into JSON records (RFC 8259, https://www.rfc-editor.org/rfc/rfc8259).

Tailscale concatenates HEC envelopes with no separator (`{...}{...}`), which no JSON parser reads as one
document; other senders use NDJSON, an array, a single object or the poll API's `{"logs": [...]}`
(docs/tailscale-wire-format.md, "The body"). All of them are accepted, and every value is parsed by
orjson, so the rules are the same whatever the shape: NaN, invalid UTF-8 and lone surrogates are
refused, and a duplicate key keeps its last value.

Speed comes from letting orjson find the boundaries. The body is cut at each `}{` (whitespace allowed
between) and each piece is parsed; a body without one is a single piece. (The whole body is not tried
as one document first: orjson sizes its buffers by the input, so a failed attempt on an 11 MB body of
concatenated records peaked at 132 MB, twelve times the body.) A piece that parses is a whole
record, because a JSON object is never a prefix of a longer value. A piece that fails was cut inside a
string (a value holding "}{") or is bad data, and the bytes up to that cut are then walked value by
value with json's C scanner, which finds where each value truly ends in linear time; orjson then
parses exactly that value. Each byte meets orjson a bounded number of times, so no body is
quadratic, not even a 50 MB string of "}{".

A top-level array larger than `WHOLE_ARRAY_BYTES` is not parsed whole either: as Python objects it
would take about twelve times its bytes (1.5 GB for an array of 128 MiB, within max_decompressed_bytes).
Its items are walked one by one with json's scanner and each parsed by orjson, so a large array costs
memory by its largest item, like concatenated records (a 25 MB array: peak 1.0 times its bytes, where
parsing it whole peaked at 13.2), and framing it costs 1.6 times the CPU of parsing it whole (44 against
27 µs a network record). A large `{"logs": [...]}` wrapper (the poll API's shape) is walked twice: once
to its end, to learn that nothing follows the array, then item by item. An object with keys after
`logs` is parsed whole, since one of them may be `event`, which makes it a record. Tailscale itself
sends neither shape.

A record over `max_record_bytes` as received is not parsed at all: parsed, it could take thirty
times its bytes (a 9 MB record of empty objects peaked at 262 MB), although it is refused anyway
(app.ingest.pipeline quarantines it as `record_too_large`). Its end is found by `app.jsonscan`, which
counts brackets in C without building anything, and it is yielded as `Unparsed` bytes. So no record
takes more memory than one of `max_record_bytes` would, whatever the body holds. The cap applies to
what would be parsed at once: an item of an array or exact wrapper, or any other top-level object
as a whole (an object with keys after `logs` over the cap is one `Unparsed` record). Measuring each
item of a large array first adds about 0.8 ns a byte to its walk (2 µs a network record).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from itertools import accumulate, count
from operator import sub
from typing import Final

import orjson

from app.errors import FramingError, NestingTooDeep, TooManyRecords
from app.jsonscan import container_end, count_openers, next_boundary

_BOM: Final = b"\xef\xbb\xbf"
_VALUE_START: Final = re.compile(rb"[^ \t\r\n]")
"""The first byte that is not JSON whitespace (RFC 8259 §2 allows only these four)."""

_NOT_STRUCTURE: Final = bytes(byte for byte in range(256) if byte not in b'{}[]"')
_QUOTED: Final = re.compile(rb'"[^"]*"')
_WEIGHTS: Final = bytes.maketrans(b"{[}]", b"\x02\x02\x00\x00")

_SCANNER: Final = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str)
"""Only finds where a value ends; numbers stay strings, so none is converted for nothing and Python's
4,300-digit limit on int() cannot refuse what orjson accepts."""

_SCALAR_NAMES: Final[dict[type, str]] = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_OPEN_ARRAY: Final = ord("[")
_OPENERS: Final = b"{["
_WRAPPER_START: Final = re.compile(rb'\{[ \t\r\n]*"logs"[ \t\r\n]*:[ \t\r\n]*\[')
WHOLE_ARRAY_BYTES: Final = 1024 * 1024
"""Top-level arrays up to this size are parsed whole (fast); larger ones item by item (bounded memory)."""


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A record longer than `max_record_bytes`, as the bytes it arrived as: never parsed."""

    data: memoryview
    offset: int
    """Where it starts in the body, in bytes."""


def frame(body: bytes, *, max_records: int, max_depth: int, max_record_bytes: int | None = None) -> list[object]:
    """The records in a decoded body, in order: `iter_records` as a list."""
    return list(iter_records(body, max_records=max_records, max_depth=max_depth, max_record_bytes=max_record_bytes))


Typed = Callable[[memoryview], object | None]
"""A decoder `iter_records` tries on each record before orjson: a value it returns is yielded as the
record, None leaves the record to the general framing."""


def iter_records(
    body: bytes,
    *,
    max_records: int,
    max_depth: int,
    max_record_bytes: int | None = None,
    typed: Typed | None = None,
) -> Iterator[object]:
    """The records in a decoded body, in order, each parsed only when it is asked for.

    The pipeline turns each record into its stored line before parsing the next, so a large body
    never exists as Python objects all at once (an 11 MB body of records parses to ~100 MB of dicts).
    An error is raised when the framing reaches it, after the records before it were yielded.

    A top-level object is one record, a top-level array or `{"logs": [...]}` contributes its items (the
    caller sorts out items that are not objects), and an empty or whitespace-only body has none: a
    Tailscale endpoint probe may be empty. A leading UTF-8 BOM is skipped. Error offsets are byte
    offsets into `body` as given.

    Raises `FramingError` for anything that is not a sequence of JSON objects and arrays,
    `TooManyRecords` as soon as there are more than `max_records` records (an empty top-level array
    counts as one), and `NestingTooDeep` for a record nested more than `max_depth` levels (the record
    itself is level 1; a wrapping array or `{"logs": ...}` does not count). `max_depth` must stay below
    about 900, where Python's recursion limit, which bounds json's scanner, and orjson's fixed limit of
    1024 levels start to refuse values.

    A record (a top-level object, or an item of an array or wrapper) longer than `max_record_bytes` is
    yielded as `Unparsed`, without being parsed or held to `max_depth`; it still takes a slot. None
    parses every record, as the `validate` and `send` tools do with files the user chose.

    `typed` (`app.schemas.network_structs.decode`, in the pipeline) is given each piece cut at a `}{`
    before orjson is: whatever it returns instead of None is that piece's record. Its values must nest
    no deeper than `max_depth`, since their brackets are not counted, and it must refuse anything
    that is not one whole object, since the piece may have been cut inside a string.
    """
    framer = _Framer(body, max_records=max_records, max_depth=max_depth, max_record_bytes=max_record_bytes, typed=typed)
    return framer.run()


class _Framer:
    """One body being framed: how many records so far and, once needed, the body as text for json's scanner."""

    def __init__(
        self, body: bytes, *, max_records: int, max_depth: int, max_record_bytes: int | None, typed: Typed | None
    ) -> None:
        self._body = body
        self._view = memoryview(body)
        self._max_records = max_records
        self._max_depth = max_depth
        self._max_record_bytes = len(body) if max_record_bytes is None else max_record_bytes
        self._typed = typed
        self._slots = 0
        self._text: _Text | None = None

    def run(self) -> Iterator[object]:
        first = _VALUE_START.search(self._body, len(_BOM) if self._body.startswith(_BOM) else 0)
        if first is None:
            return
        yield from self._sequence(first.start())

    def _sequence(self, pos: int) -> Iterator[object]:
        """Frame several top-level values starting at byte `pos`."""
        end = len(self._body)
        slow_until = pos
        while pos < end:
            if pos >= slow_until:
                boundary = next_boundary(self._body, pos)  # (the `}`, the `{`) of `}{`, whitespace between
                stop = boundary[0] + 1 if boundary else end
                size = stop - pos
                if size > self._max_record_bytes or (
                    size > WHOLE_ARRAY_BYTES
                    and (self._body[pos] == _OPEN_ARRAY or _WRAPPER_START.match(self._body, pos))
                ):
                    slow_until = stop  # a record too large to parse, or a large array or wrapper: below
                else:
                    try:
                        records = self._piece(pos, stop)
                    except orjson.JSONDecodeError:
                        # Walk value by value up to this cut, so each failed piece costs its bytes only once.
                        slow_until = stop
                    else:
                        yield from records
                        pos = boundary[1] if boundary else end
                        continue
            if self._body[pos] == _OPEN_ARRAY:
                stop = yield from self._array_items(pos)
            elif (wrapper := self._wrapper(pos)) is not None:
                array, stop = wrapper
                yield from self._array_items(array)
            else:
                stop = self._value_end(pos)
                yield from self._add(self._parse(pos, stop), pos, stop)
            following = _VALUE_START.search(self._body, stop)
            pos = following.start() if following else end

    def _piece(self, start: int, stop: int) -> list[object]:
        """The records of `body[start:stop]`, cut at a `}{`: `typed`'s record, else those of the value
        orjson parses (`orjson.JSONDecodeError` when the cut fell inside a string, or for bad data)."""
        piece = self._view[start:stop]
        if self._typed is not None and (record := self._typed(piece)) is not None:
            self._admit(1, start, stop, None)
            return [record]
        return self._add(orjson.loads(piece), start, stop)

    def _wrapper(self, start: int) -> tuple[int, int] | None:
        """For a value at byte `start` that is exactly `{"logs": [...]}`: where its array starts and
        where the wrapper ends. None for any other value, including an object with keys after `logs`."""
        match = _WRAPPER_START.match(self._body, start)
        if match is None:
            return None
        array = match.end() - 1
        spans = self._item_spans(array, truncated=("object", start))
        while True:  # to the array's end, without parsing its items
            try:
                next(spans)
            except StopIteration as done:
                close = _VALUE_START.search(self._body, done.value)
                break
        if close is None or self._body[close.start()] != ord("}"):
            return None
        return array, close.start() + 1

    def _array_items(self, start: int) -> Generator[object, None, int]:
        """The items of the array at byte `start`, each parsed alone; returns the offset just past it.

        Items are records: each takes a slot and is held to `max_depth`; an empty array takes one
        slot, as when parsed whole.
        """
        spans = self._item_spans(start, truncated=("array", start))
        empty = True
        while True:
            try:
                pos, stop = next(spans)
            except StopIteration as done:
                if empty:
                    self._admit(1, start, done.value, self._max_depth + 1)
                return int(done.value)
            empty = False
            item = self._parse(pos, stop)
            self._admit(1, pos, stop, None if isinstance(item, Unparsed) else self._max_depth)
            yield item

    def _item_spans(self, start: int, *, truncated: tuple[str, int]) -> Generator[tuple[int, int], None, int]:
        """Where each item of the array at byte `start` begins and ends, found by json's scanner;
        returns the offset just past the array. The body ending anywhere inside is reported as the
        truncation of the top-level value `truncated` names (its kind and where it starts)."""
        pos = self._skip_whitespace(start + 1, truncated=truncated)
        if self._body[pos] == ord("]"):
            return pos + 1
        while True:
            stop = self._value_end(pos, truncated=truncated)
            yield pos, stop
            pos = self._skip_whitespace(stop, truncated=truncated)
            if self._body[pos] == ord("]"):
                return pos + 1
            if self._body[pos] != ord(","):
                raise FramingError("invalid JSON: expected ',' or ']' after an array item", offset=pos)
            pos = self._skip_whitespace(pos + 1, truncated=truncated)

    def _skip_whitespace(self, pos: int, *, truncated: tuple[str, int]) -> int:
        """The offset of the first non-whitespace byte from `pos`; the body ending first truncates the
        top-level value `truncated` names."""
        following = _VALUE_START.search(self._body, pos)
        if following is None:
            raise _truncated(*truncated)
        return following.start()

    def _value_end(self, pos: int, *, truncated: tuple[str, int] | None = None) -> int:
        """The byte offset just past the JSON value starting at byte `pos`, whatever its strings hold.

        A value cut short by the end of the body is reported where it starts, or, for an array's item,
        as the truncation of the top-level value `truncated` names (its kind and where it starts).

        json's scanner builds the value it reads, so an object or array that might be longer than
        `max_record_bytes` is first measured by `container_end`, and one that is is not scanned again:
        its bytes are refused unparsed. Brackets that never balance are reported as a truncation.
        """
        if len(self._body) - pos > self._max_record_bytes and self._body[pos] in _OPENERS:
            value_end = container_end(self._body, pos)
            if value_end < 0:
                raise self._truncation(pos, truncated)
            if value_end - pos > self._max_record_bytes:
                return value_end
        if self._text is None:
            self._text = _Text(self._body)
        text = self._text
        start = text.char_of(pos)
        try:
            _, end = _SCANNER.raw_decode(text.text, start)
        except RecursionError as exc:
            raise self._too_deep(pos) from exc
        except json.JSONDecodeError as exc:
            if exc.pos == start and truncated is None:  # an array's item may be any value
                raise FramingError("expected a JSON object or array", offset=pos) from exc
            if exc.pos >= len(text.text) or exc.msg.startswith("Unterminated string"):
                raise self._truncation(pos, truncated) from exc
            raise FramingError(f"invalid JSON: {exc.msg}", offset=text.byte_of(exc.pos)) from exc
        return text.byte_of(end)

    def _truncation(self, pos: int, truncated: tuple[str, int] | None) -> FramingError:
        """The error for a value at byte `pos` that the body ends inside: an array item's is the
        truncation of the top-level value `truncated` names, any other value's its own."""
        if truncated is not None:
            return _truncated(*truncated)
        return _truncated({ord("{"): "object", ord("["): "array"}.get(self._body[pos], "value"), pos)

    def _parse(self, pos: int, stop: int) -> object:
        """Parse exactly one value with orjson, so the slow path accepts and returns what the fast one
        does; one longer than `max_record_bytes` is `Unparsed`."""
        if stop - pos > self._max_record_bytes:
            return Unparsed(self._view[pos:stop], pos)
        try:
            return orjson.loads(self._view[pos:stop])
        except orjson.JSONDecodeError as exc:
            if "depth" in exc.msg:
                raise self._too_deep(pos) from exc
            try:
                self._body[pos:stop].decode("utf-8")
            except UnicodeDecodeError as bad:
                raise FramingError(f"invalid UTF-8 ({bad.reason})", offset=pos + bad.start) from exc
            # orjson counts characters; the offset is in bytes.
            raise FramingError(f"invalid JSON: {exc.msg}", offset=pos + len(exc.doc[: exc.pos].encode())) from exc

    def _add(self, value: object, start: int, stop: int) -> list[object]:
        """The records of the top-level value `body[start:stop]`, once both limits are checked."""
        if isinstance(value, Unparsed):
            self._admit(1, start, stop, None)
            return [value]
        if isinstance(value, list):
            records, wrapping = value, 1
        elif isinstance(value, dict):
            logs = value.get("logs")
            if isinstance(logs, list) and "event" not in value:
                records, wrapping = logs, 2
            else:
                records, wrapping = [value], 0
        else:
            kind = "null" if value is None else _SCALAR_NAMES[type(value)]
            raise FramingError(f"expected a JSON object or array, not {kind}", offset=start)
        # An empty array still takes a slot, so a body of `[]`s cannot keep framing busy for free.
        # A wrapper adds levels above its records (its other keys are held to the same bound).
        self._admit(len(records) or 1, start, stop, self._max_depth + wrapping)
        return records

    def _admit(self, slots: int, start: int, stop: int, limit: int | None) -> None:
        """Count `slots` records against max_records and hold `body[start:stop]` to `limit` levels
        (None for an `Unparsed` record, which is never parsed, and for a `typed` one, bounded by its type)."""
        self._slots += slots
        if self._slots > self._max_records:
            raise TooManyRecords(
                f"the body holds more than {self._max_records} records (max_records); "
                "send smaller batches or raise max_records"
            )
        if limit is None:
            return
        # Each level needs its own opening bracket, so a value with few brackets is shallow enough.
        if count_openers(self._body, start, stop) > limit and _depth(self._body[start:stop]) > limit:
            raise self._too_deep(start)

    def _too_deep(self, offset: int) -> NestingTooDeep:
        return NestingTooDeep(
            f"a record is nested deeper than {self._max_depth} levels (max_depth); flatten it or raise max_depth",
            offset=offset,
        )


def _truncated(kind: str, offset: int) -> FramingError:
    detail = f"truncated JSON {kind}: the body ends before the {kind} starting here is closed"
    return FramingError(detail, offset=offset)


def _depth(value: bytes) -> int:
    """How deeply one valid JSON value nests, read from its bytes in a few C-speed passes, without recursion.

    Once escaped backslashes and quotes are gone, every quote opens or closes a string. Keeping only
    brackets and quotes, then dropping what lies between quotes, leaves the brackets that structure the
    value. Dropping each `""` first (a string without brackets, or one string's end next to the next
    one's start) keeps the quotes paired, so the regex only runs when some string holds a bracket.
    """
    if b"\\" in value:
        value = value.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = value.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _QUOTED.sub(b"", skeleton)
    # An opening bracket weighs 2 and a closing one 0: after n brackets, the running sum minus n is the depth.
    return max(map(sub, accumulate(skeleton.translate(_WEIGHTS)), count(1)), default=0)


class _Text:
    """The body as str for json's scanner, with a cursor converting between char and byte offsets.

    Decoding with surrogateescape maps every byte sequence to text, keeping each invalid byte one
    character (orjson then refuses it with an exact offset). Framing moves forward, so the cursor does,
    and all conversions together cost one pass over the body; the second walk over a large wrapper's
    items starts it again from the beginning, once.
    """

    def __init__(self, body: bytes) -> None:
        self.text = body.decode("utf-8", "surrogateescape")
        self._body = body
        # Without multi-byte characters, char and byte offsets coincide.
        self._same = len(self.text) == len(body)
        self._char = 0
        self._byte = 0

    def char_of(self, byte: int) -> int:
        if self._same:
            return byte
        if byte < self._byte:
            self._char = self._byte = 0
        self._char += len(self._body[self._byte : byte].decode("utf-8", "surrogateescape"))
        self._byte = byte
        return self._char

    def byte_of(self, char: int) -> int:
        if self._same:
            return char
        if char < self._char:
            self._char = self._byte = 0
        self._byte += len(self.text[self._char : char].encode("utf-8", "surrogateescape"))
        self._char = char
        return self._byte
