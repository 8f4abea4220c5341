"""Deployment manifest load/save and validation (no chain)."""

from __future__ import annotations

import json

import pytest
from eth_utils import to_checksum_address

from registry_client.errors import ManifestError
from registry_client.manifest import CONTRACT_KEYS, Deployment, load_deployment, save_deployment

ADDRS = {key: "0x" + f"{i + 1:040x}" for i, key in enumerate(CONTRACT_KEYS)}


def _valid() -> dict:
    return {"chain_id": 31337, "addresses": dict(ADDRS), "implementations": dict(ADDRS),
            "deploy_block": 3, "deployer": "0x" + "ab" * 20}


def test_round_trip(tmp_path):
    dep = Deployment.from_dict(_valid())
    path = save_deployment(dep, tmp_path / "sub" / "d.json")
    loaded = load_deployment(path)
    assert loaded == dep
    assert loaded.addresses["dlp_registry"] == "0x0000000000000000000000000000000000000001"
    assert loaded.deployer == to_checksum_address("0x" + "ab" * 20) != "0x" + "ab" * 20


def test_save_refuses_to_overwrite_and_leaves_no_temp(tmp_path):
    dep = Deployment.from_dict(_valid())
    path = save_deployment(dep, tmp_path / "d.json")
    with pytest.raises(ManifestError, match="already exists"):
        save_deployment(dep, path)
    save_deployment(dep, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.pop("chain_id"), "field 'chain_id' is missing"),
    (lambda d: d.update(chain_id="1"), "field 'chain_id' must be an integer"),
    (lambda d: d.update(chain_id=0), "field 'chain_id' must be an integer >= 1"),
    (lambda d: d.update(chain_id=True), "field 'chain_id'"),
    (lambda d: d.pop("addresses"), "field 'addresses' must be an object"),
    (lambda d: d["addresses"].pop("query_engine"), "field 'addresses.query_engine' is missing"),
    (lambda d: d["addresses"].update(dlp_registry="0x12"), "field 'addresses.dlp_registry' is not an address"),
    (lambda d: d["implementations"].update(dlp_registry=5), "field 'implementations.dlp_registry'"),
    (lambda d: d.update(deploy_block=-1), "field 'deploy_block'"),
    (lambda d: d.update(deployer="nobody"), "field 'deployer' is not an address"),
])
def test_validation_names_the_field(tmp_path, mutate, fragment):
    data = _valid()
    mutate(data)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=fragment) as info:
        load_deployment(path)
    assert str(path) in str(info.value) and info.value.code == "MANIFEST_INVALID"


def test_not_json_and_missing(tmp_path):
    bad = tmp_path / "d.json"
    bad.write_text("{nope")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_deployment(bad)
    with pytest.raises(ManifestError, match="not found: run `registry deploy`"):
        load_deployment(tmp_path / "none.json")
    bad.write_text("[]")
    with pytest.raises(ManifestError, match="expected a JSON object"):
        load_deployment(bad)
