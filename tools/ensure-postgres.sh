#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are installed (the tests start a private
# cluster from them; nothing is started here). Installs Debian's postgresql when
# we are root with apt; otherwise explains. SQLite stays the engine's default store.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL is not installed: install its server package (Debian: apt-get install postgresql);" >&2
  echo "the PostgreSQL store tests skip without it." >&2
  exit 0
fi
echo "==> installing postgresql from Debian (one time)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
