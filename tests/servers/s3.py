"""moto's standalone S3 server on 127.0.0.1 over real HTTP, for tests of anything that writes to S3.

No real S3 is reachable from the test machines, so the object-store sink and the end-to-end tests
talk to moto (https://docs.getmoto.org/en/latest/docs/server_mode.html) through obstore's real
HTTP client, signing and all. The server runs in a thread of the test process on a random port; a
test can `stop()` it to simulate an outage and `restart()` it on the same port.

moto keeps its state in process-wide globals, so objects survive a restart; each `S3Server` uses a
bucket of its own name, so tests never see each other's objects.

    with running_s3() as s3:                       # or the `s3_server` fixture
        config = {"type": "objectstore", "url": s3.url("logs"), "options": s3.options()}
        ...
        s3.keys("logs")                            # ['logs/log_type=Tailscale.Audit/.../x.ndjson.gz']
        s3.rows("logs/log_type=...ndjson.gz")      # the parsed NDJSON lines, decompressed by extension
"""

from __future__ import annotations

import gzip
import logging
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import boto3  # type: ignore[import-untyped]
import obstore
import orjson
import pytest
import zstandard
from moto.server import ThreadedMotoServer
from obstore.store import S3Store

from tests.servers import running

if TYPE_CHECKING:
    from obstore.store import ObjectStore

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"

# moto's server logs every request through werkzeug; the tests only care about their own output.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class S3Server:
    """One moto S3 server and one bucket in it; `start`, `stop` and `restart` are idempotent."""

    def __init__(self, bucket: str | None = None) -> None:
        self.bucket = bucket or f"tailscribe-{secrets.token_hex(4)}"
        self.host = "127.0.0.1"
        self.port = 0  # chosen by the OS at the first start, then kept so a restart reuses it
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Serve on the same port as before (a random free one the first time) and ensure the bucket."""
        if self._server is not None:
            return
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        self.port = server.get_host_and_port()[1]
        self.create_bucket(self.bucket)

    def stop(self) -> None:
        """Close the listening socket: new connections are refused until `restart`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_bucket(self, name: str) -> None:
        """Create `name` unless it exists (moto's state outlives a restart, a real outage's might not)."""
        # obstore cannot create buckets: this is the one call made with boto3 (which moto depends on).
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def url(self, prefix: str = "", *, bucket: str | None = None) -> str:
        """`s3://<bucket>/<prefix>`, the sink's `url`."""
        return f"s3://{bucket or self.bucket}/{prefix.strip('/')}".rstrip("/")

    def options(self, **overrides: str) -> dict[str, str]:
        """The sink's `options` for this server: endpoint, dummy keys, path-style, plain HTTP.

        Add e.g. `timeout="2s", connect_timeout="500ms"` for outage tests.
        """
        return {
            "endpoint": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "virtual_hosted_style_request": "false",
            "allow_http": "true",
            **overrides,
        }

    def store(self, prefix: str = "", *, bucket: str | None = None) -> S3Store:
        """An obstore store on the bucket (under `prefix`), for assertions."""
        return S3Store(
            bucket or self.bucket,
            prefix=prefix.strip("/") or None,
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
            retry_config={"max_retries": 0},
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under `prefix`, sorted."""
        return list_keys(self.store(), prefix)

    def read(self, key: str) -> bytes:
        """The object's bytes as stored (still compressed)."""
        return bytes(obstore.get(self.store(), key).bytes())

    def rows(self, key: str) -> list[dict[str, Any]]:
        """The object's NDJSON lines, decompressed by its extension and parsed."""
        return ndjson_rows(key, self.read(key))


def list_keys(store: ObjectStore, prefix: str = "") -> list[str]:
    """Every key of any obstore store under `prefix`, sorted (works for `file://` stores too)."""
    return sorted(meta["path"] for chunk in obstore.list(store, prefix or None) for meta in chunk)


def read_rows(store: ObjectStore, key: str) -> list[dict[str, Any]]:
    return ndjson_rows(key, bytes(obstore.get(store, key).bytes()))


def decompress(key: str, data: bytes) -> bytes:
    """Undo `.gz` / `.zst` by the key's extension, every gzip member and zstd frame included."""
    if key.endswith(".gz"):
        return gzip.decompress(data)
    if key.endswith(".zst"):
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        return bytes(reader.read())
    return data


def ndjson_rows(key: str, data: bytes) -> list[dict[str, Any]]:
    """Parse an NDJSON object; every line, the last included, must end in a newline."""
    text = decompress(key, data)
    if text and not text.endswith(b"\n"):
        raise ValueError(f"{key}: the last line is not newline-terminated")
    return [orjson.loads(line) for line in text.splitlines()]


def running_s3(bucket: str | None = None) -> AbstractContextManager[S3Server]:
    """A started `S3Server`, stopped on exit."""
    return running(S3Server(bucket))


@pytest.fixture
def s3_server() -> Iterator[S3Server]:
    """A fresh moto S3 server with an empty bucket of its own, for one test."""
    with running_s3() as server:
        yield server
