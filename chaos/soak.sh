#!/bin/sh
# Chaos soak: many seeds of the process tier and, where Docker answers, of
# the docker tier; prints a summary table and exits non-zero on any
# violation or failed run. Used by `make chaos`.
#
#   SEEDS=100 DURATION=60s JOBS=4 chaos/soak.sh   # the full soak, 4 runs at a time
#   SEEDS=10 DURATION=30s TIERS=process chaos/soak.sh
#   MASTERS=5 SEEDS=10 JOBS=4 chaos/soak.sh       # five masters
#   SIM_AGENTS=20 SEEDS=3 TIERS=process chaos/soak.sh  # plus 20 simulated agents
#
# SIM_AGENTS=N adds `--sim-agents N` to the process tier's runs (one
# `agora agent --simulate N` process beside the real agents; the docker
# tier ignores it).
#
# Runs of both tiers are interleaved (seed 1 process, seed 1 docker, ...),
# JOBS at a time; each run has its own addresses (process tier: 127.0.N.x
# from its pid; docker tier: its own network), so they do not collide.
# Output of failing runs is kept under OUT/<tier>-<seed>.
set -u
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-20}
FIRST=${FIRST:-1}
DURATION=${DURATION:-30s}
TIERS=${TIERS:-"process docker"}
JOBS=${JOBS:-1}
MASTERS=${MASTERS:-3}
SIM_AGENTS=${SIM_AGENTS:-0}
OUT=${OUT:-tmp/chaos-soak}

# One run: soak.sh --one TIER SEED (used through xargs below).
if [ "${1:-}" = --one ]; then
	tier=$2 seed=$3
	dir="$OUT/$tier-$seed"
	rm -rf "$dir"
	sim=""
	[ "$tier" = process ] && [ "$SIM_AGENTS" -gt 0 ] && sim="--sim-agents $SIM_AGENTS"
	start=$(date +%s)
	# $sim is unquoted on purpose: empty, or a flag and its value.
	"$OUT/agora" chaos --tier "$tier" --masters "$MASTERS" --seed "$seed" --duration "$DURATION" $sim --out "$dir" --json > "$OUT/$tier-$seed.log" 2>&1
	rc=$?
	wall=$(($(date +%s) - start))
	line=$(grep '^{"tier"' "$OUT/$tier-$seed.log" | tail -1)
	if [ -z "$line" ]; then
		row=$(printf '%s\t%s\tERROR (rc %s, see %s)' "$tier" "$seed" "$rc" "$OUT/$tier-$seed.log")
	else
		row=$(echo "$line" | sed 's/[{}"]//g' | tr ',' '\n' | awk -F: -v wall="$wall" '{v[$1]=$2} END {printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", v["tier"], v["seed"], v["faults"], v["ops"], v["violations"], v["linearizable"], v["lost_writes"], v["double_allocations"], v["kv_acked"], v["kv_lost"], v["preemptions"], v["preempted_tasks"], wall, v["sim_tasks"], v["status_batches"]}')
	fi
	# Keep the output of failing runs only.
	[ "$rc" -eq 0 ] && rm -rf "$dir"
	echo "$row" >> "$OUT/rows.tsv"
	echo "$row"
	exit 0
fi

mkdir -p "$OUT"
CGO_ENABLED=0 go build -o "$OUT/agora" ./cmd/agora || exit 2
rm -f "$OUT/rows.tsv"
run_tiers=""
for tier in $TIERS; do
	if [ "$tier" = docker ] && ! docker info >/dev/null 2>&1; then
		echo "!!! docker tier SKIPPED: docker info does not answer on this machine"
		continue
	fi
	run_tiers="$run_tiers $tier"
done
echo "soak: tiers$run_tiers, $MASTERS masters, $SIM_AGENTS simulated agents (process tier), seeds $FIRST..$((FIRST + SEEDS - 1)), $DURATION each, $JOBS at a time, commit $(git rev-parse --short HEAD 2>/dev/null)"
seed=$FIRST
while [ "$seed" -lt $((FIRST + SEEDS)) ]; do
	for tier in $run_tiers; do
		echo "$tier $seed"
	done
	seed=$((seed + 1))
done | OUT="$OUT" DURATION="$DURATION" MASTERS="$MASTERS" SIM_AGENTS="$SIM_AGENTS" xargs -P "$JOBS" -L 1 sh chaos/soak.sh --one

table="$OUT/summary.tsv"
printf 'tier\tseed\tfaults\tops\tviolations\tlinearizable\tlost_writes\tdouble_allocations\tkv_acked\tkv_lost\tpreemptions\tpreempted_tasks\twall_s\tsim_tasks\tstatus_batches\n' > "$table"
sort -k1,1 -k2,2n "$OUT/rows.tsv" >> "$table"
echo
column -t -s "$(printf '\t')" "$table" 2>/dev/null || cat "$table"
echo
awk -F'\t' 'NR>1 {
	t=$1; runs[t]++
	if ($3 ~ /^[0-9]+$/) {f[t]+=$3; o[t]+=$4; v[t]+=$5; if ($6=="true") lin[t]++; ka[t]+=$9; kl[t]+=$10; pd[t]+=$11; pv[t]+=$12; if ($11 > 0) pr[t]++} else err[t]++
} END {
	for (t in runs) printf "%s: %d runs, %d faults, %d ops, %d violations, %d linearizable, %d kv writes acknowledged, %d lost, %d preemption decisions (%d victims; runs with one: %d), %d failed to run\n", t, runs[t], f[t], o[t], v[t], lin[t], ka[t], kl[t], pd[t], pv[t], pr[t]+0, err[t]+0
}' "$table"
awk -F'\t' 'NR>1 && ($3 !~ /^[0-9]+$/ || $5 != 0) {bad=1} END {exit bad}' "$table"
