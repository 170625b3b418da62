"""Sinks: where rows go after the journal. The contract is in `base`, the runner in `runner`."""

from __future__ import annotations

from typing import Any

from app.settings import Settings
from app.sinks.base import Sink, SinkConfig, build_sink

DEFAULT_SINKS: list[dict[str, Any]] = [{"type": "archive"}]


def build_sinks(settings: Settings) -> list[tuple[SinkConfig, Sink]]:
    """Every configured sink, validated and constructed (not started); the archive when none is.

    An archive sink without a `path` writes under `<data_dir>/archive`. Raises `ValueError`
    naming the sink and key at fault.
    """
    built: list[tuple[SinkConfig, Sink]] = []
    for index, table in enumerate(settings.sinks or DEFAULT_SINKS):
        options = dict(table)
        if options.get("type") == "archive" and "path" not in options:
            options["path"] = settings.data_dir / "archive"
        try:
            built.append(build_sink(options))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError too
            raise ValueError(f"sinks.{index}: {exc}") from exc
    names = [config.name for config, _ in built]
    if len(names) != len(set(names)):
        raise ValueError(f"sinks: names must be unique (give each a `name`), got {names}")
    return built
