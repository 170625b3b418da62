"""The object-store sink against moto's S3 server over HTTP and against a `file://` directory."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
import orjson
import pytest
from obstore.exceptions import GenericError, PermissionDeniedError
from obstore.store import LocalStore

from app.sinks.base import RetryableSinkError, SinkBatch, SinkError, build_sink
from app.sinks.objectstore import ObjectStoreSink, ObjectStoreSinkConfig, translate
from app.types import LogType, Row
from tests.samples import audit_event, enriched, envelope, network_event
from tests.servers.s3 import S3Server, list_keys, ndjson_rows, read_rows, running_s3

if TYPE_CHECKING:
    from obstore.store import ObjectStore

T = TypeVar("T")

HOUR_15 = 1780500776.773  # 2026-06-03T15:32:56.773Z
HOUR_16 = HOUR_15 + 3600


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def make_row(log_type: LogType, time: float, marker: str) -> Row:
    event = audit_event(action=marker) if log_type == "audit" else network_event(node=marker)
    parse_time = datetime(2026, 6, 3, 17, 0, tzinfo=UTC)
    return enriched(envelope(event, time), log_type, source_id="src-1", source_label="lab", parse_time=parse_time)


def mixed_rows() -> list[Row]:
    """Two log types in two hours, interleaved the way a journal holds them."""
    return [
        make_row("audit", HOUR_15, "CREATE"),
        make_row("network", HOUR_15, "n1"),
        make_row("audit", HOUR_16, "UPDATE"),
        make_row("network", HOUR_15 + 1, "n2"),
        make_row("network", HOUR_16, "n3"),
        make_row("audit", HOUR_15 + 2, "DELETE"),
    ]


@dataclass
class Target:
    """Where a sink writes, and a store to read the result back with."""

    url: str
    options: dict[str, str]
    store: Callable[[], ObjectStore]

    def sink(self, **settings: Any) -> ObjectStoreSink:
        config = ObjectStoreSinkConfig.model_validate(
            {"type": "objectstore", "url": self.url, "options": self.options, **settings}
        )
        return ObjectStoreSink(config)

    def keys(self) -> list[str]:
        return list_keys(self.store())

    def rows(self, key: str) -> list[Row]:
        return read_rows(self.store(), key)


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


def s3_target(s3: S3Server) -> Target:
    return Target(s3.url("tail/scribe"), s3.options(), lambda: s3.store("tail/scribe"))


def file_target(tmp_path: Path) -> Target:
    root = tmp_path / "objects"  # missing on purpose: the sink creates it
    return Target(root.as_uri(), {}, lambda: LocalStore(root))


@pytest.fixture(params=["s3", "file"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "s3":
        return s3_target(request.getfixturevalue("s3"))
    return file_target(tmp_path)


async def deliver(sink: ObjectStoreSink, *batches: SinkBatch) -> None:
    await sink.start()
    try:
        for batch in batches:
            await sink.write(batch)
    finally:
        await sink.close()


def key(partition: str, seq: int, row: Row, extension: str = ".ndjson.gz") -> str:
    return f"{partition}/journal-{seq:020d}-{row['p_row_id']}{extension}"


def test_panther_batch_gives_one_object_per_log_type_and_hour_holding_the_rows(target: Target) -> None:
    rows = mixed_rows()
    run(deliver(target.sink(), SinkBatch(rows=rows, first_seq=42)))

    audit, network = (
        "log_type=Tailscale.Audit/year=2026/month=06/day=03",
        "log_type=Tailscale.Network/year=2026/month=06/day=03",
    )
    expected = {
        key(f"{audit}/hour=15", 42, rows[0]): [rows[0], rows[5]],
        key(f"{audit}/hour=16", 42, rows[2]): [rows[2]],
        key(f"{network}/hour=15", 42, rows[1]): [rows[1], rows[3]],
        key(f"{network}/hour=16", 42, rows[4]): [rows[4]],
    }
    assert target.keys() == sorted(expected)
    for object_key, expected_rows in expected.items():
        assert target.rows(object_key) == expected_rows


def test_hunters_format_writes_bare_events_under_the_default_tables(target: Target) -> None:
    rows = mixed_rows()
    run(deliver(target.sink(format="hunters"), SinkBatch(rows=rows, first_seq=7)))

    day = "year=2026/month=06/day=03"
    audit_15 = key(f"tailscale_configuration_audit_logs/{day}/hour=15", 7, rows[0])
    network_15 = key(f"tailscale_network_flow_logs/{day}/hour=15", 7, rows[1])
    assert target.keys() == sorted(
        [
            audit_15,
            key(f"tailscale_configuration_audit_logs/{day}/hour=16", 7, rows[2]),
            network_15,
            key(f"tailscale_network_flow_logs/{day}/hour=16", 7, rows[4]),
        ]
    )
    recorded = "2026-06-03T15:33:01.552946176Z"
    assert target.rows(audit_15) == [
        {**rows[0]["event"], "logged": recorded, "eventTime": "2026-06-03T15:32:56.773000Z"},
        {**rows[5]["event"], "logged": recorded, "eventTime": "2026-06-03T15:32:58.773000Z"},
    ]
    assert target.rows(network_15) == [{**row["event"], "logged": recorded} for row in (rows[1], rows[3])]
    assert not any(name.startswith("p_") for line in target.rows(audit_15) for name in line)


def test_hunters_keeps_the_records_own_event_time_and_logged() -> None:
    row = make_row("audit", HOUR_15, "CREATE")
    row["event"] |= {"eventTime": "2026-06-03T15:00:00Z", "logged": "2026-06-03T15:00:01Z", "type": "CONFIG"}
    sink = ObjectStoreSink(
        ObjectStoreSinkConfig.model_validate({"type": "objectstore", "url": "memory:///", "format": "hunters"})
    )
    assert ndjson_rows("x.ndjson.gz", sink.encode([orjson.dumps(row)])) == [row["event"]]


def test_hunters_table_prefixes_are_configurable(s3: S3Server) -> None:
    target = s3_target(s3)
    sink = target.sink(format="hunters", audit_table="hunters/ts_audit", network_table="hunters/ts_flows")
    run(deliver(sink, SinkBatch(rows=mixed_rows(), first_seq=0)))
    tops = {name.split("/year=")[0] for name in target.keys()}
    assert tops == {"hunters/ts_audit", "hunters/ts_flows"}
    assert s3.keys() == sorted(f"tail/scribe/{name}" for name in target.keys())


@pytest.mark.parametrize(
    ("compression", "extension"), [("none", ".ndjson"), ("gzip", ".ndjson.gz"), ("zstd", ".ndjson.zst")]
)
def test_every_compression_decompresses_to_the_same_lines(target: Target, compression: str, extension: str) -> None:
    rows = mixed_rows()
    plain, sink = target.sink(compression="none"), target.sink(compression=compression)
    run(deliver(sink, SinkBatch(rows=rows, first_seq=1)))
    expected = {
        name.removesuffix(".ndjson") + extension: [orjson.loads(line) for line in lines]
        for name, lines in plain.objects(SinkBatch(rows, 1)).items()
    }
    assert target.keys() == sorted(expected)
    for name, object_rows in expected.items():
        assert target.rows(name) == object_rows


def test_writing_the_same_batch_twice_leaves_the_same_objects(s3: S3Server) -> None:
    target = s3_target(s3)
    batch = SinkBatch(rows=mixed_rows(), first_seq=100)
    run(deliver(target.sink(compression="zstd"), batch))
    first = {name: s3.read(f"tail/scribe/{name}") for name in target.keys()}
    run(deliver(target.sink(compression="zstd"), batch, batch))
    assert {name: s3.read(f"tail/scribe/{name}") for name in target.keys()} == first


def test_a_longer_retry_of_a_batch_overwrites_its_objects_with_the_superset(target: Target) -> None:
    rows = mixed_rows()
    run(deliver(target.sink(), SinkBatch(rows=rows[:2], first_seq=5), SinkBatch(rows=rows, first_seq=5)))
    assert len(target.keys()) == 4
    assert sum(len(target.rows(name)) for name in target.keys()) == len(rows)


def test_a_later_batch_starting_with_a_resent_row_does_not_overwrite_the_earlier_object(target: Target) -> None:
    rows = [make_row("audit", HOUR_15 + n, action) for n, action in enumerate(["A", "B", "C"])]
    resent = dict(rows[0])  # Tailscale re-sends after an outage: same content, same p_row_id
    run(deliver(target.sink(), SinkBatch(rows=rows, first_seq=0), SinkBatch(rows=[resent], first_seq=3)))
    keys = target.keys()
    assert len(keys) == 2
    assert [len(target.rows(name)) for name in keys] == [3, 1]


def test_an_object_larger_than_a_multipart_chunk_is_uploaded_whole(s3: S3Server) -> None:
    target = s3_target(s3)
    rows = [make_row("network", HOUR_15, f"n{n}") | {"padding": os.urandom(4096).hex()} for n in range(800)]
    run(deliver(target.sink(compression="none"), SinkBatch(rows=rows, first_seq=0)))
    (name,) = target.keys()
    assert len(s3.read(f"tail/scribe/{name}")) > 6 * 1024 * 1024
    assert str(obstore.head(target.store(), name)["e_tag"]).endswith('-2"')  # S3's mark of a 2-part upload
    assert target.rows(name) == rows


def test_an_outage_is_retryable_and_the_write_succeeds_after_the_restart(s3: S3Server) -> None:
    target = s3_target(s3)
    target.options |= {"timeout": "2s", "connect_timeout": "500ms"}
    sink = target.sink(max_retries=1, retry_timeout=2.0)
    batch = SinkBatch(rows=mixed_rows(), first_seq=9)

    async def scenario() -> tuple[RetryableSinkError, float]:
        await sink.start()
        await sink.write(SinkBatch(rows=[make_row("audit", HOUR_15, "BEFORE")], first_seq=8))  # a warm pool
        s3.stop()
        began = time.monotonic()
        with pytest.raises(RetryableSinkError) as caught:
            await sink.write(batch)
        elapsed = time.monotonic() - began
        s3.restart()
        await sink.write(batch)
        await sink.close()
        return caught.value, elapsed

    error, elapsed = run(scenario())
    assert elapsed < 10
    assert "cannot upload" in str(error) and "Debug source" not in str(error)
    assert len(target.keys()) == 5


def test_start_while_the_server_is_down_is_retryable_and_can_be_repeated(s3: S3Server) -> None:
    target = s3_target(s3)
    target.options |= {"timeout": "2s", "connect_timeout": "500ms"}
    sink = target.sink(max_retries=0)
    s3.stop()
    with pytest.raises(RetryableSinkError):
        run(sink.start())
    s3.restart()
    run(deliver(sink, SinkBatch(rows=mixed_rows(), first_seq=0)))
    assert len(target.keys()) == 4


def test_a_missing_bucket_fails_start_naming_the_bucket(s3: S3Server) -> None:
    sink = Target(s3.url("x", bucket="no-such-bucket"), s3.options(), s3.store).sink()
    with pytest.raises(SinkError) as caught:
        run(sink.start())
    assert not isinstance(caught.value, RetryableSinkError)
    assert "no-such-bucket" in str(caught.value) and "does not exist" in str(caught.value)


def test_a_missing_bucket_without_verify_fails_the_write_as_not_retryable(s3: S3Server) -> None:
    sink = Target(s3.url(bucket="no-such-bucket"), s3.options(), s3.store).sink(verify=False)
    run(sink.start())
    with pytest.raises(SinkError) as caught:
        run(sink.write(SinkBatch(rows=mixed_rows(), first_seq=0)))
    assert not isinstance(caught.value, RetryableSinkError)
    assert "does not exist" in str(caught.value)


def test_an_unknown_store_option_fails_start_naming_it(s3: S3Server) -> None:
    sink = Target(s3.url(), s3.options(regoin="us-east-1"), s3.store).sink()
    with pytest.raises(SinkError, match="regoin") as caught:
        run(sink.start())
    assert not isinstance(caught.value, RetryableSinkError)


def test_an_unknown_url_scheme_fails_start() -> None:
    sink = ObjectStoreSink(ObjectStoreSinkConfig.model_validate({"type": "objectstore", "url": "ftp://example.com/x"}))
    with pytest.raises(SinkError, match="ftp://example.com/x"):
        run(sink.start())


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (GenericError("Error performing PUT in 3ms - Server returned non-2xx status code: 503 Slow Down"), True),
        (GenericError("Error performing PUT - Server returned non-2xx status code: 429 Too Many Requests"), True),
        (GenericError("Error performing PUT after 1 retries - HTTP error: error sending request"), True),
        (OSError(28, "No space left on device"), True),
        (
            GenericError("Error performing PUT - Server returned non-2xx status code: 403 Forbidden: AccessDenied"),
            False,
        ),
        (GenericError("Error performing GET - Server returned non-2xx status code: 301 Moved Permanently"), False),
        (PermissionDeniedError("Permission denied"), False),
        (FileNotFoundError("Object at location x not found: NoSuchBucket"), False),
    ],
)
def test_errors_are_translated_by_whether_retrying_soon_can_help(error: Exception, retryable: bool) -> None:
    translated = translate(error, "objectstore: cannot upload k")
    assert isinstance(translated, SinkError)
    assert isinstance(translated, RetryableSinkError) is retryable
    assert str(translated).startswith("objectstore: cannot upload k: ")


def test_config_keeps_options_secret_and_takes_toml_scalars() -> None:
    config, sink = build_sink(
        {"type": "objectstore", "url": "s3://b/p", "options": {"secret_access_key": "hunter2", "allow_http": True}}
    )
    assert isinstance(sink, ObjectStoreSink) and config.name == "objectstore"
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump(mode="json"))
    assert isinstance(config, ObjectStoreSinkConfig)
    assert config.options["allow_http"].get_secret_value() == "true"
    assert (config.batch_max_bytes, config.batch_max_age) == (64 * 1024 * 1024, 60.0)
    with pytest.raises(ValueError, match="extra_forbidden"):
        build_sink({"type": "objectstore", "url": "s3://b", "prefix": "p"})
    with pytest.raises(ValueError, match="audit_table"):
        build_sink({"type": "objectstore", "url": "s3://b", "audit_table": "../up"})
