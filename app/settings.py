"""The one declaration of every tailscribe option.

Options come from keyword arguments (the CLI's flags), then environment variables `TAILSCRIBE_*`,
then defaults (pydantic-settings: https://docs.pydantic.dev/latest/concepts/pydantic_settings/).
Secrets are `SecretStr`, so printing or logging a `Settings` never shows a token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    """Everything the receiver can be told; each field documents itself for `--help` and the README."""

    model_config = SettingsConfigDict(env_prefix="TAILSCRIBE_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 to accept from other machines.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(Path("data"), description="Where the archive and the quarantine are written.")
    token: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted tokens, comma-separated; several allow rotation without downtime.",
    )
    token_file: Path | None = Field(
        None, description="File holding tokens, one per line (Docker/Kubernetes secrets); '#' starts a comment."
    )
    source_id: str = Field("default", min_length=1, description="Written to every row as p_source_id.")
    source_label: str = Field("tailscale", description="Written to every row as p_source_label.")
    max_body_bytes: int = Field(32 * MiB, gt=0, description="Largest request body on the wire, in bytes (413 above).")
    max_decompressed_bytes: int = Field(
        128 * MiB, gt=0, description="Largest body after decompression, in bytes (413 above)."
    )
    max_records: int = Field(100_000, gt=0, description="Most records in one request (413 above).")
    max_depth: int = Field(64, gt=1, le=900, description="Deepest JSON nesting of one record (400 above).")
    log_level: LogLevel = Field("info", description="Lowest level of log lines written.")

    @field_validator("token", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """Accept `a,b` from the environment as well as a list from code."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def all_tokens(self) -> list[str]:
        """The inline tokens plus those in `token_file`, in that order."""
        tokens = [secret.get_secret_value() for secret in self.token]
        if self.token_file is not None:
            tokens += read_token_file(self.token_file)
        return tokens


def read_token_file(path: Path) -> list[str]:
    """Tokens of a secrets file: one per line, blank lines and `#` comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
