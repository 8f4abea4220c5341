"""registry_client/cli_audit.py's summary: warnings first, and image text cannot drive the terminal."""

from __future__ import annotations

from registry_client.cli_audit import format_report

ESC = "\x1b]0;owned\x07\x1b[2J"


def _report() -> dict:
    return {
        "instruction_id": 7, "sha256": "0x" + "ab" * 32, "url": "https://example.org/x.tar.gz" + ESC,
        "archive_bytes": 2048,
        "image": {"entrypoint": ["python3", "/app/worker.py" + ESC], "cmd": None, "user": "", "working_dir": "/app",
                  "env_names": ["PATH"], "labels": {"evil" + ESC: "v" + ESC}, "exposed_ports": [], "volumes": [],
                  "layout": "vana", "oci": {"source": "https://s" + ESC, "revision": None, "description": None}},
        "layers": [{"digest": "sha256:aa", "size": 4096, "created_by": "RUN x" + ESC, "empty_layer": False}],
        "files": {"count": 1, "total_bytes": 10, "largest": [{"path": "/a" + ESC, "size": 10}],
                  "executables": {"count": 0, "sample": []}, "setuid": ["/s" + ESC], "setgid": []},
        "sources": [{"path": "/app/worker.py", "size": 12, "text": "print(1)\n" + ESC, "truncated": False}],
        "packages": {"debian": [], "python": [{"name": "req" + ESC, "version": "1"}]},
        "warnings": [{"code": "RUNS_AS_ROOT", "message": "runs as root"}],
        "audited_at": 0.0,
    }


def test_warnings_come_first_and_the_summary_names_the_essentials() -> None:
    lines = format_report(_report()).splitlines()
    assert lines[0].startswith("instruction 7  sha256 0xabab") and "2.0 KiB archive" in lines[0]
    assert lines[3] == "warnings:" and lines[4] == "  ! RUNS_AS_ROOT: runs as root"
    text = "\n".join(lines)
    assert "user:        (root)" in text and "/app/worker.py (12 B)" in text


def test_no_control_character_from_the_image_reaches_the_terminal() -> None:
    for show in (False, True):
        text = format_report(_report(), show_sources=show)
        assert "\x1b" not in text and "\x07" not in text
    assert "    | print(1)" in format_report(_report(), show_sources=True)
