#!/usr/bin/env bash
# natkit turn-check through natkit turn-server to a turnutils_peer echo, on loopback: long-term
# credentials over UDP, TCP and TLS (self-signed certificate made here), TURN REST credentials,
# 0% loss each; and the refusals: wrong password (401), a peer the server denies (403), and the
# secure default (no --allow-peer: loopback peers are refused with 403).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_check_natkit
nk_require turnutils_peer openssl
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=50
port=$(nk_free_port 2)       # P: UDP+TCP, P+1: TLS
peer_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)
relay_hi=$((relay_lo + 63))

nk_turn_make_cert
nk_turn_echo_peer "$peer_port"

# start_natkit NAME ARGS...: natkit turn-server on 127.0.0.1:P (and TLS on P+1).
start_natkit() {
	local name=$1
	shift
	nk_start "$name" "$NK_TMP/$name.log" "$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test \
		--tls-listen "127.0.0.1:$((port + 1))" --cert "$NK_TMP/cert.pem" --key "$NK_TMP/key.pem" \
		--relay-ip 127.0.0.1 --relay-ports "$relay_lo-$relay_hi" "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'listening on' 15 || nk_fail "natkit turn-server ($name) did not start"
}

stop_natkit() {
	local rc
	nk_stop "$1"
	rc=$?
	[ $rc -eq 0 ] || nk_fail "natkit turn-server ($1) exited with $rc on SIGTERM"
}

# ---- long-term credentials ----
start_natkit natkit_lt --user alice:s3cret --allow-peer 127.0.0.0/8 --deny-peer 127.0.0.2/32
creds=(--user alice --pass s3cret)
check_echo "udp" --turn "127.0.0.1:$port" "${creds[@]}"
check_echo "tcp" --turn "127.0.0.1:$port" --transport tcp "${creds[@]}"
check_echo "tls" --turn "127.0.0.1:$((port + 1))" --transport tls --ca "$NK_TMP/cert.pem" "${creds[@]}" \
	--realm natkit.test
check_echo "udp large" --turn "127.0.0.1:$port" "${creds[@]}" --size 1200
check_refused "wrong password" '401' --turn "127.0.0.1:$port" --user alice --pass nope --peer "127.0.0.1:$peer_port"
check_refused "denied peer" '403' --turn "127.0.0.1:$port" "${creds[@]}" --peer "127.0.0.2:$peer_port"
stop_natkit natkit_lt

# ---- TURN REST credentials, secure default for peers ----
start_natkit natkit_rest --auth-secret northwind --allow-peer 127.0.0.1/32
check_echo "udp rest" --turn "127.0.0.1:$port" --auth-secret northwind
check_echo "tcp rest" --turn "127.0.0.1:$port" --transport tcp --auth-secret northwind --user natkit-test
check_refused "wrong secret" '401' --turn "127.0.0.1:$port" --auth-secret southwind --peer "127.0.0.1:$peer_port"
check_refused "loopback not opened" '403' --turn "127.0.0.1:$port" --auth-secret northwind --peer "127.0.0.3:$peer_port"
stop_natkit natkit_rest

# ---- IPv6 (REQUESTED-ADDRESS-FAMILY), where this host has ::1 ----
if ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then
	nk_turn_echo_peer "$peer_port" ::1 peer6
	nk_start natkit_v6 "$NK_TMP/natkit_v6.log" "$NATKIT" turn-server --listen "[::1]:$port" --realm natkit.test \
		--user alice:s3cret --relay-ip ::1 --relay-ports "$relay_lo-$relay_hi" --allow-peer ::1/128
	nk_wait_for_log "$NK_TMP/natkit_v6.log" 'listening on' 15 || nk_fail "natkit turn-server on ::1 did not start"
	PEER="[::1]:$peer_port" RELAYED_RE='\[::1\]' check_echo "udp ipv6" --turn "[::1]:$port" "${creds[@]}"
	PEER="[::1]:$peer_port" RELAYED_RE='\[::1\]' check_echo "tcp ipv6" --turn "[::1]:$port" --transport tcp "${creds[@]}"
	stop_natkit natkit_v6
	v6=", IPv6"
else
	nk_log "no ::1 on lo: IPv6 part skipped"
	v6=""
fi

nk_pass "turn-check through natkit turn-server: udp, tcp, tls, REST credentials$v6 with 0% loss; 401/403 refusals"
