"""The shipped seccomp profile (engine/seccomp/job.json) is an allowlist that denies io_uring."""

from __future__ import annotations

import json

from engine.runner import seccomp_profile
from tools.make_seccomp_profile import render


def _rules() -> dict:
    profile = json.loads(seccomp_profile())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO", "allowlist: unknown syscalls are refused"
    return profile


def test_io_uring_and_namespace_calls_are_never_allowed() -> None:
    profile = _rules()
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               and not rule.get("args") for n in rule["names"]}
    denied = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO"
              for n in rule["names"]}
    must_deny = {"io_uring_setup", "io_uring_enter", "io_uring_register", "unshare", "setns",
                 "mount", "bpf", "keyctl", "ptrace", "userfaultfd", "perf_event_open", "clone3"}
    assert must_deny <= denied
    assert not must_deny & allowed
    assert {"read", "write", "openat", "mmap", "futex", "execve"} <= allowed


def test_the_shipped_profile_is_what_the_tool_writes() -> None:
    """Same names in, same file out: nobody edited the JSON by hand (no kernel header needed)."""
    names = sorted({n for rule in _rules()["syscalls"] for n in rule["names"]})
    assert render(names) == seccomp_profile(), "run: python tools/make_seccomp_profile.py"
