"""tailscribe: a self-hosted, Panther-style HTTP receiver for Tailscale log streaming."""

from __future__ import annotations

__version__ = "0.1.0"
