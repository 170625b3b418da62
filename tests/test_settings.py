from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_defaults_listen_locally_and_store_under_data():
    settings = Settings()

    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8080, Path("data"))
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert settings.max_decompressed_bytes == 128 * 1024 * 1024
    assert settings.max_records == 100_000


def test_environment_tokens_are_comma_separated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAILSCRIBE_TOKEN", " a, b ,,c")
    monkeypatch.setenv("TAILSCRIBE_PORT", "9000")

    settings = Settings()

    assert settings.all_tokens() == ["a", "b", "c"]
    assert settings.port == 9000


def test_token_file_adds_tokens_and_skips_comments(tmp_path: Path):
    path = tmp_path / "tokens"
    path.write_text("# current\n  t1  \n\n#old\nt2\n")

    assert Settings(token="inline", token_file=path).all_tokens() == ["inline", "t1", "t2"]


def test_tokens_never_show_in_the_settings_repr():
    assert "hunter2" not in repr(Settings(token="hunter2"))


def test_bad_values_name_the_key():
    with pytest.raises(ValidationError, match="port"):
        Settings(port=70000)
    with pytest.raises(ValidationError, match="unknown_option"):
        Settings(unknown_option=1)  # type: ignore[call-arg]
