from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.protocol import GuardedHttpToolsProtocol
from app.settings import Settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what `uvicorn.run` is asked to serve instead of serving it."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    monkeypatch.setattr(cli, "configure_logging", lambda level, log_format: None)
    return calls


def test_serve_flags_become_settings(served: list[dict[str, Any]], tmp_path: Path):
    code = cli.main(
        ["serve", "--host", "0.0.0.0", "--port", "9001", "--data-dir", str(tmp_path), "--token", "a,b"]
        + ["--max-records", "5"]
    )

    assert code == cli.EXIT_OK
    [call] = served
    settings: Settings = call["app"].state.settings
    assert (call["host"], call["port"], call["loop"]) == ("0.0.0.0", 9001, "uvloop")
    assert call["http"] is GuardedHttpToolsProtocol
    assert settings.data_dir == tmp_path and settings.max_records == 5
    assert [t.get_secret_value() for t in settings.token] == ["a", "b"]


def test_environment_fills_what_flags_leave_out(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path
):
    monkeypatch.setenv("TAILSCRIBE_PORT", "9002")
    monkeypatch.setenv("TAILSCRIBE_TOKEN", "from-env")

    cli.main(["serve", "--data-dir", str(tmp_path)])

    [call] = served
    assert call["port"] == 9002
    assert call["app"].state.authenticator.authenticate("Bearer from-env").id == "default"


def test_invalid_flag_value_exits_with_config_error_naming_the_key(served, capsys: pytest.CaptureFixture[str]):
    code = cli.main(["serve", "--port", "not-a-port", "--token", "t"])

    assert code == cli.EXIT_CONFIG
    assert "port" in capsys.readouterr().err
    assert served == []


def test_without_token_a_token_file_is_created_once_and_reused(served, tmp_path: Path, capsys):
    cli.main(["serve", "--data-dir", str(tmp_path)])
    token = (tmp_path / "token").read_text().strip()
    first_output = capsys.readouterr().out
    cli.main(["serve", "--data-dir", str(tmp_path)])
    second_output = capsys.readouterr().out

    assert first_output.count(token) == 1
    assert token not in second_output and "using the token in" in second_output
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    for call in served:
        assert call["app"].state.authenticator.authenticate(f"Bearer {token}").id == "default"


def test_every_setting_has_a_flag(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    help_text = capsys.readouterr().out

    for name in Settings.model_fields.keys() - cli.NOT_FLAGS:
        assert f"--{name.replace('_', '-')}" in help_text


def test_check_config_prints_the_effective_configuration_with_secrets_masked(tmp_path: Path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[[sources]]\nid = "corp"\ntokens = ["very-secret", "sha256:' + "a" * 64 + '"]\n')

    code = cli.main(["check-config", "--config", str(config)])

    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert "very-secret" not in out
    assert '"tokens": 2' in out and '"id": "corp"' in out


def test_check_config_names_the_bad_key(tmp_path: Path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('max_records = "many"\n')

    code = cli.main(["check-config", "--config", str(config)])

    assert code == cli.EXIT_CONFIG
    assert "max_records" in capsys.readouterr().err


def test_token_new_prints_a_token_and_its_hash(capsys):
    import hashlib

    assert cli.main(["token", "new"]) == cli.EXIT_OK
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines()[:2])
    token, digest = lines["token"].strip(), lines["hash"].strip()
    assert len(token) >= 40
    assert digest == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
