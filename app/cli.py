"""The `tailscribe` command: collects flags into `Settings(**overrides)` and starts things.

No logic lives here beyond turning flags into settings and results into exit codes; the offline
tools (`validate`, `send`) keep theirs, and their flags, in `app.tools`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson
import uvicorn
from pydantic import ValidationError

from app import __version__
from app.allocator import tune_allocator
from app.auth import Authenticator
from app.main import create_app
from app.observability import MULTIPROCESS_ENV, configure_logging
from app.protocol import GuardedHttpToolsProtocol
from app.settings import Settings
from app.storage.files import durable_write
from app.tools import send, validate
from app.workers import run_workers

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2

TOKEN_FILE_NAME: Final = "token"
TOOLS: Final = {"validate": validate, "send": send}
VALIDATE_HELP: Final = "frame, validate and enrich files offline; exit 1 if any record fails"
SEND_HELP: Final = "replay files of records to a receiver in batches, with retries"
NOT_FLAGS: Final = frozenset({"sources", "sinks"})
"""Settings too structured for a flag: TOML `[[sources]]`/`[[sinks]]` or TAILSCRIBE_SOURCES/_SINKS (JSON)."""
CONFIG_ERRORS: Final = (ValidationError, ValueError, OSError, tomllib.TOMLDecodeError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return token_new()
    if args.command in TOOLS:
        return TOOLS[args.command].run(args)
    overrides = {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None}
    try:
        settings = Settings(**overrides)
        if args.command == "check-config":
            return check_config(settings)
        return serve(settings)
    except CONFIG_ERRORS as exc:
        print(f"tailscribe: invalid configuration: {describe_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailscribe", description="Receive Tailscale log streams.")
    parser.add_argument("--version", action="version", version=f"tailscribe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP receiver")
    check_parser = commands.add_parser("check-config", help="validate the configuration and print it, secrets masked")
    check_parser.add_argument("--config", type=Path, help=Settings.model_fields["config"].description)
    # One flag per setting, named after it; values stay strings so Settings alone parses them.
    for name, field in Settings.model_fields.items():
        if name not in NOT_FLAGS:
            serve_parser.add_argument(
                f"--{name.replace('_', '-')}", dest=name, metavar=name.upper(), help=field.description
            )
    for name, help_text in (("validate", VALIDATE_HELP), ("send", SEND_HELP)):
        TOOLS[name].add_arguments(commands.add_parser(name, help=help_text, description=help_text))
    token_parser = commands.add_parser("token", help="token helpers")
    token_commands = token_parser.add_subparsers(dest="token_command", required=True)
    token_commands.add_parser("new", help="print a new random token and the sha256: hash to configure instead of it")
    return parser


def describe_error(exc: BaseException) -> str:
    """One readable message naming the key at fault."""
    if isinstance(exc, ValidationError):
        lines = [
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}" for error in exc.errors()
        ]
        return "\n  ".join(["", *lines]) if len(lines) > 1 else lines[0]
    return str(exc)


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    tune_allocator()
    if not settings.has_tokens():
        settings = settings.model_copy(update={"token_file": bootstrap_token(settings)})
    app = create_app(settings)  # also fails fast, in this process, on tokens that cannot be loaded
    if settings.workers > 1:
        # Each worker builds its own app from the environment (uvicorn's factory mode).
        os.environ.pop("TAILSCRIBE_CONFIG", None)
        os.environ.update(settings.as_environment())
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="tailscribe-metrics-")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it
    # found; with the default handler the process would die by the signal instead of exiting 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: None)
    options: dict[str, Any] = {  # uvicorn.Config's keyword arguments, for uvicorn.run too
        "host": settings.host,
        "port": settings.port,
        "ssl_certfile": settings.tls_cert,
        "ssl_keyfile": settings.tls_key,
        "timeout_keep_alive": int(settings.keepalive_timeout),
        "timeout_graceful_shutdown": int(settings.shutdown_timeout),
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,  # httptools, with limits on request heads
        "log_config": None,
        "access_log": False,  # the access log is ours: one JSON line per request, without secrets
        "server_header": False,
    }
    if settings.workers > 1:
        run_workers(uvicorn.Config("app.main:create_worker_app", factory=True, workers=settings.workers, **options))
    else:
        uvicorn.run(app, **options)
    return EXIT_OK


def check_config(settings: Settings) -> int:
    """Load every token, then print the effective configuration with secrets masked."""
    if not settings.has_tokens():
        path = settings.data_dir / TOKEN_FILE_NAME
        if not path.exists():
            print(f"tailscribe: no token configured; serve will generate one in {path}", file=sys.stderr)
        settings = settings.model_copy(update={"token_file": path}) if path.exists() else settings
    if not settings.has_tokens():
        print(orjson.dumps(settings.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    authenticator = Authenticator(settings.effective_sources())
    effective = settings.model_dump(mode="json")  # SecretStr fields come out masked
    effective["effective_sources"] = [
        {
            "id": source.id,
            "label": source.label,
            "log_types": sorted(source.log_types),
            "path_prefix": source.path_prefix,
        }
        | {"tokens": authenticator.token_count(source.id)}
        for source in authenticator.sources
    ]
    print(orjson.dumps(effective, option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def token_new() -> int:
    token = secrets.token_urlsafe(32)
    print(f"token: {token}")
    print(f"hash:  sha256:{hashlib.sha256(token.encode()).hexdigest()}")
    print("Give the token to Tailscale; configure either the token or, to keep secrets out of files, the hash.")
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
    scheme = "https" if settings.tls_cert else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
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
