"""Type hints of the compiled `app.addresses` (app/addresses.pyx)."""

from typing import Any, Final

MAX_IP_TEXT: Final[int]

MEMO_SIZE: Final[int]

def canonical_ip(text: str) -> str | None: ...
def split_addr_port(value: str) -> tuple[str | None, int | None]: ...
def split_traffic(event: dict[str, Any], keys: tuple[str, ...]) -> set[str]: ...
