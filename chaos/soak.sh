#!/bin/sh
# Chaos soak: many seeds of the process tier and, where Docker answers, of
# the docker tier; prints a summary table and exits non-zero on any
# violation. Used by `make chaos`.
#
#   SEEDS=100 DURATION=60s chaos/soak.sh         # the full soak
#   SEEDS=10 DURATION=30s TIERS=process chaos/soak.sh
set -u
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-20}
FIRST=${FIRST:-1}
DURATION=${DURATION:-30s}
TIERS=${TIERS:-"process docker"}
OUT=${OUT:-tmp/chaos-soak}
mkdir -p "$OUT"
CGO_ENABLED=0 go build -o tmp/agora ./cmd/agora || exit 2
table="$OUT/summary.tsv"
printf 'tier\tseed\tfaults\tops\tviolations\tlinearizable\tlost_writes\tdouble_allocations\n' > "$table"
fail=0
for tier in $TIERS; do
	if [ "$tier" = docker ] && ! docker info >/dev/null 2>&1; then
		echo "!!! docker tier SKIPPED: docker info does not answer on this machine"
		continue
	fi
	seed=$FIRST
	while [ "$seed" -lt $((FIRST + SEEDS)) ]; do
		dir="$OUT/$tier-$seed"
		rm -rf "$dir"
		./tmp/agora chaos --tier "$tier" --seed "$seed" --duration "$DURATION" --out "$dir" --json > "$OUT/$tier-$seed.log" 2>&1
		rc=$?
		line=$(grep '^{"tier"' "$OUT/$tier-$seed.log" | tail -1)
		if [ -z "$line" ]; then
			printf '%s\t%s\tERROR (rc %s, see %s)\n' "$tier" "$seed" "$rc" "$OUT/$tier-$seed.log" >> "$table"
			fail=1
		else
			echo "$line" | sed 's/[{}"]//g' | tr ',' '\n' | awk -F: '{v[$1]=$2} END {printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v["tier"], v["seed"], v["faults"], v["ops"], v["violations"], v["linearizable"], v["lost_writes"], v["double_allocations"]}' >> "$table"
			[ "$rc" -ne 0 ] && fail=1
		fi
		# Keep the output of failing seeds only.
		[ "$rc" -eq 0 ] && rm -rf "$dir"
		tail -1 "$table"
		seed=$((seed + 1))
	done
done
echo
column -t -s "$(printf '\t')" "$table" 2>/dev/null || cat "$table"
awk -F'\t' 'NR>1 && $3 ~ /^[0-9]+$/ {runs++; f+=$3; o+=$4; v+=$5} END {printf "\n%d runs, %d faults, %d ops, %d violations\n", runs, f, o, v}' "$table"
exit $fail
