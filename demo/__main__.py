"""`python -m demo run|up|down`: the one-command demo and a stack left running.

run   fresh anvil chain, the whole story (demo/story.py), stats.json printed, all stopped
up    the same chain, contracts, data, approved instruction and engine, left running;
      prints the URLs, the manifest and the dev wallets (state in .demo/stack.json)
down  stops what `up` started

`run` and `up` refuse while another demo command or a stack left by `up` uses
the work dir (demo/guard.py), so neither wipes `.demo/` under a running stack.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from demo.guard import DemoBusy, exclusive
from demo.story import ROOT, StoryConfig, clean_work_dir, run_story
from registry_client.devchain import ANVIL_DEV_KEYS, start_anvil

WORK = Path(os.environ.get("DEMO_DIR", ROOT / ".demo"))


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


def cmd_run() -> int:
    with exclusive(WORK):
        return _run()


def _run() -> int:
    started = time.monotonic()
    clean_work_dir(WORK)
    chain = start_anvil()
    say(f"local anvil chain at {chain.url} (chain id 31337)")
    try:
        result = run_story(StoryConfig(rpc_url=chain.url, work_dir=WORK, say=say))
    finally:
        chain.stop()
        say("anvil stopped")
    say("stats.json from the job:")
    print(json.dumps(result.stats, indent=2))
    say(f"demo finished in {time.monotonic() - started:.1f} s "
        f"(image step {result.timings['image']:.1f} s, job {result.timings['job']:.1f} s)")
    return 0


def cmd_up() -> int:
    from demo.stack import start_stack

    with exclusive(WORK):
        return start_stack(WORK, say)


def cmd_down() -> int:
    state_file = WORK / "stack.json"
    if not state_file.exists():
        say("nothing running (no .demo/stack.json)")
        return 0
    state = json.loads(state_file.read_text())
    for name, pid in state.get("pids", {}).items():
        try:
            os.kill(pid, signal.SIGTERM)
            say(f"stopped {name} (pid {pid})")
        except ProcessLookupError:
            say(f"{name} (pid {pid}) was not running")
    state_file.unlink()
    return 0


def main(argv: list[str]) -> int:
    commands = {"run": cmd_run, "up": cmd_up, "down": cmd_down}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return commands[argv[0]]()
    except KeyboardInterrupt:
        return 130
    except DemoBusy as exc:
        print(f"demo refused: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    _ = ANVIL_DEV_KEYS  # the dev keys are public anvil keys; see registry_client.devchain
    sys.exit(main(sys.argv[1:]))
