#!/bin/sh
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, starting from
# (and adding to) its corpus in fuzz/corpus/<target>/.
set -eu
build=${1:-build/fuzz}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bin in "$build"/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus="$root/fuzz/corpus/$name"
	work=$(mktemp -d)
	mkdir -p "$corpus"
	echo "== $name: ${seconds}s"
	if ! "$bin" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$work/" \
		"$work" "$corpus" >"$work/log" 2>&1; then
		tail -40 "$work/log"
		echo "fuzz: $name found a crash; artifacts in $work" >&2
		status=1
		continue
	fi
	tail -1 "$work/log"
	rm -rf "$work"
done
exit $status
