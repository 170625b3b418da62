from __future__ import annotations

import base64
import hashlib

import pytest

from app.auth import Authenticator, extract_token, single_authorization
from app.errors import InvalidToken, MissingToken
from app.settings import SourceConfig


def basic(user_and_token: str) -> str:
    return "Basic " + base64.b64encode(user_and_token.encode()).decode()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("Splunk abc", "abc"),
        ("Bearer   abc \r\n", "abc"),
        (basic("tailscale:abc"), "abc"),
        (basic(":abc"), "abc"),
        (basic("user:a:b"), "a:b"),  # only the first colon separates user from token
    ],
)
def test_token_is_extracted_from_every_scheme(header: str, token: str):
    assert extract_token(header) == token


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   ", "Splunk ", basic("user:")])
def test_absent_credentials_are_missing_token(header: str | None):
    with pytest.raises(MissingToken):
        extract_token(header)


@pytest.mark.parametrize("header", ["Token abc", "abc", basic("no-colon"), "Basic !!!notbase64", "Basic " + "/w=="])
def test_malformed_credentials_are_invalid_token(header: str):
    with pytest.raises(InvalidToken):
        extract_token(header)


def test_each_token_identifies_its_own_source():
    authenticator = Authenticator(
        [SourceConfig(id="corp", tokens=["old", "new"]), SourceConfig(id="lab", label="Lab", tokens=["lab-t"])]
    )

    assert authenticator.authenticate("Bearer old").id == "corp"
    assert authenticator.authenticate("Splunk new").id == "corp"
    assert authenticator.authenticate("Bearer lab-t").label == "Lab"
    with pytest.raises(InvalidToken):
        authenticator.authenticate("Bearer older")
    with pytest.raises(InvalidToken):
        authenticator.authenticate("Bearer ol")


def test_a_token_configured_by_its_hash_is_accepted_but_the_hash_itself_is_not():
    digest = "sha256:" + hashlib.sha256(b"the-real-token").hexdigest()
    authenticator = Authenticator([SourceConfig(id="s", tokens=[digest.upper().replace("SHA256:", "sha256:")])])

    assert authenticator.authenticate("Bearer the-real-token").id == "s"
    with pytest.raises(InvalidToken):
        authenticator.authenticate(f"Bearer {digest}")


def test_authenticator_keeps_no_plain_token():
    authenticator = Authenticator([SourceConfig(id="s", tokens=["s3cret-value"])])

    assert "s3cret-value" not in repr(vars(authenticator))


def test_configuration_mistakes_are_refused_with_the_source_named(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValueError, match="'a' has no token"):
        Authenticator([SourceConfig(id="a")])
    with pytest.raises(ValueError, match="configured twice"):
        Authenticator([SourceConfig(id="a", tokens=["same"]), SourceConfig(id="b", tokens=["same"])])
    with pytest.raises(ValueError, match="64 hex digits"):
        Authenticator([SourceConfig(id="a", tokens=["sha256:abc"])])
    with pytest.raises(ValueError, match="TS_TOKEN is not set"):
        Authenticator([SourceConfig(id="a", token_env=["TS_TOKEN"])])
    monkeypatch.setenv("TS_TOKEN", "x1,x2")
    assert Authenticator([SourceConfig(id="a", token_env=["TS_TOKEN"])]).token_count("a") == 2


@pytest.mark.parametrize("values", [["Bearer abc", "Bearer abc"], ["Bearer abc", "Bearer other"], ["", "Bearer abc"]])
def test_several_authorization_headers_are_refused_whichever_comes_first(values: list[str]):
    with pytest.raises(InvalidToken, match="several Authorization headers"):
        single_authorization(values)


def test_one_or_no_authorization_header_is_passed_on():
    assert single_authorization(["Bearer abc"]) == "Bearer abc"
    assert single_authorization([]) is None
