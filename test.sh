#!/usr/bin/env bash
# Installs what the tests drive for real, then runs every test.
set -euo pipefail
cd "$(dirname "$0")"
need=()
for pair in zip:zip unzip:unzip sqlite3:sqlite3 git:git openssl:openssl tar:tar gzip:gzip mkfs.xfs:xfsprogs smbd:samba smbclient:smbclient nmap:nmap nft:nftables ip:iproute2 dig:dnsutils curl:curl chromium:chromium node:nodejs; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin

# PostgreSQL for the hub's store tests: Debian's server, a throwaway role
# and database. Skipped when KILLSWITCH_TEST_POSTGRES is already set.
if [ -z "${KILLSWITCH_TEST_POSTGRES:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  read -r pgver pgcluster _ <<<"$(pg_lsclusters -h | head -1)"
  pg_ctlcluster "$pgver" "$pgcluster" start 2>/dev/null || true
  for _ in $(seq 50); do runuser -u postgres -- psql -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  runuser -u postgres -- psql -qc "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'killswitch') THEN CREATE ROLE killswitch LOGIN PASSWORD 'killswitch'; END IF; END\$\$;" >/dev/null
  runuser -u postgres -- psql -qAtc "SELECT 1 FROM pg_database WHERE datname = 'killswitch_test'" | grep -q 1 ||
    runuser -u postgres -- createdb -O killswitch killswitch_test
  port=$(pg_lsclusters -h | head -1 | awk '{print $3}')
  export KILLSWITCH_TEST_POSTGRES="postgres://killswitch:killswitch@127.0.0.1:$port/killswitch_test?sslmode=disable"
fi
exec go test -count=1 -timeout 30m "$@" ./...
