"""docs/SECURITY.md stays true: every test it cites as proof exists, and every adversarial file is cited."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "SECURITY.md").read_text()
# `tests/x.py::name` or `tests/x.py`, and a following `::other` that reuses the last path.
CITATION = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def _citations() -> list[tuple[str, str | None]]:
    cited, last = [], None
    for path, name in CITATION.findall(DOC):
        last = path or last
        if last and (path or name):
            cited.append((last, name or None))
    return cited


def test_every_cited_test_exists() -> None:
    missing = []
    for path, name in _citations():
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(async )?def {name}\(", file.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/SECURITY.md cites what does not exist: {missing}"


def test_every_adversarial_test_file_is_cited() -> None:
    cited = {path for path, _ in _citations()}
    files = {f"tests/security/{p.name}" for p in (ROOT / "tests" / "security").glob("test_*.py")}
    files.discard("tests/security/test_security_doc.py")
    assert not files - cited, f"docs/SECURITY.md does not cite {sorted(files - cited)}"
