"""Files are read as the receiver reads bodies: same decoders, same framing, same limits."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
from pathlib import Path

import pytest

from app.errors import FramingError
from app.ingest.framing import Unparsed
from app.settings import Settings
from app.tools.files import Limits, add_limit_arguments, limits_from_args, load_files, read_records, unreadable


def test_default_limits_are_the_receivers_defaults(monkeypatch: pytest.MonkeyPatch):
    for name in ("MAX_RECORDS", "MAX_DEPTH", "MAX_DECOMPRESSED_BYTES", "MAX_RECORD_BYTES"):
        monkeypatch.delenv(f"TAILSCRIBE_{name}", raising=False)
    settings = Settings()

    assert Limits.defaults() == Limits(
        settings.max_records, settings.max_depth, settings.max_decompressed_bytes, settings.max_record_bytes
    )


def test_limit_flags_default_to_settings_and_keep_their_bounds():
    parser = argparse.ArgumentParser()
    add_limit_arguments(parser)

    assert limits_from_args(parser.parse_args([])) == Limits.defaults()
    assert limits_from_args(parser.parse_args(["--max-depth", "3"])).max_depth == 3
    assert limits_from_args(parser.parse_args(["--max-record-bytes", "500"])).max_record_bytes == 500
    bad_values = (["--max-records", "0"], ["--max-depth", "1"], ["--max-decompressed-bytes", "lots"])
    for bad in (*bad_values, ["--max-record-bytes", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_a_multi_member_gzip_file_is_read_whole_without_its_extension(tmp_path: Path):
    path = tmp_path / "records"  # no .gz: the magic bytes tell
    path.write_bytes(gzip.compress(b'{"a":1}') + gzip.compress(b'{"a":2}'))

    assert read_records(path, Limits.defaults()) == [{"a": 1}, {"a": 2}]


def test_a_record_over_max_record_bytes_is_read_unparsed_as_the_receiver_reads_it(tmp_path: Path):
    path = tmp_path / "records.ndjson"
    huge = b'{"time":1,"event":{"nodeId":"' + b"n" * 600 + b'"}}'
    path.write_bytes(b'{"a":1}\n' + huge + b'\n{"a":2}\n')
    limits = dataclasses.replace(Limits.defaults(), max_record_bytes=500)

    first, unparsed, last = read_records(path, limits)

    assert (first, last) == ({"a": 1}, {"a": 2})
    assert isinstance(unparsed, Unparsed) and bytes(unparsed.data) == huge


def test_bad_data_fails_its_own_file_only(tmp_path: Path):
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_bytes(b'{"a":1}{"a":')
    good.write_bytes(b'[{"b":1}]')

    loaded = list(load_files([bad, good], Limits.defaults()))

    assert loaded[0].records == [] and loaded[0].failure is not None
    assert (loaded[0].failure.reason, loaded[0].failure.offset) == (FramingError.reason, 7)
    assert loaded[1].records == [{"b": 1}] and loaded[1].failure is None


def test_missing_and_directory_paths_are_reported_before_any_work(tmp_path: Path):
    readable = tmp_path / "ok.json"
    readable.write_bytes(b"{}")

    problems = unreadable([readable, tmp_path / "missing.json", tmp_path])

    assert len(problems) == 2
    assert problems[0].startswith(f"cannot read {tmp_path / 'missing.json'}: No such file")
    assert problems[1].startswith(f"cannot read {tmp_path}: Is a directory")
