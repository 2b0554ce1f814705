#!/usr/bin/env bash
# coturn's turnutils_uclient through `natkit turn-server` to a turnutils_peer echo, on loopback:
# UDP and TCP, with channels and with Send indications, TLS, TURN REST credentials read from a
# --config file, and natkit turn-check over UDP/TCP/TLS;
# every run must report 0% loss. Then the secure default: without --allow-peer
# the loopback peer is refused (403 counted, nothing relayed); garbage is dropped and counted;
# quotas answer 486/508; --threads 3 works the same; bad flags exit 2; SIGTERM exits 0.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init turn_uclient
nk_require turnutils_uclient turnutils_peer openssl
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=40      # messages per client
CLIENTS=3     # uclient -m
relay_lo=$(nk_free_port 200)
relay_hi=$((relay_lo + 199))
outside_relays() { # nk_free_port N, but not inside the relay range
	local p
	while :; do
		p=$(nk_free_port "$1")
		((p + $1 - 1 < relay_lo || p > relay_hi)) && { echo "$p"; return; }
	done
}
port=$(outside_relays 2)      # P: UDP+TCP, P+1: TLS
peer_port=$(outside_relays 1)

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-keyout "$NK_TMP/key.pem" -out "$NK_TMP/cert.pem" >/dev/null 2>&1 || nk_fail "openssl could not make a certificate"

nk_start peer "$NK_TMP/peer.log" turnutils_peer -v -L 127.0.0.1 -p "$peer_port"
nk_wait_for_log "$NK_TMP/peer.log" 'udp_create_server_socket.*end' 10 || nk_fail "turnutils_peer did not start"

# start_natkit NAME ARGS...: natkit turn-server on 127.0.0.1:P (TLS on P+1), waits for its start line.
start_natkit() {
	local name=$1
	shift
	nk_start "$name" "$NK_TMP/$name.log" "$NATKIT" turn-server --listen "127.0.0.1:$port" \
		--tls-listen "127.0.0.1:$((port + 1))" --cert "$NK_TMP/cert.pem" --key "$NK_TMP/key.pem" \
		--relay-ip 127.0.0.1 --relay-ports "$relay_lo-$relay_hi" "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'natkit-turn-server: listening on' 10 ||
		nk_fail "natkit turn-server ($name) did not start"
}

# stop_natkit NAME: SIGTERM must end it with status 0; leaves its final stats line in STATS.
stop_natkit() {
	local rc
	nk_stop "$1"
	rc=$?
	[ $rc -eq 0 ] || nk_fail "$1: exit status $rc after SIGTERM (want 0)"
	STATS=$(grep 'natkit-turn-server: stopped' "$NK_TMP/$1.log") || nk_fail "$1: no final stats line"
}

# uclient LABEL ARGS...: runs turnutils_uclient; sets SENT, RECEIVED, LOST from its summary.
uclient() {
	local label=$1 rc t0=$SECONDS
	shift
	timeout 120 turnutils_uclient -n $COUNT -m $CLIENTS -l 120 -z 5 -e 127.0.0.1 -r "$peer_port" "$@" \
		>"$NK_TMP/uclient.txt" 2>&1
	rc=$?
	SENT=$(sed -nE 's/.*start_mclient: tot_send_msgs=([0-9]+), tot_recv_msgs=([0-9]+).*/\1/p' "$NK_TMP/uclient.txt" | tail -n1)
	RECEIVED=$(sed -nE 's/.*start_mclient: tot_send_msgs=([0-9]+), tot_recv_msgs=([0-9]+).*/\2/p' "$NK_TMP/uclient.txt" | tail -n1)
	LOST=$(sed -nE 's/.*Total lost packets ([0-9]+) \(([0-9.]+)%\).*/\1/p' "$NK_TMP/uclient.txt" | tail -n1)
	nk_log "$label: exit $rc after $((SECONDS - t0)) s, sent ${SENT:-?}, received ${RECEIVED:-?}, lost ${LOST:-?}"
	return $rc
}

# check_zero_loss LABEL ARGS...: uclient must finish, every message sent must come back.
check_zero_loss() {
	local label=$1 want=$((COUNT * CLIENTS * 2))  # uclient runs an RTP and an RTCP session per client
	shift
	uclient "$label" "$@" || nk_fail "$label: turnutils_uclient failed: $(tail -n 5 "$NK_TMP/uclient.txt")"
	[ -n "$SENT" ] && [ -n "$LOST" ] || nk_fail "$label: no summary in uclient's output: $(tail -n 5 "$NK_TMP/uclient.txt")"
	[ "$LOST" = 0 ] && [ "$SENT" = "$RECEIVED" ] || nk_fail "$label: loss: sent $SENT received $RECEIVED lost $LOST"
	[ "$SENT" -ge $((COUNT * CLIENTS)) ] || nk_fail "$label: only $SENT messages sent (want $want)"
}

# ---- usage errors: exit 2 ----
for args in "--bogus" "--listen 127.0.0.1:$port" "--listen 127.0.0.1:$port --realm r --user u:p" \
	"--listen nonsense --realm r --user u:p --relay-ip 127.0.0.1" \
	"--listen 127.0.0.1:$port --realm r --user u:p --relay-ip 127.0.0.1 --relay-ports 9-1" \
	"--listen 127.0.0.1:$port --realm r --user u:p --relay-ip 127.0.0.1 --allow-peer 10.0.0.0/99"; do
	# shellcheck disable=SC2086
	"$NATKIT" turn-server $args >/dev/null 2>&1
	rc=$?
	[ $rc -eq 2 ] || nk_fail "turn-server $args: exit $rc, want 2"
done
"$NATKIT" turn-server --help | grep -q -- '--allow-peer' || nk_fail "--help does not describe --allow-peer"

# ---- long-term credentials, loopback peers opened ----
start_natkit lt --realm natkit.test --user alice:wonderland --user bob:builder --allow-peer 127.0.0.0/8
creds=(-u alice -w wonderland -p "$port")
check_zero_loss "udp channels" "${creds[@]}" 127.0.0.1
check_zero_loss "udp send indications" -s "${creds[@]}" 127.0.0.1
check_zero_loss "tcp channels" -t "${creds[@]}" 127.0.0.1
check_zero_loss "tcp send indications" -t -s "${creds[@]}" 127.0.0.1
check_zero_loss "tls channels" -t -S -p $((port + 1)) -u bob -w builder 127.0.0.1
# natkit's own client through natkit's server, over every transport
for t in udp tcp tls; do
	tport=$port
	[ $t = tls ] && tport=$((port + 1))
	out=$(timeout 60 "$NATKIT" turn-check --turn "127.0.0.1:$tport" --transport $t --user alice --pass wonderland \
		--ca "$NK_TMP/cert.pem" --peer "127.0.0.1:$peer_port" --count 20 --json 2>"$NK_TMP/err.txt") ||
		nk_fail "turn-check over $t: $(cat "$NK_TMP/err.txt") $out"
	[ "$(nk_json_get "$out" received)" = 20 ] || nk_fail "turn-check over $t: loss: $out"
	nk_log "turn-check over $t: $out"
done
# wrong password: uclient gets no allocation, the server counts the failures
uclient "wrong password" -u alice -w nope -p "$port" 127.0.0.1 && nk_fail "wrong password: uclient succeeded"
# garbage to the UDP port is dropped and counted
printf 'not a TURN packet' >/dev/udp/127.0.0.1/"$port"
printf '\x01\x01\x00\x04\x21\x12\xa4\x42truncated' >/dev/udp/127.0.0.1/"$port"
# a Binding request still gets its answer afterwards (the server did not stall)
check_zero_loss "udp channels after garbage" "${creds[@]}" 127.0.0.1
stop_natkit lt
nk_log "lt: $STATS"
[[ $STATS =~ malformed\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 2 ] || nk_fail "garbage not counted as malformed: $STATS"
[[ $STATS =~ 401\ [0-9]+\+([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] || nk_fail "bad password not counted: $STATS"

# ---- several event loops (--threads): a client's packets stay on one loop, quotas and
# reservations are shared (uclient's RTCP allocation redeems its RTP one's token elsewhere) ----
start_natkit mt --realm natkit.test --user alice:wonderland --allow-peer 127.0.0.0/8 --threads 3
check_zero_loss "threads: udp channels" "${creds[@]}" 127.0.0.1
check_zero_loss "threads: tcp send indications" -t -s "${creds[@]}" 127.0.0.1
stop_natkit mt

# ---- TURN REST credentials from a coturn-style config file ----
cat >"$NK_TMP/turn.conf" <<CONF
# coturn-style names and natkit's own, key=value and key value
realm=natkit.test
use-auth-secret
static-auth-secret=north-wind
allowed-peer-ip 127.0.0.0/8
total-quota=100
user-quota 50
max-allocate-lifetime=1200
CONF
start_natkit rest --config "$NK_TMP/turn.conf"
check_zero_loss "rest udp channels" -W north-wind -u carol -p "$port" 127.0.0.1
check_zero_loss "rest tcp send indications" -t -s -W north-wind -u carol -p "$port" 127.0.0.1
uclient "rest wrong secret" -W south-wind -u carol -p "$port" 127.0.0.1 && nk_fail "rest: a wrong secret was accepted"
stop_natkit rest

# ---- secure default: no --allow-peer, the loopback peer is refused with 403 ----
start_natkit closed --realm natkit.test --user alice:wonderland
COUNT=5 CLIENTS=1
uclient "loopback peer refused" "${creds[@]}" 127.0.0.1 && [ "${RECEIVED:-0}" -gt 0 ] &&
	nk_fail "loopback peer reachable without --allow-peer"
stop_natkit closed
nk_log "closed: $STATS"
[[ $STATS =~ 403\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] || nk_fail "no 403 counted: $STATS"
[[ $STATS =~ to\ peers\ 0, ]] || nk_fail "something was relayed to a refused peer: $STATS"

# ---- quotas: 2 allocations per user, 3 in all (uclient makes 2 per client: RTP and RTCP) ----
start_natkit quota --realm natkit.test --user alice:wonderland --user bob:builder --allow-peer 127.0.0.0/8 \
	--max-allocations-per-user 2 --max-allocations 3
COUNT=5 CLIENTS=2
uclient "quota per user" "${creds[@]}" 127.0.0.1
uclient "quota in all" -u bob -w builder -p "$port" 127.0.0.1
stop_natkit quota
nk_log "quota: $STATS"
[[ $STATS =~ 486\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] || nk_fail "per-user quota never answered 486: $STATS"
[[ $STATS =~ 508\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 1 ] || nk_fail "total quota never answered 508: $STATS"

nk_pass "uclient through natkit turn-server: UDP/TCP/TLS, channels and Send, REST via --config: 0% loss; 403/401/486/508/malformed"
