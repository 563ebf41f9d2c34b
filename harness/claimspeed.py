"""How long judging the paper's claims takes, side by side with a bare `import torch` (issue 10:
at most 2x). Prints numbers, decides nothing: `python -m harness.claimspeed [--repeat N]`.

Each round runs, in fresh interpreters and alternating so that a busy machine slows both alike:
`python -c "import torch"` and `amibr-bench claims --results paper --format text --out FILE`
(the whole command: imports, loading and validating the 354 claims, judging them, writing the
report). The architecture facts come from the on-disk memo (harness.archfacts), as on any run
after the first; `--cold` clears it before each claims run instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import paths


def _seconds(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: an unexpected verdict is still a full judging run
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def measure(repeat: int = 5, cold: bool = False) -> dict[str, list[float]]:
    """Wall-clock seconds of each run: {'import torch': [...], 'claims --results paper': [...]}."""
    env = dict(os.environ)
    out: dict[str, list[float]] = {"import torch": [], "claims --results paper": []}
    with tempfile.TemporaryDirectory() as tmp:
        if cold:
            env[paths.CACHE_ENV] = str(Path(tmp) / "cache")
        report = str(Path(tmp) / "claims.txt")
        claims = [sys.executable, "-m", "harness.cli", "claims", "--results", "paper"]
        claims += ["--format", "text", "--out", report]
        _seconds(claims, env)  # warm the file cache (and the memo, unless --cold)
        for _ in range(repeat):
            out["import torch"].append(_seconds([sys.executable, "-c", "import torch"], env))
            if cold:
                for memo in (Path(tmp) / "cache" / "architecture").glob("*.json"):
                    memo.unlink()
            out["claims --results paper"].append(_seconds(claims, env))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.claimspeed", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--cold", action="store_true", help="no architecture memo")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    times = measure(args.repeat, args.cold)
    for name, values in times.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:>24}: median {statistics.median(values):.2f} s  ({shown})")
    ratio = statistics.median(times["claims --results paper"]) / statistics.median(
        times["import torch"]
    )
    print(f"{'ratio':>24}: {ratio:.2f}x a bare import torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
