#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests
# (Playwright drives it; nothing is downloaded by Playwright). Installs it with
# apt when we are root and it is missing; otherwise explains.
set -euo pipefail
CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "No $CHROMIUM: install Chromium (Debian: 'apt-get install chromium') or set CHROMIUM_BIN." >&2
  exit 1
fi
echo "==> installing chromium from Debian (one time)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
