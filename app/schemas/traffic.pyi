"""Type hints of the compiled `app.schemas.traffic` (app/schemas/traffic.pyx)."""

from typing import Any, Final

TRAFFIC_FIELDS: Final[tuple[str, ...]]

def traffic_is_normal(event: dict[str, Any], keys: tuple[str, ...]) -> bool: ...
