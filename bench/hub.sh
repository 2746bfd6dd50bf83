#!/usr/bin/env bash
# How many agents one hub holds with p99 ingest latency under 200 ms, for
# SQLite and (when KILLSWITCH_BENCH_POSTGRES is a postgres:// URL, or as
# root with Debian's PostgreSQL) for PostgreSQL.
# Usage: bench/hub.sh [AGENT COUNTS]   e.g. bench/hub.sh 5000,10000,20000
set -euo pipefail
cd "$(dirname "$0")/.."
counts=${1:-2500,5000,10000,15000,20000,30000,40000}
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/killswitch" ./cmd/killswitch
go build -o "$bin/hubload" ./bench/hubload
"$bin/hubload" -killswitch "$bin/killswitch" -agents "$counts"
pg=${KILLSWITCH_BENCH_POSTGRES:-}
if [ -z "$pg" ] && [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null; then
  read -r ver cluster port _ <<<"$(pg_lsclusters -h | head -1)"
  pg_ctlcluster "$ver" "$cluster" start 2>/dev/null || true
  runuser -u postgres -- psql -qc "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'killswitch') THEN CREATE ROLE killswitch LOGIN PASSWORD 'killswitch'; END IF; END\$\$;" >/dev/null
  runuser -u postgres -- psql -qAtc "SELECT 1 FROM pg_database WHERE datname = 'killswitch_bench'" | grep -q 1 ||
    runuser -u postgres -- createdb -O killswitch killswitch_bench
  pg="postgres://killswitch:killswitch@127.0.0.1:$port/killswitch_bench?sslmode=disable"
fi
[ -n "$pg" ] && "$bin/hubload" -killswitch "$bin/killswitch" -db "$pg" -agents "$counts"
