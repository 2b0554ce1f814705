#!/usr/bin/env bash
# bench/stun.sh: STUN Binding responses/s, natkit stun-server vs coturn's turnserver.
#
# Both servers run at the same time on loopback, pinned to the same CPU(s) with the same number
# of threads; the same load generator (build/stun_load, same settings, pinned to the other
# CPU(s)) drives them in turn, BENCH_ROUNDS rounds in ABBA order (natkit, coturn, coturn,
# natkit, ...). Only one server is loaded at a time; the idle one sleeps in epoll. Prints each
# run, the medians and the ratio natkit/coturn (goal: >= 2.0), and the same per second of
# server CPU time, which stays steady when other work shares the machine.
#
# Settings (environment):
#   BENCH_ROUNDS=4  BENCH_DURATION=3 (s measured per run)  BENCH_WARMUP=1 (s)
#   BENCH_THREADS=1 (natkit --threads and coturn -m)
#   BENCH_SOCKETS=16 BENCH_WINDOW=32 BENCH_BATCH=32 (stun_load)
#   BENCH_SERVER_CPUS / BENCH_LOAD_CPUS (taskset lists; default: see bench/common.sh)
#   BENCH_NICE (e.g. -10; default: unset): run both servers and stun_load at this niceness, so
#              that other work on a shared machine takes less of their CPUs (same for both)
#   BENCH_NATKIT_ARGS / BENCH_COTURN_ARGS: extra flags for either server (e.g. "--batch 64")
#   NK_BUILD_DIR (default: build): where natkit and stun_load are.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-stun

ROUNDS=${BENCH_ROUNDS:-4}
DURATION=${BENCH_DURATION:-3}
WARMUP=${BENCH_WARMUP:-1}
THREADS=${BENCH_THREADS:-1}
LOAD_ARGS=(--sockets "${BENCH_SOCKETS:-16}" --window "${BENCH_WINDOW:-32}" --batch "${BENCH_BATCH:-32}"
	--duration "$DURATION" --warmup "$WARMUP" --json)
nk_bench_setup "$THREADS"
STUN_LOAD=${STUN_LOAD:-$NK_BUILD_DIR/stun_load}
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT (make builds it)"
[ -x "$STUN_LOAD" ] || nk_fail "stun_load not found at $STUN_LOAD (make builds it)"
nk_require turnserver taskset ss
TICKS=$(getconf CLK_TCK)

# ---- the servers ----
natkit_port=$(nk_free_port 2)
nk_start natkit "$NK_TMP/natkit.log" "${BENCH_PIN_SERVER[@]}" "$NATKIT" stun-server \
	--listen 127.0.0.1:$natkit_port --threads "$THREADS" --udp-rate 0 ${BENCH_NATKIT_ARGS:-}
nk_wait_for_log "$NK_TMP/natkit.log" "127\.0\.0\.1:$natkit_port" 10 ||
	nk_fail "natkit stun-server did not start on 127.0.0.1:$natkit_port"

coturn_port=$(nk_free_port 2)
# coturn is pinned once it is up (taskset -a: every thread it has; it starts no more for STUN).
nk_coturn_start coturn "$NK_TMP/coturn.log" $coturn_port "$THREADS" ${BENCH_COTURN_ARGS:-}
if [ ${#BENCH_PIN_SERVER[@]} != 0 ]; then
	for pid in $(ps -o pid= --sid "${NK_PROCS[coturn]}"); do
		taskset -a -p -c "$BENCH_SERVER_CPUS" "$pid" >/dev/null || nk_fail "could not pin coturn to CPUs $BENCH_SERVER_CPUS"
	done
fi

if [ -n "${BENCH_NICE:-}" ]; then
	renice -n "$BENCH_NICE" -g "${NK_PROCS[natkit]}" "${NK_PROCS[coturn]}" >/dev/null ||
		nk_fail "renice $BENCH_NICE failed"
	BENCH_PIN_LOAD=(nice -n "$BENCH_NICE" "${BENCH_PIN_LOAD[@]}")
fi

coturn_version=$(turnserver --version 2>/dev/null | head -n1)
echo "== STUN Binding: natkit stun-server vs coturn ${coturn_version:-?} =="
echo "   threads $THREADS each; servers on CPU ${BENCH_SERVER_CPUS:-any}, stun_load on CPU ${BENCH_LOAD_CPUS:-any};" \
	"stun_load ${LOAD_ARGS[*]:0:6}; ${DURATION} s measured after ${WARMUP} s warm-up; $ROUNDS rounds${BENCH_NICE:+; nice $BENCH_NICE}"

# One measured run against the server NAME on 127.0.0.1:PORT; prints
# "RATE SERVER_CPU% LOAD_CPU% LOSS% RESPONSES_PER_SERVER_CPU_SECOND".
measure() {
	local name=$1 port=$2 t0 t1 e0 e1 json rate loss lcpu scpu eff
	t0=$(nk_bench_session_ticks "$name")
	e0=$EPOCHREALTIME
	json=$("${BENCH_PIN_LOAD[@]}" "$STUN_LOAD" --server 127.0.0.1:$port "${LOAD_ARGS[@]}") ||
		nk_fail "stun_load against 127.0.0.1:$port got no valid answer: $json"
	e1=$EPOCHREALTIME
	t1=$(nk_bench_session_ticks "$name")
	rate=$(nk_json_get "$json" responses_per_s)
	loss=$(nk_json_get "$json" loss_pct)
	lcpu=$(nk_json_get "$json" cpu_pct)
	scpu=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v a="$e0" -v b="$e1" 'BEGIN { printf "%.0f", 100 * d / hz / (b - a) }')
	# Responses per second of server CPU time: what the server costs, whatever share of the
	# CPU the machine's other work left it (warm-up included on both sides of the division).
	eff=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v r="$rate" -v a="$e0" -v b="$e1" \
		'BEGIN { c = d / hz / (b - a); if (c > 0) printf "%.0f", r / c; else print 0 }')
	echo "$rate $scpu $lcpu $loss $eff"
}

natkit_rates=()
coturn_rates=()
natkit_effs=()
coturn_effs=()
for ((r = 1; r <= ROUNDS; r++)); do
	# ABBA order (natkit first in odd rounds, coturn first in even ones) so that a drift of
	# the machine's load during the run does not favour either server.
	if ((r % 2)); then
		read -r n_rate n_scpu n_lcpu n_loss n_eff < <(measure natkit $natkit_port)
		read -r c_rate c_scpu c_lcpu c_loss c_eff < <(measure coturn $coturn_port)
	else
		read -r c_rate c_scpu c_lcpu c_loss c_eff < <(measure coturn $coturn_port)
		read -r n_rate n_scpu n_lcpu n_loss n_eff < <(measure natkit $natkit_port)
	fi
	[ -n "$n_rate" ] || nk_fail "natkit round $r failed"
	[ -n "$c_rate" ] || nk_fail "coturn round $r failed"
	natkit_rates+=("$n_rate")
	coturn_rates+=("$c_rate")
	natkit_effs+=("$n_eff")
	coturn_effs+=("$c_eff")
	printf '   round %d: natkit %7d/s (server CPU %3s%%, %7d/CPU-s; load CPU %3.0f%%; loss %s%%)\n' \
		"$r" "$n_rate" "$n_scpu" "$n_eff" "$n_lcpu" "$n_loss"
	printf '            coturn %7d/s (server CPU %3s%%, %7d/CPU-s; load CPU %3.0f%%; loss %s%%)\n' \
		"$c_rate" "$c_scpu" "$c_eff" "$c_lcpu" "$c_loss"
done
natkit_med=$(nk_bench_median "${natkit_rates[@]}")
coturn_med=$(nk_bench_median "${coturn_rates[@]}")
ratio=$(nk_bench_ratio "$natkit_med" "$coturn_med")
natkit_eff=$(nk_bench_median "${natkit_effs[@]}")
coturn_eff=$(nk_bench_median "${coturn_effs[@]}")
eff_ratio=$(nk_bench_ratio "$natkit_eff" "$coturn_eff")
echo "   natkit stun-server: $natkit_med Binding responses/s (median)"
echo "   coturn turnserver:  $coturn_med Binding responses/s (median)"
echo "   ratio natkit/coturn: ${ratio}x (goal >= 2.0)"
echo "   per second of server CPU: natkit $natkit_eff, coturn $coturn_eff responses (ratio ${eff_ratio}x)"
echo "   (server CPU well under 100%: the load generator or other work on the machine was the limit;"
echo "    the per-CPU-second figure is the steadier one on a busy machine)"
echo "BENCH-JSON {\"bench\":\"stun_binding\",\"natkit_rps\":$natkit_med,\"coturn_rps\":$coturn_med,\"ratio\":$ratio,\"natkit_per_cpu_s\":$natkit_eff,\"coturn_per_cpu_s\":$coturn_eff,\"cpu_ratio\":$eff_ratio,\"threads\":$THREADS,\"rounds\":$ROUNDS,\"duration_s\":$DURATION}"
