#!/usr/bin/env bash
# bench/hub_cluster.sh: what a hub cluster adds to signalling latency, on loopback.
#
# A redis-server of its own (loopback, no persistence), hubs A and B with --redis, and a hub C
# alone (no --redis, as today). build/hub_cluster_probe sends SIGNAL round trips X -> Y -> X
# one at a time (-n of them) and relays packets: once with X and Y both at C (one hub), once
# with X at A and Y at B (every frame crosses Redis twice per round trip). Prints the medians
# and p99s and the ratio cluster / one hub of the median round trip.
#
# Settings (environment): BENCH_SIGNALS=2000 BENCH_RELAY=2000  NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-hub-cluster
nk_bench_setup 1
PROBE=${PROBE:-$NK_BUILD_DIR/hub_cluster_probe}
[ -x "$PROBE" ] || nk_fail "hub_cluster_probe not found at $PROBE (make builds it)"
command -v redis-server >/dev/null 2>&1 || nk_skip "redis-server not installed (scripts/deps.sh)"
n=${BENCH_SIGNALS:-2000}
relay=${BENCH_RELAY:-2000}

echo "== hub cluster: signalling round trip across two hubs on one Redis vs one hub (loopback) =="
rport=$(nk_free_port 1)
nk_redis_start redis "$rport" "$NK_TMP" "${BENCH_PIN_SERVER[@]}"
hport=$(nk_free_port 3)
for i in 0 1 2; do
	extra=()
	[ $i = 2 ] || extra=(--redis "127.0.0.1:$rport")
	nk_start "hub$i" "$NK_TMP/hub$i.log" "${BENCH_PIN_SERVER[@]}" "$NATKIT" hub --quiet \
		--listen "127.0.0.1:$((hport + i))" "${extra[@]}"
	nk_wait_for_log "$NK_TMP/hub$i.log" 'listening' 10 || nk_fail "hub $i did not start"
done
nk_wait_for_log "$NK_TMP/hub0.log" 'cluster: redis .* connected' 10 || nk_fail "hub A did not join"
nk_wait_for_log "$NK_TMP/hub1.log" 'cluster: redis .* connected' 10 || nk_fail "hub B did not join"

probe() {
	"${BENCH_PIN_LOAD[@]}" "$PROBE" --hub-a "$1" --hub-b "$2" -n "$n" --relay "$relay" --timeout 120 ||
		nk_fail "hub_cluster_probe $1 $2 could not measure"
}
one=$(probe "127.0.0.1:$((hport + 2))" "127.0.0.1:$((hport + 2))")
two=$(probe "127.0.0.1:$hport" "127.0.0.1:$((hport + 1))")
for v in one two; do
	j=${!v}
	[ "$(nk_json_get "$j" ok)" = true ] || nk_fail "probe ($v): $j"
done
m1=$(nk_json_get "$one" signal_rtt_us_median)
m2=$(nk_json_get "$two" signal_rtt_us_median)
printf '  one hub:            median %s us  p99 %s us  (%s relay packets in %s ms)\n' "$m1" \
	"$(nk_json_get "$one" signal_rtt_us_p99)" "$relay" "$(nk_json_get "$one" relay_ms)"
printf '  two hubs, 1 Redis:  median %s us  p99 %s us  (%s relay packets in %s ms)\n' "$m2" \
	"$(nk_json_get "$two" signal_rtt_us_p99)" "$relay" "$(nk_json_get "$two" relay_ms)"
echo "  added by the cluster: $((m2 - m1)) us per round trip (two Redis hops)"
echo "  ratio cluster / one hub (median round trip): $(nk_bench_ratio "$m2" "$m1")"
