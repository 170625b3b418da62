"""Field types shared by Tailscale.Audit and Tailscale.Network, with Panther's validation rules.

Panther's schemas (https://docs.panther.com/data-onboarding/supported-logs/tailscale) use a few
value types; this module is the one place their rules live:

- `timestamp` with `timeFormats: [unix]` (`time`): unix seconds as a JSON number or numeric
  string, finite and inside datetime's range (year 1..9999). Normalized to a number.
- `timestamp` with `timeFormats: [rfc3339]`: validated (up to 9 fractional digits, `Z` or an
  offset, the zero time `0001-01-01T00:00:00Z` included) but kept as the original string,
  because Python datetimes would drop the nanoseconds Tailscale sends.
- `smallint` (`proto`) and `bigint` (the traffic counters; the `int` ports are derived by
  `app.enrich`): a JSON integer or a string of decimal digits, range-checked and normalized to an
  int. Bools and fractional numbers are rejected, although pydantic's lax mode would turn `True`
  into 1 and `6.0` or `"6.0"` into 6: Go's encoding/json, which both Tailscale and Panther use,
  refuses those for integer fields, so accepting them would hide a broken sender.
- `proto` also takes the protocol names Tailscale's own decoder accepts, case-insensitively.

Each integer and time type is one pydantic-core union with a custom error, so a bad value gives one
clear, low-cardinality error (`invalid_proto`, `invalid_bigint`, ...) instead of one error per union branch, and
the common case (a JSON int) is checked in Rust without calling back into Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Final, Generic, Required, TypeVar

from pydantic import ConfigDict, GetCoreSchemaHandler, PlainValidator, with_config
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from typing_extensions import TypedDict  # pydantic needs this one, not typing's, before Python 3.12

from app.timestamps import UNIX_END, UNIX_MIN, is_rfc3339

OPEN: Final = ConfigDict(extra="allow")
"""Every level keeps unknown keys as received: Tailscale adds fields (`srcNode`), we never drop data."""

PROTO_NAMES: Final[dict[str, int]] = {
    "": 0,
    "ah": 51,
    "dccp": 33,
    "egp": 8,
    "esp": 50,
    "gre": 47,
    "icmp": 1,
    "icmpv4": 1,
    "icmpv6": 58,
    "igmp": 2,
    "igp": 9,
    "ip-in-ip": 4,
    "ipv4": 4,
    "ipv6-icmp": 58,
    "sctp": 132,
    "tcp": 6,
    "tsmp": 99,
    "udp": 17,
}
"""Lower-cased protocol names → IANA numbers: `acceptedNames` of Tailscale's `types/ipproto`, whose
`UnmarshalText` also reads the empty string as 0. Its API spec shows such names (`"tcp"`, `"ipv4"`)."""

_INT_TEXT: Final = r"^[+-]?[0-9]+$"
_FLOAT_TEXT: Final = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"

_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def rfc3339_to_unix(value: str) -> float | None:
    """Unix seconds of an RFC 3339 timestamp, or None when it is not one.

    Follows Go's `time.RFC3339Nano` (what Tailscale writes): `T` separator, 1..9 fractional digits,
    `Z` or `±hh:mm`; lower-case `t`/`z` too, as RFC 3339 allows. Leap second 60 is refused, as Go does.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        return None
    seconds = days * 86_400 + int(hour) * 3_600 + int(minute) * 60 + int(second)
    if sign is not None:
        if int(off_hour) > 23 or int(off_minute) > 59:
            return None
        offset = int(off_hour) * 3_600 + int(off_minute) * 60
        seconds += -offset if sign == "+" else offset
    return seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _timestamp(value: object) -> str:
    if isinstance(value, str) and is_rfc3339(value):
        return value
    raise PydanticCustomError(
        "invalid_timestamp",
        "Input should be an RFC 3339 timestamp such as 2026-06-03T15:33:01.552946176Z",
    )


@dataclass(frozen=True, eq=False)
class _Integer:
    """A Panther integer type: JSON int or digit string in [low, high], plus optional names."""

    kind: str
    low: int
    high: int
    names: dict[str, int] | None = None

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        choices: list[CoreSchema | tuple[CoreSchema, str]] = [
            core_schema.int_schema(strict=True, ge=self.low, le=self.high),
            core_schema.chain_schema(
                [
                    core_schema.str_schema(strict=True, pattern=_INT_TEXT),
                    core_schema.int_schema(strict=False, ge=self.low, le=self.high),
                ]
            ),
        ]
        message = f"Input should be an integer from {self.low} to {self.high} (a JSON integer or a string of digits)"
        if self.names is not None:
            choices.append(core_schema.no_info_plain_validator_function(self._by_name))
            message += " or a protocol name such as tcp, udp or icmp"
        return core_schema.union_schema(
            choices, mode="left_to_right", custom_error_type=f"invalid_{self.kind}", custom_error_message=message
        )

    def _by_name(self, value: object) -> int:
        number = self.names.get(value.lower()) if isinstance(value, str) and self.names else None
        if number is None:
            raise PydanticCustomError("unknown_name", "unknown name")  # replaced by the union's error
        return number


class _UnixTime:
    """Panther's `timestamp` with `timeFormats: [unix]`: an int stays an int, a numeric string becomes a number."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.union_schema(
            [
                core_schema.int_schema(strict=True, ge=UNIX_MIN, lt=UNIX_END),
                core_schema.float_schema(strict=True, allow_inf_nan=False, ge=UNIX_MIN, lt=UNIX_END),
                core_schema.chain_schema(
                    [
                        core_schema.str_schema(strict=True, pattern=_INT_TEXT),
                        core_schema.int_schema(ge=UNIX_MIN, lt=UNIX_END),
                    ]
                ),
                core_schema.chain_schema(
                    [
                        core_schema.str_schema(strict=True, pattern=_FLOAT_TEXT),
                        core_schema.float_schema(allow_inf_nan=False, ge=UNIX_MIN, lt=UNIX_END),
                    ]
                ),
            ],
            mode="left_to_right",
            custom_error_type="invalid_unix_time",
            custom_error_message=(
                "Input should be unix seconds (a finite JSON number or numeric string) between years 1 and 9999"
            ),
        )


BigInt = Annotated[int, _Integer("bigint", -(2**63), 2**63 - 1)]
Proto = Annotated[int, _Integer("proto", -(2**15), 2**15 - 1, PROTO_NAMES)]
"""Panther's `smallint`, plus protocol names."""
UnixTime = Annotated[float, _UnixTime]
Timestamp = Annotated[str, PlainValidator(_timestamp)]

EventT = TypeVar("EventT")


@with_config(OPEN)
class Fields(TypedDict, total=False):
    """HEC `fields`, beside `event`: `recorded` is when Tailscale's log service stored the record."""

    recorded: Timestamp | None


@with_config(OPEN)
class Envelope(TypedDict, Generic[EventT], total=False):
    """The HEC envelope both log types arrive in; `time` and `event` are required by Panther."""

    time: Required[UnixTime]
    event: Required[EventT]
    fields: Fields | None
