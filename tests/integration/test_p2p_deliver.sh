#!/usr/bin/env bash
# natkit connect exits 0 only once the listener has written every byte to its stdout (issue 12,
# item 4: "exit 0 only once the peer has everything"), also when the listener's stdin ended
# first, i.e. the listener sent its FIN before it read ours (loopback, a hub):
# - the listener's stdin is /dev/null and its stdout a pipe whose reader has not started: QUIC
#   acknowledges connect's 200 kB (they fit the stream's window) and the listener's FIN arrives,
#   but the bytes are not on the listener's stdout, so connect must still be running; once the
#   reader starts, connect exits 0 and the reader got the file byte for byte;
# - the same over connect --tcp's sealed TCP stream;
# - the same with a listener stopped before its reader starts: connect exits 1 and says that the
#   listener never confirmed the delivery;
# - connect stopped by SIGTERM before the delivery was confirmed: exit 1 (it was 0).
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init p2p_deliver
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require cmp head

port=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
nk_keygen a b c
common=(--hub "127.0.0.1:$port" --bind 127.0.0.1:0 --json)
size=200000
head -c $size /dev/urandom >"$NK_TMP/up.bin"

# start_listener NAME KEY: natkit listen, stdin /dev/null, stdout a pipe to a reader that waits for
# a line on $NK_TMP/NAME.go, then copies $size bytes to $NK_TMP/NAME.out and says "reader done"
start_listener() {
	local name=$1 key=$2
	mkfifo "$NK_TMP/$name.go"
	nk_start "$name" "$NK_TMP/$name.log" bash -c 'go=$1 out=$2 size=$3; shift 3
		"$@" </dev/null | { read -r _ <"$go"; head -c "$size" >"$out"; echo "reader done"; cat >/dev/null; }' _ \
		"$NK_TMP/$name.go" "$NK_TMP/$name.out" "$size" "$NATKIT" listen "${common[@]}" --key "$NK_TMP/$key.key"
	nk_wait_for_log "$NK_TMP/$name.log" '"event":"registered"' 10 || nk_fail "listener $name did not register"
}

# --- 1. connect must wait until the listener's stdout has its bytes ---
start_listener l1 a
nk_start c1 "$NK_TMP/c1.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
nk_wait_for_log "$NK_TMP/c1.log" '"event":"stream-end"' 20 || nk_fail "connect 1 did not see the listener's end: $NK_MATCH"
# every byte of ours is acknowledged within a few RTTs on loopback, but none is on the
# listener's stdout yet: connect must still be running 2 s later (an event that must not come)
if nk_wait_for_log "$NK_TMP/c1.log" '^\[nk\] c1 exited with status' 2; then
	nk_fail "connect exited ($NK_MATCH) while its bytes were not yet on the listener's stdout"
fi
echo go >"$NK_TMP/l1.go"
nk_wait_for_log "$NK_TMP/c1.log" '^\[nk\] c1 exited with status' 20 || nk_fail "connect 1 did not finish"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connect 1: $NK_MATCH, want status 0"
grep -q '"event":"done"' "$NK_TMP/c1.log" || nk_fail "connect 1 printed no done event"
nk_wait_for_log "$NK_TMP/l1.log" '^reader done' 10 || nk_fail "the listener's stdout never had all $size bytes"
cmp "$NK_TMP/up.bin" "$NK_TMP/l1.out" || nk_fail "the listener's stdout differs from the file"
nk_log "connect waited for the listener's stdout, then exit 0; $size bytes byte-identical"

# --- 1b. the same over the TCP stream of connect --tcp ("natkit-delivered:tcp")
start_listener l3 c
nk_start c3 "$NK_TMP/c3.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
	"$NATKIT" connect "$ID_c" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20 --tcp
nk_wait_for_log "$NK_TMP/c3.log" '"event":"stream-end"' 20 || nk_fail "connect --tcp did not see the listener's end: $NK_MATCH"
if nk_wait_for_log "$NK_TMP/c3.log" '^\[nk\] c3 exited with status' 2; then
	nk_fail "connect --tcp exited ($NK_MATCH) while its bytes were not yet on the listener's stdout"
fi
echo go >"$NK_TMP/l3.go"
nk_wait_for_log "$NK_TMP/c3.log" '^\[nk\] c3 exited with status' 20 || nk_fail "connect --tcp did not finish"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connect --tcp: $NK_MATCH, want status 0"
# (a simultaneous open on loopback does not always get through; then the case runs over QUIC.
# Looked up once connect has exited: its TCP event may come after the listener's end)
carrier=TCP
grep -q '"state":"up"' "$NK_TMP/c3.log" || carrier="QUIC (the simultaneous open did not get through)"
nk_wait_for_log "$NK_TMP/l3.log" '^reader done' 10 || nk_fail "the listener's stdout never had all $size bytes (TCP)"
cmp "$NK_TMP/up.bin" "$NK_TMP/l3.out" || nk_fail "the listener's stdout differs from the file (TCP)"
nk_stop l3
nk_log "connect --tcp: the same, carried by $carrier"

# --- 2. the listener goes away before its stdout took the bytes: exit 1, and why ---
start_listener l2 c
nk_start c2 "$NK_TMP/c2.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
	"$NATKIT" connect "$ID_c" --hub "127.0.0.1:$port" --bind 127.0.0.1:0 --key "$NK_TMP/b.key" --timeout 20
nk_wait_for_log "$NK_TMP/c2.log" 'the peer ended its side of the stream' 20 ||
	nk_fail "connect 2 did not see the listener's end: $NK_MATCH"
nk_stop l2
nk_wait_for_log "$NK_TMP/c2.log" '^\[nk\] c2 exited with status' 15 || nk_fail "connect 2 did not notice the lost listener"
[[ $NK_MATCH == *"status 1" ]] || nk_fail "connect 2: $NK_MATCH, want status 1"
grep -q 'lost the peer before the transfer ended (peer closed the connection: stopped).*the peer had not confirmed' "$NK_TMP/c2.log" ||
	nk_fail "connect 2 did not say that the delivery was not confirmed: $(grep 'natkit connect' "$NK_TMP/c2.log" | tail -3)"

# --- 3. connect stopped by SIGTERM while the listener's stdout holds its bytes: exit 1, and why
start_listener l4 c
nk_start c4 "$NK_TMP/c4.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
	"$NATKIT" connect "$ID_c" --hub "127.0.0.1:$port" --bind 127.0.0.1:0 --key "$NK_TMP/b.key" --timeout 20
nk_wait_for_log "$NK_TMP/c4.log" 'the peer ended its side of the stream' 20 ||
	nk_fail "connect 4 did not see the listener's end: $NK_MATCH"
nk_stop c4
rc=$?
[ $rc = 1 ] || nk_fail "connect stopped before the listener's stdout had its bytes exited $rc, want 1"
grep -q 'stopped by a signal before the transfer ended: the peer had not confirmed' "$NK_TMP/c4.log" ||
	nk_fail "connect 4 did not say why: $(grep 'natkit connect' "$NK_TMP/c4.log" | tail -2)"
nk_stop l4

nk_stop l1
nk_pass "connect exits 0 only once the listener's stdout has every byte; 1 when the listener went first"
