# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""RFC 3339 timestamps in C: checking the ones a record holds, and writing `p_event_time`.

Both run for every network record (a flow window's `start` and `end`, `fields.recorded`, and the
row's event time). In Python they cost ~4.5 µs of a record's ~38 µs in process: a regular
expression and `all()` over the keys to check the syntax after msgspec had already parsed each one
into a datetime for its ranges (~17,000 instructions a record), and `datetime + timedelta` then
`isoformat` for the event time (~17,600). Here each is one pass over a few characters.

- `rfc3339_values` accepts exactly what `app.schemas.common.rfc3339_to_unix` accepts, the
  authority pydantic validates with (Go's `time.RFC3339Nano`: `T` separator, 1-9 fractional digits,
  `Z` or `±hh:mm`, lower-case `t`/`z`, real calendar dates, no leap second), so the fast path
  (`app.schemas.fastpath`) refuses nothing pydantic would keep unchanged and accepts nothing it
  would refuse. tests/test_timestamps.py holds it to that with hypothesis.
- `format_unix` writes what `format_timestamp(datetime(1970, 1, 1) + timedelta(seconds=s))` writes,
  rounding to the microsecond as `timedelta` does (half to even), for the `time` range validation
  allows (years 1 to 9999).
"""

from libc.math cimport fabs, modf, round


cdef extern from "Python.h":
    object PyUnicode_DecodeASCII(const char *data, Py_ssize_t size, const char *errors)


cdef long long _US_PER_DAY = 86_400_000_000
cdef long long _DAYS_FROM_CIVIL_0000_03_01 = 719_468  # 1970-01-01 counted from 0000-03-01

UNIX_MIN = -62_135_596_800
"""0001-01-01T00:00:00Z in unix seconds: the earliest `time` a datetime can hold."""
UNIX_END = 253_402_300_800
"""10000-01-01T00:00:00Z in unix seconds: `time` must be below it."""

cdef double _UNIX_MIN = UNIX_MIN
cdef double _UNIX_END = UNIX_END


cdef inline int _digits(str text, Py_ssize_t start, Py_ssize_t count) noexcept:
    """The decimal number written by ASCII digits `text[start:start + count]`, or -1 if any is not one."""
    cdef Py_ssize_t index
    cdef Py_UCS4 character
    cdef int value = 0
    for index in range(start, start + count):
        character = text[index]
        if character < 48 or character > 57:  # "0".."9"
            return -1
        value = value * 10 + (<int> character - 48)
    return value


cdef inline bint _leap(int year) noexcept:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


cdef bint _is_rfc3339(str text) noexcept:
    """`YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, with a real date and time of day."""
    cdef Py_ssize_t length = len(text)
    cdef Py_ssize_t end, fraction
    cdef int year, month, day, hour, minute, second, last_day
    cdef Py_UCS4 character
    if length < 20:  # 2026-06-03T15:32:56Z is the shortest
        return False
    if text[4] != "-" or text[7] != "-" or text[10] not in "Tt" or text[13] != ":" or text[16] != ":":
        return False
    year = _digits(text, 0, 4)
    month = _digits(text, 5, 2)
    day = _digits(text, 8, 2)
    hour = _digits(text, 11, 2)
    minute = _digits(text, 14, 2)
    second = _digits(text, 17, 2)
    if year < 1 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23 or minute < 0 or minute > 59:
        return False
    if second < 0 or second > 59:  # Go refuses a leap second
        return False
    if month == 2:
        last_day = 29 if _leap(year) else 28
    elif month in (4, 6, 9, 11):
        last_day = 30
    else:
        last_day = 31
    if day > last_day:
        return False
    end = 19
    if text[end] == ".":
        fraction = 0
        end += 1
        while end < length and fraction < 10:
            character = text[end]
            if character < 48 or character > 57:
                break
            fraction += 1
            end += 1
        if fraction < 1 or fraction > 9:
            return False
    if end == length - 1:
        return text[end] in "Zz"
    if end != length - 6 or text[end] not in "+-" or text[end + 3] != ":":
        return False
    hour = _digits(text, end + 1, 2)
    minute = _digits(text, end + 4, 2)
    return 0 <= hour <= 23 and 0 <= minute <= 59


def rfc3339_values(dict mapping, tuple keys):
    """Whether each of `keys` in `mapping` is absent, null or an RFC 3339 timestamp."""
    for key in keys:
        value = mapping.get(key)
        if value is None:
            continue
        if type(value) is not str or not _is_rfc3339(<str> value):
            return False
    return True


def rfc3339_texts(*values):
    """Whether every one of `values` that is a str is an RFC 3339 timestamp; the others (null,
    msgspec's UNSET) are passed over. For a struct's fields, typed `str | None | UnsetType`: one call
    in C for a record's three timestamps, where three Python calls cost 0.2-0.3 µs a record more."""
    for value in values:
        if type(value) is str and not _is_rfc3339(<str> value):
            return False
    return True


def is_rfc3339(object text):
    """Whether `text` is a string (a subclass too) holding an RFC 3339 timestamp as Go's
    `time.RFC3339Nano` reads it."""
    return isinstance(text, str) and _is_rfc3339(<str> text)


cdef inline char *_put(char *out, int value, int width) noexcept:
    """Write `value` as `width` zero-padded decimal digits at `out`; return the end."""
    cdef int index
    for index in range(width - 1, -1, -1):
        out[index] = <char> (48 + value % 10)
        value //= 10
    return out + width


cdef long long _microseconds(double seconds) noexcept:
    """`seconds` in whole microseconds, rounded as `timedelta(seconds=seconds)` rounds them.

    CPython's `delta_new` takes the whole seconds exactly, then the microseconds of the fraction,
    and rounds what is left half to even, judging evenness by the total so far."""
    cdef double whole_seconds, whole_us, left
    cdef long long total, odd
    left = modf(modf(seconds, &whole_seconds) * 1e6, &whole_us)
    total = <long long> whole_seconds * 1_000_000 + <long long> whole_us
    if left != 0.0:
        whole_us = round(left)
        if fabs(whole_us - left) == 0.5:
            odd = total & 1
            whole_us = 2.0 * round((left + odd) * 0.5) - odd
        total += <long long> whole_us
    return total


def format_unix(double seconds):
    """RFC 3339 in UTC with microseconds and `Z` (`2026-06-03T15:32:56.773000Z`) of unix `seconds`.

    OverflowError outside years 1 to 9999, as `datetime` arithmetic raises it."""
    cdef long long total, days, rest, z, era, doe, yoe, doy, mp
    cdef int year, month, day
    cdef char text[27]
    cdef char *out = text
    if not (_UNIX_MIN <= seconds < _UNIX_END):  # NaN too
        raise OverflowError(f"unix time {seconds!r} is outside years 1 to 9999")
    total = _microseconds(seconds)
    days = total // _US_PER_DAY
    rest = total % _US_PER_DAY
    if rest < 0:
        rest += _US_PER_DAY
        days -= 1
    # Howard Hinnant's civil_from_days (https://howardhinnant.github.io/date_algorithms.html).
    z = days + _DAYS_FROM_CIVIL_0000_03_01
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = <int> (doy - (153 * mp + 2) // 5 + 1)
    month = <int> (mp + 3 if mp < 10 else mp - 9)
    year = <int> (yoe + era * 400 + (1 if month <= 2 else 0))
    if year > 9_999:  # 9999-12-31T23:59:59.9999995 rounds up into year 10000
        raise OverflowError(f"unix time {seconds!r} is outside years 1 to 9999")
    out = _put(out, year, 4)
    out[0] = b"-"
    out = _put(out + 1, month, 2)
    out[0] = b"-"
    out = _put(out + 1, day, 2)
    out[0] = b"T"
    out = _put(out + 1, <int> (rest // 3_600_000_000), 2)
    out[0] = b":"
    out = _put(out + 1, <int> (rest // 60_000_000 % 60), 2)
    out[0] = b":"
    out = _put(out + 1, <int> (rest // 1_000_000 % 60), 2)
    out[0] = b"."
    out = _put(out + 1, <int> (rest % 1_000_000), 6)
    out[0] = b"Z"
    return PyUnicode_DecodeASCII(text, 27, NULL)
