"""Forward rows to another HTTP log receiver: Splunk HEC, Panther's HTTP source, or an NDJSON webhook.

For sites that keep tailscribe as the front door (one token per tailnet, the archive, quarantine) but
analyse elsewhere. The three targets differ only in body shape, auth scheme and request size limit:

- `hec`: each row as a Splunk HEC event object `{"time", "event", "fields", "source", "sourcetype"}`,
  objects back to back, `Authorization: Splunk <token>`
  (https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector).
- `panther`: each row's `{"time", "event", "fields"}` on its own line, bearer token, at most 1 MB a
  request (Panther's HTTP source: https://docs.panther.com/data-onboarding/data-transports/http).
- `ndjson`: each whole row, `p_*` fields included, on its own line, bearer token.

HEC and Panther get the envelope Tailscale itself streams to them, so their Tailscale parsers, and a
tailscribe receiving it, validate it and derive their own `p_*` fields; the whole row nested as
`event` would be neither an audit nor a network record to them.

Delivery is at least once. A batch bigger than `max_request_bytes` goes as several requests, and
after a failure the runner retries the whole batch, so requests delivered before it are sent again.
The copies are byte for byte the same, so a tailscribe downstream gives them the same `p_row_id`
(a hash of the record) and they can be dropped like Tailscale's own re-sends. Forwarded as stored
rows (NDJSON), that id is the one this receiver gave them too (`app.enrich`).
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Final, Literal

import httpx
import orjson
from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator

from app import __version__
from app.sinks.base import RetryableSinkError, SinkBatch, SinkConfig, SinkError
from app.tools.delivery import describe_answer, parse_retry_after
from app.types import Row

HttpFormat = Literal["hec", "panther", "ndjson"]
HttpAuth = Literal["bearer", "splunk", "none"]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]

SOURCETYPES: Final[dict[str, str]] = {"Tailscale.Audit": "tailscale:audit", "Tailscale.Network": "tailscale:network"}
"""HEC `sourcetype` by the row's `p_log_type`."""
ENVELOPE_KEYS: Final = ("time", "event", "fields")
AUTH_SCHEMES: Final[dict[HttpAuth, str]] = {"bearer": "Bearer", "splunk": "Splunk", "none": ""}
SINK_HEADERS: Final = frozenset({"content-type", "content-encoding", "content-length", "transfer-encoding", "host"})
"""Headers the sink sets itself; `headers` may not."""
_AUTH_HINT: Final = "check token and auth"
HINTS: Final[dict[int, str]] = {401: _AUTH_HINT, 403: _AUTH_HINT, 404: "check url", 413: "lower max_request_bytes"}
"""What to fix, by the status of a refusal."""


def envelope(row: Row) -> Row:
    """The row as Tailscale streamed it: `time`, `event` and `fields`, without the derived `p_*` fields."""
    return {key: row[key] for key in ENVELOPE_KEYS if key in row}


def hec_event(row: Row) -> bytes:
    event = envelope(row)
    event["source"] = "tailscribe"
    event["sourcetype"] = SOURCETYPES.get(row.get("p_log_type", ""), "tailscale")
    return orjson.dumps(event)


def panther_line(row: Row) -> bytes:
    return orjson.dumps(envelope(row), option=orjson.OPT_APPEND_NEWLINE)


def ndjson_lines(batch: SinkBatch) -> list[bytes]:
    """Each row whole, as the journal holds its line: nothing to parse or serialize again."""
    return [line + b"\n" for line in batch.lines]


def each_row(serialize: Callable[[Row], bytes]) -> Callable[[SinkBatch], list[bytes]]:
    """Each row parsed and turned into its part of a body by `serialize`."""
    return lambda batch: [serialize(row) for row in batch.rows]


@dataclass(frozen=True, slots=True)
class BodyFormat:
    parts: Callable[[SinkBatch], list[bytes]]
    """A batch's rows as the pieces of request bodies, in order; `split` groups them by size."""
    content_type: str
    auth: HttpAuth
    """The scheme used with a token when `auth` is not set."""
    max_request_bytes: int
    """Used when `max_request_bytes` is not set."""


FORMATS: Final[dict[HttpFormat, BodyFormat]] = {
    "hec": BodyFormat(each_row(hec_event), "application/json", "splunk", 10_000_000),
    "panther": BodyFormat(each_row(panther_line), "application/x-ndjson", "bearer", 1_000_000),  # Panther's limit
    "ndjson": BodyFormat(ndjson_lines, "application/x-ndjson", "bearer", 10_000_000),
}


class HttpSinkConfig(SinkConfig):
    url: str = Field(description="Where to POST, e.g. https://splunk:8088/services/collector/event.")
    format: HttpFormat = Field("ndjson", description="Body shape: hec, panther or ndjson (see the module docstring).")
    token: SecretStr | None = Field(None, description="Sent in the Authorization header as `auth` says.")
    auth: HttpAuth | None = Field(
        None, description="Authorization scheme; default splunk for hec, bearer otherwise, none without a token."
    )
    headers: dict[HeaderName, SecretStr] = Field(
        default_factory=dict, description="Extra request headers; values are treated as secrets."
    )
    gzip: bool = Field(False, description="gzip each request body (Content-Encoding: gzip).")
    max_request_bytes: int | None = Field(
        None,
        gt=0,
        description="Most bytes in one uncompressed body; a batch is split to fit, a bigger row goes alone. "
        "Default 1,000,000 for panther (its limit), 10,000,000 otherwise.",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to connect, send or wait for the answer.")
    verify_tls: bool = Field(True, description="Check the server's certificate; false only for testing.")
    ca_file: Path | None = Field(None, description="PEM file of the CA(s) to trust instead of the system's.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> HttpSinkConfig:
        names = {name.lower() for name in self.headers}
        if names & SINK_HEADERS:
            raise ValueError(f"headers: the sink sets {', '.join(sorted(names & SINK_HEADERS))} itself; remove it")
        if self.token is not None and self.auth == "none":
            raise ValueError("a token is set but auth is 'none': remove the token or choose bearer or splunk")
        if self.token is not None and "authorization" in names:
            raise ValueError("token and headers.Authorization both set Authorization; keep one")
        if self.token is None and self.auth in ("bearer", "splunk"):
            raise ValueError(f"auth {self.auth!r} needs a token")
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file is set but verify_tls is false; remove one")
        return self


class HttpSink:
    """POSTs each batch in order, split to `max_request_bytes`, over one keep-alive HTTP/1.1 client."""

    config_model: ClassVar[type[SinkConfig]] = HttpSinkConfig

    def __init__(self, config: HttpSinkConfig) -> None:
        self.config = config
        self._format = FORMATS[config.format]
        self._auth: HttpAuth = config.auth or (self._format.auth if config.token else "none")
        self._limit = config.max_request_bytes or self._format.max_request_bytes
        secrets = [*([config.token] if config.token else []), *config.headers.values()]
        # Too short to be a secret, and redacting it would garble the message.
        self._secrets = [value for secret in secrets if len(value := secret.get_secret_value()) >= 4]
        url = httpx.URL(config.url)
        # Errors name the endpoint without credentials or query (HEC also takes ?token=).
        self._where = str(url.copy_with(userinfo=b"", query=None, fragment=None))
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        config = self.config
        try:
            verify = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else config.verify_tls
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"http sink: cannot load ca_file {config.ca_file}: {exc}") from exc
        headers = {"User-Agent": f"tailscribe/{__version__}"}
        headers |= {name: value.get_secret_value() for name, value in config.headers.items()}
        headers["Content-Type"] = self._format.content_type
        if config.token is not None:
            headers["Authorization"] = f"{AUTH_SCHEMES[self._auth]} {config.token.get_secret_value()}"
        if config.gzip:
            headers["Content-Encoding"] = "gzip"
        # Nothing is sent here: the endpoint may come up later, and write's errors tell the runner when.
        self._client = httpx.AsyncClient(headers=headers, timeout=config.timeout, verify=verify)

    async def write(self, batch: SinkBatch) -> None:
        if self._client is None:
            raise SinkError("http sink: write called before start")
        try:
            # Parsing, serializing and compressing up to batch_max_bytes is CPU work: off the event loop.
            bodies = await asyncio.to_thread(self._bodies, batch)
        except orjson.JSONEncodeError as exc:
            raise SinkError(f"http sink: a row cannot be serialized: {exc}") from exc
        for number, (body, rows) in enumerate(bodies, 1):
            await self._post(self._client, body, f"request {number} of {len(bodies)} ({rows} rows)")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _bodies(self, batch: SinkBatch) -> list[tuple[bytes, int]]:
        """Each request's body (compressed if asked) and how many rows it holds, in order."""
        bodies = []
        for group in split(self._format.parts(batch), self._limit):
            body = b"".join(group)
            bodies.append((gzip.compress(body, compresslevel=6, mtime=0) if self.config.gzip else body, len(group)))
        return bodies

    async def _post(self, client: httpx.AsyncClient, body: bytes, what: str) -> None:
        try:
            response = await client.post(self.config.url, content=body)
        except httpx.HTTPError as exc:
            cause = _untrusted_certificate(exc)
            if cause is not None:
                raise SinkError(
                    f"http sink: {self._where}: the server's certificate is not trusted ({cause.verify_message}); "
                    "set ca_file to its CA or fix the certificate"
                ) from exc
            # Timeouts included: the body may have arrived, so the retry can duplicate it (at least once).
            raise RetryableSinkError(
                self._redact(f"http sink: {self._where}: {what}: {type(exc).__name__}: {exc or 'no answer'}")
            ) from exc
        if response.is_success:
            return
        message = self._redact(f"http sink: {self._where}: {what}: {describe_answer(response)}")
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableSinkError(message, retry_after=parse_retry_after(response.headers.get("retry-after")))
        hint = HINTS.get(response.status_code) or ("set url to where it redirects" if response.is_redirect else None)
        raise SinkError(f"{message} ({hint})" if hint else message)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error under httpx's and httpcore's wrappers, if that is what `exc` is."""
    seen: BaseException | None = exc
    for _ in range(8):  # a few wrappers deep at most; a chain may even loop
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def split(parts: list[bytes], limit: int) -> Iterator[list[bytes]]:
    """Consecutive groups of `parts` of at most `limit` bytes in all; a part bigger than that is a group alone."""
    group: list[bytes] = []
    size = 0
    for part in parts:
        if group and size + len(part) > limit:
            yield group
            group, size = [], 0
        group.append(part)
        size += len(part)
    if group:
        yield group
