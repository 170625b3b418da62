# cython: language_level=3, boundscheck=False, wraparound=False
"""Scans of JSON text in C: framing's of a body's bytes (app/ingest/framing.py), the journal's of
an entry's lines (app/journal/format.py).

`container_end`: where a JSON object or array ends, found without building it. Both of framing's
parsers, orjson and json's scanner, build the value they read, and Python objects take about twelve
times the bytes of a typical record and up to thirty times for one of empty objects (`[{},{},...]`: a
9 MB record peaked at 262 MB). So a record over `max_record_bytes`, which is refused anyway, is not
given to either: framing finds its end here, by counting brackets outside strings, in C and without
the GIL (0.7-0.9 ns a byte for network records, 0.9 for empty objects), and quarantines its bytes
unparsed. Nothing is validated. For valid JSON the end found is the value's true end; for anything
else it is some end, or none, and the bytes are refused either way.

`next_boundary` and `count_openers`: the two scans framing's fast path makes of every record, where
it may end and how many brackets it opens. They replaced a regular expression and two `bytes.count`
calls, which took 38,000 of a network record's 490,000 instructions in process (callgrind).

`split_lines`: a journal entry's NDJSON cut into its rows, for the sinks.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr


cdef Py_ssize_t _string_end(const unsigned char[:] data, Py_ssize_t i) noexcept nogil:
    """Just past the string whose text starts at `i`, or -1: its end is the first quote that does not
    follow an odd run of backslashes, looked for with memchr (most of a record's bytes are in strings)."""
    cdef Py_ssize_t n = data.shape[0]
    cdef const unsigned char *found
    cdef Py_ssize_t quote, before
    while i < n:
        found = <const unsigned char *>memchr(&data[i], 34, n - i)  # '"'
        if found == NULL:
            return -1
        quote = found - &data[0]
        before = quote - 1
        while data[before] == 92:  # '\\'; the opening quote stops this run at the latest
            before -= 1
        i = quote + 1
        if (quote - 1 - before) % 2 == 0:
            return i
    return -1


cdef Py_ssize_t _container_end(const unsigned char[:] data, Py_ssize_t start) noexcept nogil:
    cdef Py_ssize_t i = start
    cdef Py_ssize_t n = data.shape[0]
    cdef Py_ssize_t depth = 0
    cdef unsigned char c
    while i < n:
        c = data[i]
        if c == 34:  # '"'
            i = _string_end(data, i + 1)
            if i < 0:
                return -1
            continue
        elif c == 123 or c == 91:  # '{' '['
            depth += 1
        elif c == 125 or c == 93:  # '}' ']'
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def container_end(const unsigned char[:] data, Py_ssize_t start):
    """The offset just past the object or array that opens at `data[start]`; -1 if `data` ends first."""
    if start < 0 or start >= data.shape[0] or data[start] not in (123, 91):
        raise ValueError(f"no object or array starts at offset {start}")
    cdef Py_ssize_t end
    with nogil:
        end = _container_end(data, start)
    return end


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    return c == 32 or c == 10 or c == 13 or c == 9  # JSON whitespace: ' ' '\n' '\r' '\t'


def next_boundary(bytes data, Py_ssize_t pos):
    """`(close, open)` for the first `}` at or after `pos` that JSON whitespace and then a `{` follow:
    where one concatenated object may end and the next begin. None when there is no such place.

    The same as the regular expression `\\}[ \\t\\r\\n]*\\{` searched from `pos`, strings not skipped,
    with memchr: framing's fast path cuts a body of concatenated records here, and the regex engine
    spent about 6 instructions a byte on it."""
    cdef const unsigned char *base = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const unsigned char *found
    cdef Py_ssize_t close, i
    if pos < 0:
        raise ValueError(f"negative offset {pos}")
    while pos < n:
        found = <const unsigned char *>memchr(base + pos, 125, n - pos)  # '}'
        if found == NULL:
            return None
        close = found - base
        i = close + 1
        while i < n and _is_space(base[i]):
            i += 1
        if i < n and base[i] == 123:  # '{'
            return close, i
        pos = i  # only whitespace lay between, so no '}' was skipped
    return None


def count_openers(bytes data, Py_ssize_t start, Py_ssize_t stop):
    """How many `{` and `[` are in `data[start:stop]` (0 <= start; stop past the end means the end).

    Each level of nesting needs its own opening bracket, so framing skips the depth check of a record
    with fewer than `max_depth` of them. One pass, against two of `bytes.count` (about 5 instructions
    a byte between them)."""
    cdef const unsigned char *base = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t i
    cdef unsigned char c
    if start < 0:
        raise ValueError(f"negative offset {start}")
    if stop > n:
        stop = n
    with nogil:
        for i in range(start, stop):
            c = base[i]
            total += (c == 123) | (c == 91)  # '{' '['
    return total


def split_lines(bytes data):
    """The lines of `data`, cut at each `\\n` (found with memchr), without them: `data.split(b"\\n")`
    less the empty piece after a final newline. For NDJSON, which holds no raw `\\r`, the same as
    `data.splitlines()`.

    Every row a sink runner reads from the journal goes through here. `bytes.splitlines` and
    `bytes.split` test each byte in a loop of their own: 160-245 µs for a 73-row entry of 4 KB rows,
    2.5% of a worker's CPU at peak (perf), against 13 µs with memchr."""
    cdef const char *base = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t start = 0
    cdef const char *found
    cdef list lines = []
    while start < n:
        found = <const char *>memchr(base + start, 10, n - start)  # '\n'
        if found == NULL:
            lines.append(PyBytes_FromStringAndSize(base + start, n - start))
            break
        lines.append(PyBytes_FromStringAndSize(base + start, (found - base) - start))
        start = (found - base) + 1
    return lines
