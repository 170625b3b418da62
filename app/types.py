"""The vocabulary shared by every module: what a row is and which log types exist.

Names follow Panther's schemas (https://docs.panther.com/data-onboarding/supported-logs/tailscale):
the short names (`audit`, `network`) appear in URLs and settings, the Panther names in rows.
"""

from __future__ import annotations

from typing import Any, Final, Literal

Row = dict[str, Any]
"""One JSON object as received or as stored; the only place `Any` is welcome."""

LogType = Literal["audit", "network"]

LOG_TYPES: Final[tuple[LogType, ...]] = ("audit", "network")

PANTHER_LOG_TYPES: Final[dict[LogType, str]] = {
    "audit": "Tailscale.Audit",
    "network": "Tailscale.Network",
}
"""The `p_log_type` value of each log type, also the archive's `log_type=` partition."""
