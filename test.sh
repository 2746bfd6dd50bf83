#!/usr/bin/env bash
# Installs what the tests drive for real, then runs every test.
set -euo pipefail
cd "$(dirname "$0")"
need=()
for pair in zip:zip unzip:unzip sqlite3:sqlite3 git:git openssl:openssl tar:tar gzip:gzip mkfs.xfs:xfsprogs smbd:samba nmap:nmap nft:nftables ip:iproute2 dig:dnsutils curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin
exec go test -count=1 -timeout 30m "$@" ./...
