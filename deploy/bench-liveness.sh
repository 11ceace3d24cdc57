#!/usr/bin/env bash
# Agent failure -> UNREACHABLE committed, with N agents as separate processes
# (3 masters, local gossip profile), ROUNDS rounds: SIGKILL one agent, time
# until the masters report it UNREACHABLE, restart it, wait for ACTIVE.
#   N=100 ROUNDS=10 deploy/bench-liveness.sh
set -u
N=${N:-100}; ROUNDS=${ROUNDS:-10}; PROFILE=${PROFILE:-local}
cd "$(dirname "$0")/.."
W=$(mktemp -d -t agora-liveness.XXXXXX)
BIN=$W/agora
CGO_ENABLED=0 go build -o "$BIN" ./cmd/agora || exit 2
PIDS=()
declare -A APID
cleanup() { exec 2>/dev/null; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT
J=127.0.0.1:46301,127.0.0.1:46302,127.0.0.1:46303
for i in 1 2 3; do
  "$BIN" master --id m$i --data-dir "$W/m$i" --http 127.0.0.1:4610$i --raft 127.0.0.1:4620$i --gossip 127.0.0.1:4630$i \
    --join $J --bootstrap-expect 3 --gossip-profile "$PROFILE" --log-level error >"$W/m$i.log" 2>&1 &
  PIDS+=($!)
done
A=http://127.0.0.1:46101
start_agent() {
  "$BIN" agent --id "a$1" --data-dir "$W/a$1" --gossip "127.0.0.1:$((47000 + $1))" --join $J \
    --resources 'cpus:1;mem:1024' --gossip-profile "$PROFILE" --log-level error >>"$W/a$1.log" 2>&1 &
  APID[$1]=$!; PIDS+=($!)
}
for i in $(seq 1 "$N"); do start_agent "$i"; done
count() { "$BIN" agents --addr $A --json 2>/dev/null | python3 -c "import json,sys; print(sum(1 for a in json.load(sys.stdin) if a['state']=='$1'))" 2>/dev/null || echo 0; }
state() { "$BIN" agents --addr $A --json --stale 2>/dev/null | python3 -c "import json,sys; print([a['state'] for a in json.load(sys.stdin) if a['id']=='$1'][0])" 2>/dev/null; }
deadline=$(( $(date +%s) + 300 ))
until [ "$(count ACTIVE)" = "$N" ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "only $(count ACTIVE) of $N agents ACTIVE after 300 s; states:"
    "$BIN" agents --addr $A --json | python3 -c "import json,sys,collections; print(collections.Counter(a['state'] for a in json.load(sys.stdin)))"
    exit 1
  fi
  sleep 0.5
done
echo "$N agents ACTIVE"
samples=()
for r in $(seq 1 "$ROUNDS"); do
  v=$(( (r * 37) % N + 1 ))
  t0=$(date +%s%3N); kill -9 "${APID[$v]}"
  until [ "$(state a$v)" = UNREACHABLE ]; do sleep 0.02; done
  t1=$(date +%s%3N); samples+=($((t1 - t0))); echo "round $r: a$v UNREACHABLE after $((t1 - t0)) ms"
  start_agent "$v"
  until [ "$(state a$v)" = ACTIVE ]; do sleep 0.1; done
done
printf '%s\n' "${samples[@]}" | sort -n | python3 -c "
import sys; s=[int(x) for x in sys.stdin]; n=len(s)
p=lambda q: s[min(n-1, int(round(q*(n-1))))]
print(f'agents={$N} profile=$PROFILE rounds={n} p50_ms={p(0.5)} p99_ms={p(0.99)} max_ms={s[-1]}')"
