#!/usr/bin/env bash
# Installs what the tests drive for real, then runs every test.
set -euo pipefail
cd "$(dirname "$0")"
need=()
for t in zip unzip sqlite3 git openssl tar gzip; do
  command -v "$t" >/dev/null 2>&1 || need+=("$t")
done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec go test -count=1 -timeout 30m "$@" ./...
