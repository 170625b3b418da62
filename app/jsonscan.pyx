# cython: language_level=3, boundscheck=False, wraparound=False
"""Where a JSON object or array ends, found without building it.

Both of framing's parsers, orjson and json's scanner, build the value they read, and Python objects
take about twelve times the bytes of a typical record and up to thirty times for one of empty
objects (`[{},{},...]`: a 9 MB record peaked at 262 MB). So a record over `max_record_bytes`, which
is refused anyway, is not given to either: framing finds its end here, by counting brackets outside
strings, in C and without the GIL (0.7-0.9 ns a byte for network records, 0.9 for empty objects), and
quarantines its bytes unparsed (app/ingest/framing.py).

Nothing is validated. For valid JSON the end found is the value's true end; for anything else it is
some end, or none, and the bytes are refused either way.
"""

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
