#!/usr/bin/env bash
# natkit stun-server on loopback, checked with an independent client
# (tests/integration/stun_probe.c, built here with cc) and with natkit discover:
#  - plain mode: UDP and TCP mapped addresses are the client's own 127.0.0.1:port;
#    CHANGE-REQUEST without an alternate address gets 420 (RFC 5780 6.1);
#  - RFC 5780 mode (--alt-ip 127.0.0.2, 2 threads): every CHANGE-REQUEST is answered
#    from the right one of the 4 addresses (seen as the datagram's real source), with
#    RESPONSE-ORIGIN = that source and OTHER-ADDRESS = the opposite corner; over TCP
#    a change is a 400; junk and malformed datagrams are dropped and counted, junk on
#    TCP closes the connection, and the server keeps answering;
#  - wildcard listen answers from the address the request was sent to;
#  - TCP framing (split and pipelined requests), connection limit, idle timeout, a client
#    that never reads (backpressure), running out of file descriptors; IPv6 on ::1;
#  - SIGTERM and SIGINT -> exit 0 with counters; bad flags -> exit 2; a busy port -> exit 1.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init stun_server

NATKIT=${NATKIT:-${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found at $NATKIT"
nk_require timeout ss
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || nk_skip "no C compiler ($CC) to build the probe client"
PROBE=$NK_TMP/stun_probe
"$CC" -O1 -o "$PROBE" "$NK_SOURCE_DIR/tests/integration/stun_probe.c" || nk_fail "cannot build stun_probe"

# probe ARGS...: one request; the result line in $R (fails the test on no answer).
probe() {
	R=$(timeout 10 "$PROBE" "$@") || nk_fail "no answer to: stun_probe $* ($R)"
}
field() { # field NAME -> value from $R
	local f
	for f in $R; do [ "${f%%=*}" = "$1" ] && { echo "${f#*=}"; return; }; done
}
expect() { # expect NAME VALUE
	local v
	v=$(field "$1")
	[ "$v" = "$2" ] || nk_fail "$1=$v, want $2 in: $R"
}

# start NAME ARGS...: starts a server, waits for its start line.
start() {
	local name=$1
	shift
	nk_start "$name" "$NK_TMP/$name.log" "$NATKIT" stun-server "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'Z natkit-stun-server: listening on' 10 ||
		nk_fail "$name did not log its start line"
	nk_log "$NK_MATCH"
}

# ---------------------------------------------------------------------------
# Plain mode.
port=$(nk_free_port 2)
start plain --listen 127.0.0.1:$port
[[ ${NK_MATCH%% *} =~ ^$NK_LOG_TS$ && ${NK_MATCH#* } == "natkit-stun-server: listening on udp+tcp 127.0.0.1:$port, 1 thread" ]] ||
	nk_fail "unexpected start line: $NK_MATCH"

cport=$(nk_free_port 1)
out=$(timeout 20 "$NATKIT" discover --stun 127.0.0.1:$port --bind 127.0.0.1:$cport --json) ||
	nk_fail "natkit discover failed: $out"
[ "$(nk_json_get "$out" mapped)" = "127.0.0.1:$cport" ] || nk_fail "discover mapped: $out"

probe --bind 127.0.0.1:0 127.0.0.1 $port
expect class success
expect mapped "$(field local)"
expect from 127.0.0.1:$port
expect len 32
probe --bind 127.0.0.1:0 --fingerprint 127.0.0.1 $port
expect class success
expect len 40
probe --tcp --bind 127.0.0.1:0 127.0.0.1 $port
expect class success
expect mapped "$(field local)"
probe --bind 127.0.0.1:0 --change 4 127.0.0.1 $port
expect class error
expect code 420
expect from 127.0.0.1:$port

nk_stop plain
rc=$?
[ $rc = 0 ] || nk_fail "plain server: SIGTERM gave exit status $rc, want 0"
stats=$(grep -E "^$NK_LOG_TS natkit-stun-server: stopped:" "$NK_TMP/plain.log") || nk_fail "plain server printed no counters"
[[ $stats =~ stopped:\ ([0-9]+)\ requests,\ ([0-9]+)\ responses,\ 1\ error\ responses ]] &&
	[ "${BASH_REMATCH[1]}" = $((BASH_REMATCH[2] + 1)) ] && [ "${BASH_REMATCH[2]}" -ge 4 ] ||
	nk_fail "plain server counters: $stats"

# ---------------------------------------------------------------------------
# Wildcard listen: the answer leaves from the address the request was sent to (IP_PKTINFO),
# not from the one the route back to the client would choose (127.0.0.1).
port=$(nk_free_port 2)
start wild --listen 0.0.0.0:$port --no-tcp
probe --bind 127.0.0.1:0 127.0.0.2 $port
expect class success
expect from 127.0.0.2:$port
expect mapped "$(field local)"
nk_stop wild || nk_fail "wildcard server did not exit 0"

# ---------------------------------------------------------------------------
# RFC 5780 mode: 127.0.0.1 / 127.0.0.2 x port / port+1, two threads.
port=$(nk_free_port 2)
p2=$((port + 1))
start r5780 --listen 127.0.0.1:$port --alt-ip 127.0.0.2 --threads 2
[[ ${NK_MATCH%% *} =~ ^$NK_LOG_TS$ && ${NK_MATCH#* } == "natkit-stun-server: listening on udp+tcp 127.0.0.1:$port, 127.0.0.1:$p2, 127.0.0.2:$port, 127.0.0.2:$p2 (RFC 5780), 2 threads" ]] ||
	nk_fail "unexpected start line: $NK_MATCH"

addr=("127.0.0.1:$port" "127.0.0.1:$p2" "127.0.0.2:$port" "127.0.0.2:$p2")
# slot bits: 1 = alternate port, 2 = alternate IP; CHANGE-REQUEST: 4 = change IP, 2 = change port.
for slot in 0 1 2 3; do
	ip=${addr[$slot]%:*}
	pt=${addr[$slot]#*:}
	for flags in 0 2 4 6; do
		want=$((slot ^ (flags & 4 ? 2 : 0) ^ (flags & 2 ? 1 : 0)))
		probe --bind 127.0.0.1:0 --change $flags --fingerprint "$ip" "$pt"
		expect class success
		expect from "${addr[$want]}"
		expect origin "${addr[$want]}"
		expect other "${addr[$((slot ^ 3))]}"
		expect mapped "$(field local)"
	done
done
nk_log "CHANGE-REQUEST matrix: 16 answers from the right addresses"

probe --tcp --bind 127.0.0.1:0 127.0.0.2 $p2
expect class success
expect mapped "$(field local)"
expect origin 127.0.0.2:$p2
expect other 127.0.0.1:$port
probe --tcp --bind 127.0.0.1:0 --change 4 127.0.0.2 $p2
expect class error
expect code 400

# Junk and malformed datagrams are dropped; the request sent after them is answered.
probe --junk --bind 127.0.0.1:0 127.0.0.1 $port
expect class success
R=$(timeout 10 "$PROBE" --tcp --junk 127.0.0.1 $port) || nk_fail "TCP junk did not close the connection: $R"
probe --bind 127.0.0.1:0 127.0.0.1 $port
expect class success

out=$(timeout 20 "$NATKIT" discover --stun 127.0.0.2:$p2 --json) || nk_fail "discover (5780) failed: $out"
[[ $(nk_json_get "$out" mapped) == 127.0.0.1:* ]] || nk_fail "discover (5780) mapped: $out"

# SIGINT also ends it with status 0.
kill -INT -- "-${NK_PROCS[r5780]}"
nk_wait_for_log "$NK_TMP/r5780.log" '^\[nk\] .* exited with status' 10 || nk_fail "SIGINT did not stop the server"
[[ $NK_MATCH == *"exited with status 0" ]] || nk_fail "SIGINT: $NK_MATCH"
nk_stop r5780
stats=$(grep -E "^$NK_LOG_TS natkit-stun-server: stopped:" "$NK_TMP/r5780.log") || nk_fail "no counters printed"
nk_log "$stats"
[[ $stats =~ ([0-9]+)\ malformed\ dropped,\ ([0-9]+)\ non-STUN\ dropped ]] || nk_fail "counters: $stats"
[ "${BASH_REMATCH[1]}" -ge 1 ] && [ "${BASH_REMATCH[2]}" -ge 3 ] || nk_fail "drops not counted: $stats"
[[ $stats == *"tcp 3 accepted"* ]] || nk_fail "TCP connections not counted: $stats"

# ---------------------------------------------------------------------------
# TCP framing and limits: a request split over two writes and two pipelined requests are
# answered; with --tcp-max-conns 1 a second connection is closed at once; an idle one is
# closed after --tcp-idle.
port=$(nk_free_port 2)
start tcp --listen 127.0.0.1:$port --tcp-idle 1 --tcp-max-conns 1
REQ='\x00\x01\x00\x00\x21\x12\xa4\x42tid-bash-001'
exec {A}<>/dev/tcp/127.0.0.1/$port || nk_fail "cannot connect to 127.0.0.1:$port over TCP"
printf '%b' "${REQ:0:40}" >&$A
printf '%b' "${REQ:40}" >&$A
hex=$(timeout 5 head -c 32 <&$A | od -An -tx1 | tr -d ' \n')
[[ $hex == 0101000c2112a442* ]] || nk_fail "split TCP request: got '$hex'"
printf '%b' "$REQ$REQ" >&$A
hex=$(timeout 5 head -c 64 <&$A | od -An -tx1 | tr -d ' \n')
t0=${EPOCHREALTIME//[.,]/} # A's last activity was just before: its idle time runs from here
[ ${#hex} = 128 ] && [[ $hex == 0101000c* ]] && [[ ${hex:64} == 0101000c* ]] ||
	nk_fail "pipelined TCP requests: got '$hex'"
exec {B}<>/dev/tcp/127.0.0.1/$port || nk_fail "second TCP connect failed"
timeout 5 cat <&$B >/dev/null
[ $? = 0 ] || nk_fail "a connection over --tcp-max-conns was not closed"
exec {B}<&-
timeout 10 cat <&$A >/dev/null
[ $? = 0 ] || nk_fail "the idle connection was not closed"
t1=${EPOCHREALTIME//[.,]/}
exec {A}<&-
[ $(( (t1 - t0) / 1000 )) -ge 500 ] || nk_fail "idle connection closed after $(( (t1 - t0) / 1000 )) ms, before --tcp-idle 1"
nk_stop tcp || nk_fail "tcp server did not exit 0"
stats=$(grep -E "^$NK_LOG_TS natkit-stun-server: stopped:" "$NK_TMP/tcp.log")
[[ $stats == *"3 responses"*"tcp 1 accepted, 1 rejected, 1 idle-closed"* ]] || nk_fail "TCP counters: $stats"

# A TCP client that sends without ever reading: the server stops reading it once its
# backlog is full (the sender blocks) and keeps answering everyone else.
port=$(nk_free_port 2)
start hog --listen 127.0.0.1:$port
printf '%b' "$REQ" >"$NK_TMP/big"
for ((i = 0; i < 19; i++)); do cat "$NK_TMP/big" "$NK_TMP/big" >"$NK_TMP/big2" && mv "$NK_TMP/big2" "$NK_TMP/big"; done
exec {H}<>/dev/tcp/127.0.0.1/$port || nk_fail "hog: TCP connect failed"
timeout 3 cat "$NK_TMP/big" >&$H
rc=$?
[ $rc = 124 ] || nk_fail "10 MB of unread requests went through (cat exited $rc): no backpressure?"
probe --bind 127.0.0.1:0 127.0.0.1 $port
expect class success
probe --tcp --bind 127.0.0.1:0 127.0.0.1 $port
expect class success
exec {H}<&-
nk_stop hog || nk_fail "hog server did not exit 0"

# IPv6 loopback, when the host has it.
port=$(nk_free_port 2)
if "$NATKIT" stun-server --listen "[::1]:$port" --help >/dev/null 2>&1 && [ -n "$(ip -6 addr show dev lo 2>/dev/null)" ]; then
	start v6 --listen "[::1]:$port"
	out=$(timeout 20 "$NATKIT" discover --stun "[::1]:$port" --json) || nk_fail "discover over IPv6 failed: $out"
	[ "$(nk_json_get "$out" mapped)" = "$(nk_json_get "$out" local)" ] || nk_fail "IPv6 mapped != local: $out"
	[[ $(nk_json_get "$out" mapped) == "[::1]:"* ]] || nk_fail "IPv6 mapped: $out"
	nk_stop v6 || nk_fail "v6 server did not exit 0"
else
	nk_log "no IPv6 on lo: IPv6 part not run"
fi

# Out of file descriptors (ulimit -n 16): connections beyond what fits are shed, not left to
# make the listener spin, and UDP keeps being answered.
port=$(nk_free_port 2)
nk_start fdlimit "$NK_TMP/fdlimit.log" bash -c 'ulimit -n 16 && exec "$0" "$@"' "$NATKIT" stun-server \
	--listen 127.0.0.1:$port
nk_wait_for_log "$NK_TMP/fdlimit.log" 'Z natkit-stun-server: listening on' 10 || nk_fail "fdlimit server did not start"
conns=()
for ((i = 0; i < 20; i++)); do
	exec {c}<>/dev/tcp/127.0.0.1/$port || nk_fail "TCP connect $i failed"
	conns+=("$c")
done
probe --bind 127.0.0.1:0 127.0.0.1 $port
expect class success
for c in "${conns[@]}"; do exec {c}<&-; done
nk_stop fdlimit || nk_fail "fdlimit server did not exit 0"
stats=$(grep -E "^$NK_LOG_TS natkit-stun-server: stopped:" "$NK_TMP/fdlimit.log")
[[ $stats =~ tcp\ ([0-9]+)\ accepted,\ ([0-9]+)\ rejected ]] && [ "${BASH_REMATCH[2]}" -ge 1 ] &&
	[ $((BASH_REMATCH[1] + BASH_REMATCH[2])) = 20 ] || nk_fail "fd exhaustion counters: $stats"

# ---------------------------------------------------------------------------
# Usage errors exit 2; a port in use exits 1 with the reason.
for bad in "--bogus" "--listen nonsense" "--threads 0" "--alt-ip 127.0.0.2" \
	"--listen 127.0.0.1:$port --alt-ip ::1" "--listen 127.0.0.1:$port --alt-port 7" "extra"; do
	# shellcheck disable=SC2086
	timeout 10 "$NATKIT" stun-server $bad >/dev/null 2>"$NK_TMP/bad.err"
	rc=$?
	[ $rc = 2 ] || nk_fail "'stun-server $bad' exited $rc, want 2"
	grep -q 'natkit stun-server: ' "$NK_TMP/bad.err" || nk_fail "'stun-server $bad' gave no reason"
done
timeout 10 "$NATKIT" stun-server --help | grep -q -- '--alt-ip' || nk_fail "--help"

port=$(nk_free_port 2)
start holder --listen 127.0.0.1:$port --no-tcp
timeout 10 "$NATKIT" stun-server --listen 127.0.0.1:$port --no-tcp 2>"$NK_TMP/busy.err"
rc=$?
[ $rc = 1 ] && grep -Eq "^$NK_LOG_TS natkit-stun-server: cannot bind UDP 127\.0\.0\.1:$port: Address already in use\$" "$NK_TMP/busy.err" || nk_fail "busy port: exit $rc, $(cat "$NK_TMP/busy.err")"
nk_stop holder || nk_fail "holder did not exit 0"

nk_pass "plain and RFC 5780 modes over UDP and TCP, drops counted, clean stops, usage errors"
