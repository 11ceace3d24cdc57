#!/usr/bin/env bash
# Utilization held under a role's cap during a long batch run (issue 11).
# `agora dev` (3 masters, 2 agents of cpus:4;mem:4096;disk:10000), role batch
# capped at CAP, `agora batch run` with units of 0.25 cpu lasting WORK each
# (far more units than fit), sampled every second for DURATION from
# `agora agents --json`: what tasks hold ("used") and what tasks and
# outstanding offers hold ("used+offered", what the allocator counts) over the
# total, per scalar kind; the largest kind's fraction. Prints the maxima and
# one JSON line.
#   DURATION=600 CAP=0.9 deploy/bench-cap.sh
set -u
DURATION=${DURATION:-600}; CAP=${CAP:-0.9}; WORK=${WORK:-5s}; BASE=${BASE:-46500}
cd "$(dirname "$0")/.."
W=$(mktemp -d -t agora-cap.XXXXXX)
BIN=$W/agora
CGO_ENABLED=0 go build -o "$BIN" ./cmd/agora || exit 2
A=http://127.0.0.1:$BASE
DEV= JOB=
cleanup() {
  exec 2>/dev/null
  [ -n "$JOB" ] && kill -INT "$JOB"
  [ -n "$DEV" ] && kill -INT "$DEV" && wait "$DEV"
  rm -rf "$W"
}
trap cleanup EXIT
"$BIN" dev --base-port "$BASE" >"$W/dev.log" 2>&1 &
DEV=$!
for _ in $(seq 1 100); do "$BIN" agents --addr $A --json 2>/dev/null | grep -q '"ACTIVE"' && break; sleep 0.2; done
"$BIN" role set batch --addr $A --priority 0 --max-utilization "$CAP" >/dev/null || exit 1
"$BIN" batch run --addr $A --units 1000000 --lines 200 --work "$WORK" --cpus 0.25 --mem 32 >"$W/job.log" 2>&1 &
JOB=$!
end=$(( $(date +%s) + DURATION ))
while [ "$(date +%s)" -lt "$end" ]; do
  "$BIN" agents --addr $A --json 2>/dev/null
  echo "---"
  sleep 1
done | python3 -c '
import json, sys
cap = float(sys.argv[1])
def parse(s):
    out = {}
    if s in ("", "-"): return out
    for part in s.split(";"):
        k, _, v = part.partition(":")
        if v.startswith("[") or v.startswith("{"): continue
        out[k] = out.get(k, 0.0) + float(v)
    return out
buf, samples, mx_used, mx_held = [], 0, 0.0, 0.0
for line in sys.stdin:
    if line.strip() != "---":
        buf.append(line); continue
    try: agents = json.loads("".join(buf))
    except ValueError: agents = None
    buf = []
    if not agents: continue
    tot, used, off = {}, {}, {}
    for a in agents:
        if a["state"] == "GONE": continue
        r = a["resources"]
        for d, s in ((tot, r["total"]), (used, r["used"]), (off, r["offered"])):
            for k, v in parse(s).items(): d[k] = d.get(k, 0.0) + v
    u = max((used.get(k, 0) / t for k, t in tot.items() if t > 0), default=0)
    h = max(((used.get(k, 0) + off.get(k, 0)) / t for k, t in tot.items() if t > 0), default=0)
    samples += 1; mx_used = max(mx_used, u); mx_held = max(mx_held, h)
print("samples=%d cap=%.2f max_used=%.4f max_used_plus_offered=%.4f" % (samples, cap, mx_used, mx_held))
print(json.dumps({"samples": samples, "cap": cap, "max_task_utilization": round(mx_used, 4), "max_held_utilization": round(mx_held, 4), "over_cap": mx_used > cap + 1e-9}))
' "$CAP"
grep -c "recorded" "$W/job.log" | sed 's/^/units recorded: /'
