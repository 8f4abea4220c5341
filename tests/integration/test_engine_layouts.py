"""Jobs written for other platforms run unchanged: the real engine, Docker, anvil and HTTP.

- A job shaped like Vana's template (written here, not copied: it runs in its
  production mode unless ``DEV_MODE`` is set, and then insists on integer
  ``COMPUTE_JOB_ID``/``DATA_REFINER_ID`` and a query engine to call) succeeds
  with its defaults, reading the mounted ``query_results.db``.
- One busybox job per layout label reads its input where its platform puts it
  and writes output where its platform expects it; that output becomes the
  job's artifacts.
- An unknown layout label fails the job IMAGE_INVALID before its query runs.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.integration.conftest import PYTHON_BASE, SIMPLE_QUERY, step_statuses

pytestmark = [pytest.mark.docker, pytest.mark.chain]

WAIT_S = 60.0

# Shaped like Vana's data-access-demo-compute-job worker: production mode by default.
VANA_SHAPED = '''import json, os, sqlite3, sys
from pathlib import Path

dev = os.getenv("DEV_MODE", "0").lower() in ("1", "true", "yes")
inp = Path(os.getenv("INPUT_PATH", "/mnt/input"))
out = Path(os.getenv("OUTPUT_PATH", "/mnt/output"))
if not dev:
    try:
        job, refiner = int(os.getenv("COMPUTE_JOB_ID", "")), int(os.getenv("DATA_REFINER_ID", ""))
    except ValueError:
        print("COMPUTE_JOB_ID or DATA_REFINER_ID is not an integer")
        sys.exit(1)
    if not os.getenv("QUERY") or not os.getenv("QUERY_SIGNATURE"):
        print("production mode needs QUERY and QUERY_SIGNATURE (and a query engine)")
        sys.exit(2)
conn = sqlite3.connect(inp / "query_results.db")
conn.row_factory = sqlite3.Row
rows = [dict(r) for r in conn.execute("SELECT * FROM results")]
out.mkdir(parents=True, exist_ok=True)
(out / "stats.json").write_text(json.dumps({"rows": len(rows), "columns": sorted(rows[0])}))
'''

# $1: what each layout's job reads and writes, in its platform's places only.
DECENTRIQ = """set -e
wc -l < /input/results/dataset.csv | tr -d ' ' > /output/lines.txt
head -n 1 /input/results/dataset.csv > /output/first.txt
echo "$INPUT_PATH $OUTPUT_PATH $C2D_LAYOUT" > /output/env.txt
"""
OCEAN = """set -e
for did in $(echo "$DIDS" | tr -d '[]" ' | tr ',' ' '); do
  wc -l < "/data/inputs/$did/0" | tr -d ' ' > /data/outputs/lines.txt
  head -n 1 "/data/inputs/$did/0" > /data/outputs/header.txt
  cat "/data/ddos/$did" > /data/outputs/ddo.json
done
cat /data/inputs/algoCustomData.json > /data/outputs/custom.json
wc -c < /data/inputs/query_results.db | tr -d ' ' > /data/outputs/db_size.txt
"""
PARCEL = """set -e
mkdir -p /parcel/data/out/report
wc -l < /parcel/data/in/results.csv | tr -d ' ' > /parcel/data/out/report/lines.txt
head -n 1 /parcel/data/in/results.csv > /parcel/data/out/report/header.txt
wc -c < /parcel/data/in/query_results.db | tr -d ' ' > /parcel/data/out/db_size.txt
"""


def _run(engine, world, image: tuple[str, str], params: list | None = None) -> dict:
    instruction_id = world.publish(*image)
    job = engine.builder.submit(instruction_id, world.refiner_id, SIMPLE_QUERY, params)
    return engine.builder.wait(job["id"], poll_s=0.1, timeout_s=WAIT_S)


def _outputs(engine, job: dict, dest: Path) -> dict[str, str]:
    assert job["status"] == "SUCCEEDED", job
    paths = engine.builder.download(job["id"], dest)
    return {p.relative_to(dest).as_posix(): p.read_text() for p in paths}


def _rows(world) -> int:
    with sqlite3.connect(f"file:{world.data_db}?mode=ro", uri=True) as conn:
        return len(conn.execute(SIMPLE_QUERY).fetchall())


def test_a_job_shaped_like_vanas_template_runs_with_its_defaults(
    engine, world, labelled_image, python_base, tmp_path: Path
) -> None:
    image = labelled_image("vana-shaped", VANA_SHAPED, base=PYTHON_BASE,
                           command='["python", "/job.sh"]')
    outputs = _outputs(engine, _run(engine, world, image), tmp_path)
    assert json.loads(outputs["stats.json"]) == {"rows": _rows(world), "columns": ["duration_s", "kind"]}


def test_decentriq_layout_reads_a_headerless_csv(engine, world, labelled_image, tmp_path) -> None:
    outputs = _outputs(engine, _run(engine, world, labelled_image("decentriq", DECENTRIQ, "decentriq")),
                       tmp_path)
    assert int(outputs["lines.txt"]) == _rows(world)  # no header row
    assert not outputs["first.txt"].startswith("kind")
    assert outputs["env.txt"].split() == ["/input", "/output", "decentriq"]


def test_ocean_layout_reads_its_did_the_params_and_the_ddo(engine, world, labelled_image, tmp_path) -> None:
    job = _run(engine, world, labelled_image("ocean", OCEAN, "ocean"), params={"threshold": 3})
    outputs = _outputs(engine, job, tmp_path)
    assert int(outputs["lines.txt"]) == _rows(world) + 1  # a header row
    assert outputs["header.txt"].strip() == "kind,duration_s"
    assert json.loads(outputs["custom.json"]) == {"threshold": 3}
    assert json.loads(outputs["ddo.json"])["id"] == "results"
    assert int(outputs["db_size.txt"]) > 0


def test_parcel_layout_reads_and_writes_under_parcel_data(engine, world, labelled_image, tmp_path) -> None:
    outputs = _outputs(engine, _run(engine, world, labelled_image("parcel", PARCEL, "parcel")), tmp_path)
    assert sorted(outputs) == ["db_size.txt", "report/header.txt", "report/lines.txt"]
    assert int(outputs["report/lines.txt"]) == _rows(world) + 1
    assert outputs["report/header.txt"].strip() == "kind,duration_s"


def test_an_unknown_layout_is_image_invalid_before_the_query(engine, world, labelled_image) -> None:
    job = _run(engine, world, labelled_image("unknown", "true\n", "bacalhau"))
    assert job["status"] == "FAILED", job
    assert job["failure"]["code"] == "IMAGE_INVALID"
    assert "bacalhau" in job["failure"]["message"] and "org.computetodata.layout" in job["failure"]["message"]
    assert "QUERYING" not in step_statuses(job)
