"""Turn the engine's health probes into `/health`'s checks; a probe's failure is reported, never raised."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["run_probe", "run_probes"]


def run_probe(probe: Callable[[], Any]) -> dict[str, Any]:
    """{"ok": bool} plus the probe's int/str `value`, or the exception's type name (never its text)."""
    try:
        value = probe()
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        return {"ok": False, "error": type(exc).__name__}
    out: dict[str, Any] = {"ok": value is not False}
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        out["value"] = value
    return out


def run_probes(probes: Mapping[str, Callable[[], Any]]) -> dict[str, dict[str, Any]]:
    return {name: run_probe(probe) for name, probe in probes.items()}
