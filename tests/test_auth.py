from __future__ import annotations

import base64

import pytest

from app.auth import TokenChecker, extract_token
from app.errors import InvalidToken, MissingToken


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


def test_checker_accepts_any_configured_token_and_refuses_others():
    checker = TokenChecker(["old", "new"])

    checker.check("Bearer old")
    checker.check("Splunk new")
    with pytest.raises(InvalidToken):
        checker.check("Bearer older")
    with pytest.raises(InvalidToken):
        checker.check("Bearer ol")


def test_checker_keeps_no_plain_token():
    checker = TokenChecker(["s3cret-value"])

    assert "s3cret-value" not in repr(vars(checker))


def test_checker_without_tokens_refuses_to_exist():
    with pytest.raises(ValueError, match="TAILSCRIBE_TOKEN"):
        TokenChecker(["", ""])
