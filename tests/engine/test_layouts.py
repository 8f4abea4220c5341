"""engine/layouts.py on its own: the label, the job's environment, the derived input files."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path

import pytest

from engine.errors import ImageFailure, QueryFailure, RunFailure
from engine.layouts import (
    LAYOUT_LABEL,
    LAYOUTS,
    job_env,
    layout_of,
    prepare_dirs,
    stage_inputs,
    volume_covers,
)


def _attrs(layout: str | None = None, volumes: tuple[str, ...] = ()) -> dict:
    labels = {LAYOUT_LABEL: layout} if layout is not None else {"other": "x"}
    return {"Config": {"Labels": labels, "Volumes": {key: {} for key in volumes}}}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "input"
    folder.mkdir()
    with sqlite3.connect(folder / "query_results.db") as conn:
        conn.execute("CREATE TABLE results (kind TEXT, n INTEGER, raw BLOB)")
        conn.executemany("INSERT INTO results VALUES (?, ?, ?)",
                         [("run", 1, b"\x00\xff"), ("swim, cold", None, None), ('say "hi"', 3, b"")])
    return folder


def test_no_label_is_vana_and_a_known_label_is_its_layout() -> None:
    assert layout_of({"Config": {"Labels": None}}).name == "vana"
    assert layout_of(_attrs()).name == "vana"
    assert {name: layout_of(_attrs(name)).output_path for name in LAYOUTS} == {
        "vana": "/mnt/output", "decentriq": "/output", "ocean": "/data/outputs",
        "parcel": "/parcel/data/out",
    }


def test_an_unknown_label_is_image_invalid_naming_the_known_ones() -> None:
    with pytest.raises(ImageFailure) as err:
        layout_of(_attrs("x" * 500))
    assert err.value.code == "IMAGE_INVALID"
    assert LAYOUT_LABEL in err.value.message and "decentriq, ocean, parcel, vana" in err.value.message
    assert len(err.value.message) < 250  # the builder's text is bounded


def test_compute_job_id_is_the_on_chain_job_when_there_is_one() -> None:
    vana = LAYOUTS["vana"]
    assert job_env(vana, "j-1", 42, 7)["COMPUTE_JOB_ID"] == "42"
    free = job_env(vana, "j-1", 0, 7)
    assert free["COMPUTE_JOB_ID"] == free["C2D_JOB_ID"] == "j-1"
    assert free["DEV_MODE"] == "1" and free["C2D_JOB_ENV_VERSION"] == "1"
    ocean = job_env(LAYOUTS["ocean"], "j-1", 0, 7)
    assert (ocean["INPUT_PATH"], ocean["OUTPUT_PATH"], json.loads(ocean["DIDS"])) == (
        "/data/inputs", "/data/outputs", ["results"])


def test_every_layout_gets_the_same_rows(root: Path) -> None:
    for layout in LAYOUTS.values():
        prepare_dirs(layout, root)
        stage_inputs(layout, root, {"k": [1]}, max_bytes=1024)
    bare = list(csv.reader((root / "decentriq/results/dataset.csv").open(newline="")))
    assert bare == [["run", "1", "00ff"], ["swim, cold", "", ""], ['say "hi"', "3", ""]]
    for path in ("ocean/inputs/results/0", "parcel/results.csv"):
        assert list(csv.reader((root / path).open(newline=""))) == [["kind", "n", "raw"], *bare]
    for path in ("ocean/inputs/query_results.db", "parcel/query_results.db"):
        assert (root / path).stat().st_ino == (root / "query_results.db").stat().st_ino  # no copy
    assert json.loads((root / "ocean/inputs/algoCustomData.json").read_text()) == {"k": [1]}
    assert json.loads((root / "ocean/ddos/results").read_text())["id"] == "results"


def test_a_csv_over_the_result_cap_is_result_too_large(root: Path) -> None:
    layout = LAYOUTS["parcel"]
    prepare_dirs(layout, root)
    with pytest.raises(QueryFailure) as err:
        stage_inputs(layout, root, None, max_bytes=20)
    assert err.value.code == "RESULT_TOO_LARGE"
    assert "swim" not in err.value.message


@pytest.mark.parametrize(("layout", "volume"), [
    ("ocean", "/data"), ("ocean", "/data/ddos"), ("parcel", "/parcel"), ("decentriq", "/input"),
])
def test_a_volume_over_a_layouts_mounts_is_refused(layout: str, volume: str) -> None:
    with pytest.raises(RunFailure) as err:
        volume_covers(_attrs(layout, (volume,)), LAYOUTS[layout])
    assert err.value.code == "IMAGE_INVALID" and volume in err.value.message


def test_a_layouts_own_output_volume_needs_no_cover() -> None:
    covers = volume_covers(_attrs("ocean", ("/data/outputs", "/mnt/input", "/vol")), LAYOUTS["ocean"])
    assert sorted(covers) == ["/mnt/input", "/vol"]  # /mnt/input is nothing to an ocean job


def test_a_full_engine_disk_while_staging_is_storage_full(tmp_path: Path) -> None:
    from engine.errors import StorageFull
    from engine.scratch import OutputFs

    small = OutputFs.create(tmp_path / "small", "loop", 512 * 1024, 64)  # a real, tiny filesystem
    try:
        stat = os.statvfs(small.path)
        rows = int(0.6 * stat.f_bavail * stat.f_frsize / 1000)  # the db fits, db + CSV do not
        with sqlite3.connect(small.path / "query_results.db") as conn:
            conn.execute("CREATE TABLE results (t TEXT)")
            conn.executemany("INSERT INTO results VALUES (?)", [("y" * 1000,)] * rows)
        conn.close()
        layout = LAYOUTS["decentriq"]
        prepare_dirs(layout, small.path)
        with pytest.raises(StorageFull) as err:
            stage_inputs(layout, small.path, None, max_bytes=1 << 30)
        assert err.value.code == "STORAGE_FULL" and "y" * 10 not in err.value.message
    finally:
        small.release()
