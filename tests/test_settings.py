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

    assert [t.get_secret_value() for t in settings.token] == ["a", "b", "c"]
    assert settings.port == 9000


def test_token_file_adds_tokens_and_skips_comments(tmp_path: Path):
    path = tmp_path / "tokens"
    path.write_text("# current\n  t1  \n\n#old\nt2\n")

    [source] = Settings(token="inline", token_file=path).effective_sources()
    assert source.resolved_tokens() == ["inline", "t1", "t2"]


def test_tokens_never_show_in_the_settings_repr():
    assert "hunter2" not in repr(Settings(token="hunter2"))


def test_bad_values_name_the_key():
    with pytest.raises(ValidationError, match="port"):
        Settings(port=70000)
    with pytest.raises(ValidationError, match="unknown_option"):
        Settings(unknown_option=1)  # type: ignore[call-arg]


def test_toml_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "tailscribe.toml"
    config.write_text(
        'port = 9100\nmax_records = 5\n[[sources]]\nid = "corp"\nlabel = "Corp"\ntokens = ["t1"]\n'
        'log_types = ["network"]\npath_prefix = "/v1/tailscale/corp"\n'
    )
    monkeypatch.setenv("TAILSCRIBE_CONFIG", str(config))
    monkeypatch.setenv("TAILSCRIBE_MAX_RECORDS", "7")

    settings = Settings()

    assert (settings.port, settings.max_records) == (9100, 7)
    [source] = settings.effective_sources()
    assert (source.id, source.label, source.log_types, source.path_prefix) == (
        "corp",
        "Corp",
        ["network"],
        "/v1/tailscale/corp",
    )


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAILSCRIBE_PORT", "9000")

    assert Settings(port=9001).port == 9001


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tls_cert": "c.pem"}, "tls_cert and tls_key go together"),
        ({"token": "t", "sources": [{"id": "a", "tokens": ["x"]}]}, "not both"),
        ({"sources": [{"id": "a", "tokens": ["x"]}, {"id": "a", "tokens": ["y"]}]}, "unique"),
        ({"sources": [{"id": "a b", "tokens": ["x"]}]}, "sources.0.id"),
        ({"sources": [{"id": "a", "path_prefix": "v1/x/"}]}, "path_prefix"),
        ({"sources": [{"id": "a", "colour": "red"}]}, "colour"),
        ({"config": "/nonexistent.toml"}, "not a readable file"),
    ],
)
def test_configuration_mistakes_name_the_key(kwargs: dict[str, object], message: str):
    with pytest.raises((ValidationError, ValueError), match=message):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_environment_export_rebuilds_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    original = Settings(
        port=9005,
        data_dir=tmp_path,
        max_records=9,
        sources=[{"id": "a", "tokens": ["s1", "s2"], "log_types": ["audit"]}],
    )
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)

    rebuilt = Settings()

    assert rebuilt.model_dump(mode="json") == original.model_dump(mode="json")
    assert rebuilt.sources[0].resolved_tokens() == ["s1", "s2"]
