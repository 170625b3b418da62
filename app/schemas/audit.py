"""Tailscale.Audit: configuration audit records, as Panther's schema declares them.

Schema: https://docs.panther.com/data-onboarding/supported-logs/tailscale (Tailscale.Audit);
records: https://tailscale.com/kb/1255/log-streaming. Panther requires `origin`, `actor`,
`target` and `action`; everything else may be missing or null. Enumerations (origin, actor and
target types, actions) stay plain strings: Tailscale adds values without notice. Keys outside the
schema (`target.isEphemeral`, poll-API `eventTime`/`type`, ...) are kept as received.
"""

from __future__ import annotations

from typing import Final, Required

from pydantic import TypeAdapter, with_config
from typing_extensions import TypedDict

from app.schemas.common import OPEN, Envelope, Timestamp


@with_config(OPEN)
class Actor(TypedDict, total=False):
    """Who acted. `loginName` is `""` for OAuth clients, so emptiness is valid."""

    id: str | None
    type: str | None
    loginName: str | None
    displayName: str | None
    tags: list[str | None] | None


@with_config(OPEN)
class Target(TypedDict, total=False):
    id: str | None
    name: str | None
    type: str | None
    property: str | None


@with_config(OPEN)
class AuditEvent(TypedDict, total=False):
    """`old` and `new` are any JSON (whole policy files, `""`, `{}`), kept untouched."""

    deferredAt: Timestamp | None
    eventGroupID: str | None
    origin: Required[str]
    actor: Required[Actor]
    target: Required[Target]
    action: Required[str]
    old: object
    new: object
    actionDetails: str | None
    error: str | None


AUDIT_ADAPTER: Final = TypeAdapter(Envelope[AuditEvent])
