"""Who may post: the token check for the three ways Tailscale's destinations authenticate.

- `Authorization: Bearer <token>`: Tailscale's Panther destination (Panther's HTTP source docs).
- `Authorization: Splunk <token>`: the Splunk HEC convention
  (https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector).
- `Authorization: Basic base64(<any user>:<token>)`: seen live from Tailscale's Splunk destination.

Comparison is constant-time twice over: the candidate is hashed and the digest is compared with
`hmac.compare_digest` against every configured token's digest, without stopping at the first match,
so neither the token's length nor its position in the list leaks through timing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

from app.errors import InvalidToken, MissingToken

SCHEMES = ("bearer", "splunk", "basic")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenChecker:
    """Holds only SHA-256 digests of the accepted tokens, never the tokens themselves."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [_digest(token) for token in tokens if token]
        if not self._digests:
            raise ValueError("no token configured: set TAILSCRIBE_TOKEN or TAILSCRIBE_TOKEN_FILE")

    def check(self, authorization: str | None) -> None:
        """Raise `MissingToken` or `InvalidToken` unless the header carries an accepted token."""
        candidate = extract_token(authorization)
        digest = _digest(candidate)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise InvalidToken("the token does not match any configured token")


def extract_token(authorization: str | None) -> str:
    """The credential of an `Authorization` header value, or `MissingToken`/`InvalidToken`."""
    if authorization is None or not authorization.strip():
        raise MissingToken("send the token as 'Authorization: Bearer <token>'")
    scheme, _, credential = authorization.strip().partition(" ")
    scheme = scheme.lower()
    credential = credential.strip()
    if scheme not in SCHEMES:
        raise InvalidToken("unsupported authorization scheme; use Bearer, Splunk or Basic")
    if not credential:
        raise MissingToken(f"the {scheme.capitalize()} credential is empty")
    if scheme != "basic":
        return credential
    try:
        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidToken("the Basic credential is not base64 of 'user:token'") from exc
    user, colon, password = decoded.partition(":")
    if not colon:
        raise InvalidToken("the Basic credential has no ':'; send base64('user:token')")
    if not password:
        raise MissingToken("the Basic credential's password (the token) is empty")
    return password
