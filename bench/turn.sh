#!/usr/bin/env bash
# bench/turn.sh: TURN relay, natkit turn-server vs coturn's turnserver, same load, same run.
#
# Both servers run at the same time on loopback with long-term credentials, one relay thread each
# (natkit is single-threaded; coturn -m 1), pinned to the same CPU(s); build/turn_load (pinned to
# the other CPU(s)) is both the TURN clients and their echo peer and drives one server at a time,
# in ABBA order over BENCH_ROUNDS rounds. Three figures per server:
#   relay       ChannelData relayed packets/s: N allocations, each with a channel to the peer
#               and W packets in flight (closed loop; each round trip is two relayed packets),
#               and the same per second of server CPU time (steady on a busy machine);
#   allocations allocations/s: sessions doing 401 -> Allocate -> Refresh(0) on fresh sockets;
#   memory      RSS growth per allocation while BENCH_HOLD allocations are held.
# Prints the medians and the ratios natkit/coturn (goal for relay: >= 1.5).
#
# Settings (environment): BENCH_ROUNDS=4 BENCH_DURATION=3 BENCH_WARMUP=1
#   BENCH_TURN_ALLOCS=16 BENCH_TURN_WINDOW=64 BENCH_TURN_SIZE=100 (relay load)
#   BENCH_TURN_SESSIONS=16 (allocations/s)  BENCH_HOLD=2000 (memory)
#   BENCH_SERVER_CPUS / BENCH_LOAD_CPUS, NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-turn

ROUNDS=${BENCH_ROUNDS:-4}
DURATION=${BENCH_DURATION:-3}
WARMUP=${BENCH_WARMUP:-1}
HOLD=${BENCH_HOLD:-2000}
nk_bench_setup 1
TURN_LOAD=${TURN_LOAD:-$NK_BUILD_DIR/turn_load}
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT (make builds it)"
[ -x "$TURN_LOAD" ] || nk_fail "turn_load not found at $TURN_LOAD (make builds it)"
nk_require turnserver taskset ss
TICKS=$(getconf CLK_TCK)
CRED=(--user bench --pass bench-pass)
RELAY_ARGS=(--mode relay --allocations "${BENCH_TURN_ALLOCS:-16}" --window "${BENCH_TURN_WINDOW:-64}"
	--size "${BENCH_TURN_SIZE:-100}" --duration "$DURATION" --warmup "$WARMUP" --json)
ALLOC_ARGS=(--mode alloc --allocations "${BENCH_TURN_SESSIONS:-16}" --duration "$DURATION" --warmup "$WARMUP" --json)

# ---- the servers (relay ranges apart, inside the ephemeral range; both retry a taken port) ----
natkit_port=$(nk_free_port 2)
nk_start natkit "$NK_TMP/natkit.log" "${BENCH_PIN_SERVER[@]}" "$NATKIT" turn-server \
	--listen 127.0.0.1:$natkit_port --realm natkit.bench --user bench:bench-pass --relay-ip 127.0.0.1 \
	--relay-ports 50000-59999 --allow-peer 127.0.0.0/8 --max-allocations 20000 --max-allocations-per-user 0 \
	--udp-rate 0
nk_wait_for_log "$NK_TMP/natkit.log" 'natkit-turn-server: listening on' 10 ||
	nk_fail "natkit turn-server did not start on 127.0.0.1:$natkit_port"

coturn_port=$(nk_free_port 2)
nk_start coturn "$NK_TMP/coturn.log" turnserver -n --log-file stdout --simple-log \
	-L 127.0.0.1 -p $coturn_port --alt-listening-port $((coturn_port + 1)) \
	--no-tls --no-dtls --no-cli -m 1 --pidfile "$NK_TMP/coturn.pid" --userdb "$NK_TMP/coturn.db" \
	--no-software-attribute --realm natkit.bench --lt-cred-mech --user bench:bench-pass \
	--allow-loopback-peers --relay-ip 127.0.0.1 --min-port 40000 --max-port 49999
nk_wait_for_log "$NK_TMP/coturn.log" 'Total General servers|Total UDP servers' 15 ||
	nk_fail "coturn did not start on 127.0.0.1:$coturn_port"
if [ ${#BENCH_PIN_SERVER[@]} != 0 ]; then
	for pid in $(ps -o pid= --sid "${NK_PROCS[coturn]}"); do
		taskset -a -p -c "$BENCH_SERVER_CPUS" "$pid" >/dev/null || nk_fail "could not pin coturn"
	done
fi
coturn_version=$(turnserver --version 2>/dev/null | head -n1)
echo "== TURN: natkit turn-server vs coturn ${coturn_version:-?} =="
echo "   one relay thread each; servers on CPU ${BENCH_SERVER_CPUS:-any}, turn_load on CPU ${BENCH_LOAD_CPUS:-any};" \
	"relay load ${RELAY_ARGS[*]:2:6}; ${DURATION} s measured after ${WARMUP} s warm-up; $ROUNDS rounds"

session_rss_kb() {
	local pid sum=0 v
	for pid in $(ps -o pid= --sid "${NK_PROCS[$1]}"); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo $sum
}

# ---- memory per allocation (first, on fresh servers) ----
mem_per_alloc() {
	local name=$1 port=$2 before after
	before=$(session_rss_kb "$name")
	nk_start "hold-$name" "$NK_TMP/hold-$name.log" "${BENCH_PIN_LOAD[@]}" "$TURN_LOAD" \
		--server 127.0.0.1:$port "${CRED[@]}" --mode hold --allocations "$HOLD" --hold 2
	nk_wait_for_log "$NK_TMP/hold-$name.log" '^held ' 120 || nk_fail "$name: $HOLD allocations not made"
	after=$(session_rss_kb "$name")
	# it releases its allocations (Refresh 0) after --hold seconds and exits
	nk_wait_for_log "$NK_TMP/hold-$name.log" 'exited with status 0' 30 || nk_fail "$name: turn_load hold did not finish"
	nk_stop "hold-$name"
	awk -v a="$after" -v b="$before" -v n="$HOLD" 'BEGIN { printf "%.0f\n", (a - b) * 1024 / n }'
}
natkit_mem=$(mem_per_alloc natkit $natkit_port)
coturn_mem=$(mem_per_alloc coturn $coturn_port)

# ---- one measured run: "VALUE SERVER_CPU% VALUE_PER_SERVER_CPU_SECOND LOSS%" ----
measure() {
	local name=$1 port=$2 key=$3 t0 t1 e0 e1 json value loss scpu eff
	shift 3
	t0=$(nk_bench_session_ticks "$name")
	e0=$EPOCHREALTIME
	json=$("${BENCH_PIN_LOAD[@]}" "$TURN_LOAD" --server 127.0.0.1:$port "${CRED[@]}" "$@") ||
		nk_fail "turn_load $* against $name failed: $json"
	e1=$EPOCHREALTIME
	t1=$(nk_bench_session_ticks "$name")
	value=$(nk_json_get "$json" "$key")
	loss=$(nk_json_get "$json" loss_pct || echo 0)
	scpu=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v a="$e0" -v b="$e1" 'BEGIN { printf "%.0f", 100 * d / hz / (b - a) }')
	eff=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v r="$value" -v a="$e0" -v b="$e1" -v w="$WARMUP" -v m="$DURATION" \
		'BEGIN { c = d / hz / (b - a); if (c > 0) printf "%.0f", r / c; else print 0 }')
	echo "$value $scpu $eff $loss"
}

# run_rounds KEY LABEL ARGS...: ABBA rounds; sets N_MED C_MED N_EFF C_EFF.
run_rounds() {
	local key=$1 label=$2 r nv ns ne nl cv cs ce cl
	shift 2
	local n_vals=() c_vals=() n_effs=() c_effs=()
	for ((r = 1; r <= ROUNDS; r++)); do
		if ((r % 2)); then
			read -r nv ns ne nl < <(measure natkit $natkit_port "$key" "$@")
			read -r cv cs ce cl < <(measure coturn $coturn_port "$key" "$@")
		else
			read -r cv cs ce cl < <(measure coturn $coturn_port "$key" "$@")
			read -r nv ns ne nl < <(measure natkit $natkit_port "$key" "$@")
		fi
		[ -n "$nv" ] && [ -n "$cv" ] || nk_fail "$label round $r failed"
		n_vals+=("$nv"); c_vals+=("$cv"); n_effs+=("$ne"); c_effs+=("$ce")
		printf '   %s round %d: natkit %7d/s (server CPU %3s%%, %7d/CPU-s, loss %s%%)\n' "$label" "$r" "$nv" "$ns" "$ne" "$nl"
		printf '   %s          coturn %7d/s (server CPU %3s%%, %7d/CPU-s, loss %s%%)\n' "$label" "$cv" "$cs" "$ce" "$cl"
	done
	N_MED=$(nk_bench_median "${n_vals[@]}")
	C_MED=$(nk_bench_median "${c_vals[@]}")
	N_EFF=$(nk_bench_median "${n_effs[@]}")
	C_EFF=$(nk_bench_median "${c_effs[@]}")
}

run_rounds relayed_pps relay "${RELAY_ARGS[@]}"
relay_n=$N_MED relay_c=$C_MED relay_ne=$N_EFF relay_ce=$C_EFF
relay_ratio=$(nk_bench_ratio "$relay_n" "$relay_c")
relay_eff_ratio=$(nk_bench_ratio "$relay_ne" "$relay_ce")
run_rounds allocations_per_s alloc "${ALLOC_ARGS[@]}"
alloc_n=$N_MED alloc_c=$C_MED alloc_ne=$N_EFF alloc_ce=$C_EFF
alloc_ratio=$(nk_bench_ratio "$alloc_n" "$alloc_c")
alloc_eff_ratio=$(nk_bench_ratio "$alloc_ne" "$alloc_ce")
mem_ratio=$(nk_bench_ratio "$coturn_mem" "$natkit_mem")

echo "   ChannelData relay:  natkit $relay_n packets/s, coturn $relay_c packets/s (medians): ratio ${relay_ratio}x (goal >= 1.5)"
echo "     per second of server CPU: natkit $relay_ne, coturn $relay_ce packets: ratio ${relay_eff_ratio}x"
echo "   allocations:        natkit $alloc_n/s, coturn $alloc_c/s: ratio ${alloc_ratio}x;" \
	"per server CPU-second natkit $alloc_ne, coturn $alloc_ce (${alloc_eff_ratio}x)"
echo "   memory/allocation:  natkit $natkit_mem bytes, coturn $coturn_mem bytes (RSS growth over $HOLD allocations;" \
	"coturn uses ${mem_ratio}x natkit's)"
echo "   (server CPU well under 100%: turn_load, on its one CPU, was the limit, and the packets/s ratio"
echo "    then says little; the per-CPU-second ratio is the server's own cost)"
echo "BENCH-JSON {\"bench\":\"turn\",\"relay_natkit_pps\":$relay_n,\"relay_coturn_pps\":$relay_c,\"relay_ratio\":$relay_ratio,\"relay_natkit_per_cpu_s\":$relay_ne,\"relay_coturn_per_cpu_s\":$relay_ce,\"relay_cpu_ratio\":$relay_eff_ratio,\"alloc_natkit_per_s\":$alloc_n,\"alloc_coturn_per_s\":$alloc_c,\"alloc_ratio\":$alloc_ratio,\"mem_natkit_bytes\":$natkit_mem,\"mem_coturn_bytes\":$coturn_mem,\"rounds\":$ROUNDS,\"duration_s\":$DURATION}"
