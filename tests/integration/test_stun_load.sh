#!/usr/bin/env bash
# The benchmark's load generator keeps working and keeps counting honestly: short stun_load runs
# against nothing (no valid answer: exit 1), against coturn and against natkit stun-server (every
# answer valid, none lost, none late, at a small window that loopback never drops).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init stun_load

NK_BUILD_DIR=${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}
NATKIT=${NATKIT:-$NK_BUILD_DIR/natkit}
STUN_LOAD=$NK_BUILD_DIR/stun_load
[ -x "$STUN_LOAD" ] || nk_fail "stun_load not found at $STUN_LOAD"
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT"
nk_require turnserver

LOAD=(--duration 1 --warmup 0.2 --sockets 4 --window 4 --timeout-ms 2000 --json)

# Runs stun_load against 127.0.0.1:$2 and checks that every request got a valid answer.
check_clean() {
	local who=$1 port=$2 json ok sent
	json=$(timeout 20 "$STUN_LOAD" --server 127.0.0.1:$port "${LOAD[@]}") ||
		nk_fail "stun_load against $who failed (status $?): $json"
	ok=$(nk_json_get "$json" ok) && sent=$(nk_json_get "$json" sent) || nk_fail "bad stun_load output: $json"
	[ "$ok" -gt 0 ] || nk_fail "no valid answer from $who: $json"
	for f in lost late invalid; do
		[ "$(nk_json_get "$json" $f)" = 0 ] || nk_fail "$who: $f is not 0: $json"
	done
	# Closed loop: at the end at most sockets x window requests are still out.
	[ $((sent - ok)) -le 16 ] || nk_fail "$who: $sent sent but only $ok answered: $json"
	nk_log "$who: $(nk_json_get "$json" responses_per_s) responses/s, $ok valid answers"
}

# Nobody listening: not one valid answer, exit 1.
port=$(nk_free_port 1)
json=$(timeout 20 "$STUN_LOAD" --server 127.0.0.1:$port "${LOAD[@]}")
rc=$?
[ $rc = 1 ] || nk_fail "stun_load against a closed port exited $rc, expected 1: $json"
[ "$(nk_json_get "$json" ok)" = 0 ] || nk_fail "stun_load counted answers from a closed port: $json"

# Usage errors exit 2.
"$STUN_LOAD" --sockets 3 >/dev/null 2>&1
[ $? = 2 ] || nk_fail "stun_load without --server did not exit 2"

port=$(nk_free_port 2)
nk_coturn_start coturn "$NK_TMP/coturn.log" $port 1
check_clean coturn $port
nk_stop coturn

port=$(nk_free_port 2)
nk_start natkit "$NK_TMP/natkit.log" "$NATKIT" stun-server --listen 127.0.0.1:$port --threads 2 --udp-rate 0
nk_wait_for_log "$NK_TMP/natkit.log" "127\.0\.0\.1:$port" 10 || nk_fail "natkit stun-server did not start"
check_clean "natkit stun-server" $port
nk_stop natkit || nk_fail "natkit stun-server did not exit 0 on SIGTERM (status $?)"

nk_pass "stun_load counts only valid answers (closed port: none; coturn and natkit: all)"
