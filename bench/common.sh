# bench/common.sh: helpers shared by the benchmark sections (bench/stun.sh, bench/turn.sh, ...).
# Sourced after tests/lib.sh (processes, ports, coturn). Bash.
#
#   nk_bench_setup           sets NK_BUILD_DIR (default: build), NATKIT, the CPU split
#                            BENCH_SERVER_CPUS / BENCH_LOAD_CPUS (override either in the
#                            environment) and BENCH_PIN_SERVER / BENCH_PIN_LOAD, arrays to put
#                            in front of a command (taskset -c ...), empty when there is one CPU.
#   nk_bench_cpu_ticks PID   utime+stime of a process and all its threads, in clock ticks.
#   nk_bench_session_ticks NAME  the same summed over every process that nk_start NAME started
#                            (its session: the command, its children, the wrapper shell).
#   nk_bench_median N...     the median of numbers (the mean of the two middle ones for even N).
#   nk_bench_ratio A B       A/B with two decimals ("n/a" when B is 0).
#
# Pinning: with C CPUs and T server threads the servers get CPUs 0..min(T,C-1)-1 and the load
# generator the rest, so the load never competes with the server it measures; both servers
# under test get the same CPUs. On the 2-core machines this is server on CPU 0, load on CPU 1.

nk_bench_setup() {
	local threads=${1:-1} ncpu nsrv
	NK_BUILD_DIR=${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}
	NATKIT=${NATKIT:-$NK_BUILD_DIR/natkit}
	ncpu=$(nproc)
	if [ "$ncpu" -lt 2 ]; then
		BENCH_SERVER_CPUS=${BENCH_SERVER_CPUS:-}
		BENCH_LOAD_CPUS=${BENCH_LOAD_CPUS:-}
	else
		nsrv=$threads
		[ "$nsrv" -lt "$ncpu" ] || nsrv=$((ncpu - 1))
		BENCH_SERVER_CPUS=${BENCH_SERVER_CPUS:-0-$((nsrv - 1))}
		BENCH_LOAD_CPUS=${BENCH_LOAD_CPUS:-$nsrv-$((ncpu - 1))}
	fi
	BENCH_PIN_SERVER=()
	BENCH_PIN_LOAD=()
	[ -z "$BENCH_SERVER_CPUS" ] || BENCH_PIN_SERVER=(taskset -c "$BENCH_SERVER_CPUS")
	[ -z "$BENCH_LOAD_CPUS" ] || BENCH_PIN_LOAD=(taskset -c "$BENCH_LOAD_CPUS")
}

nk_bench_session_ticks() {
	local sid=${NK_PROCS[$1]} pid sum=0
	for pid in $(ps -o pid= --sid "$sid"); do
		sum=$((sum + $(nk_bench_cpu_ticks "$pid")))
	done
	echo $sum
}

nk_bench_cpu_ticks() {
	local stat rest
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	rest=${stat##*) }  # fields from 3 on (the command name may hold spaces)
	set -- $rest
	echo $(( ${12} + ${13} ))  # fields 14 and 15: utime, stime
}

nk_bench_median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print 0; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

nk_bench_ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'
}
