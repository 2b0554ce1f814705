#!/usr/bin/env bash
# natkit turn-check through coturn's turnserver to a turnutils_peer echo, on loopback:
# long-term credentials over UDP, TCP and TLS (self-signed certificate made here), TURN REST
# credentials (--auth-secret against --use-auth-secret), and the refusals: wrong password (401),
# denied peer (403), bad flags (exit 2). Every run must come back with 0% loss.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_check_coturn
nk_require turnserver turnutils_peer openssl
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=50
port=$(nk_free_port 4)       # P: UDP+TCP, P+1: coturn's alternate port, P+2: TLS, P+3: alternate TLS
peer_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)  # coturn's relay ports: a free range, not the ephemeral one
relay_hi=$((relay_lo + 63))

nk_turn_make_cert
nk_turn_echo_peer "$peer_port"

# start_coturn NAME AUTH-ARGS...: coturn on 127.0.0.1 with TCP/UDP on P and TLS on P+2.
# (nk_coturn_start runs coturn anonymous with -z, which excludes credentials: started here instead.)
start_coturn() {
	local name=$1
	shift
	nk_start "$name" "$NK_TMP/$name.log" turnserver -n --log-file stdout --simple-log \
		-L 127.0.0.1 -p "$port" --alt-listening-port $((port + 1)) \
		--tls-listening-port $((port + 2)) --alt-tls-listening-port $((port + 3)) \
		--cert "$NK_TMP/cert.pem" --pkey "$NK_TMP/key.pem" --no-dtls --no-cli -m 1 \
		--pidfile "$NK_TMP/$name.pid" --userdb "$NK_TMP/$name.db" \
		--realm natkit.test --allow-loopback-peers --denied-peer-ip=127.0.0.2 \
		--relay-ip 127.0.0.1 --min-port "$relay_lo" --max-port "$relay_hi" "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'Total General servers|Total UDP servers' 15 ||
		nk_fail "coturn ($name) did not start on 127.0.0.1:$port"
}

# ---- bad flags: exit 2 before any traffic ----
for args in "--turn 127.0.0.1:$port --user a --pass b" \
	"--turn 127.0.0.1:$port --peer 127.0.0.1:$peer_port" \
	"--turn 127.0.0.1:$port --user a --pass b --peer 127.0.0.1:$peer_port --transport sctp" \
	"--turn 127.0.0.1:$port --auth-secret s --pass b --peer 127.0.0.1:$peer_port" \
	"--turn 127.0.0.1:$port --user a --pass b --peer 127.0.0.1:$peer_port --count 0" \
	"--turn 127.0.0.1:$port --user a --pass b --peer nowhere --count 1"; do
	# shellcheck disable=SC2086
	"$NATKIT" turn-check $args >/dev/null 2>&1
	rc=$?
	[ $rc -eq 2 ] || nk_fail "turn-check $args: want exit 2, got $rc"
done

# ---- long-term credentials ----
start_coturn coturn_lt --lt-cred-mech --user alice:s3cret
creds=(--user alice --pass s3cret)
check_echo "udp" --turn "127.0.0.1:$port" "${creds[@]}"
check_echo "tcp" --turn "127.0.0.1:$port" --transport tcp "${creds[@]}"
check_echo "tls" --turn "127.0.0.1:$((port + 2))" --transport tls --ca "$NK_TMP/cert.pem" "${creds[@]}" --realm natkit.test
check_refused "wrong password" '401' --turn "127.0.0.1:$port" --user alice --pass nope --peer "127.0.0.1:$peer_port"
check_refused "denied peer" '403' --turn "127.0.0.1:$port" "${creds[@]}" --peer "127.0.0.2:$peer_port"
check_refused "untrusted certificate" 'certificate' --turn "127.0.0.1:$((port + 2))" --transport tls "${creds[@]}" \
	--peer "127.0.0.1:$peer_port"
nk_stop coturn_lt

# ---- TURN REST credentials ----
start_coturn coturn_rest --use-auth-secret --static-auth-secret=northwind
check_echo "udp rest" --turn "127.0.0.1:$port" --auth-secret northwind
check_echo "tcp rest" --turn "127.0.0.1:$port" --transport tcp --auth-secret northwind --user natkit-test
check_refused "wrong secret" '401' --turn "127.0.0.1:$port" --auth-secret southwind --peer "127.0.0.1:$peer_port"
nk_stop coturn_rest

nk_pass "turn-check through coturn: udp, tcp, tls and REST credentials with 0% loss; 401/403/TLS refusals"
