"""CLI start-up: `registry --help` / `--version` and `compute-engine --help` against a bare `import click`.

Each command runs as a fresh process (what a user waits for), interleaved with
the bare operation, `--runs` times; prints medians and the paired ratio, and
each command's median against the 0.3 s target (issue 15 item 5).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_or_nan, paired_ratio

BIN = Path(sys.executable).parent
TARGET_S = 0.3
COMMANDS = {
    "registry --help": [str(BIN / "registry"), "--help"],
    "registry --version": [str(BIN / "registry"), "--version"],
    "compute-engine --help": [str(BIN / "compute-engine"), "--help"],
}
BARE = [sys.executable, "-c", "import click"]


def _time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    print(f"{'command':24} {'median s':>9} {'bare s':>8} {'ratio':>6}  target")
    for name, argv in COMMANDS.items():
        ours, bare = [], []
        for _ in range(runs):
            ours.append(_time(argv))
            bare.append(_time(BARE))
        median = median_or_nan(ours)
        verdict = "ok" if median <= TARGET_S else "OVER"
        print(f"{name:24} {median:9.3f} {median_or_nan(bare):8.3f} {paired_ratio(ours, bare):6.2f}  "
              f"<= {TARGET_S} s: {verdict}")


if __name__ == "__main__":
    main()
