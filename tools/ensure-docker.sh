#!/usr/bin/env bash
# Make sure a Docker engine answers. Installs docker.io from Debian and starts
# dockerd in the background when we are root with apt; otherwise explains.
set -euo pipefail
LOG="${DOCKERD_LOG:-/tmp/compute-to-data-dockerd.log}"

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "Docker engine is not answering and we are not root." >&2
  echo "Start Docker yourself (e.g. 'sudo systemctl start docker') and add your user to the docker group." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "No dockerd and no apt-get: install a Docker engine for this system, then re-run." >&2
    exit 1
  fi
  echo "==> installing docker.io from Debian (one time)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
echo "==> starting dockerd (log: $LOG)"
nohup dockerd >"$LOG" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "==> Docker engine is up"
    exit 0
  fi
  sleep 1
done
echo "dockerd did not come up within 60 s; see $LOG" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
