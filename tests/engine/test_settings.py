"""Settings (safe defaults, unsafe values refused, env + config file) and the operator CLI
that loads them (`compute-engine serve | data add | data list`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.data import DataCatalog
from engine.errors import JobFailure, RequestError
from engine.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No ENGINE_* from the outer environment leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("ENGINE_"):
            monkeypatch.delenv(name)


# ---------------------------------------------------------------- defaults


def test_defaults_are_the_safe_ones():
    s = load_settings()
    assert (s.host, s.port, s.allow_remote) == ("127.0.0.1", 8000, False)
    assert s.allow_file_urls is False and s.share_logs is False
    assert s.run_user == "65534:65534"
    assert (s.max_concurrent_jobs, s.queue_size) == (2, 100)
    limits = s.run_limits()
    assert (limits.cpus, limits.memory_bytes, limits.pids, limits.tmpfs_bytes) == (1.0, 512 << 20, 256, 64 << 20)
    assert (limits.timeout_s, limits.log_bytes, limits.user) == (600, 1 << 20, "65534:65534")
    q = s.query_limits()
    assert (q.max_rows, q.timeout_s, q.max_result_bytes) == (100_000, 30.0, 256 << 20)
    assert s.output_max_bytes == 100 << 20 and s.artifact_retention_s == 7 * 86400
    assert s.image_max_bytes == 2 << 30 and s.auth_window_s == 60


# ---------------------------------------------------------------- unsafe values


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"host": "0.0.0.0"}, "allow_remote"),
        ({"host": "192.168.1.5"}, "allow_remote"),
        ({"host": "example.com"}, "allow_remote"),
        ({"run_user": "0"}, "root"),
        ({"run_user": "root"}, "root"),
        ({"run_user": "0:0"}, "root"),
        ({"run_user": "1000:0"}, "root"),
        ({"run_user": "1000; rm -rf /"}, "UID"),
        ({"run_cpus": 0}, "run_cpus"),
        ({"run_memory_bytes": -1}, "run_memory_bytes"),
        ({"run_pids": 0}, "run_pids"),
        ({"run_timeout_s": 0}, "run_timeout_s"),
        ({"queue_size": 0}, "queue_size"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs"),
        ({"output_max_bytes": 0}, "output_max_bytes"),
        ({"query_max_rows": 0}, "query_max_rows"),
        ({"port": 70000}, "port"),
        ({"rpc_url": "ftp://x"}, "rpc_url"),
        ({"signing_key_env": "0xac0974bec39a17e36ba4a6b4d238ff944bac"}, "NAME"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_unsafe_values_are_refused(overrides, needle):
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    assert needle in str(info.value)


def test_a_pasted_key_is_not_echoed_back():
    key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    with pytest.raises(SettingsError) as info:
        load_settings(signing_key_env=key)
    assert key not in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_need_no_opt_in(host):
    assert load_settings(host=host).host == host


def test_remote_bind_with_explicit_opt_in():
    assert load_settings(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"


def test_signing_key_is_read_from_the_named_env_var_and_stays_secret(monkeypatch):
    monkeypatch.setenv("MY_ENGINE_KEY", "0xdeadbeef")
    s = load_settings(signing_key_env="MY_ENGINE_KEY")
    key = s.signing_key()
    assert key.get_secret_value() == "0xdeadbeef"
    assert "deadbeef" not in repr(s) and "deadbeef" not in str(key)
    assert "deadbeef" not in s.model_dump_json()
    assert load_settings().signing_key() is None


# ---------------------------------------------------------------- env and file


def test_env_vars_with_engine_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGINE_PORT", "9001")
    monkeypatch.setenv("ENGINE_SHARE_LOGS", "true")
    monkeypatch.setenv("ENGINE_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert (s.port, s.share_logs, s.data_dir) == (9001, True, tmp_path)


def test_unsafe_env_value_is_refused(monkeypatch):
    monkeypatch.setenv("ENGINE_RUN_USER", "0:0")
    with pytest.raises(SettingsError):
        load_settings()


@pytest.mark.parametrize("kind", ["toml", "json", "toml-section"])
def test_config_file(tmp_path, kind):
    values = {"port": 8123, "run_timeout_s": 30, "allow_file_urls": True}
    if kind == "json":
        path = tmp_path / "engine.json"
        path.write_text(json.dumps(values))
    else:
        path = tmp_path / "engine.toml"
        head = "[engine]\n" if kind == "toml-section" else ""
        path.write_text(head + "port = 8123\nrun_timeout_s = 30\nallow_file_urls = true\n")
    s = load_settings(path)
    assert (s.port, s.run_timeout_s, s.allow_file_urls) == (8123, 30.0, True)
    assert isinstance(s, Settings)


def test_precedence_kwargs_over_env_over_file(tmp_path, monkeypatch):
    path = tmp_path / "engine.toml"
    path.write_text("port = 1111\nqueue_size = 5\nshare_logs = true\n")
    monkeypatch.setenv("ENGINE_PORT", "2222")
    monkeypatch.setenv("ENGINE_QUEUE_SIZE", "6")
    s = load_settings(path, port=3333)
    assert (s.port, s.queue_size, s.share_logs) == (3333, 6, True)


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("engine.toml", "port = \n", "not valid"),
        ("engine.json", "{", "not valid"),
        ("engine.toml", "prot = 1\n", "unknown setting(s) prot"),
        ("engine.toml", 'run_user = "root"\n', "root"),
    ],
)
def test_bad_config_files(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert needle in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml")


# ---------------------------------------------------------------- data catalog


def make_db(path: Path, rows: int = 2) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER, email TEXT)")
    conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}@x") for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def test_catalog_copies_read_only_and_serves_paths(tmp_path):
    src = make_db(tmp_path / "src.db")
    catalog = DataCatalog(tmp_path / "data")
    entry = catalog.add(3, src)
    assert entry.path == tmp_path / "data" / "refiners" / "3.db"
    assert entry.path.stat().st_mode & 0o222 == 0
    conn = sqlite3.connect(entry.path)
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)
    conn.close()
    assert catalog.path(3) == entry.path
    assert [e.refiner_id for e in catalog.list()] == [3]


def test_catalog_copies_committed_wal_content(tmp_path):
    src = tmp_path / "wal.db"
    writer = sqlite3.connect(src)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES (42)")
    writer.commit()  # still in the -wal file while `writer` stays open
    entry = DataCatalog(tmp_path / "data").add(1, src)
    writer.close()
    conn = sqlite3.connect(entry.path)
    assert conn.execute("SELECT x FROM t").fetchone() == (42,)
    conn.close()


def test_catalog_refuses_bad_files_and_keeps_existing_data(tmp_path):
    catalog = DataCatalog(tmp_path / "data")
    catalog.add(1, make_db(tmp_path / "a.db", rows=1))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    for bad, code in [(junk, "DATA_INVALID"), (tmp_path / "missing.db", "DATA_INVALID")]:
        with pytest.raises(RequestError) as info:
            catalog.add(2, bad)
        assert info.value.code == code
    with pytest.raises(RequestError) as info:
        catalog.add(1, make_db(tmp_path / "b.db", rows=5))
    assert info.value.code == "DATA_EXISTS"
    assert [e.refiner_id for e in catalog.list()] == [1]
    catalog.add(1, tmp_path / "b.db", replace=True)
    conn = sqlite3.connect(catalog.path(1))
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (5,)
    conn.close()


def test_catalog_path_for_unknown_refiner_is_data_not_found(tmp_path):
    with pytest.raises(JobFailure) as info:
        DataCatalog(tmp_path).path(9)
    assert info.value.code == "DATA_NOT_FOUND"


# ---------------------------------------------------------------- CLI


def test_cli_help_has_examples():
    runner = CliRunner()
    for args in (["--help"], ["serve", "--help"], ["data", "add", "--help"], ["data", "list", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert "compute-engine data add --refiner 1" in runner.invoke(cli, ["data", "add", "--help"]).output


def test_cli_unsafe_settings_is_one_line_error(monkeypatch):
    monkeypatch.setenv("ENGINE_HOST", "0.0.0.0")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "allow_remote" in result.output and "Traceback" not in result.output


def test_cli_data_list_empty_and_json(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert "no refiner data" in runner.invoke(cli, ["data", "list"]).output
    DataCatalog(tmp_path).add(4, make_db(tmp_path / "x.db"))
    out = json.loads(runner.invoke(cli, ["data", "list", "--json"]).output)
    assert [r["refiner_id"] for r in out] == [4]


@pytest.fixture
def engine_env(tmp_path, monkeypatch, anvil, deployment):
    from registry_client.manifest import save_deployment

    manifest = save_deployment(deployment, tmp_path / "deployment.json")
    monkeypatch.setenv("ENGINE_RPC_URL", anvil.url)
    monkeypatch.setenv("ENGINE_DEPLOYMENT", str(manifest))
    monkeypatch.setenv("ENGINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.mark.chain
def test_cli_data_add_checks_the_refiner_on_chain(engine_env, registries, accounts, tmp_path):
    reg = registries(accounts.dlp_owner)
    dlp_id = reg.register_dlp("pool")
    refiner_id = reg.add_refiner(dlp_id, "users", "https://schema.example/users.json")
    src = make_db(tmp_path / "refined.db")
    runner = CliRunner()

    result = runner.invoke(cli, ["data", "add", "--refiner", str(refiner_id), str(src)])
    assert result.exit_code == 0, result.output
    assert f"refiner {refiner_id} (DLP {dlp_id})" in result.output
    assert DataCatalog(engine_env).path(refiner_id).is_file()

    unknown = runner.invoke(cli, ["data", "add", "--refiner", "999", str(src)])
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output
    assert "999" in unknown.output
    assert not (engine_env / "refiners" / "999.db").exists()

    again = runner.invoke(cli, ["data", "add", "--refiner", str(refiner_id), str(src)])
    assert again.exit_code == 1 and "already has data" in again.output


@pytest.mark.chain
def test_cli_data_add_bad_file_and_unreachable_chain(engine_env, deployment, tmp_path, monkeypatch):
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    runner = CliRunner()
    missing = runner.invoke(cli, ["data", "add", "--refiner", "1", str(tmp_path / "nope.db")])
    assert missing.exit_code == 1 and "is not a file" in missing.output
    monkeypatch.setenv("ENGINE_RPC_URL", "http://127.0.0.1:9")
    down = runner.invoke(cli, ["data", "add", "--refiner", "1", str(junk)])
    assert down.exit_code == 1 and "Traceback" not in down.output
    assert "RPC" in down.output or "reach" in down.output


def test_entry_point_runs():
    exe = Path(sys.executable).parent / "compute-engine"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]
    out = subprocess.run([*cmd, "data", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "add" in out.stdout


def test_every_setting_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [
        name for name in Settings.model_fields if f"`{name}`" not in doc or f"ENGINE_{name.upper()}" not in doc
    ]
    assert missing == []
