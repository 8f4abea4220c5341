"""job_template/worker.py on real SQLite files, run with the host Python.

The statistics are checked against the same numbers computed directly in SQL;
the chart is checked as a PNG (signature, IHDR, CRCs, pixel data size).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "job_template"
WORKER = TEMPLATE / "worker.py"


def load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("job_template_worker", WORKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


worker = load_worker()


def make_db(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def dummy_db(tmp_path: Path) -> Path:
    """The template's own dummy data: the same file DEV_MODE runs use."""
    return make_db(tmp_path / "in" / "query_results.db", (TEMPLATE / "dummy_data.sql").read_text())


def run_worker(input_path: Path, output: Path) -> tuple[int, dict | None]:
    code = worker.run(str(input_path), str(output))
    stats_file = output / "stats.json"
    return code, json.loads(stats_file.read_text()) if stats_file.exists() else None


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Parse a PNG strictly enough to catch a broken encoder: (width, height, raw)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, f"bad CRC in {tag!r}"
        chunks.append((tag, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color) == (8, 2)
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    assert len(raw) == height * (1 + width * 3)
    return width, height, raw


def test_stats_match_direct_sql(dummy_db: Path, tmp_path: Path) -> None:
    code, stats = run_worker(dummy_db.parent, tmp_path / "out")
    assert code == worker.EXIT_OK and stats is not None
    conn = sqlite3.connect(dummy_db)
    assert stats["row_count"] == conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 12
    kinds = {c["name"]: c["kind"] for c in stats["columns"]}
    assert kinds == {"user_id": "identifier", "locale": "text",
                     "activity_count": "numeric", "total_duration_s": "numeric"}
    for col in ("activity_count", "total_duration_s"):
        lo, hi, mean, total = conn.execute(
            f"SELECT MIN({col}), MAX({col}), AVG({col}), SUM({col}) FROM results").fetchone()
        got = stats["numeric"][col]
        assert (got["min"], got["max"]) == (lo, hi)
        assert got["mean"] == pytest.approx(mean) and got["sum"] == pytest.approx(total)
    assert "user_id" not in stats["numeric"]  # ids are not averaged

    grouped = stats["group_by"]
    assert grouped["column"] == "locale" and grouped["user_column"] == "user_id"
    expected = conn.execute(
        "SELECT locale, COUNT(*), COUNT(DISTINCT user_id), AVG(total_duration_s) "
        "FROM results GROUP BY locale ORDER BY COUNT(*) DESC, locale").fetchall()
    assert grouped["group_count"] == len(expected) and not grouped["truncated"]
    got = [(g["value"], g["rows"], g["distinct_users"], g["numeric"]["total_duration_s"]["mean"])
           for g in grouped["groups"]]
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected])
    assert stats["chart"]["bars"] == [{"label": e[0], "value": e[1]} for e in expected]
    assert stats["chart"]["metric"] == "rows per locale"


def test_chart_is_valid_png_with_one_bar_per_group(dummy_db: Path, tmp_path: Path) -> None:
    run_worker(dummy_db.parent, tmp_path / "out")
    width, height, raw = read_png((tmp_path / "out" / "chart.png").read_bytes())
    assert (width, height) == (worker.WIDTH, worker.HEIGHT)
    # Count coloured runs along a row just above the x axis: one per bar.
    y = height - worker.MARGIN_BOTTOM - 2
    row = raw[y * (1 + width * 3) + 1:(y + 1) * (1 + width * 3)]
    pixels = [tuple(row[i:i + 3]) for i in range(0, len(row), 3)]
    runs, prev = 0, None
    for px in pixels[worker.MARGIN_LEFT:]:
        if px in worker.PALETTE and px != prev:
            runs += 1
        prev = px
    assert runs == 5


def test_empty_results_still_writes_outputs(tmp_path: Path) -> None:
    db = make_db(tmp_path / "in" / "query_results.db",
                 "CREATE TABLE results (user_id INTEGER, locale TEXT, score REAL);")
    code, stats = run_worker(db.parent, tmp_path / "out")
    assert code == worker.EXIT_OK and stats is not None
    assert stats["row_count"] == 0 and stats["column_count"] == 3
    assert stats["numeric"] == {} and stats["group_by"] is None and stats["chart"]["bars"] == []
    assert {c["kind"] for c in stats["columns"]} == {"empty"}
    read_png((tmp_path / "out" / "chart.png").read_bytes())


def test_no_category_falls_back_to_histogram(tmp_path: Path) -> None:
    db = make_db(tmp_path / "in" / "query_results.db", """
        CREATE TABLE results (id INTEGER, score REAL, note TEXT);
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99)
        INSERT INTO results SELECT i, i * 1.0, 'note ' || i FROM n;
    """)
    code, stats = run_worker(db, tmp_path / "out")  # INPUT_PATH may name the file itself
    assert code == worker.EXIT_OK
    assert stats["group_by"] is None  # `note` has a distinct value per row: not a category
    assert stats["chart"]["metric"] == "histogram of score"
    assert [b["value"] for b in stats["chart"]["bars"]] == [10] * 10
    assert stats["numeric"]["score"] == {"count": 100, "min": 0.0, "max": 99.0, "mean": 49.5, "sum": 4950.0}


def test_awkward_column_names_and_mixed_values(tmp_path: Path) -> None:
    db = make_db(tmp_path / "in" / "query_results.db", """
        CREATE TABLE results ("we""ird col" TEXT, "select" INTEGER, blob_col BLOB);
        INSERT INTO results VALUES ('a', 1, x'00ff'), ('a', 2, 'text'), ('b', NULL, NULL);
    """)
    code, stats = run_worker(db.parent, tmp_path / "out")
    assert code == worker.EXIT_OK
    kinds = {c["name"]: c["kind"] for c in stats["columns"]}
    assert kinds == {'we"ird col': "text", "select": "numeric", "blob_col": "mixed"}
    assert stats["group_by"]["column"] == 'we"ird col'
    assert [(g["value"], g["rows"]) for g in stats["group_by"]["groups"]] == [("a", 2), ("b", 1)]
    assert stats["numeric"]["select"]["mean"] == 1.5


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda d: None, id="missing-db"),
        pytest.param(lambda d: (d / "query_results.db").write_bytes(b"not sqlite at all" * 100), id="not-sqlite"),
        pytest.param(lambda d: make_db(d / "query_results.db", "CREATE TABLE other (x);"), id="no-results-table"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, setup) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    setup(inp)
    code, stats = run_worker(inp, tmp_path / "out")
    assert code == worker.EXIT_BAD_INPUT == 2
    assert stats is None


def test_unwritable_output_exits_3(dummy_db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    assert worker.run(str(dummy_db.parent), str(blocker)) == worker.EXIT_ERROR == 3


def test_entry_point_uses_env_and_logs_no_values(dummy_db: Path, tmp_path: Path) -> None:
    """Through the real entry point, as the container runs it."""
    out = tmp_path / "out"
    env = {**os.environ, "INPUT_PATH": str(dummy_db.parent), "OUTPUT_PATH": str(out),
           "COMPUTE_JOB_ID": "job-42", "DATA_REFINER_ID": "7"}
    proc = subprocess.run([sys.executable, str(WORKER)], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["job"] == {"compute_job_id": "job-42", "data_refiner_id": 7}
    logs = proc.stdout + proc.stderr
    assert "12 rows" in logs
    for value in ("en_US", "de_DE", "total_duration_s", "locale"):
        assert value not in logs  # data values (and column names) stay out of the logs


def test_entry_point_missing_input_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "INPUT_PATH": str(tmp_path / "nope"), "OUTPUT_PATH": str(tmp_path / "out")}
    proc = subprocess.run([sys.executable, str(WORKER)], check=False, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "bad input" in proc.stderr


def test_png_bytes_rejects_wrong_buffer_size() -> None:
    with pytest.raises(ValueError):
        worker.png_bytes(2, 2, b"\x00" * 11)
    assert read_png(worker.png_bytes(2, 1, b"\xff\x00\x00\x00\xff\x00"))[2] == b"\x00\xff\x00\x00\x00\xff\x00"


def test_public_surface() -> None:
    assert sorted(worker.__all__) == sorted(
        ["EXIT_OK", "EXIT_BAD_INPUT", "EXIT_ERROR", "BadInput", "ColumnProfile", "compute_stats",
         "render_bar_chart", "render_svg_chart", "png_bytes", "main"])
    for name in worker.__all__:
        assert hasattr(worker, name)


def test_readme_documents_exit_codes_and_env() -> None:
    """The builder's README stays in step with the worker it describes."""
    readme = (TEMPLATE / "README.md").read_text()
    for code in (worker.EXIT_OK, worker.EXIT_BAD_INPUT, worker.EXIT_ERROR):
        assert f"| {code} |" in readme
    for var in ("INPUT_PATH", "OUTPUT_PATH", "COMPUTE_JOB_ID", "DATA_REFINER_ID"):
        assert f"`{var}`" in readme
    for step in ("image-build.sh", "image-run.sh", "image-export.sh", "registry instruction add",
                 "registry instruction approve", "registry job submit", "registry job download"):
        assert step in readme
