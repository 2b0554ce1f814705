#!/usr/bin/env bash
# natkit listen / connect that stop tell their peers (issue 15, item 6), on loopback through a hub:
# - connect started before its listener is at the hub waits for it ("waiting" event), then
#   carries a random file byte-identical (exit 0);
# - listen interrupted (SIGINT) mid-session: its connect exits 1 at once (within 3 s, not at
#   QUIC's idle timeout) saying "peer ID closed the connection: stopped"; listen exits 0;
# - connect terminated (SIGTERM) mid-session: listen reports that peer's close with the reason.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init p2p_stop
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require cmp

port=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
nk_keygen a b c
common=(--hub "127.0.0.1:$port" --bind 127.0.0.1:0)
head -c 300000 /dev/urandom >"$NK_TMP/up.bin"

# --- 1. connect first, listen later: connect waits for it ---
nk_start c1 "$NK_TMP/c1.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20 --json
nk_wait_for_log "$NK_TMP/c1.log" '"event":"waiting","peer":"'"$ID_a"'","reason":"peer is not registered at the hub"' 10 ||
	nk_fail "connect did not say it waits for the listener"
mkfifo "$NK_TMP/l1.in"
nk_start l1 "$NK_TMP/l1.log" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ "$NK_TMP/l1.in" "$NK_TMP/l1.out" \
	"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key"
exec {l1w}>"$NK_TMP/l1.in"
nk_wait_for_log "$NK_TMP/c1.log" '^\[nk\] c1 exited with status' 30 || nk_fail "connect did not finish"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connect after waiting: $NK_MATCH"
grep -q '"event":"connected"' "$NK_TMP/c1.log" || nk_fail "no connected event after waiting"
cmp "$NK_TMP/up.bin" "$NK_TMP/l1.out" || nk_fail "the file that waited for its listener differs"
nk_log "connect started first waited for the listener, then 300 kB arrived byte-identical"

# --- 2. listen gets SIGINT mid-session: connect exits 1 at once, with the reason ---
mkfifo "$NK_TMP/c2.in"
nk_start c2 "$NK_TMP/c2.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/c2.in" \
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/c.key" --timeout 20
exec {c2w}>"$NK_TMP/c2.in"
nk_wait_for_log "$NK_TMP/c2.log" 'connected to' 20 || nk_fail "connect 2 did not connect"
head -c 1000 "$NK_TMP/up.bin" >&$c2w
nk_wait_for_log "$NK_TMP/l1.log" "connected to $ID_c" 10 || nk_fail "listen did not see connect 2"
t0=${EPOCHREALTIME//[.,]/}
kill -INT -- "-${NK_PROCS[l1]}"
nk_wait_for_log "$NK_TMP/c2.log" '^\[nk\] c2 exited with status' 10 || nk_fail "connect did not notice the stopped listener"
ms=$(( (${EPOCHREALTIME//[.,]/} - t0) / 1000 ))
[[ $NK_MATCH == *"status 1" ]] || nk_fail "listener stopped: connect $NK_MATCH, want status 1"
[ "$ms" -lt 5000 ] || nk_fail "connect took $ms ms to notice the stopped listener" # the idle timeout would be 30 s
grep -q "^natkit connect: peer $ID_a closed the connection: stopped$" "$NK_TMP/c2.log" ||
	nk_fail "connect did not say the listener stopped"
grep -q 'lost the peer before the transfer ended (peer closed the connection: stopped)' "$NK_TMP/c2.log" ||
	nk_fail "connect did not say the transfer was cut"
nk_wait_for_log "$NK_TMP/l1.log" '^\[nk\] l1 exited with status' 10 || nk_fail "listen did not exit at SIGINT"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "listen at SIGINT: $NK_MATCH, want status 0"
exec {c2w}>&- {l1w}>&-
nk_log "listen at SIGINT: connect exited 1 after $ms ms, saying the peer stopped"

# --- 3. connect gets SIGTERM mid-session: the listener is told why ---
nk_start l3 "$NK_TMP/l3.log" "$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key" --json
nk_wait_for_log "$NK_TMP/l3.log" '"event":"registered"' 10 || nk_fail "listener 3 did not register"
mkfifo "$NK_TMP/c3.in"
nk_start c3 "$NK_TMP/c3.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/c3.in" \
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {c3w}>"$NK_TMP/c3.in"
nk_wait_for_log "$NK_TMP/c3.log" 'connected to' 20 || nk_fail "connect 3 did not connect"
# (both ends connected: a close before the handshake is confirmed cannot carry a phrase)
nk_wait_for_log "$NK_TMP/l3.log" '"event":"connected","peer":"'"$ID_b"'"' 10 || nk_fail "listen 3 did not see connect 3"
nk_stop c3
nk_wait_for_log "$NK_TMP/l3.log" '"event":"disconnected","peer":"'"$ID_b"'","reason":"peer closed the connection: stopped"' 5 ||
	nk_fail "the listener was not told that connect stopped"
exec {c3w}>&-
nk_pass "a stopped listen or connect tells its peer at once, with the reason"
