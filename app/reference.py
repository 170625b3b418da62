"""The README's configuration and metrics reference, generated from the code so it cannot drift.

`python -m app.reference` (or `make docs`) rewrites the marked sections of README.md; a test fails
when they are stale. The settings come from `Settings`/`SourceConfig`, the metrics from
`app.observability.METRICS`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from app.observability import METRICS
from app.settings import MiB, Settings, SourceConfig

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("settings", "sources", "metrics")


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined or value in ([], ""):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool) and value >= MiB and value % MiB == 0:
        return f"{value // MiB} MiB"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| setting | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{name}` | `TAILSCRIBE_{name.upper()}` | {_default(Settings, name)} | {field.description} |")
    return "\n".join(rows)


def sources_table() -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, field in SourceConfig.model_fields.items():
        rows.append(f"| `{name}` | {_default(SourceConfig, name)} | {field.description} |")
    return "\n".join(rows)


def metrics_table() -> str:
    rows = ["| metric | type | meaning |", "| --- | --- | --- |"]
    collectors = sorted(METRICS, key=lambda metric: metric._name)  # noqa: SLF001
    for metric in collectors:
        # prometheus-client has no public accessor for a collector's declared label names.
        name, kind, labels = metric._name, metric._type, metric._labelnames  # noqa: SLF001
        suffix = "_total" if kind == "counter" else ""
        label_text = "{" + ",".join(labels) + "}" if labels else ""
        rows.append(f"| `{name}{suffix}{label_text}` | {kind} | {metric._documentation} |")  # noqa: SLF001
    return "\n".join(rows)


def render(text: str) -> str:
    """`text` with every `<!-- reference:NAME -->` ... `<!-- /reference:NAME -->` section regenerated."""
    tables = {"settings": settings_table(), "sources": sources_table(), "metrics": metrics_table()}
    for name in SECTIONS:
        pattern = re.compile(rf"(<!-- reference:{name} -->\n).*?(<!-- /reference:{name} -->)", re.DOTALL)
        section = pattern.search(text)
        if section is None:
            raise ValueError(f"README has no <!-- reference:{name} --> section")
        text = text[: section.end(1)] + tables[name] + "\n" + text[section.start(2) :]
    return text


if __name__ == "__main__":
    README.write_text(render(README.read_text(encoding="utf-8")), encoding="utf-8")
    sys.exit(0)
