#!/usr/bin/env bash
# STUN interop with coturn, both directions, on loopback:
#  (a) coturn's turnutils_stunclient learns its reflexive address from `natkit stun-server`,
#      plain and in RFC 5780 mode (--alt-ip 127.0.0.2: CHANGE-REQUEST, RESPONSE-PORT, PADDING);
#  (b) `natkit discover --json` learns the right mapped address from coturn's turnserver.
# The STUN client binds 127.0.0.3 so that a server answering with its own or a made-up address
# is caught; the client's real port is read from strace (when ptrace is allowed) and from the
# RESPONSE-PORT socket, which is the first one's port + 1.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init coturn_stun_interop

NATKIT=${NATKIT:-${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found at $NATKIT"
nk_require turnserver turnutils_stunclient timeout ss

CLIENT_IP=127.0.0.3
STRACE=0
if command -v strace >/dev/null 2>&1 && strace -o /dev/null true 2>/dev/null; then
	STRACE=1
else
	nk_log "strace unavailable or ptrace denied: the client's port is checked through RESPONSE-PORT only"
fi

# turnutils_stunclient waits forever for an answer that does not come: bound it.
# Runs it with its output in $1, strace's in $1.strace; returns its status.
run_stunclient() {
	local out=$1
	shift
	if [ $STRACE = 1 ]; then
		timeout 10 strace -o "$out.strace" -e trace=getsockname stdbuf -oL turnutils_stunclient "$@" >"$out" 2>&1
	else
		timeout 10 stdbuf -oL turnutils_stunclient "$@" >"$out" 2>&1
	fi
}

# The local ports the client's sockets had, in order (from strace), one per line.
client_ports() {
	sed -nE 's/.*getsockname\(.*sin_port=htons\(([0-9]+)\).*= 0$/\1/p' "$1.strace" | uniq
}

# Field values of "<label>: IP:PORT" lines in turnutils_stunclient output, one per response.
# coturn prints some lines twice (stdout log), so consecutive repeats are folded.
fields() {
	local out=$1 label=$2
	awk -v lbl="$label" '
		/^RFC 5780 response/ { n++; last = "" }
		index($0, lbl) { v = $NF; if (v != last) print n ":" v; last = v }' "$out"
}

# ---------------------------------------------------------------------------
# (a1) turnutils_stunclient -> natkit stun-server (plain)
port=$(nk_free_port 2)
nk_start natkit "$NK_TMP/natkit.log" "$NATKIT" stun-server --listen 127.0.0.1:$port
nk_wait_for_log "$NK_TMP/natkit.log" "127\.0\.0\.1:$port" 10 ||
	nk_fail "natkit stun-server did not report serving 127.0.0.1:$port"

out=$NK_TMP/a1.out
run_stunclient "$out" -L $CLIENT_IP -p $port 127.0.0.1 ||
	nk_fail "turnutils_stunclient got no answer from natkit stun-server (status $?): $(cat "$out")"
refl=$(sed -nE 's/.*UDP reflexive addr: *([0-9.]+:[0-9]+).*/\1/p' "$out" | sort -u)
[ -n "$refl" ] || nk_fail "no reflexive address in turnutils_stunclient output: $(cat "$out")"
[ "$(printf '%s\n' "$refl" | wc -l)" = 1 ] || nk_fail "several reflexive addresses: $refl"
[ "${refl%:*}" = $CLIENT_IP ] || nk_fail "reflexive IP ${refl%:*}, expected $CLIENT_IP"
if [ $STRACE = 1 ]; then
	lport=$(client_ports "$out" | head -n1)
	[ "${refl##*:}" = "$lport" ] || nk_fail "reflexive port ${refl##*:}, the client's socket had port $lport"
fi
grep -q 'RFC 5780 response' "$out" &&
	nk_fail "plain natkit stun-server sent OTHER-ADDRESS (RFC 5780 mode without --alt-ip)"
nk_log "a1: turnutils_stunclient got $refl from natkit stun-server"
nk_stop natkit || nk_fail "natkit stun-server did not exit 0 on SIGTERM (status $?)"

# ---------------------------------------------------------------------------
# (a2) turnutils_stunclient -f (RFC 5780) -> natkit stun-server --alt-ip 127.0.0.2
port=$(nk_free_port 2)
alt=$((port + 1))
nk_start natkit5780 "$NK_TMP/natkit5780.log" "$NATKIT" stun-server --listen 127.0.0.1:$port --alt-ip 127.0.0.2
nk_wait_for_log "$NK_TMP/natkit5780.log" "127\.0\.0\.2:$alt" 10 ||
	nk_fail "natkit stun-server --alt-ip did not report serving 127.0.0.2:$alt"

out=$NK_TMP/a2.out
run_stunclient "$out" -f -L $CLIENT_IP -p $port 127.0.0.1 ||
	nk_fail "turnutils_stunclient -f: a request went unanswered (status $?): $(cat "$out")"
[ "$(grep -c '^RFC 5780 response' "$out")" = 3 ] || nk_fail "expected 3 RFC 5780 responses: $(cat "$out")"
# Request 1: plain. Request 2: CHANGE-REQUEST ip+port with RESPONSE-PORT = port + 1 (answer goes
# to a second socket). Request 3: CHANGE-REQUEST ip+port with PADDING, from the second socket.
expect_fields() {
	local label=$1 want=$2 got
	got=$(fields "$out" "$label" | tr '\n' ' ')
	[ "$got" = "$want" ] || nk_fail "$label: got '$got', expected '$want'; output: $(cat "$out")"
}
expect_fields "Response origin:" "1:127.0.0.1:$port 2:127.0.0.2:$alt 3:127.0.0.2:$alt "
expect_fields "Other addr:" "1:127.0.0.2:$alt 2:127.0.0.2:$alt 3:127.0.0.2:$alt "
r1=$(fields "$out" "UDP reflexive addr" | sed -n 's/^1://p')
[ "${r1%:*}" = $CLIENT_IP ] || nk_fail "reflexive address $r1, expected IP $CLIENT_IP"
l1=${r1##*:}
expect_fields "UDP reflexive addr" "1:$CLIENT_IP:$l1 2:$CLIENT_IP:$l1 3:$CLIENT_IP:$((l1 + 1)) "
if [ $STRACE = 1 ]; then
	[ "$(client_ports "$out" | head -n1)" = "$l1" ] ||
		nk_fail "reflexive port $l1 is not the client's port $(client_ports "$out" | head -n1)"
fi
nk_log "a2: RFC 5780 mode: three answers from the right origins, reflexive $r1"
nk_stop natkit5780 || nk_fail "natkit stun-server --alt-ip did not exit 0 on SIGTERM (status $?)"

# ---------------------------------------------------------------------------
# (b) natkit discover -> coturn turnserver
port=$(nk_free_port 2)
nk_coturn_start coturn "$NK_TMP/coturn.log" $port 1
json=$(timeout 30 "$NATKIT" discover --stun 127.0.0.1:$port --timeout 5 --json 2>"$NK_TMP/discover.err") ||
	nk_fail "natkit discover against coturn failed (status $?): $json $(cat "$NK_TMP/discover.err")"
[ "$(printf '%s\n' "$json" | grep -c .)" = 1 ] || nk_fail "discover --json printed more than one line: $json"
case $json in
'{'*'}') ;;
*) nk_fail "discover --json did not print one JSON object: $json" ;;
esac
local_addr=$(nk_json_get "$json" local) || nk_fail "no \"local\" in $json"
mapped=$(nk_json_get "$json" mapped) || nk_fail "no \"mapped\" in $json"
server=$(nk_json_get "$json" server) || nk_fail "no \"server\" in $json"
rtt=$(nk_json_get "$json" rtt_ms) || nk_fail "no \"rtt_ms\" in $json"
[ "$server" = "127.0.0.1:$port" ] || nk_fail "server $server, expected 127.0.0.1:$port"
[ "${mapped%:*}" = 127.0.0.1 ] || nk_fail "mapped IP ${mapped%:*}, expected 127.0.0.1 ($json)"
[ "${mapped##*:}" = "${local_addr##*:}" ] || nk_fail "mapped port ${mapped##*:} != local port ${local_addr##*:} ($json)"
[[ $rtt =~ ^[0-9]+(\.[0-9]+)?$ ]] || nk_fail "rtt_ms is not a number: $rtt"
nk_log "b: natkit discover got $mapped from coturn (local $local_addr, rtt $rtt ms)"

nk_pass "turnutils_stunclient <-> natkit stun-server (plain and RFC 5780), natkit discover <-> coturn"
