#!/usr/bin/env bash
# Benchmark: WannaCry through a Samba share (killswitch drill --share), RUNS
# times. Prints, per run and in summary, the files damaged before the stop,
# the time from the first damaging write to the freeze, whether the
# workstation was cut off while a colleague was still served, and whether
# the restore left nothing behind. Needs root, samba, smbclient, nftables.
# Usage: bench/fileserver.sh [RUNS] [FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
files=${2:-120}
out=$(mktemp -d /var/tmp/killswitch-bench-XXXX)
trap 'rm -rf "$out"' EXIT
go build -o "$out/killswitch" ./cmd/killswitch
for r in $(seq "$runs"); do
  "$out/killswitch" drill --share --files "$files" --json >>"$out/runs.jsonl" || true
done
python3 - "$out/runs.jsonl" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for i, r in enumerate(rows, 1):
    s = r.get("share") or {}
    print(f"run {i}: damaged {r['damaged_before_restore']}, stopped {r['time_to_stop_ns']/1e6:.1f} ms after the first damage, "
          f"cut off {s.get('cut_off')}, colleague served {s.get('colleague_served')}, "
          f"lost {r['lost_after_restore']}, attacker files left {r['attacker_files_after_restore']}")
dam = [r["damaged_before_restore"] for r in rows]
ms = [r["time_to_stop_ns"] / 1e6 for r in rows]
ok = sum(1 for r in rows if r["stopped"] and r["lost_after_restore"] == 0 and r["attacker_files_after_restore"] == 0
         and (r.get("share") or {}).get("cut_off") and (r.get("share") or {}).get("colleague_served"))
print(f"{len(rows)} runs: damaged median {statistics.median(dam)}, max {max(dam)}; "
      f"time to stop median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms; {ok} of {len(rows)} fully right")
PY
