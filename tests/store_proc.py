"""A second process on the same job store, for tests/engine/test_store_processes.py.

``python -m tests.store_proc STORE COMMAND ARGS...`` where STORE is a
postgresql:// URL or a SQLite file path; it prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time


def open_store(spec: str):
    if spec.startswith("postgresql://"):
        from engine.store_postgres import PostgresJobStore

        return PostgresJobStore(spec)
    from engine.store import JobStore

    return JobStore(spec)


def _at(start: str) -> None:
    """Sleep until a shared wall-clock moment, so several processes act together."""
    time.sleep(max(0.0, float(start) - time.time()))


def main(spec: str, command: str, *args: str) -> object:
    store = open_store(spec)
    try:
        if command == "claim-all":  # claim until nothing is left; the ids taken
            _at(args[0])
            taken = []
            while (job := store.claim_next(args[1], lease_s=60)) is not None:
                taken.append(job.id)
            return taken
        if command == "create":  # start, owner, nonce, digest
            _at(args[0])
            job, created = store.create_or_get(args[1], int(args[2]), args[3], instruction_id=1, refiner_id=2,
                                               query="SELECT 1", params=None, deadline=2_000_000_000)
            return [job.id, created]
        if command == "transition":  # delay, job id, from, to
            time.sleep(float(args[0]))
            return store.transition(args[1], args[2], args[3]).status
        if command == "request-cancel":
            return store.request_cancel(args[0]).cancel_requested
        if command == "hold":  # claim every job, renew only the first, for `seconds`
            held = [job.id for job in iter(lambda: store.claim_next("holder", lease_s=0.5), None)]
            print(json.dumps(held), flush=True)
            end = time.monotonic() + float(args[0])
            while time.monotonic() < end:
                store.renew_leases("holder", held[:1], lease_s=0.5)
                time.sleep(0.1)
            return held
        raise SystemExit(f"unknown command {command}")
    finally:
        store.close()


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])), flush=True)
