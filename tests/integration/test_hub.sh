#!/usr/bin/env bash
# natkit hub on loopback with real peers (bench/hub_load: each peer its own identity and TCP/TLS
# connection): two peers, then 1000 at once (register, candidates and relay packets between
# neighbours tagged with the sender's ID, unknown peer, forged proof refused, re-registration
# replaces). Garbage on a connection gets a CLOSE frame and leaves the hub serving. TLS with a
# self-signed certificate (verified, and refused when untrusted); a dual-stack hub on [::] with IPv4
# peers. SIGTERM stops the hub with exit 0 and its counters.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init hub

NK_BUILD_DIR=${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}
NATKIT=${NATKIT:-$NK_BUILD_DIR/natkit}
HUB_LOAD=$NK_BUILD_DIR/hub_load
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT"
[ -x "$HUB_LOAD" ] || nk_fail "hub_load not found at $HUB_LOAD"
nk_require openssl

# hub_load against 127.0.0.1:$1 with the rest as arguments; checks "ok":true.
load() {
	local port=$1 json
	shift
	json=$(timeout 120 "$HUB_LOAD" --hub 127.0.0.1:$port --timeout 60 "$@") ||
		nk_fail "hub_load $* failed (status $?): $json"
	[ "$(nk_json_get "$json" ok)" = true ] || nk_fail "hub_load $*: $json"
	nk_log "hub_load $*: $json"
}

port=$(nk_free_port 2)
tls_port=$((port + 1))
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$NK_TMP/key.pem" -out "$NK_TMP/cert.pem" >/dev/null 2>&1 || nk_fail "openssl could not make a certificate"

nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen 127.0.0.1:$port --tls-listen 127.0.0.1:$tls_port \
	--cert "$NK_TMP/cert.pem" --key "$NK_TMP/key.pem" --max-peers 2000 --max-conns-per-ip 0
nk_wait_for_log "$NK_TMP/hub.log" "^$NK_LOG_TS natkit-hub: listening on tcp 127\\.0\\.0\\.1:[0-9]+ tls 127\\.0\\.0\\.1:[0-9]+" 10 ||
	nk_fail "hub did not start"

load $port -n 2

# Usage errors exit 2; a port already taken exits 1 with a message.
"$NATKIT" hub >/dev/null 2>&1
[ $? = 2 ] || nk_fail "natkit hub without --listen did not exit 2"
"$NATKIT" hub --listen 127.0.0.1:$port --max-peers zero >/dev/null 2>&1
[ $? = 2 ] || nk_fail "natkit hub --max-peers zero did not exit 2"
out=$(timeout 10 "$NATKIT" hub --listen 127.0.0.1:$port 2>&1)
[ $? = 1 ] || nk_fail "a second hub on a taken port did not exit 1: $out"
[[ $out =~ ^$NK_LOG_TS\ natkit-hub:\ cannot\ bind\ 127\.0\.0\.1:$port:\ Address\ already\ in\ use$ ]] ||
	nk_fail "no message naming the taken port: $out"

# Malformed input: a relay frame header claiming 65535 bytes. The hub answers with a CLOSE frame
# (type 0x7f, code 2 = frame too large) and closes; it keeps serving everyone else.
exec {fd}<>/dev/tcp/127.0.0.1/$port || nk_fail "cannot connect to the hub"
printf '\x12\x00\xff\xff' >&$fd
reply=$(timeout 10 od -An -tx1 -v <&$fd | tr -d ' \n')
exec {fd}>&-
[[ $reply == 01000021* ]] || nk_fail "no challenge first: $reply"
[[ $reply == *7f00????0002* ]] || nk_fail "no CLOSE(too large) after an oversized frame: $reply"

# 1000 real TCP connections (the hub and hub_load raise RLIMIT_NOFILE to the hard limit).
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1100 ]; then
	nk_log "RLIMIT_NOFILE hard limit $hard: 1000-peer run skipped"
else
	load $port -n 1000
fi

load $tls_port -n 50 --tls --ca "$NK_TMP/cert.pem"

# A certificate the client does not trust: no peer gets through.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=other \
	-keyout "$NK_TMP/other.key" -out "$NK_TMP/other.pem" >/dev/null 2>&1 || nk_fail "openssl failed"
timeout 60 "$HUB_LOAD" --hub 127.0.0.1:$tls_port -n 2 --tls --ca "$NK_TMP/other.pem" --timeout 10 >/dev/null 2>&1 &&
	nk_fail "hub_load trusted a hub whose certificate does not verify"

# Dual stack: a hub on [::] sees IPv4 peers as v4-mapped addresses; the proof they sign names
# the IPv4 address they dialled, so the hub must unmap before it checks. (Skipped without IPv6.)
port6=$(nk_free_port 1)
nk_start hub6 "$NK_TMP/hub6.log" "$NATKIT" hub --listen "[::]:$port6" --quiet
if nk_wait_for_log "$NK_TMP/hub6.log" 'natkit-hub: listening on' 10; then
	load $port6 -n 2
else
	nk_log "no IPv6 wildcard listener here: dual-stack run skipped"
fi
nk_stop hub6

nk_stop hub
rc=$?
[ $rc = 0 ] || nk_fail "hub exited $rc after SIGTERM, expected 0"
grep -Eq "^$NK_LOG_TS natkit-hub: stats .*malformed=1 " "$NK_TMP/hub.log" || nk_fail "malformed frame not counted: $(grep stats "$NK_TMP/hub.log")"
grep -q 'auth_failed=[1-9]' "$NK_TMP/hub.log" || nk_fail "forged proofs not counted"
nk_pass "2, 1000 and 50 TLS peers registered and routed; malformed and forged input refused"
