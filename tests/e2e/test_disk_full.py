"""A full disk, end to end: a real receiver whose data directory is a small filesystem of its own.

The data directory is an 8 MiB tmpfs (or, where tmpfs cannot be mounted, an 8 MiB ext4 loop file),
filled with a ballast file until writes fail with ENOSPC. While it is full, ingest must answer 503
with Retry-After and HEC code 9, never 2xx: nothing acknowledged may be missing afterwards, and
nothing refused may have been kept. Once the ballast is gone, ingest answers 200 again and the
archive sink (on the same filesystem) catches up with every acknowledged record, exactly once.

Mounting needs root (CI runs the suite as root); elsewhere the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import TOKEN, Server
from tests.samples import concatenated, envelope, network_event

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
FS_BYTES = 8 * 1024 * 1024
HEADROOM = 768 * 1024
"""Space left beside the ballast at first, so some requests succeed before the disk fills."""
RECORDS_PER_REQUEST = 40
DEADLINE = 50.0
"""The whole test stays under a minute, however the receiver behaves."""


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, *, inodes: int | None = None) -> Iterator[Path]:
    """An 8 MiB filesystem (with at most about `inodes` files) mounted at `mountpoint`: tmpfs, else an
    ext4 loop file; unmounted afterwards. Skips the test, saying why, when neither can be mounted."""
    mountpoint.mkdir()
    reasons: list[str] = []
    options = f"size={FS_BYTES},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
    mounted = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint))
    if mounted.returncode != 0:
        reasons.append(f"tmpfs: {mounted.stderr.strip() or mounted.returncode}")
        image = mountpoint.with_name(f"{mountpoint.name}.img")
        with image.open("wb") as file:
            file.truncate(FS_BYTES)
        mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", *(["-N", str(inodes)] if inodes else []), str(image)]
        made = _run(*mkfs) if shutil.which("mkfs.ext4") else None
        mounted = _run("mount", "-o", "loop", str(image), str(mountpoint)) if made and made.returncode == 0 else None
        if mounted is None or mounted.returncode != 0:
            reasons.append(f"loop ext4: {(mounted.stderr.strip() if mounted else 'mkfs.ext4 unavailable or failed')}")
            pytest.skip(f"cannot mount a small filesystem (needs root): {'; '.join(reasons)}")
    try:
        yield mountpoint
    finally:
        if _run("umount", str(mountpoint)).returncode != 0:
            _run("umount", "-l", str(mountpoint))


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "small") as mountpoint:
        yield mountpoint


def fill(path: Path, *, leave: int = 0) -> int:
    """Write zeros to `path` until ENOSPC, or until only `leave` bytes stay free; the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with path.open("ab") as file:
        try:
            while True:
                free = shutil.disk_usage(path.parent).free - leave
                if free <= 0:
                    break
                written += file.write(chunk[: min(len(chunk), free)])
                file.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:
            os.fsync(file.fileno())
        except OSError:
            pass
    return written


def start_server(data_dir: Path, log: Path, *args: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILSCRIBE_")}
    server = Server(data_dir, log, env, ["--token", TOKEN, *args])
    server.start()
    return server


def assert_busy(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == 9
    assert int(answer.headers["retry-after"]) > 0


def test_a_full_disk_answers_503_never_2xx_and_recovers_when_space_returns(small_fs: Path, tmp_path: Path):
    started = time.monotonic()
    # Small segments, so segments the archive has passed are deleted and the journal frees space.
    server = start_server(small_fs / "data", tmp_path / "server.log", "--journal-segment-bytes", "131072")
    counter = itertools.count()
    acknowledged: list[str] = []
    refused: list[str] = []
    statuses: Counter[int] = Counter()

    def post(http: httpx.Client, prefix: str) -> httpx.Response:
        ids = [f"{prefix}-{next(counter)}" for _ in range(RECORDS_PER_REQUEST)]
        answer = http.post("/v1/tailscale/network", content=concatenated([envelope(network_event(i)) for i in ids]))
        statuses[answer.status_code] += 1
        assert answer.status_code in (200, 503), f"{answer.status_code}: {answer.text}"
        if answer.status_code == 200:
            assert answer.json()["accepted"] == RECORDS_PER_REQUEST
            acknowledged.extend(ids)
        else:
            assert_busy(answer)
            refused.extend(ids)
        return answer

    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
            assert post(http, "before").status_code == 200
            server.drained()

            # Nearly full: requests are acknowledged until the journal and the archive use up the rest.
            fill(small_fs / "ballast-1", leave=HEADROOM)
            while statuses[503] < 5 and time.monotonic() - started < DEADLINE / 3:
                post(http, "filling")
            assert statuses[503] >= 5, f"the disk never filled up: {statuses}"

            # Completely full, whatever the sinks freed meanwhile: nothing may be acknowledged now.
            fill(small_fs / "ballast-2")
            assert http.get("/readyz").status_code == 503
            for _ in range(10):
                assert post(http, "full").status_code == 503
            # A record failing its schema cannot be quarantined, a body that is not JSON cannot be kept:
            # 503 for both, not 200 or 400.
            mixed = [envelope(network_event(f"full-mixed-{n}")) for n in range(3)] + [{"time": 1, "event": {}}]
            assert_busy(http.post("/v1/tailscale/network", content=concatenated(mixed)))
            refused.extend(f"full-mixed-{n}" for n in range(3))
            assert_busy(http.post("/v1/tailscale/network", content=b'{"time": 1, "event": '))
            assert server.metric("tailscribe_storage_errors_total") >= 16

            # Space returns: ready again, ingest is acknowledged, and the archive catches up.
            (small_fs / "ballast-1").unlink()
            (small_fs / "ballast-2").unlink()
            while http.get("/readyz").status_code != 200 and time.monotonic() - started < DEADLINE:
                time.sleep(0.1)
            assert http.get("/readyz").status_code == 200
            for _ in range(3):
                assert post(http, "after").status_code == 200
            server.drained(timeout=max(1.0, DEADLINE - (time.monotonic() - started)))
            archived = Counter(row["event"]["nodeId"] for row in server.archive_rows())  # type: ignore[index]
    finally:
        server.stop()

    assert statuses[200] >= 5, statuses
    missing = [node for node in acknowledged if archived[node] == 0]
    assert not missing, f"{len(missing)} acknowledged records are not in the archive, e.g. {missing[:5]}"
    twice = [node for node, count in archived.items() if count > 1]
    assert not twice, f"{len(twice)} records were archived more than once, e.g. {twice[:5]}"
    kept = [node for node in refused if archived[node]]
    assert not kept, f"{len(kept)} records answered 503 were archived anyway, e.g. {kept[:5]}"
    assert sum(archived.values()) == len(acknowledged)
    assert time.monotonic() - started < 60


def test_a_rejected_body_cut_short_by_a_full_disk_leaves_no_partial_file(small_fs: Path, tmp_path: Path):
    server = start_server(small_fs / "data", tmp_path / "server.log")
    try:
        fill(small_fs / "ballast", leave=256 * 1024)
        answer = httpx.post(f"{server.url}/v1/tailscale/network", content=b"{" + b"x" * 600_000, headers=HEADERS)
        assert_busy(answer)
        (small_fs / "ballast").unlink()
    finally:
        server.stop()
    leftovers = [f"{path.name}: {path.stat().st_size} bytes" for path in small_fs.rglob("*.tmp")]
    assert not leftovers, f"temp files left behind: {leftovers}"


INODES = 256
"""Files the inode-starved filesystem can hold: the receiver's own tree needs a few dozen."""


def use_up_inodes(directory: Path) -> None:
    """Create empty files in `directory` until the filesystem has no inode left (ENOSPC)."""
    directory.mkdir()
    for number in range(100_000):
        try:
            (directory / str(number)).touch()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return
    raise AssertionError("the filesystem never ran out of inodes")


def post_records(http: httpx.Client, prefix: str, count: int = 20) -> int | str:
    """The answer's status, or the name of the transport error when none came."""
    body = concatenated([envelope(network_event(f"{prefix}-{n}")) for n in range(count)])
    try:
        return http.post("/v1/tailscale/network", content=body).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_no_inode_for_a_new_journal_segment_answers_503_and_recovers(tmp_path: Path):
    with small_filesystem(tmp_path / "small", inodes=INODES) as fs:
        server = start_server(fs / "data", tmp_path / "server.log", "--journal-segment-bytes", "65536")
        try:
            with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
                assert post_records(http, "before") == 200
                use_up_inodes(fs / "ballast")
                # About 30 KB of rows a request: a new segment is due within three.
                during = {f"during-{n}": post_records(http, f"during-{n}") for n in range(8)}
                shutil.rmtree(fs / "ballast")
                after = {f"after-{n}": post_records(http, f"after-{n}") for n in range(3)}
                server.drained(timeout=10)
                archived = Counter(row["event"]["nodeId"] for row in server.archive_rows())  # type: ignore[index]
        finally:
            server.stop()
    assert set(during.values()) <= {200, 503}, during
    assert 503 in during.values(), f"the journal never needed a new segment: {during}"
    assert set(after.values()) == {200}, after
    acknowledged = ["before"] + [prefix for prefix, status in (during | after).items() if status == 200]
    expected = Counter(f"{prefix}-{n}" for prefix in acknowledged for n in range(20))
    assert archived == expected, "the archive differs from the acknowledged records"


def test_no_inode_for_a_checkpoint_does_not_stop_the_sink(tmp_path: Path):
    config = tmp_path / "tailscribe.toml"
    config.write_text('[[sinks]]\ntype = "stdout"\n')  # a sink that writes nothing to the data directory
    with small_filesystem(tmp_path / "small", inodes=INODES) as fs:
        server = start_server(fs / "data", tmp_path / "server.log", "--config", str(config))
        try:
            with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
                assert post_records(http, "before") == 200
                server.drained("stdout")
                use_up_inodes(fs / "ballast")
                # Appending to the open journal segment needs no inode: these are acknowledged.
                assert [post_records(http, f"during-{n}") for n in range(3)] == [200, 200, 200]
                time.sleep(1.0)  # the sink delivers them meanwhile, then cannot save its checkpoint
                shutil.rmtree(fs / "ballast")
                assert post_records(http, "after") == 200
                server.drained("stdout", timeout=8)
        finally:
            server.stop()
