"""The runner as a Kubernetes Job: its manifest, produced by code (a design; no cluster client here).

``job_manifest`` builds the ``batch/v1`` Job for one engine job with the
hardening ``engine/runner.py`` gives its Docker container, property by
property; ``network_policy`` builds the ``networking.k8s.io/v1``
NetworkPolicy that denies every job pod all traffic (the Docker runner's
``network_mode: none``). Both are plain dicts, ready for ``kubectl apply``
or the kubernetes client; tests/engine/test_k8s.py validates them against the
kubernetes client's models. docs/SCALE.md ("Kubernetes design") says how the
pieces fit and what a real cluster still needs.

Mapping (Docker runner -> pod):

- non-root ``user`` -> ``runAsUser``/``runAsGroup`` + ``runAsNonRoot``
- ``read_only`` -> ``readOnlyRootFilesystem``
- ``no-new-privileges`` -> ``allowPrivilegeEscalation: false``
- ``cap_drop ALL`` -> ``capabilities.drop: [ALL]``
- ``seccomp=job.json`` -> ``seccompProfile`` Localhost (the same file installed on
  each node under the kubelet's seccomp root), RuntimeDefault as the fallback
- memory/CPU -> ``resources`` limits = requests; the output cap -> ``ephemeral-storage``
- ``pids_limit`` -> no pod field: the node's kubelet ``podPidsLimit`` (annotated here)
- the timeout -> ``activeDeadlineSeconds``; one try -> ``backoffLimit: 0``, ``restartPolicy: Never``
- bind mounts -> the staged inputs read-only (a volume the engine writes), the
  output an ``emptyDir`` capped at the output cap, ``/tmp`` a memory ``emptyDir``
- each image ``VOLUME`` covered by an empty read-only volume
- no network -> the NetworkPolicy; no API access -> ``automountServiceAccountToken: false``
- the job environment v1 (``engine.layouts.job_env``) and nothing else (``enableServiceLinks: false``)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from engine.layouts import DEFAULT_LAYOUT, Layout, job_env
from engine.runner import ENGINE_LABEL, LABEL, RunLimits

__all__ = ["JOB_ROLE_LABEL", "PIDS_ANNOTATION", "SECCOMP_LOCALHOST", "ClusterPlan", "job_manifest",
           "job_name", "network_policy"]

# Every job pod carries it; the NetworkPolicy selects on it (and on LABEL).
JOB_ROLE_LABEL = "compute-to-data.role"
# The pid cap the job's node pool must enforce (kubelet podPidsLimit); recorded for audits.
PIDS_ANNOTATION = "compute-to-data.io/pids-limit"
# Relative to the kubelet's seccomp root (/var/lib/kubelet/seccomp): engine/seccomp/job.json.
SECCOMP_LOCALHOST = "compute-to-data/job.json"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,57}[a-z0-9])?")
_DIGEST_REF = re.compile(r"[^\s@]+@sha256:[0-9a-f]{64}")
_COVER_BYTES = "4Ki"  # an image VOLUME's cover: empty, read-only (engine/layouts.py _COVER)
_LOG_HEADROOM_BYTES = 16 * 1024 * 1024  # container logs count against ephemeral-storage


@dataclass(frozen=True)
class ClusterPlan:
    """What the cluster side names: where jobs run and where their inputs are staged."""

    namespace: str = "compute-to-data"
    # A PersistentVolumeClaim the engine writes staged inputs to (inputs/<job_id>/...).
    input_claim: str = "c2d-inputs"
    seccomp: Literal["localhost", "runtime-default"] = "localhost"
    ttl_after_finished_s: int = 300  # the finished Job (and its pod status) stays this long
    grace_s: int = 1  # cancel and timeout: SIGKILL after this (the Docker runner kills at once)
    pull_policy: Literal["IfNotPresent", "Never"] = "IfNotPresent"


def job_name(job_id: str) -> str:
    """``c2d-<job_id>``, like the Docker container; a job id that is no DNS label is refused."""
    if not _DNS_LABEL.fullmatch(job_id):
        raise ValueError(f"job id {job_id!r} cannot name a Kubernetes Job (lowercase DNS label)")
    return f"c2d-{job_id}"


def job_manifest(
    job_id: str,
    image: str,
    limits: RunLimits,
    *,
    refiner_id: int,
    output_max_bytes: int,
    layout: Layout = DEFAULT_LAYOUT,
    compute_job_id: int = 0,
    covers: Iterable[str] = (),
    engine_id: str = "default",
    plan: ClusterPlan | None = None,
) -> dict[str, Any]:
    """The ``batch/v1`` Job running ``image`` (pinned by digest) as engine job ``job_id``.

    ``covers`` are the image's declared VOLUMEs (``engine.layouts.volume_covers``
    keys), each hidden under an empty read-only volume.
    """
    plan = plan or ClusterPlan()
    if not _DIGEST_REF.fullmatch(image):
        raise ValueError("the job's image must be pinned by digest (name@sha256:<64 hex>)")
    name = job_name(job_id)
    labels = {LABEL: job_id, ENGINE_LABEL: engine_id, JOB_ROLE_LABEL: "job",
              "app.kubernetes.io/managed-by": "compute-engine"}
    env = job_env(layout, job_id, compute_job_id, refiner_id)
    cover_paths = sorted(set(covers))
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "terminationGracePeriodSeconds": plan.grace_s,
        "securityContext": _pod_security(limits, plan),
        "containers": [{
            "name": "job",
            "image": image,
            "imagePullPolicy": plan.pull_policy,
            "env": [{"name": key, "value": value} for key, value in env.items()],
            "securityContext": _container_security(limits, plan),
            "resources": _resources(limits, output_max_bytes),
            "volumeMounts": _mounts(job_id, layout, cover_paths),
            "stdin": False,
            "tty": False,
        }],
        "volumes": _volumes(plan, limits, output_max_bytes, len(cover_paths)),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": plan.namespace, "labels": labels,
                     "annotations": {PIDS_ANNOTATION: str(limits.pids)}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(limits.timeout_s)),
            "ttlSecondsAfterFinished": plan.ttl_after_finished_s,
            "template": {"metadata": {"labels": labels,
                                      "annotations": {PIDS_ANNOTATION: str(limits.pids)}},
                         "spec": pod_spec},
        },
    }


def network_policy(namespace: str = ClusterPlan.namespace) -> dict[str, Any]:
    """Deny all ingress and egress to every job pod (no rules = nothing allowed), DNS included."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "c2d-jobs-deny-all", "namespace": namespace},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }


def _uid_gid(user: str) -> tuple[int, int]:
    uid_text, _, gid_text = user.partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        raise ValueError("a Kubernetes job needs a numeric user (uid[:gid]) to prove it is not root")
    uid = int(uid_text)
    if uid == 0:
        raise ValueError("the job's user must not be root")
    return uid, int(gid_text) if gid_text else uid


def _seccomp(plan: ClusterPlan) -> dict[str, str]:
    if plan.seccomp == "localhost":
        return {"type": "Localhost", "localhostProfile": SECCOMP_LOCALHOST}
    return {"type": "RuntimeDefault"}


def _pod_security(limits: RunLimits, plan: ClusterPlan) -> dict[str, Any]:
    uid, gid = _uid_gid(limits.user)
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid,
            "supplementalGroups": [], "seccompProfile": _seccomp(plan)}


def _container_security(limits: RunLimits, plan: ClusterPlan) -> dict[str, Any]:
    uid, gid = _uid_gid(limits.user)
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": _seccomp(plan),
        "appArmorProfile": {"type": "RuntimeDefault"},  # Docker applies docker-default
        "procMount": "Default",
    }


def _resources(limits: RunLimits, output_max_bytes: int) -> dict[str, dict[str, str]]:
    # requests = limits: Guaranteed QoS, the pod is not squeezed by its neighbours.
    # The memory /tmp counts against memory, as Docker's tmpfs does; the output and
    # the logs against ephemeral-storage (the root filesystem is read-only).
    amounts = {
        "cpu": f"{max(1, round(limits.cpus * 1000))}m",
        "memory": str(limits.memory_bytes),
        "ephemeral-storage": str(output_max_bytes + _LOG_HEADROOM_BYTES),
    }
    return {"limits": dict(amounts), "requests": dict(amounts)}


def _mounts(job_id: str, layout: Layout, covers: list[str]) -> list[dict[str, Any]]:
    inputs = [
        {"name": "input", "mountPath": target, "readOnly": True,
         "subPath": f"inputs/{job_id}" + (f"/{sub}" if sub else "")}
        for target, sub in layout.mounts
    ]
    return [
        *inputs,
        {"name": "output", "mountPath": layout.output_path, "readOnly": False},
        {"name": "tmp", "mountPath": "/tmp", "readOnly": False},
        *({"name": f"cover-{i}", "mountPath": path, "readOnly": True} for i, path in enumerate(covers)),
    ]


def _volumes(plan: ClusterPlan, limits: RunLimits, output_max_bytes: int,
             covers: int) -> list[dict[str, Any]]:
    return [
        {"name": "input", "persistentVolumeClaim": {"claimName": plan.input_claim, "readOnly": True}},
        # Over its sizeLimit the kubelet evicts the pod: the job ends (OUTPUT_TOO_LARGE).
        {"name": "output", "emptyDir": {"sizeLimit": str(output_max_bytes)}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.tmpfs_bytes)}},
        *({"name": f"cover-{i}", "emptyDir": {"medium": "Memory", "sizeLimit": _COVER_BYTES}}
          for i in range(covers)),
    ]
