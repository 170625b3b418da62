"""The one declaration of every tailscribe option.

Options come, highest precedence first, from keyword arguments (the CLI's flags), environment
variables `TAILSCRIBE_*`, a TOML file (`--config` / `TAILSCRIBE_CONFIG`), then defaults
(pydantic-settings: https://docs.pydantic.dev/latest/concepts/pydantic_settings/). Secrets are
`SecretStr`, so printing or logging a `Settings` never shows a token.

Sources: each Tailscale tailnet (or team) posting here is a `[[sources]]` table with its own id,
label, log types and tokens. Without any, the top-level `token`/`token_file`/`source_id`/
`source_label` describe the one default source, which is all a single-tailnet setup needs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.types import LOG_TYPES, LogType

MiB = 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 4 * MiB
"""Tailscale's client caps a flow record at 256 KiB (about twice that once enriched), and an audit
record's `old`/`new` can hold whole policy files: 4 MiB leaves room for both. Past it a record is
not Tailscale's, and a row no sink can take would stop that sink (rows are retried, never skipped):
NATS's default `max_payload` is 1 MiB and Panther's HTTP source takes 1 MB a request, so sites
forwarding there set 1,000,000."""

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "human"]

TOKEN_HASH_PREFIX = "sha256:"
_TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_PATH_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")

Tokens = Annotated[list[SecretStr], NoDecode]


def _split_commas(value: object) -> object:
    """Accept `a,b` (environment variables, flags) as well as a list (TOML, code)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SourceConfig(BaseModel):
    """One sender: who it is in rows, what it may post, and the tokens that prove it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="Written to its rows as p_source_id.")
    label: str = Field("", description="Written to its rows as p_source_label; the id when empty.")
    log_types: list[LogType] = Field(default_factory=lambda: list(LOG_TYPES), description="Log types it may post.")
    tokens: Tokens = Field(
        default_factory=list, description="Its tokens: plain, or `sha256:<hex>` so the file holds no secret."
    )
    token_env: list[str] = Field(default_factory=list, description="Environment variables holding more tokens.")
    token_files: list[Path] = Field(default_factory=list, description="Files holding more tokens, one per line.")
    path_prefix: str | None = Field(
        None,
        description="Extra URL prefix only this source may post to: `<prefix>/audit`, `<prefix>/network`, "
        "`<prefix>/services/collector/event`.",
    )

    _split_tokens = field_validator("tokens", mode="before")(_split_commas)

    @field_validator("path_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        if value is not None and not _PATH_PREFIX.fullmatch(value):
            raise ValueError("must look like /v1/tailscale/<name>: slash-separated, no trailing slash")
        return value

    def resolved_tokens(self) -> list[str]:
        """Every token of the source, from all three places; `sha256:` entries stay hashed."""
        tokens = [secret.get_secret_value() for secret in self.tokens]
        for name in self.token_env:
            value = os.environ.get(name)
            if not value:
                raise ValueError(f"source {self.id!r}: token_env variable {name} is not set")
            tokens += _split_commas(value)  # type: ignore[arg-type]
        for path in self.token_files:
            tokens += read_token_file(path)
        if not tokens:
            raise ValueError(f"source {self.id!r} has no token: set tokens, token_env or token_files")
        for token in tokens:
            if token.lower().startswith(TOKEN_HASH_PREFIX) and not is_token_hash(token):
                raise ValueError(f"source {self.id!r}: a token starting with sha256: must be followed by 64 hex digits")
        return tokens


class Settings(BaseSettings):
    """Everything the receiver can be told; each field documents itself for `--help` and the README."""

    model_config = SettingsConfigDict(env_prefix="TAILSCRIBE_", extra="forbid", validate_default=True)

    config: Path | None = Field(None, description="TOML file with more settings; the environment wins over it.")
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 to accept from other machines.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(Path("data"), description="Where the archive and the quarantine are written.")
    token: Tokens = Field(
        default_factory=list,
        description="Tokens of the default source, comma-separated (several allow rotation); `sha256:<hex>` allowed.",
    )
    token_file: Path | None = Field(
        None, description="File of tokens for the default source, one per line (Docker/Kubernetes secrets)."
    )
    source_id: str = Field("default", min_length=1, description="p_source_id of the default source.")
    source_label: str = Field("tailscale", description="p_source_label of the default source.")
    sources: list[SourceConfig] = Field(
        default_factory=list, description="Several sources, each with its own tokens (TOML `[[sources]]`)."
    )
    max_body_bytes: int = Field(32 * MiB, gt=0, description="Largest request body on the wire, in bytes (413 above).")
    max_decompressed_bytes: int = Field(
        128 * MiB, gt=0, description="Largest body after decompression, in bytes (413 above)."
    )
    max_records: int = Field(100_000, gt=0, description="Most records in one request (413 above).")
    max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES,
        gt=0,
        description="Largest record, as received and as a stored row (after enrichment), in bytes; a larger record "
        "is quarantined, so no sink is handed a row it cannot take and none is parsed into more than about thirty "
        "times this in memory (1000000 for NATS's default max_payload or Panther's HTTP source).",
    )
    max_depth: int = Field(
        64,
        gt=1,
        le=250,
        description="Deepest JSON nesting of one record (400 above); at most 250, as orjson writes no deeper.",
    )
    max_concurrent_requests: int = Field(
        64, gt=0, description="Ingest requests processed at once per worker; more are answered 503 + Retry-After."
    )
    processing_concurrency: int = Field(
        1,
        gt=0,
        le=64,
        description="Request bodies decoded and validated at once per worker; the rest wait as raw bytes "
        "(on disk above 1 MiB). Python runs one at a time anyway (the GIL), so more only multiplies memory.",
    )
    body_timeout: float = Field(60.0, gt=0, description="Seconds a client may take to send a whole body (408 after).")
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client may take to send a request line and headers (408 after)."
    )
    max_header_bytes: int = Field(
        64 * 1024, gt=0, description="Largest request line plus headers, in bytes (431 above)."
    )
    keepalive_timeout: float = Field(20.0, gt=0, description="Seconds an idle keep-alive connection stays open.")
    shutdown_timeout: float = Field(
        30.0, gt=0, description="Seconds in-flight requests get to finish after SIGTERM before being cut."
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes; metrics are summed across them.")
    pin_workers: bool = Field(
        False,
        description="Pin each worker to a CPU of its own when there is a worker for every CPU the process may "
        "use: more records/s at peak, but a worker can no longer move off a CPU that stalls.",
    )
    rebalance_connections: bool = Field(
        True,
        description="With several workers, a worker holding more than its share of the port's connections "
        "closes the extra ones after answering a request on them (Connection: close), so their clients "
        "reconnect and the kernel spreads them anew.",
    )
    journal_max_bytes: int = Field(
        2048 * MiB, gt=0, description="Journal size at which ingest answers 503 + Retry-After until sinks catch up."
    )
    journal_segment_bytes: int = Field(64 * MiB, gt=0, description="Size at which a new journal segment starts.")
    journal_retention: float = Field(
        0.0, ge=0, description="Seconds a fully delivered journal segment is kept before it is recycled or deleted."
    )
    sinks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Where rows go (TOML `[[sinks]]`, each with a `type`); the local archive when empty.",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) to serve HTTPS directly.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    log_level: LogLevel = Field("info", description="Lowest level of log lines written.")
    log_format: LogFormat = Field("auto", description="json, human, or auto (human on a terminal, JSON otherwise).")

    _split_tokens = field_validator("token", mode="before")(_split_commas)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.sources and (self.token or self.token_file):
            raise ValueError("set either token/token_file (one default source) or [[sources]], not both")
        ids = [source.id for source in self.sources]
        if len(ids) != len(set(ids)):
            raise ValueError(f"sources: ids must be unique, got {ids}")
        prefixes = [source.path_prefix for source in self.sources if source.path_prefix]
        if len(prefixes) != len(set(prefixes)):
            raise ValueError(f"sources: path_prefix values must be unique, got {prefixes}")
        return self

    def effective_sources(self) -> list[SourceConfig]:
        """The configured sources, or the default source built from the top-level options."""
        if self.sources:
            return self.sources
        token_files = [self.token_file] if self.token_file else []
        return [SourceConfig(id=self.source_id, label=self.source_label, tokens=self.token, token_files=token_files)]

    def has_tokens(self) -> bool:
        return bool(self.sources or self.token or self.token_file)

    def as_environment(self) -> dict[str, str]:
        """`TAILSCRIBE_*` variables that rebuild these settings in another process (uvicorn workers).

        Secrets are revealed here, for the child's environment only. Tokens are joined with commas,
        so a token may not contain one (generated tokens never do).
        """
        environment: dict[str, str] = {}
        for name, value in self.model_dump(exclude={"config", "sources", "sinks", "token"}, exclude_none=True).items():
            environment[f"TAILSCRIBE_{name.upper()}"] = str(value)
        environment["TAILSCRIBE_TOKEN"] = ",".join(secret.get_secret_value() for secret in self.token)
        sources = [
            source.model_dump(mode="json") | {"tokens": [secret.get_secret_value() for secret in source.tokens]}
            for source in self.sources
        ]
        environment["TAILSCRIBE_SOURCES"] = orjson.dumps(sources).decode()
        environment["TAILSCRIBE_SINKS"] = orjson.dumps(self.sinks).decode()
        return environment

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = _config_path(init_settings)
        if config is None:
            return init_settings, env_settings
        if not config.is_file():
            raise ValueError(f"config: {config} is not a readable file")
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config)


def _config_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    """The TOML file named by the `config` keyword, else by TAILSCRIBE_CONFIG."""
    init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
    value = init_kwargs.get("config") or os.environ.get("TAILSCRIBE_CONFIG")
    return Path(value) if value else None


def read_token_file(path: Path) -> list[str]:
    """Tokens of a secrets file: one per line, blank lines and `#` comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def is_token_hash(token: str) -> bool:
    """`sha256:<64 hex digits>` (either case): a token given by its hash, as `tailscribe token new` prints."""
    return _TOKEN_HASH.fullmatch(token.lower()) is not None
