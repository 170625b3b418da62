"""The compiled timestamps (app/timestamps.pyx) against the Python they replace, read plainly."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.enrich import format_timestamp
from app.schemas.common import UNIX_END, UNIX_MIN, rfc3339_to_unix
from app.timestamps import format_unix, is_rfc3339, rfc3339_texts, rfc3339_values

EPOCH = datetime(1970, 1, 1)


def _reference_format(seconds: float) -> str | None:
    """What the receiver wrote for `p_event_time` before: datetime arithmetic, None on overflow."""
    try:
        return format_timestamp(EPOCH + timedelta(seconds=seconds))
    except OverflowError:
        return None


def _format(seconds: float) -> str | None:
    try:
        return format_unix(seconds)
    except OverflowError:
        return None


@given(st.floats(min_value=UNIX_MIN, max_value=UNIX_END, exclude_max=True))
@example(1780500776.773)
@example(0.0000005)  # exactly half a microsecond, as a double a little above or below
@example(0.0000015)
@example(-0.0000005)
@example(-0.0000025)
@example(1.5e-6)
@example(2.5e-6)
@example(-1e-7)  # just before the epoch: the previous day
@example(UNIX_MIN)
@example(math.nextafter(UNIX_END, 0))  # rounds into year 10000: refused, as datetime refuses it
@example(951782400.0)  # 2000-02-29
@example(-2203891200.0)  # 1900-03-01, after a century that is no leap year
def test_a_float_formats_as_datetime_arithmetic_formats_it(seconds: float) -> None:
    assert _format(seconds) == _reference_format(seconds)


@given(st.floats(min_value=-3, max_value=3).map(lambda value: round(value * 2e6) / 2e6))
def test_half_microseconds_round_to_even_as_timedelta_does(seconds: float) -> None:
    assert _format(seconds) == _reference_format(seconds)


@given(st.integers(min_value=UNIX_MIN, max_value=UNIX_END - 1))
def test_whole_seconds_format_exactly(seconds: int) -> None:
    assert format_unix(seconds) == _reference_format(seconds)


@pytest.mark.parametrize("seconds", [UNIX_END, UNIX_MIN - 1, math.inf, -math.inf, math.nan, 1e300])
def test_seconds_outside_years_1_to_9999_raise_overflow(seconds: float) -> None:
    with pytest.raises(OverflowError):
        format_unix(seconds)


def _timestamps() -> st.SearchStrategy[str]:
    """Text shaped like RFC 3339: a real moment with its separator, fraction and zone each written
    right or wrong, or any part out of range or not digits."""
    separator = st.sampled_from(["T", "t", " ", "_", "TT"])
    fraction = st.sampled_from(["", "."]) | st.text("0123456789", min_size=1, max_size=12).map(".{}".format)
    zone = st.sampled_from(["Z", "z", "", "+01:00", "-23:59", "+24:00", "-00:60", "+0100", "+01", "Zz", " Z"])
    real = st.builds(
        lambda moment, separator, fraction, zone: moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + fraction + zone,
        st.datetimes(min_value=datetime(1000, 1, 1)),
        separator,
        fraction,
        zone,
    )
    number = st.integers(0, 99).map("{:02d}".format) | st.sampled_from(["", "1", "123", "٣٣", "+1", "0x"])
    year = st.integers(0, 10_000).map("{:04d}".format) | st.sampled_from(["", "999", "+2026", "２０２６"])
    parts = st.builds(
        "{}-{}-{}{}{}:{}:{}{}{}".format, year, number, number, separator, number, number, number, fraction, zone
    )
    return real | parts


@given(_timestamps() | st.text(max_size=40))
@example("2024-02-29T00:00:00Z")
@example("2026-02-29T00:00:00Z")
@example("1900-02-29T00:00:00Z")
@example("2000-02-29T00:00:00Z")
@example("2026-04-31T00:00:00Z")
@example("2026-06-03T23:59:60Z")
@example("0001-01-01T00:00:00+01:00")
@example("2026-06-03T15:32:51.773109845Z")
@example("2026-06-03T15:32:51.7731098451Z")
def test_is_rfc3339_accepts_exactly_what_rfc3339_to_unix_reads(text: str) -> None:
    assert is_rfc3339(text) is (rfc3339_to_unix(text) is not None)


def test_is_rfc3339_reads_a_str_subclass_and_refuses_anything_else() -> None:
    class Text(str):
        pass

    assert is_rfc3339(Text("2026-06-03T15:32:51Z"))
    assert not is_rfc3339(b"2026-06-03T15:32:51Z")
    assert not is_rfc3339(None)


def test_rfc3339_values_takes_absent_and_null_and_refuses_anything_not_a_timestamp() -> None:
    keys = ("start", "end")
    assert rfc3339_values({}, keys)
    assert rfc3339_values({"start": None, "end": "2026-06-03T15:32:51Z", "other": 1}, keys)
    assert not rfc3339_values({"start": "2026-06-03T15:32:51Z", "end": "yesterday"}, keys)
    assert not rfc3339_values({"start": 1780500771}, keys)
    assert not rfc3339_values({"end": b"2026-06-03T15:32:51Z"}, keys)


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.just(msgspec.UNSET),
            st.sampled_from(["2026-06-03T15:32:51.552946176Z", "2026-06-03T15:32:51+02:00", "yesterday", ""]),
            st.text(max_size=30),
        ),
        max_size=4,
    )
)
def test_rfc3339_texts_checks_each_str_and_passes_over_null_and_unset(values: list[object]) -> None:
    """The network lane's check of a record's three timestamps (`app.schemas.network_structs.decode`)."""
    assert rfc3339_texts(*values) == all(is_rfc3339(value) for value in values if isinstance(value, str))
