"""Summarise the engine's query result: `stats.json` plus a bar chart (SVG and PNG).

This is the job a builder copies and edits. It reads the single table
`results` of `$INPUT_PATH/query_results.db` (written by the engine from the
permissioned SQL), and writes to `$OUTPUT_PATH`:

- `stats.json` — row count, per-column profile, min/max/mean/sum of numeric
  columns, and a group-by (per `locale` when that column exists, else the
  first low-cardinality text column) with rows, distinct users and per-group
  means/sums;
- `chart.svg` — one bar per group (rows per group), or a 10-bin histogram of
  the first numeric column when there is nothing to group by: a title, both
  axes named, each bar's category and value written on it (standard library);
- `chart.png` — the same chart drawn by matplotlib where the image has it
  (add it to requirements.txt), else bars and axes only (zlib + struct). The
  bars are also listed, in order, under `chart.bars` in `stats.json`.

Pure standard library unless you add packages: the container has no network
and the base image may be minimal. Works as any uid: it writes only under `$OUTPUT_PATH`.

Logs carry counts only, never data values: the operator may hand logs out.

Exit codes:
    0  outputs written (an empty `results` table is fine: `row_count` 0)
    2  bad input: no database file, not a SQLite database, or no `results` table
    3  any other error (e.g. the output folder is not writable)
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_ERROR",
    "EXIT_OK",
    "BadInput",
    "ColumnProfile",
    "compute_stats",
    "main",
    "png_bytes",
    "render_bar_chart",
    "render_svg_chart",
]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_ERROR = 3

DB_NAME = "query_results.db"
TABLE = "results"
GROUP_PREFERRED = "locale"
MAX_GROUP_DISTINCT = 50  # a text column with more distinct values is not a category
MAX_GROUPS = 1000  # groups listed in stats.json
MAX_BARS = 20  # bars drawn in the chart
HIST_BINS = 10
NUMERIC_TYPES = ("integer", "real")


class BadInput(Exception):
    """The input is missing or is not what the engine writes (exit code 2)."""


@dataclass(frozen=True)
class ColumnProfile:
    """What one column of `results` holds: its kind and how many values."""

    name: str
    declared_type: str
    kind: str  # numeric | identifier | text | mixed | empty
    non_null: int
    distinct: int

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "declared_type": self.declared_type,
            "kind": self.kind,
            "non_null": self.non_null,
            "distinct": self.distinct,
        }


def log(message: str) -> None:
    """One progress line; callers pass counts and file names only."""
    print(f"worker: {message}", file=sys.stderr, flush=True)


def quote(name: str) -> str:
    """SQL identifier quoting (column names come from the data's schema)."""
    return '"' + name.replace('"', '""') + '"'


def json_value(value: Any) -> Any:
    """A SQLite value as JSON: bytes as hex, non-finite floats as null."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- input -----------------------------------------------------------------


def locate_db(input_path: str) -> Path:
    """`$INPUT_PATH/query_results.db`, or `$INPUT_PATH` itself if it is a file."""
    path = Path(input_path)
    db = path if path.is_file() else path / DB_NAME
    if not db.is_file():
        raise BadInput(f"no database at {db}")
    return db


def open_results(db: Path) -> sqlite3.Connection:
    """Open read-only (the input mount is read-only) and check `results` exists."""
    # immutable=1: no locks and no journal files, so a read-only mount works.
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (TABLE,)
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise BadInput(f"{db.name} is not a readable SQLite database") from exc
    if row is None:
        conn.close()
        raise BadInput(f"{db.name} has no table named {TABLE!r}")
    return conn


# --- statistics --------------------------------------------------------------


def profile_columns(conn: sqlite3.Connection) -> list[ColumnProfile]:
    """Classify each column of `results` by the values it actually holds."""
    profiles = []
    for _cid, name, declared, *_rest in conn.execute(f"PRAGMA table_info({quote(TABLE)})"):
        q = quote(name)
        non_null, numeric, text, distinct = conn.execute(
            f"SELECT COUNT({q}), COALESCE(SUM(typeof({q}) IN {NUMERIC_TYPES}), 0), "
            f"COALESCE(SUM(typeof({q}) = 'text'), 0), COUNT(DISTINCT {q}) FROM {quote(TABLE)}"
        ).fetchone()
        profiles.append(
            ColumnProfile(name, declared or "", _kind(name, non_null, numeric, text), non_null, distinct)
        )
    return profiles


def _kind(name: str, non_null: int, numeric: int, text: int) -> str:
    if non_null == 0:
        return "empty"
    if numeric == non_null:
        lowered = name.lower()
        # Ids are numbers, but their mean means nothing.
        return "identifier" if lowered == "id" or lowered.endswith("_id") else "numeric"
    if text == non_null:
        return "text"
    return "mixed"


def numeric_summary(conn: sqlite3.Connection, column: str) -> dict[str, Any]:
    """min, max, mean and sum over the numeric values of one column."""
    q = quote(column)
    count, lo, hi, mean, total = conn.execute(
        f"SELECT COUNT({q}), MIN({q}), MAX({q}), AVG({q}), TOTAL({q}) FROM {quote(TABLE)} "
        f"WHERE typeof({q}) IN {NUMERIC_TYPES}"
    ).fetchone()
    return {
        "count": count,
        "min": json_value(lo),
        "max": json_value(hi),
        "mean": json_value(mean),
        "sum": json_value(total),
    }


def choose_group_column(profiles: list[ColumnProfile], row_count: int) -> str | None:
    """`locale` if present, else the first text column that looks like a category."""
    for p in profiles:
        if p.name.lower() == GROUP_PREFERRED and p.non_null > 0:
            return p.name
    for p in profiles:
        if p.kind == "text" and 1 <= p.distinct <= MAX_GROUP_DISTINCT and p.distinct < row_count:
            return p.name
    return None


def user_column(profiles: list[ColumnProfile]) -> str | None:
    """The column that identifies a user (`user_id`, else `id`), if any."""
    names = {p.name.lower(): p.name for p in profiles}
    return names.get("user_id") or names.get("id")


def group_stats(
    conn: sqlite3.Connection, group: str, numeric: list[str], users: str | None
) -> dict[str, Any]:
    """Rows, distinct users and per-group mean/sum of each numeric column."""
    g = quote(group)
    selects = [f"{g}", "COUNT(*)"]
    if users:
        selects.append(f"COUNT(DISTINCT {quote(users)})")
    for col in numeric:
        selects += [f"AVG({quote(col)})", f"TOTAL({quote(col)})"]
    total_groups = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {quote(TABLE)} GROUP BY {g})"
    ).fetchone()[0]
    rows = conn.execute(
        f"SELECT {', '.join(selects)} FROM {quote(TABLE)} GROUP BY {g} "
        f"ORDER BY COUNT(*) DESC, {g} LIMIT {MAX_GROUPS}"
    ).fetchall()
    groups = []
    for row in rows:
        entry: dict[str, Any] = {"value": json_value(row[0]), "rows": row[1]}
        rest = list(row[2:])
        if users:
            entry["distinct_users"] = rest.pop(0)
        entry["numeric"] = {
            col: {"mean": json_value(rest[2 * i]), "sum": json_value(rest[2 * i + 1])}
            for i, col in enumerate(numeric)
        }
        groups.append(entry)
    return {
        "column": group,
        "user_column": users,
        "group_count": total_groups,
        "truncated": total_groups > len(groups),
        "groups": groups,
    }


def histogram(conn: sqlite3.Connection, column: str, lo: float, hi: float) -> list[dict[str, Any]]:
    """HIST_BINS equal-width bins over [lo, hi] of one numeric column."""
    q = quote(column)
    width = (hi - lo) / HIST_BINS
    counts = dict(
        conn.execute(
            f"SELECT MIN(CAST(({q} - ?) / ? AS INTEGER), {HIST_BINS - 1}) AS b, COUNT(*) "
            f"FROM {quote(TABLE)} WHERE typeof({q}) IN {NUMERIC_TYPES} GROUP BY b",
            (lo, width),
        ).fetchall()
    )
    return [
        {"label": f"[{lo + i * width:.6g}, {lo + (i + 1) * width:.6g})", "value": counts.get(i, 0)}
        for i in range(HIST_BINS)
    ]


def chart_bars(conn: sqlite3.Connection, stats: dict[str, Any]) -> dict[str, Any]:
    """What the chart shows: rows per group, else a histogram, else nothing."""
    grouped = stats["group_by"]
    if grouped:
        bars = [{"label": g["value"], "value": g["rows"]} for g in grouped["groups"][:MAX_BARS]]
        return {"file": "chart.png", "metric": f"rows per {grouped['column']}", "bars": bars}
    for column, summary in stats["numeric"].items():
        lo, hi = summary["min"], summary["max"]
        if lo is not None and hi is not None and hi > lo:
            return {
                "file": "chart.png",
                "metric": f"histogram of {column}",
                "bars": histogram(conn, column, float(lo), float(hi)),
            }
    return {"file": "chart.png", "metric": "nothing to chart", "bars": []}


def compute_stats(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything `stats.json` holds, from an open `results` database."""
    row_count = conn.execute(f"SELECT COUNT(*) FROM {quote(TABLE)}").fetchone()[0]
    profiles = profile_columns(conn)
    numeric = [p.name for p in profiles if p.kind == "numeric"]
    group = choose_group_column(profiles, row_count) if row_count else None
    stats: dict[str, Any] = {
        "table": TABLE,
        "row_count": row_count,
        "column_count": len(profiles),
        "columns": [p.as_json() for p in profiles],
        "numeric": {col: numeric_summary(conn, col) for col in numeric},
        "group_by": group_stats(conn, group, numeric, user_column(profiles)) if group else None,
    }
    stats["chart"] = chart_bars(conn, stats)
    return stats


# --- PNG (zlib + struct, no imaging library) ----------------------------------

WIDTH, HEIGHT = 640, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 40, 20, 20, 30
BACKGROUND = (255, 255, 255)
AXIS = (64, 64, 64)
GRID = (225, 225, 225)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def png_bytes(width: int, height: int, rgb: bytes | bytearray) -> bytes:
    """Encode 8-bit RGB pixels (row-major, 3 bytes a pixel) as a PNG file."""
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError("pixel buffer does not match width x height x 3")
    raw = b"".join(b"\x00" + bytes(rgb[y * stride:(y + 1) * stride]) for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


class Canvas:
    """An RGB pixel buffer that can fill rectangles."""

    def __init__(self, width: int, height: int, color: tuple[int, int, int]):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(color) * (width * height))

    def fill(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1 or y0 >= y1:
            return
        span = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start:start + len(span)] = span


def render_bar_chart(values: list[float], width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A PNG bar chart of non-negative values, left to right; axes only when empty."""
    canvas = Canvas(width, height, BACKGROUND)
    left, right = MARGIN_LEFT, width - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    plot_h = bottom - top
    for quarter in range(1, 5):  # grid lines at 25/50/75/100 % of the tallest bar
        y = bottom - plot_h * quarter // 4
        canvas.fill(left, y, right, y + 1, GRID)
    peak = max((v for v in values if v > 0), default=0)
    if values and peak > 0:
        slot = (right - left) / len(values)
        for i, value in enumerate(values):
            bar_h = round(plot_h * max(value, 0) / peak)
            x0 = left + round(i * slot + slot * 0.15)
            x1 = max(x0 + 1, left + round((i + 1) * slot - slot * 0.15))
            canvas.fill(x0, bottom - bar_h, x1, bottom, PALETTE[i % len(PALETTE)])
    canvas.fill(left - 2, top, left, bottom + 2, AXIS)
    canvas.fill(left - 2, bottom, right, bottom + 2, AXIS)
    return png_bytes(width, height, canvas.pixels)


# --- SVG (text, standard library only): the chart a person reads ------------------

SVG_W, SVG_H = 720, 420
SVG_LEFT, SVG_RIGHT, SVG_TOP, SVG_BOTTOM = 70, 20, 50, 90


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _xml_text(body: str, limit: int = 40) -> str:
    """Escaped, without the control characters XML 1.0 forbids, at most `limit` characters."""
    clean = "".join(c if c >= " " or c in "\t" else "?" for c in body)
    return escape(clean if len(clean) <= limit else clean[:limit - 1] + "\u2026")


def _text(x: float, y: float, body: str, size: int = 12, anchor: str = "middle", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f"{_xml_text(body)}</text>")


def _nice_step(peak: float) -> float:
    """A round tick step (1, 2 or 5 x 10^k) giving at most 5 steps up to `peak`."""
    if peak <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(peak / 5))
    for factor in (1, 2, 5, 10):
        if peak / (factor * magnitude) <= 5:
            return factor * magnitude
    return 10 * magnitude


def _ticks_upto(peak: float, step: float) -> list[float]:
    count = max(1, math.ceil(peak / step - 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def render_svg_chart(title: str, x_label: str, y_label: str, bars: list[dict[str, Any]]) -> str:
    """An SVG bar chart with a title, both axes named, and each bar's label and value written on it."""
    left, right, top, bottom = SVG_LEFT, SVG_W - SVG_RIGHT, SVG_TOP, SVG_H - SVG_BOTTOM
    plot_h = bottom - top
    step = _nice_step(max((float(b["value"]) for b in bars if float(b["value"]) > 0), default=0.0))
    if all(float(b["value"]).is_integer() for b in bars):
        step = max(step, 1.0)  # counts: no 0.5-row ticks
    ticks = _ticks_upto(max((float(b["value"]) for b in bars), default=0.0), step)
    peak = ticks[-1]
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" height="{SVG_H}" '
           f'viewBox="0 0 {SVG_W} {SVG_H}" font-family="sans-serif" role="img">'),
           f"<title>{_xml_text(title)}</title>",
           f'<rect width="{SVG_W}" height="{SVG_H}" fill="#ffffff"/>',
           _text(SVG_W / 2, 28, title, 18, extra=' font-weight="bold" class="title"')]
    for tick in ticks:  # round steps (1, 2 or 5 x 10^k) up to the tallest bar
        y = bottom - plot_h * tick / peak if peak else bottom
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{_hex(GRID)}"/>')
        out.append(_text(left - 6, y + 4, _num(tick), 11, "end", ' class="tick"'))
    if bars and peak > 0:
        slot = (right - left) / len(bars)
        for i, bar in enumerate(bars):
            value = float(bar["value"])
            bar_h = plot_h * max(value, 0) / peak
            x = left + i * slot + slot * 0.15
            out.append(f'<rect class="bar" x="{x:.1f}" y="{bottom - bar_h:.1f}" width="{slot * 0.7:.1f}" '
                       f'height="{bar_h:.1f}" fill="{_hex(PALETTE[i % len(PALETTE)])}"/>')
            centre = left + (i + 0.5) * slot
            out.append(_text(centre, bottom - bar_h - 4, _num(value), 11, extra=' class="value"'))
            out.append(_text(centre, bottom + 14, str(bar["label"]), 11, "end",
                             f' class="label" transform="rotate(-35 {centre:.1f} {bottom + 14:.1f})"'))
    else:
        out.append(_text((left + right) / 2, (top + bottom) / 2, "no data to chart", 14))
    out += [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{_hex(AXIS)}" stroke-width="2"/>',
            f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{_hex(AXIS)}" stroke-width="2"/>',
            _text((left + right) / 2, SVG_H - 12, x_label, 13, extra=' class="axis-x"'),
            _text(18, (top + bottom) / 2, y_label, 13,
                  extra=f' class="axis-y" transform="rotate(-90 18 {(top + bottom) / 2:.1f})"'),
            "</svg>"]
    return "\n".join(out) + "\n"


def chart_labels(chart: dict[str, Any]) -> tuple[str, str, str]:
    """(title, x axis, y axis) of the chart `chart_bars` described."""
    metric = chart["metric"]
    if metric.startswith("rows per "):
        return metric[0].upper() + metric[1:], metric.removeprefix("rows per "), "rows"
    if metric.startswith("histogram of "):
        return metric[0].upper() + metric[1:], metric.removeprefix("histogram of "), "rows"
    return "Nothing to chart", "", "rows"


def render_png_with_matplotlib(title: str, x_label: str, y_label: str,
                               bars: list[dict[str, Any]]) -> bytes | None:
    """The same chart as a PNG with text, where the image has matplotlib; None where it has not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import io

        from matplotlib import pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=100)
    try:
        labels, values = [str(b["label"]) for b in bars], [float(b["value"]) for b in bars]
        drawn = ax.bar(labels, values, color=[_hex(PALETTE[i % len(PALETTE)]) for i in range(len(bars))])
        ax.bar_label(drawn, labels=[_num(v) for v in values])
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.tick_params(axis="x", labelrotation=35)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


# --- entry point ---------------------------------------------------------------


def job_context() -> dict[str, Any]:
    """The engine's job identifiers (absent in DEV_MODE runs)."""
    refiner = os.environ.get("DATA_REFINER_ID")
    return {
        "compute_job_id": os.environ.get("COMPUTE_JOB_ID"),
        "data_refiner_id": int(refiner) if refiner and refiner.isdigit() else refiner,
    }


def write_outputs(output_dir: Path, stats: dict[str, Any]) -> None:
    """stats.json, chart.svg and chart.png, each written whole then renamed into place."""
    output_dir.mkdir(parents=True, exist_ok=True)
    bars = stats["chart"]["bars"]
    labels = chart_labels(stats["chart"])
    svg = render_svg_chart(*labels, bars).encode()
    png = render_png_with_matplotlib(*labels, bars) or render_bar_chart([bar["value"] for bar in bars])
    text = json.dumps(stats, indent=2, sort_keys=True, allow_nan=False) + "\n"
    for name, data in (("stats.json", text.encode()), ("chart.svg", svg), ("chart.png", png)):
        tmp = output_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(output_dir / name)


def run(input_path: str, output_path: str) -> int:
    """Read, summarise, write; returns the process exit code."""
    try:
        conn = open_results(locate_db(input_path))
    except BadInput as exc:
        log(f"bad input: {exc}")
        return EXIT_BAD_INPUT
    try:
        stats = compute_stats(conn)
        stats["job"] = job_context()
        write_outputs(Path(output_path), stats)
    except Exception as exc:  # noqa: BLE001 - report the kind only: messages may quote data
        log(f"failed: {type(exc).__name__}")
        return EXIT_ERROR
    finally:
        conn.close()
    grouped = stats["group_by"]
    log(
        f"{stats['row_count']} rows, {stats['column_count']} columns, "
        f"{len(stats['numeric'])} numeric, "
        f"{grouped['group_count'] if grouped else 0} groups, {len(stats['chart']['bars'])} bars"
    )
    log("wrote stats.json, chart.svg, chart.png")
    return EXIT_OK


def main() -> int:
    return run(os.environ.get("INPUT_PATH", "/mnt/input"), os.environ.get("OUTPUT_PATH", "/mnt/output"))


if __name__ == "__main__":
    sys.exit(main())
