"""The Kubernetes Job manifest (engine/k8s.py) carries the Docker runner's hardening.

No cluster here: each manifest is checked against the kubernetes client's own
models (strict: a misspelt field is refused) and each hardening field asserted
on the deserialized object, for every layout.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from kubernetes import client

from engine.k8s import (
    JOB_ROLE_LABEL,
    PIDS_ANNOTATION,
    SECCOMP_LOCALHOST,
    ClusterPlan,
    job_manifest,
    job_name,
    network_policy,
)
from engine.layouts import LAYOUTS, job_env
from engine.runner import ENGINE_LABEL, LABEL, RunLimits

JOB_ID = "0123456789abcdef0123456789abcdef"
IMAGE = "registry.internal/c2d/jobs@sha256:" + "ab" * 32
LIMITS = RunLimits(cpus=0.5, memory_bytes=256 * 2**20, pids=128, tmpfs_bytes=8 * 2**20,
                   timeout_s=90.5, user="65534:65534")
OUTPUT_CAP = 32 * 2**20


def manifest(layout_name="vana", **kw):
    args = {"refiner_id": 7, "output_max_bytes": OUTPUT_CAP, "layout": LAYOUTS[layout_name],
            "compute_job_id": 42, "engine_id": "e1", **kw}
    return job_manifest(JOB_ID, IMAGE, LIMITS, **args)


def as_job(doc: dict) -> client.V1Job:
    """The manifest as the client's V1Job: strict validation, then the client's own deserializer."""
    client.V1Job.model_validate(doc)  # extra="forbid": a misspelt field fails here
    job = client.ApiClient().deserialize(json.dumps(doc), "V1Job", "application/json")
    assert isinstance(job, client.V1Job)
    # Nothing dropped on the way: the model serializes back to the same document.
    assert client.ApiClient().sanitize_for_serialization(job) == doc
    return job


@pytest.mark.parametrize("layout_name", sorted(LAYOUTS))
def test_job_carries_the_runners_hardening(layout_name):
    layout = LAYOUTS[layout_name]
    job = as_job(manifest(layout_name))
    assert (job.api_version, job.kind, job.metadata.name) == ("batch/v1", "Job", f"c2d-{JOB_ID}")
    assert job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == 91  # the run timeout, rounded up
    assert job.spec.ttl_seconds_after_finished == ClusterPlan().ttl_after_finished_s
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never"
    assert pod.automount_service_account_token is False
    assert pod.enable_service_links is False
    assert (pod.host_network, pod.host_pid, pod.host_ipc) == (False, False, False)
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "Localhost"
    (container,) = pod.containers
    sc = container.security_context
    assert (sc.run_as_user, sc.run_as_group, sc.run_as_non_root) == (65534, 65534, True)
    assert sc.read_only_root_filesystem is True
    assert sc.allow_privilege_escalation is False
    assert sc.privileged is False
    assert sc.capabilities.drop == ["ALL"] and not sc.capabilities.add
    assert (sc.seccomp_profile.type, sc.seccomp_profile.localhost_profile) == ("Localhost", SECCOMP_LOCALHOST)
    assert container.image == IMAGE
    assert {e.name: e.value for e in container.env} == job_env(layout, JOB_ID, 42, 7)
    res = container.resources
    assert res.limits == res.requests == {"cpu": "500m", "memory": str(256 * 2**20),
                                          "ephemeral-storage": str(OUTPUT_CAP + 16 * 2**20)}
    assert job.metadata.annotations[PIDS_ANNOTATION] == "128"  # enforced by kubelet podPidsLimit

    mounts = {m.mount_path: m for m in container.volume_mounts}
    volumes = {v.name: v for v in pod.volumes}
    for target, sub in layout.mounts:  # the staged inputs, read-only, at the layout's places
        mount = mounts[target]
        assert mount.read_only is True and mount.name == "input"
        assert mount.sub_path == f"inputs/{JOB_ID}" + (f"/{sub}" if sub else "")
    assert volumes["input"].persistent_volume_claim.read_only is True
    out = mounts[layout.output_path]
    assert out.read_only is False and volumes[out.name].empty_dir.size_limit == str(OUTPUT_CAP)
    tmp = volumes[mounts["/tmp"].name].empty_dir
    assert (tmp.medium, tmp.size_limit) == ("Memory", str(8 * 2**20))
    writable = {m.mount_path for m in container.volume_mounts if not m.read_only}
    assert writable == {layout.output_path, "/tmp"}  # nothing else the job can write

    for labels in (job.metadata.labels, job.spec.template.metadata.labels):
        assert labels[LABEL] == JOB_ID and labels[ENGINE_LABEL] == "e1"
        assert labels[JOB_ROLE_LABEL] == "job"


def test_image_volumes_are_covered_read_only():
    job = as_job(manifest(covers=["/data", "/var/cache"]))
    pod = job.spec.template.spec
    mounts = {m.mount_path: m for m in pod.containers[0].volume_mounts}
    volumes = {v.name: v for v in pod.volumes}
    for path in ("/data", "/var/cache"):
        assert mounts[path].read_only is True
        cover = volumes[mounts[path].name].empty_dir
        assert (cover.medium, cover.size_limit) == ("Memory", "4Ki")


def test_runtime_default_seccomp_is_the_documented_fallback():
    job = as_job(manifest(plan=ClusterPlan(seccomp="runtime-default", namespace="jobs", ttl_after_finished_s=60)))
    assert job.metadata.namespace == "jobs" and job.spec.ttl_seconds_after_finished == 60
    sc = job.spec.template.spec.containers[0].security_context
    assert sc.seccomp_profile.type == "RuntimeDefault" and sc.seccomp_profile.localhost_profile is None


def test_the_localhost_profile_is_the_engines_own():
    # Nodes install engine/seccomp/job.json at <kubelet seccomp root>/compute-to-data/job.json.
    shipped = resources.files("engine").joinpath("seccomp", "job.json")
    assert SECCOMP_LOCALHOST.endswith("/" + shipped.name)
    assert json.loads(shipped.read_text())["defaultAction"]


@pytest.mark.parametrize("kw, match", [
    ({"image": "c2d/jobs:latest"}, "pinned by digest"),
    ({"limits": RunLimits(user="0:0")}, "root"),
    ({"limits": RunLimits(user="nobody")}, "numeric user"),
    ({"job_id": "Not_A_Label"}, "DNS label"),
])
def test_unsafe_inputs_are_refused(kw, match):
    args = {"job_id": JOB_ID, "image": IMAGE, "limits": LIMITS, **kw}
    with pytest.raises(ValueError, match=match):
        job_manifest(args["job_id"], args["image"], args["limits"], refiner_id=1, output_max_bytes=1)


def test_job_name_matches_the_docker_container_name():
    assert job_name(JOB_ID) == f"c2d-{JOB_ID}" and len(job_name(JOB_ID)) <= 63


def test_network_policy_denies_all_traffic_to_job_pods():
    doc = network_policy("jobs")
    client.V1NetworkPolicy.model_validate(doc)
    policy = client.ApiClient().deserialize(json.dumps(doc), "V1NetworkPolicy", "application/json")
    assert policy.metadata.namespace == "jobs"
    assert sorted(policy.spec.policy_types) == ["Egress", "Ingress"]
    assert policy.spec.ingress == [] and policy.spec.egress == []  # no rule: nothing allowed
    (expr,) = policy.spec.pod_selector.match_expressions
    assert (expr.key, expr.operator) == (LABEL, "Exists")
    pod_labels = manifest()["spec"]["template"]["metadata"]["labels"]
    assert expr.key in pod_labels  # every job pod is selected
