"""The `tailscribe` command: collects flags into `Settings(**overrides)` and starts things.

No logic lives here beyond turning flags into settings and results into exit codes.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import uvicorn
from pydantic import ValidationError

from app import __version__
from app.main import create_app
from app.observability import configure_logging
from app.settings import Settings
from app.storage.files import durable_write

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2

TOKEN_FILE_NAME: Final = "token"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if key != "command" and value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"tailscribe: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    return serve(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailscribe", description="Receive Tailscale log streams.")
    parser.add_argument("--version", action="version", version=f"tailscribe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP receiver")
    # One flag per setting, named after it; values stay strings so Settings alone parses them.
    for name, field in Settings.model_fields.items():
        serve_parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, metavar=name.upper(), help=field.description
        )
    return parser


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level)
    if not settings.all_tokens():
        settings = settings.model_copy(update={"token_file": bootstrap_token(settings)})
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,  # the access log is ours: one JSON line per request, without secrets
        server_header=False,
    )
    return EXIT_OK


def bootstrap_token(settings: Settings) -> Path:
    """With no token configured, use `<data_dir>/token`, creating it (mode 600) on first start.

    The token is printed to stdout only when it is created: it must survive restarts, or every
    restart would break the Tailscale stream configured with it; and it is never logged.
    """
    path = settings.data_dir / TOKEN_FILE_NAME
    if path.exists():
        print(f"tailscribe: using the token in {path}", flush=True)
        return path
    token = secrets.token_urlsafe(32)
    durable_write(path, f"{token}\n".encode(), mode=0o600)
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"\ntailscribe: no token was configured, so one was generated and saved to {path}:\n\n"
        f"    {token}\n\n"
        f"Stream Tailscale logs to {base}/v1/tailscale/audit and {base}/v1/tailscale/network\n"
        f"with 'Authorization: Bearer <this token>'.\n",
        flush=True,
    )
    return path


if __name__ == "__main__":
    sys.exit(main())
