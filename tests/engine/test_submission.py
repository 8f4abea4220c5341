"""engine.submission: pure checks before a job is queued (clock passed in)."""

from __future__ import annotations

import pytest

from engine.errors import AuthError, RequestError
from engine.settings import Settings
from engine.submission import MAX_SQL_ID, check_deadline, local_digest, validate_request
from registry_client.eip712 import JobRequest

NOW = 1_800_000_000


def _req(**overrides) -> JobRequest:
    fields = {"instruction_id": 1, "refiner_id": 2, "query": "SELECT 1", "params": [1, "a"],
              "nonce": 7, "deadline": NOW + 60}
    fields.update(overrides)
    return JobRequest.create(**fields)


def test_valid_request_returns_its_params() -> None:
    assert validate_request(_req(), Settings(), NOW) == [1, "a"]


@pytest.mark.parametrize(
    ("overrides", "code", "kind"),
    [
        ({"deadline": NOW}, "DEADLINE_EXPIRED", AuthError),
        ({"deadline": NOW + 2 * 24 * 3600}, "DEADLINE_TOO_FAR", RequestError),
        ({"refiner_id": MAX_SQL_ID + 1}, "INVALID_REQUEST", RequestError),
    ],
)
def test_refusals_carry_a_stable_code(overrides, code, kind) -> None:
    with pytest.raises(kind) as err:
        validate_request(_req(**overrides), Settings(), NOW)
    assert err.value.code == code


@pytest.mark.parametrize(("deadline", "code"), [
    (NOW - 1, "DEADLINE_EXPIRED"), (NOW, "DEADLINE_EXPIRED"), (NOW + 1, None),
    (NOW + 900, None), (NOW + 901, "DEADLINE_TOO_FAR"),
])
def test_the_deadline_rule_and_its_bounds(deadline, code) -> None:
    if code is None:
        check_deadline(deadline, NOW, 900)
        validate_request(_req(deadline=deadline), Settings(deadline_max_s=900), NOW)
        return
    for call in (lambda: check_deadline(deadline, NOW, 900),
                 lambda: validate_request(_req(deadline=deadline), Settings(deadline_max_s=900), NOW)):
        with pytest.raises(RequestError) as err:
            call()
        assert err.value.code == code
        assert err.value.http_status == (401 if code == "DEADLINE_EXPIRED" else 400)


def test_vanas_deadline_window_passes_the_same_rule() -> None:
    # Vana's submit signs no deadline: the router gives the run now + deadline_max_s
    # (engine/api/routers/vana.py), which the service's rule must accept, even a second later.
    settings = Settings(deadline_max_s=900)
    deadline = NOW + int(settings.deadline_max_s)
    validate_request(_req(deadline=deadline), settings, NOW)
    validate_request(_req(deadline=deadline), settings, NOW + 1)


@pytest.mark.parametrize("params", [[2**70], [-(2**63) - 1], {"n": 2**64}, [[1]], {"x": {"y": 1}}])
def test_params_sqlite_cannot_bind_are_refused_at_submit(params) -> None:
    with pytest.raises(RequestError) as err:
        validate_request(_req(params=params), Settings(), NOW)
    assert err.value.code == "INVALID_PARAMS" and err.value.http_status == 400


@pytest.mark.parametrize("params", [[2**63 - 1], [-(2**63)], {"n": 1.5e300}, [None, "x", True]])
def test_params_in_range_pass(params) -> None:
    assert validate_request(_req(params=params), Settings(), NOW) == params


def test_limits_come_from_settings() -> None:
    settings = Settings(query_max_chars=10)
    with pytest.raises(RequestError) as err:
        validate_request(_req(query="SELECT 1234567890"), settings, NOW)
    assert err.value.code == "QUERY_TOO_LONG"


def test_local_digest_is_stable_and_binds_every_field() -> None:
    assert local_digest(_req()) == local_digest(_req())
    assert local_digest(_req()) != local_digest(_req(nonce=8))
    assert local_digest(_req()) != local_digest(_req(query="SELECT 2"))
