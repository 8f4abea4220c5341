"""Generate the demo's refined dataset: a realistic, deterministic SQLite file.

Three tables a DLP would refine from user contributions (users, activities,
locales) and a view, thousands of rows, same bytes on every run for a seed.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

__all__ = ["SCHEMA", "make_sample_db"]

SCHEMA = """
CREATE TABLE locales (code TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    locale TEXT NOT NULL REFERENCES locales(code),
    created_at TEXT NOT NULL
);
CREATE TABLE activities (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL,
    duration_s INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE VIEW user_activity AS
    SELECT u.id AS user_id, u.locale, a.kind, a.duration_s
    FROM users u JOIN activities a ON a.user_id = u.id;
"""

LOCALES = [
    ("en_US", "English (US)"), ("en_GB", "English (UK)"), ("de_DE", "German"),
    ("fr_FR", "French"), ("es_ES", "Spanish"), ("pt_BR", "Portuguese (Brazil)"),
    ("ja_JP", "Japanese"), ("ko_KR", "Korean"), ("hi_IN", "Hindi"), ("sw_KE", "Swahili"),
]
KINDS = ["run", "walk", "cycle", "swim", "yoga", "climb"]
FIRST = ["Ada", "Alan", "Grace", "Linus", "Edsger", "Barbara", "Ken", "Radia", "Tim", "Hedy"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Perlman"]


def make_sample_db(path: Path, *, users: int = 2_000, activities: int = 10_000, seed: int = 7) -> Path:
    """Write a fresh sample refiner database at `path` and return it."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO locales VALUES (?, ?)", LOCALES)
        weights = [30, 8, 12, 10, 9, 11, 7, 5, 6, 2]
        db.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
            (
                (
                    i,
                    f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    f"user{i}@example.org",
                    rng.choices(LOCALES, weights)[0][0],
                    f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}",
                )
                for i in range(1, users + 1)
            ),
        )
        db.executemany(
            "INSERT INTO activities VALUES (?, ?, ?, ?, ?)",
            (
                (
                    i,
                    rng.randint(1, users),
                    rng.choice(KINDS),
                    rng.randint(60, 7_200),
                    f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}",
                )
                for i in range(1, activities + 1)
            ),
        )
        db.commit()
    finally:
        db.close()
    return path
