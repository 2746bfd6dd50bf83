#!/usr/bin/env bash
# Benchmark: the file-heavy workload (bench/workload) with and without the
# guard and its vault. Each run gets a freshly made ext4 filesystem on a
# loop device, because ext4 slows inode allocation right after mass
# deletions and would otherwise make runs incomparable. Prints wall times,
# their ratio, the permission-path decision latency (p50, p99) the guard
# measured, and the vault's size. Needs root. Usage: bench/guard.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
# Extra workload flags, e.g. WORKLOAD_FLAGS="-files 500 -file-bytes 100000" for a document-sized mix.
wflags=${WORKLOAD_FLAGS:-}
out=$(mktemp -d /var/tmp/killswitch-bench-XXXX)
mnt="$out/mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; rm -rf "$out"; }
trap cleanup EXIT
go build -o "$out/killswitch" ./cmd/killswitch
go build -o "$out/workload" ./bench/workload
mkdir "$mnt"
freshfs() {
  mountpoint -q "$mnt" && umount "$mnt"
  rm -f "$out/fs.img" && truncate -s 2G "$out/fs.img" && mkfs.ext4 -q -F "$out/fs.img"
  mount -o loop "$out/fs.img" "$mnt" && mkdir "$mnt/w"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
plain=(); guarded=()
for r in $(seq "$runs"); do
  freshfs
  plain+=("$("$out/workload" $wflags -dir "$mnt/w")")
  freshfs
  "$out/killswitch" guard --vault "$mnt/vault" --alerts "$out/alerts.jsonl" "$mnt/w" 2>"$out/guard.log" &
  gpid=$!
  until grep -q armed "$out/guard.log" 2>/dev/null; do sleep 0.05; done
  guarded+=("$("$out/workload" $wflags -dir "$mnt/w")")
  kill -TERM $gpid; wait $gpid
  grep -o 'perm_p50=[^ ]* perm_p99=[^ ]* perm_events=[^ ]* ignore_marks=[^ ]* catch_ups=[^ ]* close_writes=[^ ]*' "$out/guard.log" >> "$out/lat.txt"
  du -sk "$mnt/vault" | awk '{print $1}' > "$out/vault.kb"
done
p=$(printf '%s\n' "${plain[@]}" | median); g=$(printf '%s\n' "${guarded[@]}" | median)
echo "workload without guard: ${plain[*]} s (median $p)"
echo "workload with guard:    ${guarded[*]} s (median $g)"
awk -v p="$p" -v g="$g" 'BEGIN { printf "wall-time ratio: %.3f\n", g/p }'
echo "permission path per run:"; cat "$out/lat.txt"
echo "vault size after the last run: $(cat "$out/vault.kb") KiB (workload flags: ${wflags:-default: 5000 files of 1000 bytes, 200 MiB sequential})"
echo "alerts during benchmark: $( [ -f "$out/alerts.jsonl" ] && wc -l < "$out/alerts.jsonl" || echo 0)"
