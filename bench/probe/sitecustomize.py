"""`bench.stages`'s probe, loaded by Python at start-up in every process of a receiver it starts.

Only `bench.stages` puts this directory on PYTHONPATH, and only with `TAILSCRIBE_BENCH_PROBE` set:
the receiver's worker processes are fresh interpreters (multiprocessing's spawn), so this start-up
hook is how a benchmark reaches into them without a switch in the product.
"""

import os
import sys
from pathlib import Path

if os.environ.get("TAILSCRIBE_BENCH_PROBE") == "precomputed":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `app` and `bench`
    from bench.stages import precompute_pipeline

    precompute_pipeline()
