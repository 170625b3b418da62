"""What the harnesses share: run a `TestOneInput` under libFuzzer (atheris), or without it.

atheris (https://github.com/google/atheris) is coverage-guided: it instruments the Python code
imported inside `instrumented()` and lets libFuzzer mutate towards new branches. Where atheris
cannot be installed (no wheel for the platform and no clang to build one), `main` falls back to a
plain-Python loop with the same command line: it replays every corpus file, then mutates them at
random (bit flips, inserted JSON tokens, deletions, splices, truncations) for `-max_total_time`
seconds or `-runs` inputs. The fallback is blind, so much weaker, but it keeps `make fuzz` and
crash replay working everywhere.

Both write a failing input to `<artifact_prefix>crash-<sha1>` and exit non-zero.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python fuzz/fuzz_x.py` finds `app` even without `pip install -e .`

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

ARTIFACT_KINDS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
TOKENS = (b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"}{", b"\n", b'{"logs":[', b'"event":', b"\x1f\x8b")


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Instrument the imports made inside, when atheris is there."""
    if atheris is None:
        yield
        return
    with atheris.instrument_imports():
        yield


def main(test_one_input: Callable[[bytes], None]) -> None:
    """libFuzzer's command line: `[-flag=value ...] [corpus_dir ...]`, or input files to replay."""
    paths = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    for path in paths:
        # libFuzzer wants its corpus directories to exist; a missing crash file is the user's mistake.
        if not path.exists() and not path.name.startswith(ARTIFACT_KINDS):
            path.mkdir(parents=True)
    prefix = _flag("artifact_prefix", "")
    if prefix.endswith("/"):
        Path(prefix).mkdir(parents=True, exist_ok=True)
    if atheris is not None:
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
        return
    print("atheris is not installed: plain-Python fallback (replay + random mutations, no coverage)", file=sys.stderr)
    _fallback(test_one_input, paths, prefix)


def _flag(name: str, default: str) -> str:
    for arg in sys.argv[1:]:
        if arg.startswith(f"-{name}="):
            return arg.split("=", 1)[1]
    return default


def _fallback(test_one_input: Callable[[bytes], None], paths: list[Path], prefix: str) -> None:
    files = [path for path in paths if path.is_file()]
    if files:  # replay mode, as libFuzzer does when given files
        for path in files:
            test_one_input(path.read_bytes())
            print(f"{path}: ok", file=sys.stderr)
        return
    seeds = [file.read_bytes() for directory in paths for file in sorted(directory.iterdir()) if file.is_file()]
    seeds = seeds or [b""]
    deadline = time.monotonic() + float(_flag("max_total_time", "60"))
    runs = int(_flag("runs", "-1"))
    rng = random.Random(int(_flag("seed", "0")) or None)
    executions = 0
    inputs = iter(seeds)
    while time.monotonic() < deadline and executions != runs:
        data = next(inputs, None)
        if data is None:
            data = _mutate(rng, rng.choice(seeds), rng.choice(seeds))
        try:
            test_one_input(data)
        except BaseException:
            crash = Path(f"{prefix}crash-{hashlib.sha1(data).hexdigest()}")
            crash.write_bytes(data)
            print(f"crash after {executions} executions; input written to {crash}", file=sys.stderr)
            raise
        executions += 1
    print(f"fallback: {executions} executions, no crash", file=sys.stderr)


def _mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randint(0, len(out))
        kind = rng.randrange(6)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = rng.choice(TOKENS)
        elif kind == 2:
            del out[at : at + rng.randint(1, 16)]
        elif kind == 3:
            out[at:at] = other[rng.randint(0, len(other)) :][: rng.randint(1, 64)]
        elif kind == 4:
            del out[at:]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(out)
