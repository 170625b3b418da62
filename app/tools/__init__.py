"""Offline companions of the receiver: `tailscribe validate` checks files, `tailscribe send` replays them.

Each tool module exposes `add_arguments(parser)` and `run(args) -> int`; `app/cli.py` registers them
as subcommands and turns the returned code into the process's exit status. The codes live here so
both tools, the CLI and the tests share one table.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
"""Everything was read, valid (validate) or delivered (send)."""
EXIT_FAILED: Final = 1
"""The tool ran, but something failed: a record or file did not validate, or a batch was not delivered."""
EXIT_USAGE: Final = 2
"""The tool could not run as asked: an unreadable file, a missing token, a bad flag value."""
