#!/usr/bin/env bash
# bench/hub_mem.sh: the hub's memory per registered peer, and what it keeps after a flood.
#
# `natkit hub` (no per-source cap: every peer comes from 127.0.0.1) takes bench/hub_load with
# BENCH_HUB_PEERS_LO (1000) and then, in a fresh hub, BENCH_HUB_PEERS_HI (3000) peers; the
# difference of the two peak RSS (VmHWM), divided by the difference of peers, is the memory per
# registered peer (the issue's goal: <= 2 kB). Then BENCH_HUB_FLOOD (4000) idle TCP connections
# (tests/integration/limits_tool.py) sit until the hub closes them at its registration deadline
# (5 s); the RSS after they are gone against the RSS before them is what the flood left behind.
#
# Settings (environment): BENCH_HUB_PEERS_LO=1000 BENCH_HUB_PEERS_HI=3000 BENCH_HUB_FLOOD=4000
#   NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-hub-mem
nk_bench_setup 1
nk_require python3
HUB_LOAD=${HUB_LOAD:-$NK_BUILD_DIR/hub_load}
[ -x "$HUB_LOAD" ] || nk_fail "hub_load not found at $HUB_LOAD (make builds it)"
LO=${BENCH_HUB_PEERS_LO:-1000}
HI=${BENCH_HUB_PEERS_HI:-3000}
FLOOD=${BENCH_HUB_FLOOD:-4000}

kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# hub NAME: starts natkit hub on a free port; sets PORT and HUB_PID (the hub itself, not its wrapper).
hub() {
	PORT=$(nk_free_port 1)
	nk_start "$1" "$NK_TMP/$1.log" "$NATKIT" hub --listen "127.0.0.1:$PORT" --quiet --max-conns-per-ip 0 \
		--max-peers $((HI + 100))
	nk_wait_for_log "$NK_TMP/$1.log" 'natkit-hub: listening on' 10 || nk_fail "$1: the hub did not start"
	HUB_PID=$(pgrep -s "${NK_PROCS[$1]}" -x natkit) || nk_fail "$1: no hub process"
}

# peak N: the hub's VmHWM (kB) once hub_load has registered N peers and left.
peak() {
	hub "hub$1"
	timeout 300 "$HUB_LOAD" --hub "127.0.0.1:$PORT" -n "$1" >"$NK_TMP/load$1.json" ||
		nk_fail "hub_load -n $1 failed: $(cat "$NK_TMP/load$1.json")"
	PEAK=$(kb "$HUB_PID" VmHWM)
	nk_stop "hub$1"
}

echo "== hub: memory per registered peer (goal <= 2 kB), and after a flood =="
peak "$LO"
lo=$PEAK
peak "$HI"
hi=$PEAK
per=$(( (hi - lo) * 1024 / (HI - LO) ))
echo "hub peak RSS: $lo kB with $LO peers, $hi kB with $HI peers: $per bytes per registered peer"

hub flood_hub
before=$(kb "$HUB_PID" VmRSS)
nk_start flood "$NK_TMP/flood.log" python3 "$NK_SOURCE_DIR/tests/integration/limits_tool.py" tcp-flood \
	127.0.0.1 "$PORT" -n "$FLOOD" --bind 127.0.0.1
nk_wait_for_log "$NK_TMP/flood.log" "^open=$FLOOD closed=0 " 60 || nk_fail "the flood did not connect"
during=$(kb "$HUB_PID" VmRSS)
nk_wait_for_log "$NK_TMP/flood.log" '^all closed' 30 || nk_fail "the hub did not close the idle flood"
# the hub trims its heap at its next sweep (once a second) after the connections went: wait for
# the RSS to come down halfway, 3 s at most, and measure then
for ((i = 0; i < 30; i++)); do
	after=$(kb "$HUB_PID" VmRSS)
	[ "$after" -gt $(( (before + during) / 2 )) ] || break
	read -r -t 0.1 <> <(:) || :
done
echo "flood of $FLOOD idle connections: RSS $before kB before, $during kB during, $after kB after ($((after - before)) kB kept)"
nk_stop flood
nk_stop flood_hub
echo "ratio (bytes per peer / 2048): $(nk_bench_ratio "$per" 2048)"
