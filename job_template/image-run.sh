#!/usr/bin/env bash
# DEV_MODE: run the job image locally the way the engine would, with no
# engine and no chain. Builds input/query_results.db from dummy_data.sql
# (or uses INPUT_DB), mounts it read-only, collects output/ and prints it.
#
# The container gets the engine's sandbox: no network, read-only root,
# all capabilities dropped, no-new-privileges, uid:gid 65534:65534,
# 64 MiB /tmp, 512 MiB memory, 1 CPU, 256 pids, and the engine's job
# environment (contract version 1, job_template/README.md) in the vana layout.
#
# Env: IMAGE (default my-compute-job:latest), INPUT_DB (a SQLite file with a
# `results` table to use instead of dummy_data.sql), DATA_REFINER_ID.
set -euo pipefail
cd "$(dirname "$0")"

IMAGE="${IMAGE:-my-compute-job:latest}"
say() { echo "==> $*"; }

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "No image $IMAGE: run ./image-build.sh first." >&2
  exit 1
fi

mkdir -p input
rm -rf output
mkdir -p output
chmod 0755 input
chmod 0777 output  # the container's uid (65534) must be able to write here

DB="$PWD/input/query_results.db"
if [ -n "${INPUT_DB:-}" ]; then
  say "DEV_MODE: input from $INPUT_DB"
  cp "$INPUT_DB" "$DB"
else
  say "DEV_MODE: input/query_results.db from dummy_data.sql"
  rm -f "$DB"
  if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$DB" <dummy_data.sql
  else
    python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
      "$DB" dummy_data.sql
  fi
fi
chmod 0644 "$DB"

say "running $IMAGE (no network, read-only, non-root)"
set +e
docker run --rm \
  --network none \
  --read-only \
  --cap-drop ALL \
  --security-opt no-new-privileges \
  --user 65534:65534 \
  --tmpfs /tmp:rw,noexec,nosuid,nodev,size=64m,mode=1777 \
  --memory 512m --memory-swap 512m \
  --cpus 1 \
  --pids-limit 256 \
  -v "$DB:/mnt/input/query_results.db:ro" \
  -v "$PWD/output:/mnt/output:rw" \
  -e C2D_JOB_ENV_VERSION=1 \
  -e C2D_LAYOUT=vana \
  -e C2D_JOB_ID=dev-mode \
  -e INPUT_PATH=/mnt/input \
  -e OUTPUT_PATH=/mnt/output \
  -e COMPUTE_JOB_ID=dev-mode \
  -e DATA_REFINER_ID="${DATA_REFINER_ID:-1}" \
  -e DEV_MODE=1 \
  "$IMAGE"
code=$?
set -e

case "$code" in
  0) say "job exited 0 (ok)" ;;
  2) say "job exited 2 (bad input: no database or no results table)" ;;
  3) say "job exited 3 (error while computing or writing outputs)" ;;
  *) say "job exited $code" ;;
esac

say "outputs in $PWD/output:"
(cd output && find . -type f -printf '    %P (%s bytes)\n' | sort)
if [ -f output/stats.json ]; then
  say "output/stats.json:"
  cat output/stats.json
fi
exit "$code"
