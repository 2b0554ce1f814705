#!/usr/bin/env bash
# Spreading TURN load with 300 Try Alternate (RFC 8489 section 10), on loopback: natkit turn-server A
# with --alternate-server B (and --tls-alternate-server, --alternate-domain) sends every Allocate to
# natkit turn-server B; natkit turn-check --turn A ends up relaying through B over UDP, TCP and TLS
# and says it was redirected; coturn's turnutils_uclient against A is redirected too; natkit
# turn-check against coturn started with --alternate-server B (interop the other way round); two
# fronts pointing at each other: the client stops after one hop back ("already tried").
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_alternate
nk_require turnutils_peer turnutils_uclient turnserver openssl
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=20
b_port=$(nk_free_port 2)     # B: UDP+TCP on P, TLS on P+1
a_port=$(nk_free_port 2)     # A (the front): the same
c_port=$(nk_free_port 1)     # coturn as a front
peer_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)  # B's relay ports: check_echo wants every relayed address in this range
relay_hi=$((relay_lo + 63))
a_relay=$(nk_free_port 16)

nk_turn_make_cert
nk_turn_echo_peer "$peer_port"

# start_natkit NAME PORT RELAY-LO RELAY-HI ARGS...: natkit turn-server on 127.0.0.1:PORT, TLS on PORT+1.
start_natkit() {
	local name=$1 port=$2 lo=$3 hi=$4
	shift 4
	nk_start "$name" "$NK_TMP/$name.log" "$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test \
		--tls-listen "127.0.0.1:$((port + 1))" --cert "$NK_TMP/cert.pem" --key "$NK_TMP/key.pem" \
		--relay-ip 127.0.0.1 --relay-ports "$lo-$hi" --allow-peer 127.0.0.0/8 "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'listening on' 15 || nk_fail "natkit turn-server ($name) did not start"
}

# stopped_count NAME FIELD: a counter from the server's "stopped; ..." line (after nk_stop).
stopped_count() {
	sed -nE "s/.*stopped; .*[ ,]$2 ([0-9]+).*/\1/p" "$NK_TMP/$1.log" | tail -n1
}

stopped_allocations() {
	sed -nE 's/.*stopped; allocations ([0-9]+).*/\1/p' "$NK_TMP/$1.log" | tail -n1
}

start_natkit back "$b_port" "$relay_lo" "$relay_hi" --user alice:s3cret
# The front has no accounts: it only redirects. TLS clients get B's TLS port and the certificate name.
start_natkit front "$a_port" "$a_relay" $((a_relay + 15)) --alternate-server "127.0.0.1:$b_port" \
	--tls-alternate-server "127.0.0.1:$((b_port + 1))" --alternate-domain localhost
# (logged just after "listening on": waited for, not looked for once)
nk_wait_for_log "$NK_TMP/front.log" "300 Try Alternate, round-robin: 127\.0\.0\.1:$b_port, tls 127\.0\.0\.1:$((b_port + 1))" 10 ||
	nk_fail "the front does not log its alternates: $(cat "$NK_TMP/front.log")"

creds=(--user alice --pass s3cret)
# check_redirected LABEL WANT-SERVER ARGS...: 0% loss through B, and the JSON names A as the redirector.
check_redirected() {
	local label=$1 want=$2 out
	shift 2
	check_echo "$label" "$@"
	out=$(timeout 60 "$NATKIT" turn-check --peer "127.0.0.1:$peer_port" --count 3 --json "$@" 2>"$NK_TMP/err.txt") ||
		nk_fail "$label: second run failed: $(cat "$NK_TMP/err.txt")"
	[ "$(nk_json_get "$out" server)" = "$want" ] || nk_fail "$label: not relayed by $want: $out"
	[ "$(nk_json_get "$out" redirected_by)" = "${FRONT:-127.0.0.1:$a_port}" ] || nk_fail "$label: redirector not reported: $out"
}

check_redirected "udp via front" "127.0.0.1:$b_port" --turn "127.0.0.1:$a_port" "${creds[@]}"
check_redirected "tcp via front" "127.0.0.1:$b_port" --turn "127.0.0.1:$a_port" --transport tcp "${creds[@]}"
# TLS: A's certificate is checked for 127.0.0.1, B's for the ALTERNATE-DOMAIN (localhost).
FRONT="127.0.0.1:$((a_port + 1))" check_redirected "tls via front" "127.0.0.1:$((b_port + 1))" \
	--turn "127.0.0.1:$((a_port + 1))" --transport tls --ca "$NK_TMP/cert.pem" "${creds[@]}"

# the text report says it too
out=$(timeout 60 "$NATKIT" turn-check --turn "127.0.0.1:$a_port" "${creds[@]}" --peer "127.0.0.1:$peer_port" --count 2 2>&1) ||
	nk_fail "text report: turn-check failed: $out"
grep -q "redirect: 127.0.0.1:$a_port answered 300 Try Alternate" <<<"$out" || nk_fail "text report lacks the redirect: $out"
grep -q "via 127.0.0.1:$b_port over udp" <<<"$out" || nk_fail "text report: not via B: $out"

# a wrong password is refused by B, after the redirect
check_refused "wrong password via front" '401' --turn "127.0.0.1:$a_port" --user alice --pass nope \
	--peer "127.0.0.1:$peer_port"

# coturn's client follows the 300 as well: its allocations are made at B
timeout 120 turnutils_uclient -n 10 -m 1 -l 120 -z 5 -e 127.0.0.1 -r "$peer_port" -u alice -w s3cret \
	-p "$a_port" 127.0.0.1 >"$NK_TMP/uclient.txt" 2>&1 || nk_fail "turnutils_uclient via the front failed: $(tail -n 5 "$NK_TMP/uclient.txt")"
grep -q 'error 300' "$NK_TMP/uclient.txt" || nk_fail "uclient was not redirected: $(tail -n 5 "$NK_TMP/uclient.txt")"
grep -qE 'start_mclient: tot_send_msgs=20, tot_recv_msgs=20' "$NK_TMP/uclient.txt" ||
	nk_fail "uclient through B lost messages: $(grep tot_send "$NK_TMP/uclient.txt" | tail -n 1)"

nk_stop front
nk_stop back
# 6 check_redirected runs, the text report, the wrong password, uclient (its RTCP allocation goes to B directly)
redirected=$(stopped_count front redirected)
[ "${redirected:-0}" -ge 9 ] || nk_fail "the front counted ${redirected:-none} redirects, want >= 9: $(tail -n 1 "$NK_TMP/front.log")"
[ "$(stopped_allocations front)" = 0 ] || nk_fail "the front made allocations itself: $(tail -n 1 "$NK_TMP/front.log")"
# 3 x 2 check_redirected runs + text report + uclient's two (RTP and RTCP) = 9 at least
[ "$(stopped_allocations back)" -ge 9 ] || nk_fail "B made too few allocations: $(tail -n 1 "$NK_TMP/back.log")"

# ---- ALTERNATE-DOMAIN is what B's certificate is checked against: a name it lacks fails ----
start_natkit back_tls "$b_port" "$relay_lo" "$relay_hi" --user alice:s3cret
start_natkit front_bad "$a_port" "$a_relay" $((a_relay + 15)) --tls-alternate-server "127.0.0.1:$((b_port + 1))" \
	--alternate-domain elsewhere.test
check_refused "alternate domain checked" "cannot reach TURN server 127.0.0.1:$((b_port + 1)).*(certificate|verif)" \
	--turn "127.0.0.1:$((a_port + 1))" --transport tls --ca "$NK_TMP/cert.pem" "${creds[@]}" --peer "127.0.0.1:$peer_port"
nk_stop front_bad
nk_stop back_tls

# ---- two fronts pointing at each other: one hop, then the client refuses to go back ----
start_natkit loop_a "$a_port" "$a_relay" $((a_relay + 7)) --user alice:s3cret --alternate-server "127.0.0.1:$b_port"
start_natkit loop_b "$b_port" $((a_relay + 8)) $((a_relay + 15)) --user alice:s3cret --alternate-server "127.0.0.1:$a_port"
check_refused "redirect loop" '300.*already tried' --turn "127.0.0.1:$a_port" "${creds[@]}" --peer "127.0.0.1:$peer_port"
nk_stop loop_a
nk_stop loop_b

# ---- coturn as the front, natkit behind it ----
start_natkit back2 "$b_port" "$relay_lo" "$relay_hi" --user alice:s3cret
nk_start coturn "$NK_TMP/coturn.log" turnserver -n --log-file stdout --simple-log -L 127.0.0.1 -p "$c_port" \
	--no-dtls --no-tls --no-cli -m 1 --pidfile "$NK_TMP/coturn.pid" --userdb "$NK_TMP/coturn.db" \
	--realm natkit.test --lt-cred-mech --user alice:s3cret --allow-loopback-peers --relay-ip 127.0.0.1 \
	--min-port "$a_relay" --max-port $((a_relay + 15)) --alternate-server "127.0.0.1:$b_port"
nk_wait_for_log "$NK_TMP/coturn.log" 'Total General servers|Total UDP servers' 15 || nk_fail "coturn did not start"
FRONT="127.0.0.1:$c_port" check_redirected "udp via coturn" "127.0.0.1:$b_port" --turn "127.0.0.1:$c_port" "${creds[@]}"
FRONT="127.0.0.1:$c_port" check_redirected "tcp via coturn" "127.0.0.1:$b_port" --turn "127.0.0.1:$c_port" \
	--transport tcp "${creds[@]}"
nk_stop coturn
nk_stop back2

nk_pass "300 Try Alternate: turn-check via a natkit front (udp, tcp, tls with ALTERNATE-DOMAIN) and via coturn relays at B; uclient follows; loops stop"
