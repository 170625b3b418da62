"""Instructions a record of the in-process pipeline, counted by valgrind's callgrind.

    .venv/bin/python -m bench.instructions [--records 73] [--iterations 40] [--top 30]

Timings on this shared 2-core machine move by ±20% within minutes, so a change worth 5% cannot be
told from noise without many interleaved rounds. An instruction count can: callgrind counts the
same total for the same code and input whatever else the machine is doing. It is not time (a cache
miss or a page fault costs no instruction, and valgrind's CPU has no SHA extensions, so OpenSSL's
SHA-256 counts its portable code, about 25 instructions a byte where the CPU takes 1.5 µs a record),
so it decides between two versions of the same Python code, and timings stay the verdict. Two trees
whose pipelines are the same still differ by up to 1% (449,590 and 445,220 instructions for two
commits that differ only in the sink runner): what else is imported moves objects and type version
tags, and with them CPython's caches. A smaller difference says nothing.

The pipeline (`bench.inprocess.pipeline`, framing to stored lines) runs under callgrind twice after
the same warm-up, with 0 and with `--iterations` bodies, and the first count is taken from the
second: what remains is those bodies' work, start-up and imports excluded. Needs valgrind (a Debian
package; `make bench` installs it). `bench/compare.py` adds the count to each variant's row.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.load import REPOSITORY

WORKLOAD = """
import sys
import app
from bench.inprocess import pipeline
from bench.workload import body, records

assert app.__file__.startswith(sys.argv[1]), app.__file__
data = body(records("network", int(sys.argv[2]))).data
for _ in range(3):  # fills the caches a running receiver has warm: orjson's keys, the IPv6 memo
    pipeline(data)
for _ in range(int(sys.argv[3])):
    pipeline(data)
"""

_LINE = re.compile(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(?:\S*/)?([^\s/][^[]*?)(?: \[(?:\S*/)?([^/\]]+)\])?$")
"""A callgrind_annotate row, `   84,945 (13.27%)  /path/file.c:function [/path/object.so]`: the count,
`file.c:function` and `object.so`."""


def _callgrind(directory: Path, records: int, iterations: int, output: Path) -> None:
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}"]
    command += [sys.executable, "-c", WORKLOAD, str(directory), str(records), str(iterations)]
    # The same dict layouts on every run, and no .pyc written: a module compiled by only the first of the
    # two runs would count in it alone (one such run gave 378,000 instructions a record for 445,000).
    env = {"PYTHONPATH": str(REPOSITORY), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(command, cwd=directory, env=env, capture_output=True, check=True)


def _by_function(profile: Path) -> Counter[str]:
    """Instructions per function, its own only (not its callees'), from a callgrind profile."""
    annotate = ["callgrind_annotate", "--auto=no", "--threshold=100", str(profile)]
    text = subprocess.run(annotate, capture_output=True, text=True, check=True).stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if (match := _LINE.match(line)) and "PROGRAM TOTALS" not in line:
            name = match[2].strip()
            if name.startswith("???") and match[3]:  # no symbols: name the library at least
                name = f"{name} in {match[3]}"
            counts[name] += int(match[1].replace(",", ""))
    return counts


def _total(profile: Path) -> int:
    summary = subprocess.run(["callgrind_annotate", str(profile)], capture_output=True, text=True, check=True)
    match = re.search(r"^\s*([\d,]+) \([\s\d.]+%\)\s+PROGRAM TOTALS", summary.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no total in {profile}")
    return int(match[1].replace(",", ""))


def count(directory: Path, *, records: int = 73, iterations: int = 40) -> tuple[float, Counter[str]]:
    """(instructions a record, instructions a record by function) for the `app/` in `directory`."""
    with tempfile.TemporaryDirectory(prefix="tailscribe-callgrind-") as scratch:
        base, loaded = Path(scratch, "base.out"), Path(scratch, "loaded.out")
        _callgrind(directory, records, 0, base)
        _callgrind(directory, records, iterations, loaded)
        done = records * iterations
        per_function = _by_function(loaded)
        per_function.subtract(_by_function(base))
        by_function = Counter({name: value / done for name, value in per_function.items() if value > 0})
        return (_total(loaded) - _total(base)) / done, by_function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=73, help="network records a body (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=40, help="bodies counted (default: %(default)s)")
    parser.add_argument("--top", type=int, default=30, help="functions listed (default: %(default)s)")
    args = parser.parse_args()
    total, by_function = count(REPOSITORY, records=args.records, iterations=args.iterations)
    print(f"{total:,.0f} instructions a network record ({args.records} a body, {args.iterations} bodies)\n")
    print("| instructions a record, its own | function |")
    print("| ---: | --- |")
    for name, value in by_function.most_common(args.top):
        print(f"| {value:,.0f} | `{name}` |")


if __name__ == "__main__":
    main()
