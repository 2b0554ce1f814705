#!/usr/bin/env bash
# natkit status on loopback: a hub, a listen (--control PATH) and a connect; random bytes go
# connect -> listen; then `natkit status` (plain and --json) on both ends shows the live
# connection with its path and byte counts (consistent with what was sent), the hub lists the
# two registered peers, the sockets are mode 0600 in a 0700 directory, a garbage or silent
# client does not stop the server, a stale socket is cleaned, and every socket is gone once
# its process exited.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init status
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require python3

export XDG_RUNTIME_DIR="$NK_TMP/run"
mkdir -m 700 "$XDG_RUNTIME_DIR"
RUN="$XDG_RUNTIME_DIR/natkit"
N=300000
head -c $N /dev/urandom >"$NK_TMP/data.bin"

# jq-free JSON checks: python3 evaluates an expression over the document (d) and must print True
jcheck() {
	local doc=$1 expr=$2 what=$3
	[ "$(printf '%s' "$doc" | python3 -c "import json,sys; d=json.load(sys.stdin); print($expr)" 2>&1)" = True ] ||
		nk_fail "$what: $doc"
}
sock_of() { ls "$RUN"/"$1"-*.sock 2>/dev/null | head -1; }

port=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
hub_sock=$(sock_of hub)
[ -S "$hub_sock" ] || nk_fail "no hub control socket in $RUN: $(ls -la "$RUN" 2>&1)"
[ "$(stat -c %a "$RUN")" = 700 ] || nk_fail "runtime directory mode $(stat -c %a "$RUN"), want 700"
[ "$(stat -c %a "$hub_sock")" = 600 ] || nk_fail "hub socket mode $(stat -c %a "$hub_sock"), want 600"

nk_keygen a b
mkfifo "$NK_TMP/l.in" "$NK_TMP/l.out" "$NK_TMP/c.in"
common=(--hub "127.0.0.1:$port" --bind 127.0.0.1:0 --json)

# The listener's stdin stays open (the script holds the FIFO), its stdout is a FIFO the script
# reads: N bytes read there means they went the whole way.
lctl="$NK_TMP/listen.ctl"
nk_start listen "$NK_TMP/listen.log" bash -c 'o=$1; shift; exec "$@" <"$0" >"$o"' "$NK_TMP/l.in" "$NK_TMP/l.out" \
	"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key" --control "$lctl"
exec {lfd}>"$NK_TMP/l.in"
exec {ofd}<"$NK_TMP/l.out"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register"
lid=$(grep -o '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/listen.log" | sed 's/.*"id":"//; s/"$//')
[ -S "$lctl" ] || nk_fail "no listen control socket at --control $lctl"
[ "$(stat -c %a "$lctl")" = 600 ] || nk_fail "listen socket mode $(stat -c %a "$lctl"), want 600"

nk_start connect "$NK_TMP/connect.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/c.in" \
	"$NATKIT" connect "$lid" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {cfd}>"$NK_TMP/c.in"
nk_wait_for_log "$NK_TMP/connect.log" '"event":"connected"' 20 || nk_fail "connector did not connect"
cid=$(grep -o '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/connect.log" | sed 's/.*"id":"//; s/"$//')
cat "$NK_TMP/data.bin" >&$cfd
timeout 30 head -c $N <&$ofd >"$NK_TMP/recv.bin" || nk_fail "the listener's stdout did not get $N bytes"
cmp -s "$NK_TMP/data.bin" "$NK_TMP/recv.bin" || nk_fail "the bytes that arrived differ from those sent"

csock=$(sock_of connect)
[ -S "$csock" ] || nk_fail "no connect control socket in $RUN"
[ "$(stat -c %a "$csock")" = 600 ] || nk_fail "connect socket mode $(stat -c %a "$csock"), want 600"
cpid=${csock##*-}; cpid=${cpid%.sock}

# connect's side, by PID: the live connection, its path and the bytes (stdin's N bytes, the
# stream's 4-byte preamble, and nothing much else)
out=$("$NATKIT" status "$cpid" --json) || nk_fail "status $cpid --json failed: $out"
jcheck "$out" "d['command']=='connect' and d['pid']==$cpid and d['id']=='$cid'" "connect: own ID and pid"
jcheck "$out" "d['hub']['address']=='127.0.0.1:$port' and d['hub']['state']=='connected'" "connect: hub state"
jcheck "$out" "len(d['connections'])==1 and d['connections'][0]['peer']=='$lid'" "connect: the one connection"
jcheck "$out" "d['connections'][0]['state']=='connected' and d['connections'][0]['path']=='direct'" "connect: path"
jcheck "$out" "d['connections'][0]['remote'].startswith('127.0.0.1:')" "connect: remote address"
jcheck "$out" "$N <= d['connections'][0]['sent'] <= $N + 4096" "connect: bytes sent vs the $N written"
jcheck "$out" "d['connections'][0]['udp_sent'] >= d['connections'][0]['sent']" "connect: UDP bytes vs stream bytes"
jcheck "$out" "d['connections'][0]['streams']==1 and d['connections'][0]['age_ms']>0" "connect: streams, age"
jcheck "$out" "d['connections'][0]['rtt_ms'] is None or d['connections'][0]['rtt_ms']>=0" "connect: rtt"
nk_log "connect: $out"

# listen's side, by PATH
out=$("$NATKIT" status "$lctl" --json) || nk_fail "status $lctl --json failed: $out"
jcheck "$out" "d['command']=='listen' and d['id']=='$lid' and d['hub']['state']=='connected'" "listen: ID, hub"
jcheck "$out" "len(d['connections'])==1 and d['connections'][0]['peer']=='$cid'" "listen: the one connection"
jcheck "$out" "d['connections'][0]['path']=='direct'" "listen: path"
jcheck "$out" "$N <= d['connections'][0]['received'] <= $N + 4096" "listen: bytes received vs the $N sent"
jcheck "$out" "d['connections'][0]['sent'] < 4096" "listen: bytes sent (nothing but control)"

# the plain form names the peer, the path and the hub's state
out=$("$NATKIT" status "$cpid") || nk_fail "status $cpid failed: $out"
for want in "$cid" "$lid" direct "connected" "127.0.0.1:$port"; do
	grep -qF -- "$want" <<<"$out" || nk_fail "plain status lacks '$want': $out"
done
nk_log "plain:"$'\n'"$out"

# the hub: both peers, their addresses, no secrets
out=$("$NATKIT" status "$hub_sock" --json) || nk_fail "hub status failed: $out"
jcheck "$out" "d['command']=='hub' and d['peers_registered']==2 and len(d['peers'])==2" "hub: 2 registered peers"
jcheck "$out" "sorted(p['peer'] for p in d['peers'])==sorted(['$lid','$cid'])" "hub: the two IDs"
jcheck "$out" "all(p['address'].startswith('127.0.0.1:') and p['registered_ms']>=0 for p in d['peers'])" "hub: addresses"
jcheck "$out" "[p['connects']>0 for p in d['peers'] if p['peer']=='$cid']==[True]" "hub: connect requests of the connector"
jcheck "$out" "[p['paths'] for p in d['peers'] if p['peer']=='$cid']==[{'direct':1,'turn':0,'hub':0}]" "hub: the connector reported its one connection as direct"
grep -qiE 'secret|private|token|challenge|"key"' <<<"$out" && nk_fail "hub status shows something secret: $out"

# everything at once: the hub and connect from the runtime directory (listen's is elsewhere)
out=$("$NATKIT" status --json) || nk_fail "status --json failed: $out"
jcheck "$out" "sorted(p['command'] for p in d['processes'])==['connect','hub']" "status --json: every process"
out=$("$NATKIT" status) || nk_fail "status failed: $out"
grep -q '^hub ' <<<"$out" && grep -q '^connect ' <<<"$out" || nk_fail "plain status lacks a process: $out"

# bad clients: garbage without a newline, a silent one, an unknown request; the server answers
# the next client all the same
python3 - "$lctl" <<'EOF' || nk_fail "bad clients: see above"
import socket, sys, json
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(10); s.connect(path); return s
silent = conn()                                   # holds a slot and says nothing
g = conn(); g.sendall(b"\x00\xff" * 2000)         # over the request limit, no newline: dropped
try:
    rest = g.recv(100)
except (ConnectionResetError, BrokenPipeError):
    rest = b""
assert rest == b"", rest
u = conn(); u.sendall(b"hello\n"); a = b""
while True:
    k = u.recv(65536)
    if not k: break
    a += k
assert "error" in json.loads(a), a
s = conn(); s.sendall(b"status\n"); a = b""
while True:
    k = s.recv(65536)
    if not k: break
    a += k
assert json.loads(a)["command"] == "listen", a
silent.close()
EOF

# a stale socket (its process is gone) is removed by status
stale_pid=999999
while kill -0 $stale_pid 2>/dev/null; do stale_pid=$((stale_pid + 1)); done
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$RUN/connect-$stale_pid.sock"
[ -S "$RUN/connect-$stale_pid.sock" ] || nk_fail "could not make a stale socket"
"$NATKIT" status >/dev/null || nk_fail "status failed with a stale socket"
[ -e "$RUN/connect-$stale_pid.sock" ] && nk_fail "status left the stale socket"

# a living process that does not answer: status still shows the others, names it, and exits 1
nk_start mute "$NK_TMP/mute.log" python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX); path = "%s/listen-%d.sock" % (sys.argv[1], os.getpid())
s.bind(path); s.listen(4); print("ready", path, flush=True); time.sleep(60)' "$RUN"
nk_wait_for_log "$NK_TMP/mute.log" '^ready ' 10 || nk_fail "the mute process did not start"
mute_sock=${NK_MATCH#ready }
out=$("$NATKIT" status --json 2>"$NK_TMP/mute.err"); rc=$?
[ $rc -eq 1 ] || nk_fail "status with a process that does not answer: exit $rc, want 1"
jcheck "$out" "sorted(p['command'] for p in d['processes'])==['connect','hub']" "status --json with a mute process"
grep -qF "$mute_sock" "$NK_TMP/mute.err" || nk_fail "status did not name the mute socket: $(cat "$NK_TMP/mute.err")"
nk_stop mute
rm -f "$mute_sock"
nk_log "a process that does not answer: status exit 1, the others shown, it named on stderr"

# at exit every socket goes: connect at the end of its stdin, listen and hub at SIGTERM
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/connect.log" '^\[nk\] connect exited with status' 15 || nk_fail "connect did not exit"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connect: $NK_MATCH"
[ -e "$csock" ] && nk_fail "connect's socket $csock is still there after it exited"
out=$("$NATKIT" status "$cpid" 2>&1) && nk_fail "status of an exited process succeeded: $out"
nk_stop listen
[ -e "$lctl" ] && nk_fail "listen's socket is still there after it exited"
nk_stop hub
[ -e "$hub_sock" ] && nk_fail "the hub's socket is still there after it exited"

# usage
"$NATKIT" status --bogus >/dev/null 2>&1; [ $? -eq 2 ] || nk_fail "status --bogus: want exit 2"
"$NATKIT" status 1 2 >/dev/null 2>&1; [ $? -eq 2 ] || nk_fail "status with two targets: want exit 2"
nk_pass "live path and bytes on both ends, 2 peers at the hub, 0600 sockets removed at exit"
