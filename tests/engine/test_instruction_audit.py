"""engine/instruction_audit.py with a fake chain and archive cache: one flight per sha256, bounded slots."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from engine.errors import ChainCheckFailure, FetchFailure
from engine.fetch import VerifiedArchive
from engine.instruction_audit import AuditError, InstructionAuditor
from tests.engine.test_audit import _archive, _config, _layer

SHA_A, SHA_B = "a" * 64, "b" * 64


class FakeCache:
    def __init__(self, archive: Path, gate: threading.Event | None = None, error: FetchFailure | None = None):
        self.archive, self.gate, self.error = archive, gate, error
        self.calls: list[str] = []
        self.entered = threading.Event()

    def fetch(self, url: str, sha256: str) -> VerifiedArchive:
        self.calls.append(sha256)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return VerifiedArchive(self.archive, sha256, self.archive.stat().st_size)


def _chain(instruction_id: int) -> tuple[str, str]:
    if instruction_id == 404:
        raise ChainCheckFailure("no compute instruction with id 404 on chain", code="INSTRUCTION_NOT_FOUND")
    return (SHA_A if instruction_id == 1 else SHA_B), f"https://example.org/{instruction_id}.tar"


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return _archive(tmp_path / "img.tar", _config(User="1000", WorkingDir="/app"),
                    [_layer([("app/worker.py", b"print(1)\n", 0o644)])])


def test_concurrent_requests_for_one_sha256_share_one_download(tmp_path: Path, archive: Path) -> None:
    gate = threading.Event()
    cache = FakeCache(archive, gate)
    auditor = InstructionAuditor(_chain, cache, tmp_path / "audits", max_expanded_bytes=10**8)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(auditor.inspect(1))) for _ in range(3)]
    for t in threads:
        t.start()
    assert cache.entered.wait(10)
    for _ in range(200):  # all three are in the flight before the download may end
        if auditor._waiting == 3:
            break
        threading.Event().wait(0.01)
    assert auditor._waiting == 3
    gate.set()
    for t in threads:
        t.join(10)
    assert cache.calls == [SHA_A] and len(results) == 3
    assert {r["sha256"] for r in results} == {"0x" + SHA_A}
    assert results[0]["sources"][0]["path"] == "/app/worker.py"
    # Cached by sha256: a later request neither downloads nor audits again.
    assert auditor.inspect(1)["archive_bytes"] == archive.stat().st_size and cache.calls == [SHA_A]
    assert (tmp_path / "audits" / f"{SHA_A}.v1.json").is_file()


def test_past_the_slots_the_answer_is_busy(tmp_path: Path, archive: Path) -> None:
    gate = threading.Event()
    cache = FakeCache(archive, gate)
    auditor = InstructionAuditor(_chain, cache, tmp_path / "audits", max_expanded_bytes=10**8, max_concurrent=1)
    first = threading.Thread(target=auditor.inspect, args=(1,))
    first.start()
    assert cache.entered.wait(10)
    with pytest.raises(AuditError) as err:
        auditor.inspect(2)  # another image while the only slot is taken
    gate.set()
    first.join(10)
    assert err.value.code == "AUDIT_BUSY" and err.value.http_status == 503
    assert err.value.headers == {"Retry-After": "5"}


@pytest.mark.parametrize(("failure", "code", "status"), [
    (FetchFailure("the archive's sha256 differs from the on-chain hash", code="CHECKSUM_MISMATCH"),
     "IMAGE_HASH_MISMATCH", 502),
    (FetchFailure("the archive could not be downloaded from example.org"), "IMAGE_FETCH_FAILED", 502),
    (FetchFailure("the archive is over the size cap of 5 bytes", code="IMAGE_TOO_LARGE"), "IMAGE_TOO_LARGE", 422),
])
def test_fetch_failures_have_their_codes_and_nothing_is_cached(tmp_path, archive, failure, code, status) -> None:
    auditor = InstructionAuditor(_chain, FakeCache(archive, error=failure), tmp_path / "audits",
                                 max_expanded_bytes=10**8)
    with pytest.raises(AuditError) as err:
        auditor.inspect(1)
    assert (err.value.code, err.value.http_status) == (code, status)
    assert list((tmp_path / "audits").iterdir()) == []


def test_unknown_instruction_is_404(tmp_path: Path, archive: Path) -> None:
    auditor = InstructionAuditor(_chain, FakeCache(archive), tmp_path / "audits", max_expanded_bytes=10**8)
    with pytest.raises(AuditError) as err:
        auditor.inspect(404)
    assert (err.value.code, err.value.http_status) == ("INSTRUCTION_NOT_FOUND", 404)


def test_the_report_cache_is_bounded(tmp_path: Path, archive: Path, monkeypatch) -> None:
    import engine.instruction_audit as mod

    monkeypatch.setattr(mod, "MAX_REPORTS", 1)
    auditor = InstructionAuditor(_chain, FakeCache(archive), tmp_path / "audits", max_expanded_bytes=10**8)
    auditor.inspect(1)
    first = tmp_path / "audits" / f"{SHA_A}.v1.json"
    os.utime(first, (1, 1))  # older beyond the filesystem's timestamp granularity
    auditor.inspect(2)
    assert [p.name for p in (tmp_path / "audits").iterdir()] == [f"{SHA_B}.v1.json"]
