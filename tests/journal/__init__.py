from __future__ import annotations

from app.journal import Journal


def append_lines(journal: Journal, lines: list[bytes]) -> None:
    """`Journal.append` of rows given one line each, as tests write them."""
    journal.append(b"".join(line + b"\n" for line in lines), len(lines))
