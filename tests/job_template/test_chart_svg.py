"""The template's chart.svg is readable without stats.json: title, axes, category names and values.

The worker runs on real SQLite files with the host Python; the SVG is parsed
with xml.etree (so a stray `<`, `&` or control character in a label would fail
it) and its text is compared with what stats.json says the chart shows.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.job_template.test_worker import TEMPLATE, make_db, worker

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: Path, cls: str) -> list[str]:
    root = ET.parse(svg).getroot()
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def _run(db: Path, out: Path) -> dict:
    assert worker.run(str(db), str(out)) == worker.EXIT_OK
    return json.loads((out / "stats.json").read_text())


def test_svg_has_title_axes_labels_and_values(tmp_path: Path) -> None:
    db = make_db(tmp_path / "in" / "query_results.db", (TEMPLATE / "dummy_data.sql").read_text())
    stats = _run(db, tmp_path / "out")
    svg = tmp_path / "out" / "chart.svg"
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title").text == "Rows per locale"
    assert _texts(svg, "title") == ["Rows per locale"]
    assert _texts(svg, "axis-x") == ["locale"] and _texts(svg, "axis-y") == ["rows"]
    bars = stats["chart"]["bars"]
    assert _texts(svg, "label") == [b["label"] for b in bars]
    assert _texts(svg, "value") == [str(b["value"]) for b in bars]
    assert len([r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]) == len(bars)
    ticks = [float(t) for t in _texts(svg, "tick")]
    assert ticks[0] == 0 and max(b["value"] for b in bars) <= ticks[-1] <= 2 * max(b["value"] for b in bars)


def test_histogram_and_empty_charts_are_named(tmp_path: Path) -> None:
    db = make_db(tmp_path / "h" / "query_results.db", """
        CREATE TABLE results (id INTEGER, score REAL, note TEXT);
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99)
        INSERT INTO results SELECT i, i * 1.0, 'note ' || i FROM n;
    """)
    _run(db, tmp_path / "h-out")
    svg = tmp_path / "h-out" / "chart.svg"
    assert _texts(svg, "title") == ["Histogram of score"] and _texts(svg, "axis-x") == ["score"]
    assert _texts(svg, "value") == ["10"] * 10
    empty = make_db(tmp_path / "e" / "query_results.db", "CREATE TABLE results (locale TEXT);")
    _run(empty, tmp_path / "e-out")
    root = ET.parse(tmp_path / "e-out" / "chart.svg").getroot()
    assert "no data to chart" in [t.text for t in root.iter(f"{SVG}text")]


def test_awkward_labels_stay_valid_xml(tmp_path: Path) -> None:
    db = make_db(tmp_path / "in" / "query_results.db", """
        CREATE TABLE results (user_id INTEGER, locale TEXT);
        INSERT INTO results VALUES (1, '<b>&"x"</b>'), (2, '<b>&"x"</b>'), (3, 'tab' || char(1) || 'bell'),
                                   (4, 'a very long locale name that goes on and on and on');
    """)
    _run(db, tmp_path / "out")
    labels = _texts(tmp_path / "out" / "chart.svg", "label")
    assert labels[0] == '<b>&"x"</b>'  # escaped in the file, the same text once parsed
    assert "tab?bell" in labels and all(len(label) <= 40 for label in labels)


def test_png_without_matplotlib_is_the_plain_chart(tmp_path: Path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert worker.render_png_with_matplotlib("t", "x", "y", [{"label": "a", "value": 1}]) is None
    db = make_db(tmp_path / "in" / "query_results.db", (TEMPLATE / "dummy_data.sql").read_text())
    _run(db, tmp_path / "out")
    assert (tmp_path / "out" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chart.png", "chart.svg", "stats.json"]


def test_png_with_matplotlib_where_installed() -> None:
    pytest.importorskip("matplotlib")
    png = worker.render_png_with_matplotlib("Rows per locale", "locale", "rows", [{"label": "en", "value": 3}])
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_example_is_the_worker_output(tmp_path: Path) -> None:
    """job_template/docs/chart.svg (shown in the template README) is what the worker draws for dummy_data.sql."""
    db = make_db(tmp_path / "in" / "query_results.db", (TEMPLATE / "dummy_data.sql").read_text())
    _run(db, tmp_path / "out")
    assert (TEMPLATE / "docs" / "chart.svg").read_text() == (tmp_path / "out" / "chart.svg").read_text()
    assert "](docs/chart.svg)" in (TEMPLATE / "README.md").read_text()
