#!/usr/bin/env bash
# bench/hub_scale.sh: hub registrations per second and memory per peer with many simulated peers
# (issue 13: 50,000).
#
# `natkit hub --max-conns-per-ip 0` (every peer comes from 127.0.0.1) takes bench/hub_load with
# BENCH_HUB_PEERS_BIG peers (default 50,000): hub_load opens every connection, then every peer
# registers at once (Ed25519 challenge and proof); registrations/s = peers / register_ms. Memory per
# peer = (the hub's VmHWM after the run - its RSS before) / peers. Each peer is one descriptor in
# the hub and one in hub_load, so the count is capped by the hard RLIMIT_NOFILE (both raise their
# soft limit to it): with a hard limit below 4/3 x peers the run uses 3/4 of it and says so (at 19,800 of 20,000, hub_load could not queue its messages) (raise it
# with `ulimit -Hn` as root, or LimitNOFILE= in a unit). One source address to one hub port also has
# only the ephemeral port range (net.ipv4.ip_local_port_range, 28,232 ports by default) to use.
#
# Settings (environment): BENCH_HUB_PEERS_BIG=50000, NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-hub-scale
nk_bench_setup 1
HUB_LOAD=${HUB_LOAD:-$NK_BUILD_DIR/hub_load}
[ -x "$HUB_LOAD" ] || nk_fail "hub_load not found at $HUB_LOAD (make builds it)"
WANT=${BENCH_HUB_PEERS_BIG:-50000}

ulimit -n "$(ulimit -Hn)" 2>/dev/null
hard=$(ulimit -Hn)
read -r plo phi </proc/sys/net/ipv4/ip_local_port_range
cap=$WANT
[ "$hard" = unlimited ] || [ $((hard / 4 * 3)) -ge "$cap" ] || cap=$((hard / 4 * 3))
[ $((phi - plo - 100)) -ge "$cap" ] || cap=$((phi - plo - 100))
N=$cap
note=""
[ "$N" -ge "$WANT" ] || note=" (wanted $WANT: capped by RLIMIT_NOFILE hard $hard / $((phi - plo + 1)) ephemeral ports)"
kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

PORT=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$PORT" --quiet --max-conns-per-ip 0 \
	--max-peers $((N + 100)) --max-conns $((N + 100))
nk_wait_for_log "$NK_TMP/hub.log" 'natkit-hub: listening on' 10 || nk_fail "the hub did not start"
HUB_PID=$(pgrep -s "${NK_PROCS[hub]}" -x natkit) || nk_fail "no hub process"
before=$(kb "$HUB_PID" VmRSS)
echo "== hub: $N simulated peers$note =="
json=$(timeout 600 "$HUB_LOAD" --hub "127.0.0.1:$PORT" -n "$N" --timeout 300) || nk_fail "hub_load -n $N failed: $json"
peak=$(kb "$HUB_PID" VmHWM)
nk_stop hub
reg_ms=$(nk_json_get "$json" register_ms)
conn_ms=$(nk_json_get "$json" connect_ms)
[ "$(nk_json_get "$json" registered)" = true ] || nk_fail "not every peer registered: $json"
rate=$(awk -v n="$N" -v ms="$reg_ms" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
per=$(( (peak - before) * 1024 / N ))
echo "   $N connections opened in $conn_ms ms; all registered in $reg_ms ms: $rate registrations/s"
echo "   hub RSS $before kB before, peak $peak kB: $per bytes per registered peer (goal <= 2048)"
echo "   hub round trip during the burst: median $(nk_json_get "$json" hub_rtt_ms_burst_median) ms, max $(nk_json_get "$json" hub_rtt_ms_burst_max) ms"
echo "BENCH-JSON {\"bench\":\"hub_scale\",\"peers\":$N,\"wanted\":$WANT,\"register_ms\":$reg_ms,\"registrations_per_s\":$rate,\"bytes_per_peer\":$per}"
