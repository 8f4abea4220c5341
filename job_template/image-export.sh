#!/usr/bin/env bash
# Export the job image as the archive the engine downloads: `docker save`,
# gzip without a timestamp (same image -> same bytes -> same sha256), then
# print the sha256 and the `registry instruction add` command to run next.
#
# Env: IMAGE (default my-compute-job:latest), ARCHIVE (default
# my-compute-job.tar.gz), ARCHIVE_URL (where you will host the archive;
# default: what `python3 -m http.server 8001` serves from this folder),
# KEY_ENV (name of the env var holding your builder key; default BUILDER_KEY).
set -euo pipefail
cd "$(dirname "$0")"

IMAGE="${IMAGE:-my-compute-job:latest}"
ARCHIVE="${ARCHIVE:-my-compute-job.tar.gz}"
ARCHIVE_URL="${ARCHIVE_URL:-http://127.0.0.1:8001/$(basename "$ARCHIVE")}"
KEY_ENV="${KEY_ENV:-BUILDER_KEY}"
say() { echo "==> $*"; }

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "No image $IMAGE: run ./image-build.sh first." >&2
  exit 1
fi

# The labels travel inside the archive (its config), so the approved sha256 covers them:
# `registry instruction inspect` shows them to the DLP owner before approval.
say "labels: $(docker image inspect -f '{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}' "$IMAGE")"
say "saving $IMAGE to $ARCHIVE"
TMP="$ARCHIVE.partial"
trap 'rm -f "$TMP"' EXIT
if [ -t 2 ]; then
  # On a terminal: the archive's size as it grows, on stderr (stdout stays the result lines).
  docker save "$IMAGE" | gzip -n -6 >"$TMP" &
  saving=$!
  while kill -0 "$saving" 2>/dev/null; do
    printf '\r==> %s bytes written' "$(stat -c %s "$TMP" 2>/dev/null || echo 0)" >&2
    sleep 0.5
  done
  wait "$saving"
  printf '\r==> %s bytes written\n' "$(stat -c %s "$TMP")" >&2
else
  docker save "$IMAGE" | gzip -n -6 >"$TMP"
fi
mv "$TMP" "$ARCHIVE"

SHA="$(sha256sum "$ARCHIVE" | cut -d' ' -f1)"
say "wrote $ARCHIVE ($(stat -c %s "$ARCHIVE") bytes)"
say "sha256 $SHA"
say "next: host $ARCHIVE at $ARCHIVE_URL (any http(s) server; e.g. 'python3 -m http.server 8001' here), then publish it:"
echo "registry instruction add --sha256 $SHA --url $ARCHIVE_URL --key-env $KEY_ENV"
