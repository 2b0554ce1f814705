#!/bin/sh
# Runs every libFuzzer target in BUILD_DIR for SECONDS each (FUZZ_TARGETS="fuzz_a fuzz_b": only
# those) and keeps what it finds: libFuzzer writes new inputs into a scratch folder (its first
# corpus) while fuzz/corpus/<target>/ is the seed; then `-merge=1` copies into fuzz/corpus/<target>/
# only the scratch inputs that reach coverage the corpus does not already reach. A crash leaves
# the scratch folder (with the crashing input) and fails the run. At the end, a table per target:
# executions, coverage (cov: edges, ft: features, from libFuzzer's final stats), corpus files
# before -> after, result.
#   sh scripts/fuzz.sh [BUILD_DIR [SECONDS]]        (make fuzz FUZZ_SECONDS=N [FUZZ_TARGETS=...])
set -eu
build=${1:-build/fuzz}
seconds=${2:-60}
only=${FUZZ_TARGETS:-}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
table=$(mktemp)
trap 'rm -f "$table"' EXIT

count() { find "$1" -type f | wc -l | tr -d ' '; }

for bin in "$build"/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	if [ -n "$only" ]; then
		case " $only " in *" $name "*) ;; *) continue ;; esac
	fi
	corpus="$root/fuzz/corpus/$name"
	work=$(mktemp -d)
	mkdir -p "$corpus" "$work/new"
	before=$(count "$corpus")
	echo "== $name: ${seconds}s"
	if ! "$bin" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 -artifact_prefix="$work/" \
		"$work/new" "$corpus" >"$work/log" 2>&1; then
		tail -40 "$work/log"
		echo "fuzz: $name found a crash; artifacts in $work" >&2
		printf '%-20s %12s %8s %8s %16s  %s\n' "$name" - - - "$before" "CRASH: $work" >>"$table"
		status=1
		continue
	fi
	# the final stats line: "#RUNS	DONE   cov: N ft: N corp: ..."
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log" | tail -1)
	runs=$(echo "$done_line" | sed -nE 's/^#([0-9]+).*/\1/p')
	cov=$(echo "$done_line" | sed -nE 's/.* cov: ([0-9]+).*/\1/p')
	ft=$(echo "$done_line" | sed -nE 's/.* ft: ([0-9]+).*/\1/p')
	found=$(count "$work/new")
	result="ok"
	if [ "$found" -gt 0 ] && ! "$bin" -merge=1 -max_len=4096 "$corpus" "$work/new" >"$work/merge.log" 2>&1; then
		tail -20 "$work/merge.log"
		echo "fuzz: $name: merging $found new inputs into $corpus failed; they are in $work/new" >&2
		result="MERGE FAILED: $work"
		status=1
	fi
	after=$(count "$corpus")
	printf '%-20s %12s %8s %8s %16s  %s\n' "$name" "${runs:--}" "${cov:--}" "${ft:--}" "$before -> $after" \
		"$result ($found new, $((after - before)) kept)" >>"$table"
	case $result in ok) rm -rf "$work" ;; esac
done
echo
printf '%-20s %12s %8s %8s %16s  %s\n' target runs cov ft corpus result
cat "$table"
exit $status
