"""Type hints of the compiled `app.timestamps` (app/timestamps.pyx)."""

from typing import Any, Final

UNIX_MIN: Final[int]
UNIX_END: Final[int]

def rfc3339_values(mapping: dict[str, Any], keys: tuple[str, ...]) -> bool: ...
def is_rfc3339(text: object) -> bool: ...
def format_unix(seconds: float) -> str: ...
