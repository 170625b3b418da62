"""`tailscribe validate`: verdicts, counts by reason, output files and exit codes, through `run` and its logic."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import orjson
import pytest
import zstandard

from app.storage import Batch
from app.tools import EXIT_FAILED, EXIT_OK, EXIT_USAGE, validate
from app.tools.files import Limits
from app.types import Row
from tests.samples import audit_event, concatenated, envelope, network_event


def run(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    return validate.run(parser.parse_args([str(arg) for arg in argv]))


def bad_proto(node: str = "bad") -> Row:
    """A network record whose two traffic entries both have an unknown protocol."""
    record = envelope(network_event(node))
    for entry in record["event"]["virtualTraffic"]:
        entry["proto"] = "carrier-pigeon"
    return record


UNCLASSIFIED: Row = {"time": 1780500776.773, "event": {"neither": "audit nor network"}}


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Three good records, two with bad protocols, one of no known type."""
    path = tmp_path / "mixed.json"
    good = [envelope(network_event(f"n{i}")) for i in range(3)]
    path.write_bytes(concatenated([good[0], bad_proto("b1"), good[1], UNCLASSIFIED, bad_proto("b2"), good[2]]))
    return path


def test_all_valid_files_in_every_shape_and_compression_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    records = [envelope(network_event("n1")), envelope(audit_event())]
    ndjson = b"\n".join(orjson.dumps(record) for record in records) + b"\n"
    files = {
        "plain.json": concatenated(records),
        "lines.ndjson": ndjson,
        "array.json": orjson.dumps(records),
        "logs.json": orjson.dumps({"logs": records}),
        "multi.json.gz": gzip.compress(ndjson[: len(ndjson) // 2]) + gzip.compress(ndjson[len(ndjson) // 2 :]),
        "frames.json.zst": zstandard.ZstdCompressor().compress(concatenated(records)),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)

    code = run(*(tmp_path / name for name in files))

    out = capsys.readouterr().out
    assert code == EXIT_OK
    for name in files:
        assert any(line.split()[:5] == [str(tmp_path / name), "2", "2", "0", "ok"] for line in out.splitlines())
    assert out.splitlines()[len(files) + 1].split()[:4] == ["TOTAL", "12", "12", "0"]
    assert "FAILED RECORDS BY REASON" not in out and "FILE FAILURES" not in out


def test_mixed_records_exit_1_with_an_aligned_summary_of_failed_counts_by_reason(
    mixed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.chdir(mixed.parent)
    (mixed.parent / "ok.json").write_bytes(concatenated([envelope(audit_event())]))

    code = run("mixed.json", "ok.json")

    assert code == EXIT_FAILED
    # Both bad-protocol records count once each, although each has two bad entries.
    assert capsys.readouterr().out.splitlines() == [
        "FILE        RECORDS  ACCEPTED  FAILED  STATUS",
        "mixed.json        6         3       3  records failed",
        "ok.json           1         1       0  ok",
        "TOTAL             7         4       3  0 of 2 files failed",
        "",
        "FAILED RECORDS BY REASON (a record counts once for each of its reasons)",
        "FILE        TYPE           LOC                           RECORDS",
        "mixed.json  invalid_proto  event.virtualTraffic.*.proto        2",
        "mixed.json  unclassified   event                               1",
        "TOTAL       invalid_proto  event.virtualTraffic.*.proto        2",
        "TOTAL       unclassified   event                               1",
    ]


def test_output_and_failures_files_hold_the_enriched_and_the_quarantine_rows(
    mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    output, failures = tmp_path / "accepted.ndjson", tmp_path / "failed.ndjson"

    run(mixed, "--output", output, "--failures", failures, "--source-id", "backfill")

    accepted = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    failed = [orjson.loads(line) for line in failures.read_bytes().splitlines()]
    assert [row["event"]["nodeId"] for row in accepted] == ["n0", "n1", "n2"]
    assert {row["p_log_type"] for row in accepted} == {"Tailscale.Network"}
    assert {row["p_source_id"] for row in accepted} == {"backfill"}
    assert {row["p_source_label"] for row in accepted} == {"validate"}
    assert accepted[0]["event"]["virtualTraffic"][0]["srcIp"] == "100.64.0.1"  # enriched
    assert [row["record"]["event"].get("nodeId") for row in failed] == ["b1", None, "b2"]
    assert [error["type"] for error in failed[0]["errors"]] == ["invalid_proto", "invalid_proto"]
    assert failed[0]["p_request_id"] == "validate"


def test_output_dash_writes_rows_to_stdout_and_the_summary_to_stderr(mixed: Path, capsys: pytest.CaptureFixture[str]):
    run(mixed, "--output", "-")

    captured = capsys.readouterr()
    assert [orjson.loads(line)["event"]["nodeId"] for line in captured.out.splitlines()] == ["n0", "n1", "n2"]
    assert captured.err.startswith("FILE")


def test_failures_dash_is_a_usage_error(mixed: Path, capsys: pytest.CaptureFixture[str]):
    assert run(mixed, "--failures", "-") == EXIT_USAGE
    assert "only --output may be '-'" in capsys.readouterr().err


def test_corrupt_gzip_and_truncated_json_are_file_failures_with_detail_and_offset(
    tmp_path: Path, mixed: Path, capsys: pytest.CaptureFixture[str]
):
    corrupt, truncated = tmp_path / "corrupt.json.gz", tmp_path / "truncated.json"
    compressed = bytearray(gzip.compress(concatenated([envelope(audit_event())] * 20)))
    compressed[20:40] = b"\xff" * 20
    corrupt.write_bytes(bytes(compressed))
    whole = concatenated([envelope(audit_event()), envelope(audit_event())])
    truncated.write_bytes(whole[:-10])

    code = run(corrupt, mixed, truncated)

    out = capsys.readouterr().out
    assert code == EXIT_FAILED
    failures = out.split("FILE FAILURES")[1].splitlines()[2:]
    second_record_at = len(concatenated([envelope(audit_event())]))
    assert failures[0].split()[:3] == [str(corrupt), "decode_error", "-"]
    assert "the gzip body is corrupt" in failures[0]
    assert failures[1].split()[:3] == [str(truncated), "invalid_json", str(second_record_at)]
    assert "truncated JSON object" in failures[1]
    # The readable file in between is still validated and counted.
    assert out.splitlines()[4].split()[:4] == ["TOTAL", "6", "3", "3"]
    assert "2 of 3 files failed" in out


def test_a_file_over_max_records_fails_as_a_whole(mixed: Path, capsys: pytest.CaptureFixture[str]):
    assert run(mixed, "--max-records", "5") == EXIT_FAILED
    assert "file failed (too_many_records)" in capsys.readouterr().out


def test_a_record_over_max_record_bytes_fails_alone_unparsed_as_in_the_receiver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path, failures = tmp_path / "records.json", tmp_path / "failed.ndjson"
    big = envelope(network_event("big"))
    big["event"]["note"] = "x" * 2_000
    path.write_bytes(concatenated([envelope(network_event("n1")), big]))

    code = run(path, "--max-record-bytes", "1500", "--failures", failures)

    assert code == EXIT_FAILED
    assert "record_too_large" in capsys.readouterr().out
    (failed,) = [orjson.loads(line) for line in failures.read_bytes().splitlines()]
    assert failed["record"] is None and orjson.loads(failed["raw"]) == big  # kept as read, never parsed
    assert failed["errors"][0]["type"] == "record_too_large"


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert run(tmp_path / "missing.json") == EXIT_USAGE
    assert f"cannot read {tmp_path / 'missing.json'}" in capsys.readouterr().err


def test_out_of_bounds_limits_are_refused_by_the_parser(mixed: Path):
    with pytest.raises(SystemExit):
        run(mixed, "--max-depth", "901")


def test_a_forced_log_type_fails_records_of_the_other_type(tmp_path: Path):
    path = tmp_path / "audit.json"
    path.write_bytes(concatenated([envelope(audit_event()), envelope(network_event())]))
    ctx = validate.make_context("audit", source_id="s", source_label="l")

    report = validate.validate_files([path], ctx, Limits.defaults())

    [file] = report.files
    assert (file.records, file.accepted, file.failed) == (2, 1, 1)
    assert ("missing", "event.action") in file.reasons
    assert not report.ok


def test_validate_files_hands_each_files_batch_to_the_callback(mixed: Path, tmp_path: Path):
    other = tmp_path / "other.json"
    other.write_bytes(concatenated([envelope(audit_event())]))
    batches: list[Batch] = []

    report = validate.validate_files(
        [mixed, other],
        validate.make_context(None, source_id="s", source_label="l"),
        Limits.defaults(),
        on_batch=batches.append,
    )

    assert [(b.accepted, len(b.quarantined)) for b in batches] == [(3, 3), (1, 0)]
    assert (report.total.records, report.total.accepted, report.total.failed) == (7, 4, 3)


def test_failure_reasons_generalise_indexes_and_count_a_reason_once_per_record():
    row = {
        "errors": [
            {"loc": "event.virtualTraffic.0.proto", "msg": "", "type": "invalid_proto"},
            {"loc": "event.virtualTraffic.12.proto", "msg": "", "type": "invalid_proto"},
            {"loc": "", "msg": "", "type": "not_an_object"},
        ]
    }

    assert validate.failure_reasons(row) == {
        ("invalid_proto", "event.virtualTraffic.*.proto"),
        ("not_an_object", "(record)"),
    }


def test_tables_align_numbers_right_and_text_left():
    lines = validate.format_table(("NAME", "COUNT", "NOTE"), [("a", 1, "x"), ("longer", 1234, None)])

    assert lines == [
        "NAME    COUNT  NOTE",
        "a           1  x",
        "longer   1234  -",
    ]
