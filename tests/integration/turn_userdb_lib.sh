# tests/integration/turn_userdb_lib.sh: helpers shared by test_turn_userdb*.sh (sourced after
# tests/lib.sh, nk_init and turn_check_lib.sh; uses NATKIT, NK_TMP, port, peer_port).

# turn_ok ARGS...: one turn-check echo through the server succeeds (quiet).
turn_ok() {
	timeout 20 "$NATKIT" turn-check --turn "127.0.0.1:$port" --peer "127.0.0.1:$peer_port" --count 1 --json "$@" \
		>/dev/null 2>"$NK_TMP/poll_err.txt"
}

# turn_refused ARGS...: turn-check is refused with 401.
turn_refused() {
	! turn_ok "$@" && grep -q '401' "$NK_TMP/poll_err.txt"
}

# wait_until LABEL BOUND_MS CHECK ARGS...: runs CHECK ARGS until it succeeds, at most 10 s and 200
# tries; fails unless the try that succeeded started within BOUND_MS of the call (a try is a whole
# client process, slow on a loaded host: when it ends says little of when the server changed).
# Sets WAITED_MS (to the start of that try).
wait_until() {
	local label=$1 bound=$2 tries=0 t0 ts now
	shift 2
	t0=${EPOCHREALTIME//[.,]/}
	while :; do
		ts=${EPOCHREALTIME//[.,]/}
		"$@" && break
		tries=$((tries + 1))
		now=${EPOCHREALTIME//[.,]/}
		((tries < 200 && now - t0 < 10000000)) || nk_fail "$label: not after $tries tries, $(((now - t0) / 1000)) ms: $(cat "$NK_TMP/poll_err.txt")"
	done
	now=${EPOCHREALTIME//[.,]/}
	WAITED_MS=$(((ts - t0) / 1000))
	((WAITED_MS <= bound)) || nk_fail "$label: seen by a try that started $WAITED_MS ms after the change, more than the documented bound ($bound ms)"
	nk_log "$label: seen by a try started after $WAITED_MS ms, done after $(((now - t0) / 1000)) ms ($((tries + 1)) tries)"
}

# uclient_ok LABEL ARGS...: coturn's turnutils_uclient through the server, no loss.
uclient_ok() {
	local label=$1 sent recv lost
	shift
	timeout 60 turnutils_uclient -n 10 -m 1 -l 100 -z 5 -e 127.0.0.1 -r "$peer_port" -p "$port" "$@" 127.0.0.1 \
		>"$NK_TMP/uclient.txt" 2>&1 || nk_fail "$label: turnutils_uclient failed: $(tail -n 5 "$NK_TMP/uclient.txt")"
	sent=$(sed -nE 's/.*tot_send_msgs=([0-9]+), tot_recv_msgs=([0-9]+).*/\1/p' "$NK_TMP/uclient.txt" | tail -n1)
	recv=$(sed -nE 's/.*tot_send_msgs=([0-9]+), tot_recv_msgs=([0-9]+).*/\2/p' "$NK_TMP/uclient.txt" | tail -n1)
	lost=$(sed -nE 's/.*Total lost packets ([0-9]+) .*/\1/p' "$NK_TMP/uclient.txt" | tail -n1)
	[ -n "$sent" ] && [ "$sent" -ge 10 ] && [ "$sent" = "$recv" ] && [ "$lost" = 0 ] ||
		nk_fail "$label: uclient sent ${sent:-?} received ${recv:-?} lost ${lost:-?}"
	nk_log "$label: uclient sent $sent received $recv lost $lost"
}

# start_userdb_server NAME ARGS...: natkit turn-server on 127.0.0.1:$port, realm natkit.test, relays in
# relay_lo..relay_hi, loopback peer opened; waits for its start line (kept in START_LINE).
start_userdb_server() {
	local name=$1
	shift
	nk_start "$name" "$NK_TMP/$name.log" "$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test \
		--relay-ip 127.0.0.1 --relay-ports "$relay_lo-$relay_hi" --allow-peer 127.0.0.1/32 "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'listening on' 15 || nk_fail "natkit turn-server ($name) did not start"
	START_LINE=$NK_MATCH
}

# user_added DB_OPT CONN TA_OPT USER PASS: `natkit turn-user add DB_OPT CONN` (the password on stdin)
# writes USER in realm natkit.test, coturn's `turnadmin -l TA_OPT CONN` lists it, and the running
# server takes it within BOUND_MS.
user_added() {
	local db_opt=$1 conn=$2 ta_opt=$3 user=$4 pass=$5
	printf '%s\n' "$pass" | "$NATKIT" turn-user add "$db_opt" "$conn" --realm natkit.test --user "$user" \
		2>>"$NK_TMP/turn-user.log" || nk_fail "turn-user add $db_opt: $(cat "$NK_TMP/turn-user.log")"
	turnadmin -l "$ta_opt" "$conn" 2>/dev/null | grep -qx "$user\\[natkit.test\\]" ||
		nk_fail "turnadmin -l $ta_opt does not list natkit's user: $(turnadmin -l "$ta_opt" "$conn" 2>/dev/null)"
	wait_until "user added by natkit turn-user works" "$BOUND_MS" turn_ok --user "$user" --pass "$pass"
}
