"""`service.stop()` releases the data dir's lock (engine/wiring.py): real chain, Docker, files."""

from __future__ import annotations

import fcntl

import pytest

from engine.errors import EngineError
from engine.settings import load_settings
from engine.wiring import LOCK_FILE, build_service
from registry_client.manifest import save_deployment

pytestmark = [pytest.mark.chain, pytest.mark.docker]


def _free(data_dir) -> bool:
    """True when another open file could take the lock (flock is per open file, even in one process)."""
    with (data_dir / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_stop_releases_the_data_dir_for_the_next_engine(tmp_path, anvil, deployment, docker_client):
    manifest = save_deployment(deployment, tmp_path / "deployment.json")
    settings = load_settings(rpc_url=anvil.url, deployment=manifest, data_dir=tmp_path / "data",
                             max_concurrent_jobs=1)
    data_dir = tmp_path / "data"
    first = build_service(settings)
    try:
        first.start()
        assert not _free(data_dir)
        with pytest.raises(EngineError) as info:
            build_service(settings)
        assert info.value.code == "DATA_DIR_LOCKED"
    finally:
        first.stop()
        first.store.close()
    assert _free(data_dir)
    second = build_service(settings)  # the same process, the same dir: allowed once the first stopped
    try:
        assert not _free(data_dir)
    finally:
        second.stop()
        second.store.close()
    assert _free(data_dir)
