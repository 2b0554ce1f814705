#!/usr/bin/env bash
# natkit connect / listen carry raw bytes (issue 12, item 4), on loopback through a hub:
# - a 20 MB random file piped into connect arrives byte-identical on the listener's stdout,
#   exit 0 (connect exits once the listener has every byte and ended its side);
# - the reverse: a 20 MB file on listen's stdin arrives on connect's stdout, byte-identical;
#   connect's stdout is a pipe read slowly at first (backpressure: nothing lost);
# - a listener stopped mid-transfer: connect exits 1 and says why;
# - port forwarding: python3's http.server behind `listen --forward --allow`, fetched with
#   curl through `connect --local` (two files, body identical); a peer not in --allow is
#   refused (exit 1, "refused by the listener: not allowed"); a forward target that is not
#   there is named with the system's error; usage errors exit 2; 80 forwarded TCP connections
#   open at once (more than one poll() of 64 descriptors).
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init p2p_stream
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require python3 curl cmp

port=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
nk_keygen a b c d e
common=(--hub "127.0.0.1:$port" --bind 127.0.0.1:0 --json)
head -c 20000000 /dev/urandom >"$NK_TMP/up.bin"
head -c 20000000 /dev/urandom >"$NK_TMP/down.bin"

elapsed() { echo $(( (${EPOCHREALTIME//[.,]/} - $1) / 1000 )); }
mbps() { awk -v b="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.1f", b / 1e6 / (ms / 1e3); else printf "-" }'; }

# start_listener NAME KEY STDIN [args]: natkit listen, stdout to $NK_TMP/NAME.out; waits for registered
start_listener() {
	local name=$1 key=$2 in=$3
	shift 3
	nk_start "$name" "$NK_TMP/$name.log" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
		"$in" "$NK_TMP/$name.out" "$NATKIT" listen "${common[@]}" --key "$NK_TMP/$key.key" "$@"
}

# --- 1. connector -> listener, 20 MB ---
mkfifo "$NK_TMP/l1.in"
start_listener l1 a "$NK_TMP/l1.in"
exec {l1w}>"$NK_TMP/l1.in"
nk_wait_for_log "$NK_TMP/l1.log" '"event":"registered"' 10 || nk_fail "listener 1 did not register"
t0=${EPOCHREALTIME//[.,]/}
nk_start c1 "$NK_TMP/c1.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
nk_wait_for_log "$NK_TMP/c1.log" '^\[nk\] c1 exited with status' 120 || nk_fail "connect did not finish the upload"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "upload: $NK_MATCH"
ms=$(elapsed "$t0")
cmp "$NK_TMP/up.bin" "$NK_TMP/l1.out" || nk_fail "upload: the listener's stdout differs from the file"
nk_log "upload: 20 MB byte-identical in $ms ms ($(mbps 20000000 "$ms") MB/s)"
nk_wait_for_log "$NK_TMP/l1.log" '"event":"disconnected"' 10 || nk_fail "listener 1 was not told about the close"

# --- 2. listener -> connector, 20 MB, to a pipe whose reader starts late ---
start_listener l2 d "$NK_TMP/down.bin"
nk_wait_for_log "$NK_TMP/l2.log" '"event":"registered"' 10 || nk_fail "listener 2 did not register"
mkfifo "$NK_TMP/c2.in" "$NK_TMP/c2.go"
t0=${EPOCHREALTIME//[.,]/}
# the reader of connect's stdout waits for a line on c2.go before it reads anything
nk_start c2 "$NK_TMP/c2.log" bash -c 'in=$1 go=$2 out=$3; shift 3
	"$@" <"$in" | { read -r _ <"$go"; cat >"$out"; }; exit ${PIPESTATUS[0]}' _ \
	"$NK_TMP/c2.in" "$NK_TMP/c2.go" "$NK_TMP/c2.out" \
	"$NATKIT" connect "$ID_d" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {c2w}>"$NK_TMP/c2.in"
nk_wait_for_log "$NK_TMP/l2.log" '"event":"connected"' 20 || nk_fail "listener 2 saw no connection"
echo go >"$NK_TMP/c2.go"
nk_wait_for_log "$NK_TMP/c2.log" '"event":"stream-end","received":20000000' 120 ||
	nk_fail "connect did not report the end of the listener's 20 MB"
exec {c2w}>&-
nk_wait_for_log "$NK_TMP/c2.log" '^\[nk\] c2 exited with status' 20 || nk_fail "connect did not exit after its stdin ended"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "download: $NK_MATCH"
ms=$(elapsed "$t0")
cmp "$NK_TMP/down.bin" "$NK_TMP/c2.out" || nk_fail "download: connect's stdout differs from the file"
nk_log "download: 20 MB byte-identical in $ms ms ($(mbps 20000000 "$ms") MB/s; the reader of stdout started late)"
nk_stop l2

# --- 3. the listener stops mid-transfer: connect exits 1 and says why ---
mkfifo "$NK_TMP/l3.in" "$NK_TMP/c3.in"
start_listener l3 e "$NK_TMP/l3.in"
exec {l3w}>"$NK_TMP/l3.in"
nk_wait_for_log "$NK_TMP/l3.log" '"event":"registered"' 10 || nk_fail "listener 3 did not register"
nk_start c3 "$NK_TMP/c3.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/c3.in" \
	"$NATKIT" connect "$ID_e" --hub "127.0.0.1:$port" --bind 127.0.0.1:0 --key "$NK_TMP/b.key" --timeout 20
exec {c3w}>"$NK_TMP/c3.in"
nk_wait_for_log "$NK_TMP/c3.log" 'connected to' 20 || nk_fail "connect 3 did not connect"
head -c 100000 "$NK_TMP/up.bin" >&$c3w
nk_stop l3
nk_wait_for_log "$NK_TMP/c3.log" '^\[nk\] c3 exited with status' 15 || nk_fail "connect did not notice the lost listener"
[[ $NK_MATCH == *"status 1" ]] || nk_fail "lost listener: $NK_MATCH, want status 1"
# (": stopped" when the listener's side of the handshake was done: a close before that cannot carry
# a phrase, RFC 9000 10.2.3; test_p2p_stop.sh checks the phrase)
grep -qE 'lost the peer before the transfer ended \(peer closed the connection(: stopped)?\)' "$NK_TMP/c3.log" ||
	nk_fail "connect did not say why it failed"
exec {c3w}>&-

# --- 4. port forwarding: an HTTP server behind listen --forward, fetched through connect --local ---
hport=$(nk_free_port 1)
mkdir -p "$NK_TMP/www"
head -c 5000000 /dev/urandom >"$NK_TMP/www/body.bin"
head -c 777 /dev/urandom >"$NK_TMP/www/small.bin"
nk_start http "$NK_TMP/http.log" python3 -m http.server --bind 127.0.0.1 --directory "$NK_TMP/www" "$hport"
nk_wait_tcp "$hport" 10 || nk_fail "python3 http.server did not accept connections on 127.0.0.1:$hport"
printf '# who may use the forward\n\n  %s  # the connector\n' "$ID_b" >"$NK_TMP/allow.txt"
start_listener fwd a /dev/null --forward "127.0.0.1:$hport" --allow-file "$NK_TMP/allow.txt" --allow "$ID_d"
nk_wait_for_log "$NK_TMP/fwd.log" '"event":"registered"' 10 || nk_fail "forwarding listener did not register"
lport=$(nk_free_port 1)
nk_start loc "$NK_TMP/loc.log" "$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20 \
	--local "127.0.0.1:$lport"
nk_wait_for_log "$NK_TMP/loc.log" '"event":"connected"' 20 || nk_fail "connect --local did not connect"
grep -q '"event":"local","listen":"127.0.0.1:'"$lport"'"' "$NK_TMP/loc.log" || nk_fail "no local event"
t0=${EPOCHREALTIME//[.,]/}
curl -sS --max-time 60 -o "$NK_TMP/got.bin" "http://127.0.0.1:$lport/body.bin" \
	-o "$NK_TMP/got_small.bin" "http://127.0.0.1:$lport/small.bin" || nk_fail "curl through the forward failed"
ms=$(elapsed "$t0")
cmp "$NK_TMP/www/body.bin" "$NK_TMP/got.bin" || nk_fail "forward: the body differs"
cmp "$NK_TMP/www/small.bin" "$NK_TMP/got_small.bin" || nk_fail "forward: the small body differs"
grep -q '"event":"stream-open".*forwarding to 127.0.0.1:'"$hport" "$NK_TMP/fwd.log" || nk_fail "the listener did not log the forward"
nk_log "forward: 5 MB + 777 bytes over HTTP byte-identical in $ms ms"

# plain `natkit connect` (stdin/stdout) to a --forward listener is a raw TCP connection to the
# service (as an ssh ProxyCommand): an HTTP/1.0 request in, the response out, exit 0
printf 'GET /small.bin HTTP/1.0\r\n\r\n' |
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/d.key" --timeout 20 >"$NK_TMP/raw.out" 2>"$NK_TMP/raw.err" ||
	nk_fail "connect (stdin/stdout) to a forward: exit $?: $(cat "$NK_TMP/raw.err")"
head -1 "$NK_TMP/raw.out" | grep -q '^HTTP/1.0 200' || nk_fail "no HTTP response through connect's stdout: $(head -c 200 "$NK_TMP/raw.out")"
tail -c 777 "$NK_TMP/raw.out" | cmp - "$NK_TMP/www/small.bin" || nk_fail "the body through connect's stdout differs"

# connect --tcp to a --forward listener (which takes no TCP upgrade: its streams are many): the
# listener declines at once and the bytes go over the QUIC stream without waiting for the
# upgrade's window (it took ~5 s: the listener dropped the request unanswered)
t0=${EPOCHREALTIME//[.,]/}
printf 'GET /small.bin HTTP/1.0\r\n\r\n' |
	"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/d.key" --timeout 20 --tcp >"$NK_TMP/rawtcp.out" 2>"$NK_TMP/rawtcp.err" ||
	nk_fail "connect --tcp to a forward: exit $?: $(cat "$NK_TMP/rawtcp.err")"
ms=$(elapsed "$t0")
tail -c 777 "$NK_TMP/rawtcp.out" | cmp - "$NK_TMP/www/small.bin" || nk_fail "the body through connect --tcp's stdout differs"
grep -q '"event":"tcp".*the peer does not take one' "$NK_TMP/rawtcp.err" ||
	nk_fail "connect --tcp was not told that the listener takes no TCP upgrade: $(grep '"tcp"' "$NK_TMP/rawtcp.err")"
[ "$ms" -lt 4500 ] || nk_fail "connect --tcp to a forward took $ms ms (the fallback should not wait; waiting is 5 s and more)"
nk_log "connect --tcp to a forward: declined at once, the bytes over QUIC, $ms ms in all"

# a peer not allowed: refused, told so, exit 1
out=$("$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/c.key" --timeout 20 --local "127.0.0.1:$(nk_free_port 1)" 2>&1)
rc=$?
[ $rc -eq 1 ] || nk_fail "a peer not in --allow: exit $rc, want 1: $out"
echo "$out" | grep -q 'refused by the listener: not allowed' || nk_fail "the refused peer was not told why: $out"
grep -q '"event":"refused","peer":"'"$ID_c"'","reason":"not allowed"' "$NK_TMP/fwd.log" || nk_fail "the listener did not log the refusal"
nk_stop loc
nk_stop fwd

# half-close and reset pass through: a TCP server that answers at EOF, or resets
tport=$(nk_free_port 1)
nk_start tcpd "$NK_TMP/tcpd.log" python3 "$NK_SOURCE_DIR/tests/integration/p2p_tcp_peer.py" server "$tport"
nk_wait_for_log "$NK_TMP/tcpd.log" '^listening' 10 || nk_fail "the TCP test server did not start"
start_listener fwd3 e /dev/null --forward "127.0.0.1:$tport" --allow "$ID_b"
nk_wait_for_log "$NK_TMP/fwd3.log" '"event":"registered"' 10 || nk_fail "forwarding listener 3 did not register"
lport3=$(nk_free_port 1)
nk_start loc3 "$NK_TMP/loc3.log" "$NATKIT" connect "$ID_e" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20 \
	--local "127.0.0.1:$lport3"
nk_wait_for_log "$NK_TMP/loc3.log" '"event":"connected"' 20 || nk_fail "connect --local 3 did not connect"
out=$(timeout 30 python3 "$NK_SOURCE_DIR/tests/integration/p2p_tcp_peer.py" client "$lport3" half 2>&1) ||
	nk_fail "half-close through the forward: $out"
out=$(timeout 30 python3 "$NK_SOURCE_DIR/tests/integration/p2p_tcp_peer.py" client "$lport3" rst 2>&1) ||
	nk_fail "reset through the forward: $out"
nk_wait_for_log "$NK_TMP/loc3.log" '"event":"stream-closed".*"detail":"reset: the TCP connection on the other side failed"' 10 ||
	nk_fail "connect --local did not report the reset"
nk_log "forward: half-close (2 MB, answered at EOF) and reset pass through"
# more forwarded connections at once than one poll() of 64 descriptors held (the cap was 56):
# 80 local connections, all open together, each answered with the hash of its own bytes
out=$(timeout 120 python3 "$NK_SOURCE_DIR/tests/integration/p2p_tcp_peer.py" client "$lport3" many 80 2>&1) ||
	nk_fail "80 concurrent connections through the forward: $out"
nk_log "forward: $out at once (100 kB each way)"
nk_stop loc3
nk_stop fwd3

# a forward target that is not there: the listener names it and the system's error; the local
# connection is reset
dead=$(nk_free_port 1)
start_listener fwd2 a /dev/null --forward "127.0.0.1:$dead" --allow "$ID_b"
nk_wait_for_log "$NK_TMP/fwd2.log" '"event":"registered"' 10 || nk_fail "forwarding listener 2 did not register"
lport=$(nk_free_port 1)
nk_start loc2 "$NK_TMP/loc2.log" "$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20 \
	--local "127.0.0.1:$lport"
nk_wait_for_log "$NK_TMP/loc2.log" '"event":"connected"' 20 || nk_fail "connect --local 2 did not connect"
curl -sS --max-time 20 -o /dev/null "http://127.0.0.1:$lport/" 2>/dev/null && nk_fail "curl to a dead forward target succeeded"
nk_wait_for_log "$NK_TMP/fwd2.log" "cannot reach 127.0.0.1:$dead: Connection refused" 10 ||
	nk_fail "the listener did not name the unreachable target"
nk_wait_for_log "$NK_TMP/loc2.log" 'listener could not reach its --forward target' 10 ||
	nk_fail "connect --local did not say why the connection was reset"
# the --local port is taken: exit 1 naming it
out=$("$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/c.key" --local "127.0.0.1:$lport" 2>&1 </dev/null)
rc=$?
[ $rc -eq 1 ] || nk_fail "--local on a busy port: exit $rc, want 1: $out"
echo "$out" | grep -q "cannot listen on TCP 127.0.0.1:$lport: Address already in use" || nk_fail "busy port not named: $out"
nk_stop loc2
nk_stop fwd2

# usage errors: exit 2 with a reason
usage() { # WANT-TEXT ARGS...
	local want=$1 out rc
	shift
	out=$("$NATKIT" "$@" 2>&1 </dev/null)
	rc=$?
	[ $rc -eq 2 ] || nk_fail "natkit $*: exit $rc, want 2: $out"
	echo "$out" | grep -q -- "$want" || nk_fail "natkit $*: no '$want' in: $out"
}
usage '--forward needs --allow' listen --hub "127.0.0.1:$port" --forward "127.0.0.1:$hport"
usage "--forward 'nohost': want the HOST:PORT" listen --hub "127.0.0.1:$port" --forward nohost --allow "$ID_b"
usage "--allow 'xyz': not a peer ID" listen --hub "127.0.0.1:$port" --forward "127.0.0.1:$hport" --allow xyz
# a file that cannot be read is refused by the system, not malformed: exit 1 (README "Exit status")
out=$("$NATKIT" listen --hub "127.0.0.1:$port" --forward "127.0.0.1:$hport" --allow-file "$NK_TMP/none" 2>&1 </dev/null)
rc=$?
[ $rc -eq 1 ] || nk_fail "--allow-file none: exit $rc, want 1: $out"
echo "$out" | grep -q -- "cannot read --allow-file '$NK_TMP/none': No such file" || nk_fail "--allow-file none: $out"
echo "not-an-id" >"$NK_TMP/bad_allow.txt"
usage 'line 1' listen --hub "127.0.0.1:$port" --forward "127.0.0.1:$hport" --allow-file "$NK_TMP/bad_allow.txt"
usage "--local 'localhost:80': want the local IP:PORT" connect "$ID_a" --hub "127.0.0.1:$port" --local localhost:80
usage '--local is for natkit connect' listen --hub "127.0.0.1:$port" --local 127.0.0.1:1
usage '--forward is for natkit listen' connect "$ID_a" --hub "127.0.0.1:$port" --forward 127.0.0.1:1
usage '--local and --tcp' connect "$ID_a" --hub "127.0.0.1:$port" --local 127.0.0.1:1 --tcp

nk_stop l1
nk_pass "20 MB both ways byte-identical, lost listener -> exit 1, HTTP through --forward/--local, refusal, errors"
