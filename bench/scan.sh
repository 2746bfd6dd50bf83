#!/usr/bin/env bash
# Scans a 250-host loopback lab with killswitch and with nmap's SMB scripts
# and prints wall times, hosts/s and every disagreement; then times a scan
# of 1000 silent (filtered) hosts. Root, Samba, nmap and nftables needed:
#   apt-get install -y samba nmap nftables
# Usage: bench/scan.sh            (the lab: 150 Samba, 60 replayed Windows,
#                                  18 hostile, 12 closed, 10 filtered)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/killswitch" ./cmd/killswitch
go build -o "$bin/scanlab" ./bench/scanlab
echo "== 250-host lab, killswitch against nmap"
"$bin/scanlab" -killswitch "$bin/killswitch"
echo
echo "== 1000 silent hosts (SYN dropped), default --timeout 2s, --concurrency 512"
"$bin/scanlab" -killswitch "$bin/killswitch" -no-nmap -samba 0 -recorded 0 -hostile 0 -closed 0 -filtered 1000
