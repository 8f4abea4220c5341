"""README's stories and docs/api.md's HTTP examples, run as written against a stack started like `make up`.

One stack for the module: `python -m demo up` (what `make up` runs) in a
temporary DEMO_DIR, its printed `export` lines pasted into bash, then every
command of README's ```sh story``` blocks in order, each of which must exit 0.
docs/api.md's ```http example``` blocks are sent to the same engine and the
answers' status and problem `code` compared with the documented ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.chain]

STORY_BLOCK = re.compile(r"^```sh story\n(.*?)^```", re.DOTALL | re.MULTILINE)
HTTP_BLOCK = re.compile(r"^```http example\n(.*?)^```", re.DOTALL | re.MULTILINE)


def story_commands(readme: str) -> list[str]:
    """Each logical command (backslash continuations joined) of README's story blocks, in order."""
    commands: list[str] = []
    for block in STORY_BLOCK.findall(readme):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker_client):
    work = tmp_path_factory.mktemp("make-up")
    env = {**os.environ, "DEMO_DIR": str(work / "demo"), "PYTHONPATH": str(ROOT)}
    try:
        up = subprocess.run([sys.executable, "-m", "demo", "up"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        exports = [line.strip() for line in up.stdout.splitlines() if line.startswith("  export ")]
        yield exports, work
    finally:
        subprocess.run([sys.executable, "-m", "demo", "down"], cwd=ROOT, env=env, capture_output=True,
                       timeout=60, check=False)


def test_make_up_prints_every_export_the_stories_use(stack):
    exports, _ = stack
    named = {name for line in exports for name in re.findall(r"\b([A-Z_]+)=", line.split("#")[0])}
    used = set(re.findall(r"\$\{?([A-Z_]+)", "\n".join(story_commands((ROOT / "README.md").read_text()))))
    assert {"REGISTRY_RPC", "REGISTRY_DEPLOYMENT", "REGISTRY_ENGINE_URL", "PATH", "DEPLOYER_KEY", "OWNER_KEY",
            "BUILDER_KEY"} <= named
    assert used - {"DLP", "REF", "INS", "JOB"} <= named, "a story uses a variable `make up` does not print"


def test_readme_stories_run_as_written(stack):
    exports, work = stack
    commands = story_commands((ROOT / "README.md").read_text())
    assert any("SELECT locale FROM users" in c for c in commands) and len(commands) >= 10
    script = ["set -u", *exports]
    for i, command in enumerate(commands):
        script += [command, f'echo "::step {i} exit $?" >&2']
    story_dir = work / "reader"
    story_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "ENGINE_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=story_dir, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)
    steps = re.findall(r"^::step (\d+) exit (\d+)$", done.stderr, re.MULTILINE)
    failed = [(commands[int(i)], done.stderr) for i, code in steps if code != "0"]
    assert not failed, failed[0]
    assert len(steps) == len(commands), done.stderr
    out = story_dir / "out"
    assert sorted(p.name for p in out.iterdir()) == ["chart.png", "chart.svg", "stats.json"]
    assert json.loads((out / "stats.json").read_text())["group_by"]["column"] == "locale"
    printed = [line for line in done.stdout.splitlines() if line.startswith("/")]
    assert str((out / "stats.json").resolve()) in printed  # download printed absolute paths


def http_examples(doc: str) -> list[tuple[str, str, dict[str, str], str, int, str | None]]:
    """(method, path, headers, body, status, code) of each ```http example``` block."""
    examples = []
    for block in HTTP_BLOCK.findall(doc):
        request, _, answer = block.rpartition("\n→ ")
        head, _, body = request.partition("\n\n")
        first, *header_lines = head.splitlines()
        method, path = first.split()
        headers = dict(line.split(": ", 1) for line in header_lines)
        status, *code = answer.split()
        examples.append((method, path, headers, body.strip(), int(status), code[0] if code else None))
    return examples


def test_api_doc_examples_answer_as_documented(stack):
    exports, _ = stack
    [engine_url] = re.findall(r"REGISTRY_ENGINE_URL=(\S+)", "\n".join(exports))
    examples = http_examples((ROOT / "docs" / "api.md").read_text())
    assert len(examples) >= 5 and ("POST", "/jobs", {"Content-Type": "application/json"}, "{}", 422,
                                   "VALIDATION_ERROR") in examples
    with httpx.Client(base_url=engine_url, timeout=30) as client:
        for method, path, headers, body, status, code in examples:
            resp = client.request(method, path, headers=headers, content=body.encode() if body else None)
            got = resp.json().get("code") if resp.headers.get("content-type", "").endswith("json") else None
            assert (resp.status_code, got if code else None) == (status, code), (method, path, resp.text[:300])
