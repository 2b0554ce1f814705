# tests/lib.sh: shared helpers for natkit's integration tests and benchmarks (bash).
#
#   . "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
#   nk_init my_test                  # temp dir $NK_TMP, EXIT trap that stops everything started
#   port=$(nk_free_port 2)           # P and P+1 free on loopback for UDP and TCP
#   nk_start srv "$NK_TMP/srv.log" "$NATKIT" stun-server --listen 127.0.0.1:$port
#   nk_wait_for_log "$NK_TMP/srv.log" 'listening' 10 || nk_fail "server did not start"
#   out=$("$NATKIT" discover --stun 127.0.0.1:$port --json) || nk_fail "discover failed"
#   [ "$(nk_json_get "$out" mapped)" = ... ] || nk_fail "wrong mapped address: $out"
#   nk_pass "it works"
#
# Functions (all names start with nk_; globals with NK_):
#   nk_init NAME            names the test, makes $NK_TMP (kept when NK_KEEP_TMP=1), installs the EXIT
#                           trap that stops every process started with nk_start. Call first.
#   nk_log MSG...           "[NAME] MSG" on stderr.
#   nk_fail MSG...          "FAIL: NAME: MSG" plus the tail of every log of a started process; exit 1.
#   nk_skip MSG...          "SKIP: NAME: MSG"; exit 77 (ctest: skipped). Only for things a test may
#                           legitimately lack (never for coturn: it is a required dependency).
#   nk_pass MSG...          "PASS: NAME: MSG"; exit 0.
#   nk_require CMD...       fails (not skips) when a command is missing.
#   nk_free_port [N]        prints P such that P..P+N-1 (default N=1) have no UDP or TCP socket on
#                           this host, chosen at random in 20000-32000 (below the ephemeral range, so
#                           clients never take it). A race with other programs stays possible; the
#                           random choice keeps it unlikely.
#   nk_start NAME LOG CMD...  runs CMD in the background in its own process group, stdout and stderr to
#                           LOG; when CMD ends the line "[nk] NAME exited with status N" is appended to
#                           LOG. Registers it for cleanup; sets NK_PID (the group id).
#   nk_wait_for_log FILE REGEX SECONDS [COUNT [SKIP]]
#                           event-driven wait (tail -F, no polling) for a line of FILE matching the
#                           bash/ERE REGEX; the line is left in NK_MATCH. Returns 1 on timeout, 2 if
#                           the process writing FILE with nk_start exited first. COUNT (default 1):
#                           wait for that many matching lines; SKIP (default 0): ignore the first
#                           SKIP lines of FILE (a log that holds the events of earlier rounds).
#   nk_wait_tcp PORT SECONDS
#                           until a TCP connection to 127.0.0.1:PORT is accepted (a server with no
#                           start line to wait for); returns 1 at the deadline.
#   nk_expect_exit NAME STATUS SECONDS
#                           waits for NAME (nk_start) to end; fails the test unless it ended within
#                           SECONDS with STATUS and its log holds no sanitizer report.
#   nk_stop NAME            SIGTERM to NAME's process group, waits up to 10 s for it to exit (then
#                           SIGKILL); returns the command's exit status (143 = killed by SIGTERM).
#   nk_keygen NAME...       for each NAME: "$NATKIT keygen --out $NK_TMP/NAME.key" (fails the test if it
#                           fails); the peer ID it printed goes into ID_NAME (a global).
#   nk_json_get JSON KEY    prints the value of KEY in a flat JSON object (strings without escapes,
#                           numbers, true/false/null); returns 1 when KEY is absent.
#   nk_redis_start NAME PORT DIR [CMD...]
#                           redis-server on 127.0.0.1:PORT, no persistence, DIR its working folder,
#                           logging to $NK_TMP/NAME.log (run through CMD... when given, e.g. taskset
#                           -c 1); waits (15 s at most) until it accepts connections.
#   nk_coturn_start NAME LOG PORT THREADS [turnserver args...]
#                           starts coturn's turnserver on 127.0.0.1:PORT (UDP+TCP, no TLS/DTLS, no
#                           CLI, no config file, no database outside $NK_TMP, anonymous: -z),
#                           THREADS relay threads (-m), logging to LOG, and waits until it serves.
#                           Extra args are passed on (e.g. -L 127.0.0.2 for RFC 5780, --stun-only).
#   nk_coturn_wait_ready NAME LOG PORT [args...]
#                           the readiness wait of nk_coturn_start, for a turnserver started by hand
#                           (UDP: its "Total General servers" line; TCP: an accepted connection).
#
# Globals:
#   NK_LOG_TS               an ERE for the RFC 3339 UTC time that starts every server log line
#                           ("2026-12-06T23:59:01.123Z natkit-hub: ...").
#
# Everything runs on loopback; nothing here sleeps to wait for readiness.

NK_NAME=${NK_NAME:-test}
# `timeout` is tests/bin/timeout (= timeout --foreground: see there why)
NK__BIN=$(cd "${BASH_SOURCE[0]%/*}/bin" && pwd)
case ":$PATH:" in *":$NK__BIN:"*) ;; *) PATH="$NK__BIN:$PATH" ;; esac
export PATH
NK_LOG_TS='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'

NK_TMP=${NK_TMP:-}
NK_MATCH=
NK_PID=
declare -gA NK_PROCS=()   # name -> pgid
declare -gA NK_LOGS=()    # name -> log file

nk_log() { printf '[%s] %s\n' "$NK_NAME" "$*" >&2; }

nk_init() {
	NK_NAME=$1
	NK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/natkit-$NK_NAME.XXXXXX") || { echo "FAIL: $NK_NAME: mktemp" >&2; exit 1; }
	trap nk__cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

nk__dump_logs() {
	local name
	for name in "${!NK_LOGS[@]}"; do
		[ -s "${NK_LOGS[$name]}" ] || continue
		printf -- '---- last lines of %s (%s) ----\n' "$name" "${NK_LOGS[$name]}" >&2
		tail -n 25 "${NK_LOGS[$name]}" >&2
	done
}

nk_fail() {
	printf 'FAIL: %s: %s\n' "$NK_NAME" "$*" >&2
	nk__dump_logs
	exit 1
}

nk_skip() {
	printf 'SKIP: %s: %s\n' "$NK_NAME" "$*"
	exit 77
}

nk_pass() {
	printf 'PASS: %s: %s\n' "$NK_NAME" "$*"
	exit 0
}

nk_require() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || nk_fail "required command '$c' not found (run scripts/deps.sh as root)"
	done
}

nk__port_busy() {
	# Any TCP or UDP socket (listening or not) bound to this local port?
	[ -n "$(ss -Hanut "( sport = :$1 )" 2>/dev/null)" ]
}

# Ports handed out by nk_free_port in this test, "FIRST COUNT" per line: a port picked but not yet
# bound (the usual case: several are picked before the servers start) is not handed out twice.
# A file, since nk_free_port runs in $(...) subshells.
nk__reserved_overlaps() {
	local p=$1 n=$2 a k
	[ -n "$NK_TMP" ] && [ -f "$NK_TMP/.ports" ] || return 1
	while read -r a k; do
		((p < a + k && a < p + n)) && return 0
	done <"$NK_TMP/.ports"
	return 1
}

nk_free_port() {
	local n=${1:-1} tries p i busy
	for ((tries = 0; tries < 200; tries++)); do
		p=$((20000 + RANDOM % (12000 - n)))
		nk__reserved_overlaps "$p" "$n" && continue
		busy=0
		for ((i = 0; i < n; i++)); do
			if nk__port_busy $((p + i)); then busy=1; break; fi
		done
		if [ $busy = 0 ]; then
			[ -z "$NK_TMP" ] || echo "$p $n" >>"$NK_TMP/.ports"
			echo "$p"
			return 0
		fi
	done
	nk_fail "no free port range of $n found"
}

nk_start() {
	local name=$1 log=$2
	shift 2
	[ -z "${NK_PROCS[$name]:-}" ] || nk_fail "nk_start: '$name' already started"
	: >"$log"
	# The wrapper shell catches TERM (a handler, which exec does not pass on) so that it
	# outlives the command and can record how it ended.
	setsid bash -c 'trap : TERM INT; "$@"; rc=$?; echo "[nk] $0 exited with status $rc"; exit $rc' \
		"$name" "$@" >>"$log" 2>&1 </dev/null &
	NK_PID=$!
	NK_PROCS[$name]=$NK_PID
	NK_LOGS[$name]=$log
}

nk_wait_for_log() {
	local file=$1 regex=$2 secs=$3 want=${4:-1} skip=${5:-0} n=0 fd tailpid line left rc=1
	local deadline=$(( ${EPOCHREALTIME//[.,]/} + secs * 1000000 ))
	NK_MATCH=
	exec {fd}< <(exec tail -n +$((skip + 1)) -F "$file" 2>/dev/null)
	tailpid=$!
	while :; do
		left=$(( deadline - ${EPOCHREALTIME//[.,]/} ))
		[ $left -gt 0 ] || break
		# read -t takes seconds with a fraction
		IFS= read -r -t "$((left / 1000000)).$(printf '%06d' $((left % 1000000)))" -u "$fd" line || break
		if [[ $line =~ $regex ]] && ((++n >= want)); then NK_MATCH=$line; rc=0; break; fi
		if [[ $line =~ ^\[nk\]\ .*\ exited\ with\ status ]]; then NK_MATCH=$line; rc=2; break; fi
	done
	kill "$tailpid" 2>/dev/null
	exec {fd}<&-
	wait "$tailpid" 2>/dev/null
	return $rc
}

nk_wait_tcp() {
	local deadline=$((SECONDS + $2))
	until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
	done
}

nk_expect_exit() {
	nk_wait_for_log "${NK_LOGS[$1]}" '^\[nk\] .* exited with status' "$3"
	[ $? != 1 ] || nk_fail "$1 did not end within $3 s"
	[[ $NK_MATCH == *"status $2" ]] || nk_fail "$1: $NK_MATCH, want status $2"
	! grep -qE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "${NK_LOGS[$1]}" ||
		nk_fail "$1: sanitizer report"
}

nk_stop() {
	local name=$1 pgid=${NK_PROCS[$1]:-} rc
	[ -n "$pgid" ] || return 0
	unset 'NK_PROCS[$name]'
	if ! grep -q '^\[nk\] .* exited with status' "${NK_LOGS[$name]}" 2>/dev/null; then
		kill -TERM -- "-$pgid" 2>/dev/null
		if ! nk_wait_for_log "${NK_LOGS[$name]}" '^\[nk\] .* exited with status' 10; then
			nk_log "$name did not stop within 10 s of SIGTERM; SIGKILL"
			kill -KILL -- "-$pgid" 2>/dev/null
		fi
	fi
	wait "$pgid" 2>/dev/null
	rc=$?
	# Anything the command left behind in its group goes too.
	kill -KILL -- "-$pgid" 2>/dev/null
	return $rc
}

nk__cleanup() {
	local rc=$? name
	for name in "${!NK_PROCS[@]}"; do
		nk_stop "$name"
	done
	if [ -n "$NK_TMP" ] && [ -d "$NK_TMP" ]; then
		if [ "${NK_KEEP_TMP:-0}" = 1 ] || { [ $rc -ne 0 ] && [ $rc -ne 77 ]; }; then
			[ $rc -eq 0 ] || echo "[$NK_NAME] logs kept in $NK_TMP" >&2
		else
			rm -rf "$NK_TMP"
		fi
	fi
	exit $rc
}

nk_keygen() {
	local k id
	for k in "$@"; do
		id=$("${NATKIT:?NATKIT must point at the natkit binary}" keygen --out "$NK_TMP/$k.key" 2>/dev/null) ||
			nk_fail "natkit keygen --out $NK_TMP/$k.key failed"
		declare -g "ID_$k=$id"
	done
}

nk_json_get() {
	local json=$1 key=$2 v
	v=$(printf '%s' "$json" | sed -nE 's/.*"'"$key"'"[[:space:]]*:[[:space:]]*("([^"]*)"|([^,}[:space:]]+)).*/\2\3/p')
	[ -n "$v" ] || printf '%s' "$json" | grep -qE '"'"$key"'"[[:space:]]*:[[:space:]]*""' || return 1
	printf '%s\n' "$v"
}

nk_redis_start() {
	local name=$1 port=$2 dir=$3
	shift 3
	nk_start "$name" "$NK_TMP/$name.log" "$@" redis-server --port "$port" --bind 127.0.0.1 --save '' \
		--appendonly no --dir "$dir"
	nk_wait_for_log "$NK_TMP/$name.log" 'Ready to accept connections' 15 ||
		nk_fail "redis-server ($name) did not start on 127.0.0.1:$port"
}

nk_coturn_start() {
	local name=$1 log=$2 port=$3 threads=$4
	shift 4
	nk_require turnserver
	nk_start "$name" "$log" turnserver -n --log-file stdout --simple-log \
		-L 127.0.0.1 -p "$port" --alt-listening-port $((port + 1)) \
		--no-tls --no-dtls --no-cli -z -m "$threads" \
		--pidfile "$NK_TMP/$name.pid" --userdb "$NK_TMP/$name.db" \
		--no-software-attribute "$@"
	nk_coturn_wait_ready "$name" "$log" "$port" "$@"
}

# nk_coturn_wait_ready NAME LOG PORT [turnserver args...]: for a turnserver started by hand with
# nk_start. Its UDP sockets are bound before it logs "Total General servers"; its relay threads
# open the TCP listeners concurrently with that line, so unless --no-tcp is among the args this
# also waits (5 s at most) until a TCP connection to 127.0.0.1:PORT is accepted.
nk_coturn_wait_ready() {
	local name=$1 log=$2 port=$3 a
	shift 3
	nk_wait_for_log "$log" 'Total General servers|Total UDP servers' 15 ||
		nk_fail "coturn ($name) did not start on 127.0.0.1:$port"
	for a in "$@"; do [ "$a" != --no-tcp ] || return 0; done
	nk_wait_tcp "$port" 5 || nk_fail "coturn ($name) does not accept TCP on 127.0.0.1:$port"
}
