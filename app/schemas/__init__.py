"""Validate records against Panther's Tailscale.Audit and Tailscale.Network schemas.

Schemas: https://docs.panther.com/data-onboarding/supported-logs/tailscale. Validation uses
pydantic TypedDicts and one `TypeAdapter` per log type: faster than models, and the result is the
plain, normalized dict that is stored (numeric strings become numbers, protocol names become
numbers, unknown keys are kept). A record that fails is a Panther "classification failure": the
caller quarantines it with `RecordInvalid.errors`.
"""

from __future__ import annotations

from typing import Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from app.schemas.audit import AUDIT_ADAPTER
from app.schemas.envelope import classify, wrap_bare
from app.schemas.fastpath import is_normal
from app.schemas.network import NETWORK_ADAPTER
from app.types import LogType, Row

__all__ = ["RecordInvalid", "classify", "validate", "wrap_bare"]

# A TypedDict validates to a plain dict: typing it as Row is what callers need.
ADAPTERS: Final[dict[LogType, TypeAdapter[Row]]] = {
    "audit": AUDIT_ADAPTER,  # type: ignore[dict-item]
    "network": NETWORK_ADAPTER,  # type: ignore[dict-item]
}


class RecordInvalid(Exception):
    """A record does not match its schema.

    `errors` lists `{"loc", "msg", "type"}` string dicts: `loc` is the dotted path
    (`event.virtualTraffic.3.proto`, `""` for the record itself), `type` pydantic's error type,
    low-cardinality enough for a metric label. Input values are left out: they may be secrets.
    """

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{error['loc'] or '(record)'}: {error['msg']}" for error in errors))
        self.errors = errors


def _describe(error: ErrorDetails) -> dict[str, str]:
    loc = ".".join(str(part) for part in error["loc"])
    # Only required fields refuse null (every other field is nullable): report it as Panther does.
    if error["input"] is None and error["loc"] and error["type"] != "missing":
        return {"loc": loc, "msg": "Field required (got null)", "type": "missing"}
    return {"loc": loc, "msg": error["msg"], "type": error["type"]}


def validate(record: Row, log_type: LogType) -> Row:
    """The normalized dict of `record` when it matches `log_type`'s schema; else `RecordInvalid`.

    A record already in normal form, nearly every one Tailscale sends, is returned itself, checked
    by `is_normal` in a few µs; any other goes through pydantic, which returns a new dict (sharing
    the values the schema does not describe) or says what is wrong. `record` is never modified.
    """
    if is_normal(record, log_type):
        return record
    try:
        return ADAPTERS[log_type].validate_python(record)
    except ValidationError as exc:
        raise RecordInvalid([_describe(error) for error in exc.errors(include_url=False)]) from exc
