"""Benchmark: run_query against bare SQLite copying the same query's rows.

Builds a 1,000,000-row refiner table in bench/.work/ (once), then times,
N runs each, median:
  - engine: engine.query.run_query (checks, CTAS, names/types, rename, in
    its own query process)
  - in-process: the same work in the benchmark's process (execute_query),
    to show what the query process costs
  - bare python: Python's sqlite3 doing ATTACH + CREATE TABLE ... AS SELECT
  - bare tuned: the same with journal_mode=OFF, synchronous=OFF on the output
    (what the engine itself uses: the fairest like-for-like figure)
  - bare cli: the sqlite3 CLI doing the same (when installed)
Runs are interleaved (engine, bare, ... per round) so machine noise hits all
alike. Prints the median ratio engine / bare. Target: engine / bare tuned
<= 1.00x (issue 15); against the others it is shown for reference.

    .venv/bin/python bench/query.py [--rows N] [--runs N] [--isolation]

--isolation also prints the ms per query the child process costs (see
engine/query/isolate.py): with a spare process ready, and back to back.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import paired_ratio
from engine.query import Permission, QueryLimits, run_query

WORK = ROOT / "bench" / ".work"
QUERY = ("SELECT id, user_id, kind, score, created_at FROM activities "
         "WHERE score >= ? ORDER BY id")
PARAMS = [0.0]
BARE_QUERY = QUERY.replace("?", "0.0")
TARGET = 1.00  # engine / bare tuned


def build_source(path: Path, rows: int) -> None:
    if path.exists():
        with sqlite3.connect(path) as conn:
            if conn.execute("SELECT count(*) FROM activities").fetchone()[0] == rows:
                return
        path.unlink()
    print(f"building {rows:,} rows in {path} ...", flush=True)
    rng = random.Random(7)
    kinds = ["run", "walk", "swim", "ride", "climb"]
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("CREATE TABLE activities (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
                 "kind TEXT NOT NULL, score REAL, created_at TEXT NOT NULL)")
    batch = 50_000
    for start in range(0, rows, batch):
        conn.executemany(
            "INSERT INTO activities VALUES (?, ?, ?, ?, ?)",
            ((i, rng.randrange(10_000), rng.choice(kinds), round(rng.random() * 100, 2),
              f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00")
             for i in range(start + 1, min(start + batch, rows) + 1)),
        )
    conn.commit()
    conn.close()
    tmp.rename(path)


def time_once(name: str, once: Callable[[Path], None]) -> float:
    out = WORK / f"out-{name.replace(' ', '-')}.db"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    once(out)
    elapsed = time.perf_counter() - t0
    out.unlink(missing_ok=True)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    src = WORK / "refiner.db"
    build_source(src, args.rows)
    perms = [Permission(1, None, 1, "activities", "", 0, True)]
    limits = QueryLimits(max_rows=args.rows, timeout_s=600, max_result_bytes=2**34)

    def engine(out: Path) -> None:
        report = run_query(src, QUERY, PARAMS, perms, out, limits)
        assert report.row_count == args.rows

    def bare_python(out: Path) -> None:
        conn = sqlite3.connect(out, isolation_level=None)
        conn.execute("ATTACH DATABASE ? AS src", (str(src),))
        conn.execute(f"CREATE TABLE results AS {BARE_QUERY}")
        conn.close()

    def bare_tuned(out: Path) -> None:
        conn = sqlite3.connect(out, isolation_level=None)
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("ATTACH DATABASE ? AS src", (str(src),))
        conn.execute(f"CREATE TABLE results AS {BARE_QUERY}")
        conn.close()

    def bare_cli(out: Path) -> None:
        script = f"ATTACH DATABASE '{src}' AS src;\nCREATE TABLE results AS {BARE_QUERY};\n"
        subprocess.run(["sqlite3", str(out)], input=script, text=True, check=True)

    def engine_in_process(out: Path) -> None:
        from engine.query.execute import execute_query

        report = execute_query(src, QUERY, PARAMS, perms, out, limits)
        assert report.row_count == args.rows

    contenders = {"engine": engine, "in-process": engine_in_process, "bare python": bare_python,
                  "bare tuned": bare_tuned}
    if shutil.which("sqlite3"):
        contenders["bare cli"] = bare_cli
    print(f"query: {QUERY}  params={PARAMS}  ({args.runs} runs each)", flush=True)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(args.runs):
        for name, once in contenders.items():
            times[name].append(time_once(name, once))
            print(f"  round {i + 1}/{args.runs} {name:12s} {times[name][-1]:.3f} s", flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print("\nmedians:")
    for name, value in medians.items():
        print(f"  {name:12s} {value:.3f} s")
    for name in ("bare python", "bare tuned", "bare cli"):
        if name in medians:
            ratio = medians["engine"] / medians[name]
            target = (f"target <= {TARGET:.2f}x: {'met' if ratio <= TARGET else 'NOT met'}"
                      if name == "bare tuned" else "for reference")
            paired = paired_ratio(times["engine"], times[name])
            print(f"ratio engine / {name}: {ratio:.2f}x, median of per-round ratios {paired:.2f}x "
                  f"({target})")


def isolation_cost(src: Path, runs: int) -> None:
    """ms per query the child process adds: a tiny query, isolated vs in the caller's process."""
    from engine.query.execute import execute_query

    perms = [Permission(1, None, 1, "activities", "", 0, True)]
    tiny = "SELECT id FROM activities WHERE id = 1"

    def timed(fn: Callable[..., object], pause_s: float) -> float:
        samples = []
        for _ in range(runs):
            time.sleep(pause_s)
            samples.append(time_once("tiny", lambda out: fn(src, tiny, None, perms, out)))
        return statistics.median(samples) * 1000

    bare = timed(execute_query, 0.0)
    spaced = timed(run_query, 0.5)  # the spare query process is ready
    back_to_back = timed(run_query, 0.0)  # each query waits for the next child to start
    print(f"\nisolation cost, tiny query, median of {runs}:")
    print(f"  in-process {bare:.1f} ms; child process: spare ready {spaced:.1f} ms "
          f"(+{spaced - bare:.1f} ms), back to back {back_to_back:.1f} ms (+{back_to_back - bare:.1f} ms)")


if __name__ == "__main__":
    if "--isolation" in sys.argv:
        sys.argv.remove("--isolation")
        ISOLATION = True
    else:
        ISOLATION = False
    main()
    if ISOLATION:
        isolation_cost(WORK / "refiner.db", 20)
