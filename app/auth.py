"""Who may post, and as which source: the token check for the ways Tailscale authenticates.

- `Authorization: Bearer <token>`: Tailscale's Panther destination (Panther's HTTP source docs).
- `Authorization: Splunk <token>`: the Splunk HEC convention
  (https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector).
- `Authorization: Basic base64(<any user>:<token>)`: seen live from Tailscale's Splunk destination.

A token identifies its source, so a token of one source can never post as another. Only SHA-256
digests are kept (configuration may even hold just `sha256:<hex>`). The candidate is hashed and
compared with `hmac.compare_digest` against every configured digest without stopping at a match,
so neither the token's length nor its place in the configuration shows in the timing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from app.errors import InvalidToken, MissingToken
from app.settings import TOKEN_HASH_PREFIX, SourceConfig, is_token_hash
from app.types import LogType

SCHEMES = ("bearer", "splunk", "basic")


@dataclass(frozen=True, slots=True)
class Source:
    """A configured sender as the request path sees it; no secrets."""

    id: str
    label: str
    log_types: frozenset[LogType]
    path_prefix: str | None = None


def token_digest(token: str) -> bytes:
    """The SHA-256 digest a token is known by; a `sha256:<hex>` entry already is one."""
    if is_token_hash(token):
        return bytes.fromhex(token[len(TOKEN_HASH_PREFIX) :])
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Authenticator:
    """Maps a request's credential to its `Source`, holding only token digests."""

    def __init__(self, sources: Iterable[SourceConfig]) -> None:
        self._digests: list[tuple[bytes, Source]] = []
        for config in sources:
            source = Source(config.id, config.label or config.id, frozenset(config.log_types), config.path_prefix)
            for token in config.resolved_tokens():
                digest = token_digest(token)
                if any(hmac.compare_digest(digest, known) for known, _ in self._digests):
                    raise ValueError(f"source {config.id!r}: a token is configured twice; each must be unique")
                self._digests.append((digest, source))
        if not self._digests:
            raise ValueError("no token configured: set TAILSCRIBE_TOKEN, TAILSCRIBE_TOKEN_FILE or [[sources]]")

    @property
    def sources(self) -> list[Source]:
        return list(dict.fromkeys(source for _, source in self._digests))

    def token_count(self, source_id: str) -> int:
        return sum(1 for _, source in self._digests if source.id == source_id)

    def authenticate(self, authorization: str | None) -> Source:
        """The source whose token the header carries, or `MissingToken`/`InvalidToken`."""
        digest = hashlib.sha256(extract_token(authorization).encode("utf-8", "surrogateescape")).digest()
        found: Source | None = None
        for known, source in self._digests:
            if hmac.compare_digest(digest, known):
                found = source
        if found is None:
            raise InvalidToken("the token does not match any configured token")
        return found


def single_authorization(values: list[str]) -> str | None:
    """The request's one Authorization value (None without one), or `InvalidToken` when it has several.

    Authorization is not a list-valued field (RFC 9110 §11.6.2), so several of them make a malformed
    request, and taking the first would be an arbitrary choice that a proxy in front need not share:
    the proxy could vet one credential while the receiver trusts the other. So none of them counts.
    """
    if len(values) > 1:
        raise InvalidToken("the request has several Authorization headers; send exactly one")
    return values[0] if values else None


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
    _user, colon, password = decoded.partition(":")
    if not colon:
        raise InvalidToken("the Basic credential has no ':'; send base64('user:token')")
    if not password:
        raise MissingToken("the Basic credential's password (the token) is empty")
    return password
