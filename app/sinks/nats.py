"""The `nats` sink: publish rows into a NATS JetStream stream, so several receivers can feed one cluster.

One receiver keeps its journal on local disk; when that is not enough, several stateless
receivers publish into one JetStream stream (https://docs.nats.io/nats-concepts/jetstream) and
consumers read from there. Every row goes to a subject per log type with `Nats-Msg-Id` set to its
`p_row_id`, and its PubAck is awaited, so a batch the runner re-sends after a partial failure is
stored once: JetStream drops a repeated message id within the stream's `duplicate_window`
(https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#message-deduplication).
The client reconnects by itself after an outage; while it is down, `write` fails fast with
`RetryableSinkError` and the runner retries the same rows.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import string
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig, StreamInfo
from pydantic import Field, FilePath, SecretStr, field_validator

from app.sinks.base import RetryableSinkError, SinkBatch, SinkConfig, SinkError, line_field
from app.types import LOG_TYPES, PANTHER_LOG_TYPES, LogType

logger = logging.getLogger(__name__)

SUBJECT_UNSAFE: Final = frozenset(" \t\r\n*>")
"""Characters a concrete NATS subject cannot hold (whitespace, and wildcards are for subscribers)."""


def render_subject(template: str, log_type: LogType) -> str:
    """`template` with `{log_type}` filled in; `ValueError` unless the result is one concrete subject."""
    fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    if not fields <= {"log_type"}:
        raise ValueError(f"subject template {template!r} may only use the placeholder {{log_type}}")
    subject = template.format(log_type=log_type)
    if any(not token or SUBJECT_UNSAFE & set(token) for token in subject.split(".")):
        raise ValueError(f"subject {subject!r} is not a valid NATS subject (dot-separated tokens, no spaces or * >)")
    return subject


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a stream's subject filter (which may hold `*` and `>`) captures the concrete `subject`."""
    tokens, wanted = pattern.split("."), subject.split(".")
    for index, token in enumerate(tokens):
        if token == ">":
            return len(wanted) > index
        if index >= len(wanted) or token not in ("*", wanted[index]):
            return False
    return len(tokens) == len(wanted)


class NatsSinkConfig(SinkConfig):
    """Options of a `type = "nats"` sink."""

    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1, description="NATS server URLs to connect to."
    )
    subject: str = Field(
        "tailscale.{log_type}", description="Subject template; {log_type} becomes `audit` or `network`."
    )
    stream: str = Field("TAILSCALE", pattern=r"^[^\s.*>/\\]+$", description="JetStream stream the subjects belong to.")
    create_stream: bool = Field(True, description="Create the stream (file storage, both subjects) if it is missing.")
    duplicate_window: float = Field(
        120.0, gt=0, description="Seconds a created stream remembers message ids; re-sends dedupe only within it."
    )
    user: SecretStr | None = Field(None, description="User name for user/password authentication.")
    password: SecretStr | None = Field(None, description="Password for user/password authentication.")
    token: SecretStr | None = Field(None, description="Token for token authentication.")
    creds_file: FilePath | None = Field(None, description="NATS credentials file (JWT + NKey seed); needs `nkeys`.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds start() may spend connecting before it gives up.")
    reconnect_wait: float = Field(2.0, gt=0, description="Seconds between reconnect attempts while NATS is down.")
    publish_timeout: float = Field(10.0, gt=0, description="Seconds to wait for each publish ack (PubAck).")
    max_in_flight: int = Field(256, gt=0, description="Publishes awaited concurrently within one write.")

    @field_validator("subject")
    @classmethod
    def _subject_renders(cls, template: str) -> str:
        for log_type in LOG_TYPES:
            render_subject(template, log_type)
        return template


class NatsSink:
    """Publishes each row to JetStream with `Nats-Msg-Id = p_row_id` and awaits every PubAck."""

    config_model = NatsSinkConfig

    def __init__(self, config: NatsSinkConfig) -> None:
        self.config = config
        self._subjects = {PANTHER_LOG_TYPES[t]: render_subject(config.subject, t) for t in LOG_TYPES}
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._last_error: Exception | None = None

    async def start(self) -> None:
        """Connect (or wait for the client's own reconnect), then create or verify the stream."""
        await self._start()

    async def write(self, batch: SinkBatch) -> None:
        """Publish every row, up to `max_in_flight` awaited at once; raise if any was not acknowledged."""
        ready = self._js is not None and self._nc is not None and self._nc.is_connected
        js = self._js if ready and self._js is not None else await self._start()
        step = self.config.max_in_flight
        for offset in range(0, len(batch), step):
            chunk = batch.lines[offset : offset + step]
            results = await asyncio.gather(*(self._publish(js, line) for line in chunk), return_exceptions=True)
            failures = [result for result in results if isinstance(result, BaseException)]
            if not failures:
                continue
            if any(isinstance(failure, nats.js.errors.NoStreamResponseError) for failure in failures):
                self._js = None  # the stream may be gone: verify (or recreate) it before the next write
            errors = [(translate(failure, "publishing"), failure) for failure in failures]
            # Report a refusal over a passing failure: it is the one an operator must fix.
            error, cause = next(((e, c) for e, c in errors if not isinstance(e, RetryableSinkError)), errors[0])
            raise error from cause

    async def close(self) -> None:
        """Drain and close the connection; safe after a failed start and when called twice."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        try:
            await (nc.drain() if nc.is_connected else nc.close())
        except (nats.errors.Error, OSError) as exc:
            logger.debug("nats: drain failed, closing: %r", exc)
            await nc.close()

    async def _start(self) -> JetStreamContext:
        nc = self._nc if self._nc is not None and not self._nc.is_closed else await self._connect()
        if not nc.is_connected:  # the client is reconnecting in the background: fail fast meanwhile
            raise RetryableSinkError(
                f"nats: connection to {self.config.servers} is down ({self._last_error!r}); the client reconnects "
                f"every {self.config.reconnect_wait}s: check that nats-server is running and reachable"
            )
        js = nc.jetstream(timeout=self.config.publish_timeout)
        try:
            await self._ensure_stream(js)
        except (nats.errors.Error, OSError) as exc:
            raise translate(exc, f"checking stream {self.config.stream!r}") from exc
        self._js = js
        return js

    async def _publish(self, js: JetStreamContext, line: bytes) -> None:
        """Publish the row's stored JSON line as is; subject and message id are read off the line."""
        row_id, log_type = line_field(line, "p_row_id"), line_field(line, "p_log_type")
        subject = self._subjects.get(str(log_type))
        if subject is None or row_id is None:
            raise SinkError(f"nats: row {row_id!r} has unknown p_log_type {log_type!r} or no p_row_id")
        await js.publish(subject, line, stream=self.config.stream, headers={"Nats-Msg-Id": row_id})

    async def _connect(self) -> Client:
        config = self.config
        if config.creds_file is not None and importlib.util.find_spec("nkeys") is None:
            raise SinkError("nats: creds_file needs the nkeys package: pip install 'nats-py[nkeys]'")
        nc = self._nc = Client()
        self._last_error = None
        secrets = {key: getattr(config, key) for key in ("user", "password", "token")}
        try:
            # Reconnect forever in the background once connected; the first connect is bounded here.
            await asyncio.wait_for(
                nc.connect(
                    config.servers,
                    name=f"tailscribe:{config.name or 'nats'}",
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    connect_timeout=config.connect_timeout,  # type: ignore[arg-type]
                    reconnect_time_wait=config.reconnect_wait,  # type: ignore[arg-type]
                    drain_timeout=config.publish_timeout,  # type: ignore[arg-type]
                    user_credentials=str(config.creds_file) if config.creds_file else None,
                    **{key: value.get_secret_value() for key, value in secrets.items() if value is not None},
                ),
                config.connect_timeout,
            )
        except Exception as exc:
            await nc.close()
            cause = self._last_error or exc
            if isinstance(cause, nats.errors.AuthorizationError) or "authorization" in str(cause).lower():
                raise SinkError(
                    "nats: the server refused the credentials: check user, password, token, creds_file"
                ) from cause
            raise RetryableSinkError(
                f"nats: could not connect to {config.servers} within {config.connect_timeout}s ({cause!r}): "
                "check that nats-server is running there and reachable"
            ) from exc
        return nc

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        name, wanted = self.config.stream, [self._subjects[PANTHER_LOG_TYPES[t]] for t in self.config.log_types]
        try:
            info: StreamInfo = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            if not self.config.create_stream:
                raise SinkError(
                    f"nats: JetStream stream {name!r} does not exist and create_stream is false: create it "
                    f"(nats stream add {name} --subjects {' '.join(wanted)}) or set create_stream = true"
                ) from None
            subjects = sorted(set(self._subjects.values()))
            config = StreamConfig(
                name=name, subjects=subjects, storage=StorageType.FILE, duplicate_window=self.config.duplicate_window
            )
            info = await js.add_stream(config)
            logger.info("nats: created JetStream stream %s for subjects %s", name, subjects)
        have = info.config.subjects or []
        missing = [s for s in wanted if not any(subject_matches(pattern, s) for pattern in have)]
        if missing:
            raise SinkError(
                f"nats: stream {name!r} captures {have}, not {missing}: add them to the stream or change `subject`"
            )

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc  # reconnect attempts fail every reconnect_wait: keep them out of the log
        logger.debug("nats: %r", exc)

    async def _on_disconnected(self) -> None:
        logger.warning(
            "nats: disconnected from %s; reconnecting every %ss", self.config.servers, self.config.reconnect_wait
        )

    async def _on_reconnected(self) -> None:
        logger.info("nats: reconnected to %s", self.config.servers)


def translate(exc: BaseException, action: str) -> SinkError:
    """The sink error for a nats-py error: passing failures are retryable, refusals are not."""
    if isinstance(exc, SinkError):
        return exc
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return RetryableSinkError(
            f"nats: {action}: no JetStream stream answered: JetStream may be restarting, or no stream captures "
            "the subject (check `stream` and `subject`)"
        )
    if isinstance(exc, nats.js.errors.APIError):
        kind = RetryableSinkError if exc.code in (500, 503) else SinkError
        return kind(f"nats: {action}: JetStream refused it: {exc.description} (code {exc.code}/{exc.err_code})")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return SinkError(f"nats: {action}: a row exceeds the server's max_payload: raise max_payload in nats-server")
    if isinstance(exc, nats.errors.AuthorizationError):
        return SinkError(f"nats: {action}: not authorized: check the credentials and the user's permissions")
    if isinstance(exc, TimeoutError):
        return RetryableSinkError(
            f"nats: {action}: no answer in time: is nats-server up, reachable and not overloaded?"
        )
    if isinstance(exc, nats.errors.Error | OSError):  # lost connection, reconnecting, full reconnect buffer
        return RetryableSinkError(f"nats: {action}: {exc!r}: is nats-server up and reachable?")
    raise exc
