#!/usr/bin/env bash
# Build the local Python base image the job template builds FROM, when no
# container registry is reachable (TOOLCHAIN.md): a minimal Debian bookworm
# root made with debootstrap, imported with `docker import`, cached by tag.
#
# Idempotent: exits at once when the tag exists. Skipped when BASE_IMAGE is
# set (you bring your own base, e.g. python:3.12-slim from a registry).
#
# Env:
#   BASE_IMAGE          use this base instead; nothing is built
#   PYTHON_BASE_TAG     tag to build (default c2d/python-base:bookworm)
#   DEBIAN_MIRROR       mirror for debootstrap (default: the one apt uses here)
#   DEBIAN_SUITE        default bookworm
set -euo pipefail

TAG="${PYTHON_BASE_TAG:-c2d/python-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"

say() { echo "==> $*"; }

if [ -n "${BASE_IMAGE:-}" ]; then
  say "BASE_IMAGE=$BASE_IMAGE set: using it, not building $TAG"
  exit 0
fi
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "Docker engine is not answering: run tools/ensure-docker.sh first." >&2
  exit 1
fi
if docker image inspect "$TAG" >/dev/null 2>&1; then
  say "base image $TAG present"
  exit 0
fi

# The Debian mirror apt already uses on this machine (deb822 .sources or
# one-line sources.list), so CI machines behind their own mirror work too.
find_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" \
      | grep -E '/debian/?$' | head -n 1 || true)
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }' "$f" \
      | grep -E '/debian/?$' | head -n 1 || true)
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  echo "http://deb.debian.org/debian"
}

if [ "$(id -u)" != "0" ]; then
  echo "Building $TAG needs root (debootstrap). Either run as root, or set" >&2
  echo "BASE_IMAGE to an image you can pull (e.g. BASE_IMAGE=python:3.12-slim)." >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap from Debian (one time)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

MIRROR="${DEBIAN_MIRROR:-$(find_mirror)}"
ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/c2d-python-base.XXXXXX")"
cleanup() { rm -rf "$ROOTFS"; }
trap cleanup EXIT

say "debootstrap $SUITE (minbase + python3-minimal) from $MIRROR (~35 s)"
if ! debootstrap --variant=minbase --include=python3-minimal,libpython3.11-stdlib \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1; then
  echo "debootstrap failed; last lines of $ROOTFS.log:" >&2
  tail -n 20 "$ROOTFS.log" >&2
  exit 1
fi
rm -f "$ROOTFS.log"

say "trimming apt caches, docs, man pages and locales"
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/tmp/* "$ROOTFS"/debootstrap
# `python` as well as `python3`, like the official python images.
ln -sf python3 "$ROOTFS/usr/bin/python"
chmod 1777 "$ROOTFS/tmp"

say "importing the root filesystem as $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null

say "checking python3 runs in $TAG"
docker run --rm --network none "$TAG" python3 -c 'import sqlite3, json, zlib' >/dev/null

say "base image $TAG built ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1 / 1e6}'))"
