"""One error registry: every code raised in engine/ and registry_client/ is registered.

The sources are read as syntax trees (nothing is imported to find codes): a
code is any string literal given as ``code=``, set as a class's ``code``,
put under a ``"code"`` key, compared with a ``code``, or passed in the
position of a parameter named ``code``. The drawn class trees in
engine/errors.py and registry_client/errors.py must name every error class.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import engine.errors
import registry_client.errors
from engine.api.problems import API_ERROR_CODES
from engine.audit import WARNING_CODES
from engine.errors import ENGINE_CODES, FAILURE_CODES, registered_codes
from registry_client.errors import CLI_CODES, CLIENT_CODES, ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "registry_client")
_CODE = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _CODE.fullmatch(node.value):
        return node.value
    return None


def _is_code(node: ast.AST) -> bool:
    """`code`, `x.code`, `answer.get("code")`, `body["code"]`."""
    if isinstance(node, ast.Name):
        return node.id == "code"
    if isinstance(node, ast.Attribute):
        return node.attr == "code"
    if isinstance(node, ast.Subscript):
        return _literal_key(node.slice) == "code"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and _literal_key(node.args[0]) == "code"
    return False


def _literal_key(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _code_positions(trees: dict[Path, ast.Module]) -> dict[str, int]:
    """Functions (by name) with a positional parameter named `code`: name -> its index."""
    positions = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                _note_position(positions, node.name, node)
            elif isinstance(node, ast.ClassDef):  # `Cls(status, code, ...)` calls its __init__
                for init in (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"):
                    _note_position(positions, node.name, init)
    return positions


def _note_position(positions: dict[str, int], name: str, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    if "code" in names:
        offset = 1 if names[0] in ("self", "cls") else 0
        positions[name] = names.index("code") - offset


def raised_codes() -> dict[str, set[str]]:
    """Every code literal in the sources -> where (path:line)."""
    trees = {path: ast.parse(path.read_text(), str(path)) for path in _sources()}
    positions = _code_positions(trees)
    found: dict[str, set[str]] = {}

    def add(node: ast.AST | None, path: Path, line: int) -> None:
        if (code := _literal(node)) is not None:
            found.setdefault(code, set()).add(f"{path.relative_to(ROOT)}:{line}")

    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code":
                        add(kw.value, path, node.lineno)
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                index = positions.get(name or "")
                if index is not None and 0 <= index < len(node.args):
                    add(node.args[index], path, node.lineno)
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                        [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
                    if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                        add(stmt.value, path, stmt.lineno)
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if key is not None and _literal_key(key) == "code":
                        add(value, path, node.lineno)
            elif isinstance(node, ast.Compare) and len(node.comparators) == 1:
                left, right = node.left, node.comparators[0]
                if _is_code(left):
                    add(right, path, node.lineno)
                elif _is_code(right):
                    add(left, path, node.lineno)
    return found


def all_registered() -> set[str]:
    return {*registered_codes(), *ERROR_CODES, *CLIENT_CODES, *CLI_CODES, *WARNING_CODES}


def test_every_raised_code_is_registered():
    unregistered = {code: sorted(where) for code, where in raised_codes().items()
                    if code not in all_registered()}
    assert not unregistered, f"codes raised but registered nowhere: {unregistered}"


def test_the_scan_finds_codes_in_each_form():
    # Guards the scanner itself: each construction it must understand is seen.
    found = raised_codes()
    assert "engine/data.py" in " ".join(found["DATA_EXISTS"])  # code="..." keyword
    assert "STALE_STATE" in found  # a class's `code = "..."`
    assert "OUTPUT_EXISTS" in found  # {"code": "..."} and `code == "..."`
    assert "WRONG_DOMAIN" in found  # passed positionally to a `code` parameter (engine/auth.py)
    assert "engine/api/limits.py" in " ".join(found["BODY_TOO_LARGE"])  # ... of a class's __init__
    assert {"CONFIG_INVALID", "DOCKER_UNAVAILABLE", "DATA_INVALID"} <= set(found)


def test_the_engine_tables_do_not_overlap():
    tables = {"ENGINE_CODES": ENGINE_CODES, "API_ERROR_CODES": API_ERROR_CODES}
    both = set(ENGINE_CODES) & set(API_ERROR_CODES) | set(ENGINE_CODES) & set(FAILURE_CODES)
    assert not both, f"{sorted(both)} registered twice across {sorted(tables)} and FAILURE_CODES"


def _error_classes(package: str, roots: set[str]) -> set[str]:
    """Names of every class in `package` deriving (by name, transitively) from `roots`."""
    bases: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {getattr(b, "id", None) or getattr(b, "attr", "") for b in node.bases}
    errors, grew = set(roots), True
    while grew:
        new = {name for name, parents in bases.items() if parents & errors} - errors
        errors |= new
        grew = bool(new)
    return errors


@pytest.mark.parametrize("module, package, root", [
    (engine.errors, "engine", "EngineError"),
    (registry_client.errors, "registry_client", "RegistryError"),
])
def test_the_drawn_tree_names_every_error_class(module, package, root):
    tree = module.__doc__.split("Hierarchy::", 1)[1]
    drawn = set(re.findall(r"[├└]── (\w+)", tree)) | {root}
    missing = _error_classes(package, {root}) - drawn
    assert not missing, f"{module.__name__}'s docstring tree lacks {sorted(missing)}"


def test_settings_and_stale_state_are_engine_errors():
    from engine.settings import SettingsError
    from engine.store import StaleState

    assert issubclass(SettingsError, engine.errors.EngineError) and SettingsError.code == "CONFIG_INVALID"
    assert issubclass(SettingsError, ValueError)  # callers catching ValueError still do
    assert issubclass(StaleState, engine.errors.EngineError) and StaleState.code in ENGINE_CODES
