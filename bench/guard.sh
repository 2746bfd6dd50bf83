#!/usr/bin/env bash
# Benchmark: the file-heavy workload with and without the guard (and its
# vault). Prints wall times, their ratio, and the permission-path decision
# latency (p50, p99) the guard measured. Needs root. Usage: bench/guard.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=$(mktemp -d /var/tmp/killswitch-bench-XXXX)
trap 'rm -rf "$out"' EXIT
go build -o "$out/killswitch" ./cmd/killswitch
go build -o "$out/workload" ./bench/workload
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
plain=(); guarded=()
for r in $(seq "$runs"); do
  rm -rf "$out/w" && mkdir "$out/w" && sync
  plain+=("$("$out/workload" -dir "$out/w")")
  rm -rf "$out/w" "$out/vault" && mkdir "$out/w" && sync
  "$out/killswitch" guard --vault "$out/vault" --alerts "$out/alerts.jsonl" "$out/w" 2>"$out/guard.log" &
  gpid=$!
  until grep -q armed "$out/guard.log" 2>/dev/null; do sleep 0.05; done
  guarded+=("$("$out/workload" -dir "$out/w")")
  kill -TERM $gpid; wait $gpid
  grep -o 'perm_p50=[^ ]* perm_p99=[^ ]* perm_events=[^ ]* ignore_marks=[^ ]* catch_ups=[^ ]*' "$out/guard.log" >> "$out/lat.txt"
done
p=$(printf '%s\n' "${plain[@]}" | median); g=$(printf '%s\n' "${guarded[@]}" | median)
echo "workload without guard: ${plain[*]} s (median $p)"
echo "workload with guard:    ${guarded[*]} s (median $g)"
awk -v p="$p" -v g="$g" 'BEGIN { printf "wall-time ratio: %.3f\n", g/p }'
echo "permission path per run:"; cat "$out/lat.txt"
du -sh "$out/vault" | awk '{print "vault size after last run: " $1 " (workload writes 200 MiB + 5000 small files)"}'
grep -c '"event"' "$out/alerts.jsonl" 2>/dev/null | awk '{print "alerts during benchmark: " $1}' || echo "alerts during benchmark: 0"
