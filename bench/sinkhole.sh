#!/usr/bin/env bash
# Sinkhole throughput and forwarding latency, measured with dnsperf from a
# second process on loopback. The upstream is dnsmasq answering one local
# name. Needs: apt-get install -y dnsperf dnsmasq-base
# Usage: bench/sinkhole.sh [SECONDS]   (per run; default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin
secs=${1:-10}
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/killswitch" ./cmd/killswitch

dnsmasq --keep-in-foreground --port 5301 --listen-address 127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --address=/intranet.bench/127.0.0.88 --cache-size=10000 --user=root --pid-file= 2>"$work/dnsmasq.log" &
pids+=($!)
"$work/killswitch" sinkhole --dns 127.0.0.1:5300 --http 127.0.0.1:8053 --upstream 127.0.0.1:5301 \
  --alerts "$work/alerts.jsonl" 2>"$work/sinkhole.log" &
pids+=($!)
sleep 1
dig @127.0.0.1 -p 5301 +short +time=1 +tries=1 intranet.bench | grep -q 127.0.0.88 || { echo "dnsmasq is not answering:"; cat "$work/dnsmasq.log"; exit 1; }

echo "www.iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com A" > "$work/killswitch.q"
echo "intranet.bench A" > "$work/forward.q"

# dnsperf: -c clients, -T threads, -l seconds; -Q caps the rate (for latency).
perf() { dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$secs" -c 16 -T 1 "${@:3}" 2>&1; }
report() { # label, dnsperf output
  local qps lat sd
  qps=$(awk '/Queries per second/ {print $4}' <<<"$2")
  lat=$(awk '/Average Latency/ {print $4}' <<<"$2")
  sd=$(awk '/Average Latency/ {gsub(/[(),]/,""); print $8}' <<<"$2")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$2")
  codes=$(awk -F: '/Response codes/ {gsub(/^ +/,"",$2); print $2}' <<<"$2")
  printf "%-46s %10s qps   avg latency %s ms (sd %s)  lost %s  [%s]\n" "$1" "$qps" "$(awk -v l="$lat" 'BEGIN{printf "%.3f", l*1000}')" "$(awk -v l="$sd" 'BEGIN{printf "%.3f", l*1000}')" "$lost" "$codes"
}
echo "== throughput (16 clients, ${secs}s each, as fast as they go)"
report "same name, straight to the upstream (dnsmasq)" "$(perf 5301 "$work/forward.q")"
report "kill-switch name, answered by the sinkhole" "$(perf 5300 "$work/killswitch.q")"
report "other name, forwarded by the sinkhole" "$(perf 5300 "$work/forward.q")"
echo "== latency at a fixed 2000 qps"
direct=$(perf 5301 "$work/forward.q" -Q 2000)
fwd=$(perf 5300 "$work/forward.q" -Q 2000)
report "straight to the upstream" "$direct"
report "forwarded by the sinkhole" "$fwd"
d=$(awk '/Average Latency/ {print $4}' <<<"$direct"); f=$(awk '/Average Latency/ {print $4}' <<<"$fwd")
awk -v d="$d" -v f="$f" 'BEGIN{printf "added by forwarding: %.3f ms per query\n", (f-d)*1000}'
echo "== alerts raised: $(wc -l < "$work/alerts.jsonl") (one host asked, so one grouped alert)"
