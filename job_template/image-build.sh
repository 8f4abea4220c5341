#!/usr/bin/env bash
# Build the job image (default my-compute-job:latest) from this folder.
#
# Base image, first that applies:
#   1. $BASE_IMAGE, if you set it;
#   2. python:3.12-slim, if it is already local;
#   3. c2d/python-base:bookworm, if it is already local (built by `make setup`);
#   4. python:3.12-slim pulled from a registry, if one is reachable;
#   5. c2d/python-base:bookworm built now with ../tools/build-python-base.sh
#      (inside the compute-to-data repository; needs root and Debian's mirror).
#
# Env: IMAGE (tag to build), BASE_IMAGE (base to build FROM), OCI_SOURCE and
# OCI_REVISION (the image's org.opencontainers.image.source/.revision labels;
# default: this folder's git remote and commit, else "unknown").
set -euo pipefail
cd "$(dirname "$0")"

IMAGE="${IMAGE:-my-compute-job:latest}"
OFFICIAL="python:3.12-slim"
LOCAL_BASE="c2d/python-base:bookworm"
BASE_SCRIPT="../tools/build-python-base.sh"

say() { echo "==> $*"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

pick_base() {
  if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; return; fi
  if have_image "$OFFICIAL"; then echo "$OFFICIAL"; return; fi
  if have_image "$LOCAL_BASE"; then echo "$LOCAL_BASE"; return; fi
  if timeout 120 docker pull -q "$OFFICIAL" >/dev/null 2>&1; then echo "$OFFICIAL"; return; fi
  if [ -x "$BASE_SCRIPT" ]; then
    echo "==> no registry reachable: building the local base image $LOCAL_BASE" >&2
    "$BASE_SCRIPT" >&2
    echo "$LOCAL_BASE"
    return
  fi
  echo "No base image: $OFFICIAL cannot be pulled and $LOCAL_BASE does not exist." >&2
  echo "Set BASE_IMAGE to a local image with python3, or build $LOCAL_BASE with tools/build-python-base.sh." >&2
  return 1
}

if ! docker info >/dev/null 2>&1; then
  echo "Docker engine is not answering (is dockerd running?)." >&2
  exit 1
fi
BASE="$(pick_base)"
OCI_SOURCE="${OCI_SOURCE:-$(git remote get-url origin 2>/dev/null | sed -E 's#//[^@/]*@#//#' || echo unknown)}"
OCI_REVISION="${OCI_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
say "building $IMAGE from $BASE"
# BuildKit when the buildx plugin is there, else the legacy builder (which
# prints a deprecation notice we hide unless the build fails).
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
if docker buildx version >/dev/null 2>&1; then BUILDKIT=1; else BUILDKIT=0; fi
if ! DOCKER_BUILDKIT=$BUILDKIT docker build -q --build-arg "BASE_IMAGE=$BASE" \
    --build-arg "OCI_SOURCE=$OCI_SOURCE" --build-arg "OCI_REVISION=$OCI_REVISION" -t "$IMAGE" . >/dev/null 2>"$LOG"; then
  grep -v -e DEPRECATED -e 'BuildKit is currently disabled' -e 'environment-variable' "$LOG" >&2 || true
  echo "docker build failed" >&2
  exit 1
fi
say "built $IMAGE ($(docker image inspect -f '{{.Id}}' "$IMAGE"))"
