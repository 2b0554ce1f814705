#!/usr/bin/env bash
# bench/hub_scale.sh: hub registrations per second and memory per peer with many simulated peers
# (issue 13: 50,000), measured twice in one run:
#
# 1. The hub server core in memory (bench/hub_core: nk_hub_server, no sockets, so no descriptor
#    limit): BENCH_HUB_PEERS_BIG peers (default 50,000), each its own Ed25519 identity, every
#    proof made beforehand by a real hub client core (not timed: peers sign, not the hub);
#    registrations/s = peers / the core's time for accept + CHALLENGE + REGISTER (Ed25519
#    verification) + REGISTERED, BENCH_HUB_CORE_ROUNDS (3) runs, median. Memory per peer = the
#    core's heap in use (glibc mallinfo2, tcache off: exact to the byte) / peers, tables included.
#    Also at BENCH_HUB_CORE_LO (1,000) peers (does it scale linearly), at the socket run's N (the
#    like-for-like ratio below) and with the hub's default per-source limit (64: its table).
# 2. Real sockets: `natkit hub --max-conns-per-ip 0` (every peer comes from 127.0.0.1) takes
#    bench/hub_load with as many of those peers as descriptors allow: hub_load opens every
#    connection, then every peer registers at once (Ed25519 challenge and proof); registrations/s =
#    peers / register_ms. Memory per peer = (the hub's VmHWM after the run - its RSS before) /
#    peers. Each peer is one descriptor in the hub and one in hub_load, so the count is capped by
#    the hard RLIMIT_NOFILE (both raise their soft limit to it): with a hard limit below 4/3 x
#    peers the run uses 3/4 of it and says so (at 19,800 of 20,000, hub_load could not queue its
#    messages) (raise it with `ulimit -Hn` as root, or LimitNOFILE= in a unit). One source address
#    to one hub port also has only the ephemeral port range (net.ipv4.ip_local_port_range, 28,232
#    ports by default) to use.
#
#    That figure is the hub process's user-space memory (RSS): the kernel's socket buffers and
#    socket objects are not in it. The ratio line compares it with the core at the same N: what the
#    driver (the libuv handle and the service's per-connection record, allocator slack) adds to the
#    core's own state.
#
# Settings (environment): BENCH_HUB_PEERS_BIG=50000 BENCH_HUB_CORE_LO=1000 BENCH_HUB_CORE_ROUNDS=3,
#   NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-hub-scale
nk_bench_setup 1
HUB_LOAD=${HUB_LOAD:-$NK_BUILD_DIR/hub_load}
[ -x "$HUB_LOAD" ] || nk_fail "hub_load not found at $HUB_LOAD (make builds it)"
HUB_CORE=${HUB_CORE:-$NK_BUILD_DIR/hub_core}
[ -x "$HUB_CORE" ] || nk_fail "hub_core not found at $HUB_CORE (make builds it)"
WANT=${BENCH_HUB_PEERS_BIG:-50000}
LO=${BENCH_HUB_CORE_LO:-1000}
ROUNDS=${BENCH_HUB_CORE_ROUNDS:-3}

# core N [ARGS]: one hub_core run (pinned like a server), its JSON in CORE; fails the section
# unless every peer registered.
core() {
	CORE=$("${BENCH_PIN_SERVER[@]}" "$HUB_CORE" -n "$@") || nk_fail "hub_core -n $* failed: $CORE"
	[ "$(nk_json_get "$CORE" registered)" = true ] || nk_fail "hub_core -n $*: not every peer registered: $CORE"
}
goal() { [ "$1" -le 2048 ] && echo "goal <= 2048: met" || echo "goal <= 2048: MISSED"; }

echo "== hub core in memory (nk_hub_server, no sockets): $WANT simulated peers =="
echo "   each peer its own Ed25519 identity; proofs made beforehand by hub client cores (not timed);"
echo "   timed: the core's accept + CHALLENGE + REGISTER (Ed25519 verify) + REGISTERED"
core "$LO"
lo_json=$CORE
rates=()
for ((r = 1; r <= ROUNDS; r++)); do
	core "$WANT"
	rates+=("$(nk_json_get "$CORE" registrations_per_s)")
	echo "   round $r: $WANT registered in $(nk_json_get "$CORE" server_ms) ms of core time" \
		"(accept $(nk_json_get "$CORE" accept_ms) + register $(nk_json_get "$CORE" register_ms));" \
		"proofs (client side, apart) $(nk_json_get "$CORE" prove_ms) ms: ${rates[-1]} registrations/s"
done
big_json=$CORE
core_rate=$(nk_bench_median "${rates[@]}")
core_per=$(nk_json_get "$big_json" bytes_per_peer)
lo_per=$(nk_json_get "$lo_json" bytes_per_peer)
lo_rate=$(nk_json_get "$lo_json" registrations_per_s)
echo "   $WANT peers: $core_rate registrations/s (median of $ROUNDS)"
echo "   core heap $(nk_json_get "$big_json" core_bytes) bytes (mallinfo2, tcache $(nk_json_get "$big_json" tcache)):" \
	"$core_per bytes per registered peer ($(nk_json_get "$big_json" conn_bytes_per_peer) per connection +" \
	"$(nk_json_get "$big_json" table_bytes_per_peer) of tables sized by max_conns) ($(goal "$core_per"))"
echo "   $LO peers: $lo_per bytes per peer, $lo_rate registrations/s"
echo "   ratio $WANT / $LO peers: bytes per peer $(nk_bench_ratio "$core_per" "$lo_per"), registrations/s" \
	"$(nk_bench_ratio "$core_rate" "$lo_rate") (1.00: linear)"
core "$WANT" --max-per-ip 64
ip_per=$(nk_json_get "$CORE" bytes_per_peer)
echo "   with the hub's default per-source limit (64, its table sized by max_conns): $ip_per bytes per peer ($(goal "$ip_per"))"
echo "BENCH-JSON {\"bench\":\"hub_core\",\"peers\":$WANT,\"registrations_per_s\":$core_rate,\"bytes_per_peer\":$core_per,\"bytes_per_peer_lo\":$lo_per,\"peers_lo\":$LO,\"bytes_per_peer_per_ip_limit\":$ip_per}"

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
echo "== hub over real sockets (natkit hub + hub_load): $N simulated peers$note =="
json=$(timeout 600 "$HUB_LOAD" --hub "127.0.0.1:$PORT" -n "$N" --timeout 300) || nk_fail "hub_load -n $N failed: $json"
peak=$(kb "$HUB_PID" VmHWM)
nk_stop hub
reg_ms=$(nk_json_get "$json" register_ms)
conn_ms=$(nk_json_get "$json" connect_ms)
[ "$(nk_json_get "$json" registered)" = true ] || nk_fail "not every peer registered: $json"
rate=$(awk -v n="$N" -v ms="$reg_ms" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
per=$(( (peak - before) * 1024 / N ))
echo "   $N connections opened in $conn_ms ms; all registered in $reg_ms ms: $rate registrations/s"
echo "   hub RSS $before kB before, peak $peak kB: $per bytes per registered peer ($(goal "$per"))"
echo "   hub round trip during the burst: median $(nk_json_get "$json" hub_rtt_ms_burst_median) ms, max $(nk_json_get "$json" hub_rtt_ms_burst_max) ms"
core "$N"
same_per=$(nk_json_get "$CORE" bytes_per_peer)
same_rate=$(nk_json_get "$CORE" registrations_per_s)
echo "   ratio real hub / core alone at $N peers: bytes per peer $(nk_bench_ratio "$per" "$same_per") ($per vs $same_per;" \
	"the driver's share, kernel socket memory not counted), registrations/s $(nk_bench_ratio "$rate" "$same_rate") ($rate vs $same_rate)"
echo "BENCH-JSON {\"bench\":\"hub_scale\",\"peers\":$N,\"wanted\":$WANT,\"register_ms\":$reg_ms,\"registrations_per_s\":$rate,\"bytes_per_peer\":$per}"
