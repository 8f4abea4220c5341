"""Which job store the settings select, and that a store URL's password never shows."""

from __future__ import annotations

import pytest

from engine.errors import EngineError
from engine.settings import SettingsError, load_settings
from engine.store import SqliteJobStore
from engine.wiring import open_store


def test_default_is_sqlite_in_the_data_dir(tmp_path):
    store = open_store(load_settings(data_dir=tmp_path))
    try:
        assert isinstance(store, SqliteJobStore) and store.path == tmp_path / "jobs.db"
    finally:
        store.close()


def test_store_url_env_selects_postgresql(tmp_path, monkeypatch, postgres_url):
    from engine.store_postgres import PostgresJobStore

    monkeypatch.setenv("TEST_STORE_URL", postgres_url)
    store = open_store(load_settings(data_dir=tmp_path, store_url_env="TEST_STORE_URL"))
    try:
        assert isinstance(store, PostgresJobStore) and store.ping()
        assert not (tmp_path / "jobs.db").exists()
    finally:
        store.close()


def test_a_password_in_store_url_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(data_dir=tmp_path, store_url="postgresql://app:hunter2@db.example/jobs")
    assert "hunter2" not in str(info.value) and "store_url_env" in str(info.value)


@pytest.mark.parametrize("url", ["mysql://db/jobs", "jobs.db"])
def test_a_store_url_that_is_not_postgresql_is_refused(tmp_path, url):
    with pytest.raises(SettingsError, match="postgresql://"):
        load_settings(data_dir=tmp_path, store_url=url)


def test_store_url_env_unset_is_config_invalid(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_STORE_URL_UNSET", raising=False)
    with pytest.raises(EngineError) as info:
        open_store(load_settings(data_dir=tmp_path, store_url_env="TEST_STORE_URL_UNSET"))
    assert info.value.code == "CONFIG_INVALID"


def test_an_unreachable_postgresql_is_store_unavailable_without_the_password(tmp_path, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TEST_STORE_URL", f"postgresql://app:hunter2@127.0.0.1:{port}/jobs")
    with pytest.raises(EngineError) as info:
        open_store(load_settings(data_dir=tmp_path, store_url_env="TEST_STORE_URL"))
    assert (info.value.code, info.value.http_status) == ("STORE_UNAVAILABLE", 503)
    assert "hunter2" not in str(info.value)
