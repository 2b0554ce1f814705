#!/usr/bin/env bash
# Every startup failure names its cause and exits the documented way (README "Exit
# status": 2 = the command line is malformed, 1 = the system or the network refuses):
#   listen --bind on a UDP port in use, connect --hub to a closed port, hub --listen on a
#   TCP port in use, --cert that does not exist (hub and turn-server alike), connect to
#   one's own ID, turn-server --relay-ip that is not this host's, an unreadable
#   --allow-file / --config / --pass-file / --redis-password-file, a password longer than its
#   buffer (turn-user, hub: refused, not cut short);
# wrong --turn credentials and a STUN server that does not answer are warnings, and the
# command goes on; with --json every line on stdout and stderr is a JSON object (failing
# commands too) and a failure has one shape; server log lines carry an RFC 3339 UTC time.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init cli_errors
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require python3

# expect WANT_RC REGEX CMD... : runs CMD (stdin /dev/null), checks its exit status and that
# stderr holds a line matching the ERE REGEX (whole line). Leaves stderr in $ERR.
expect() {
	local want=$1 re=$2 rc
	shift 2
	ERR=$(timeout 20 "$@" 2>&1 >"$NK_TMP/out" </dev/null)
	rc=$?
	[ $rc -eq "$want" ] || nk_fail "$*: exit $rc, want $want: $ERR"
	grep -Eq -- "^$re\$" <<<"$ERR" || nk_fail "$*: no line matching '$re' in: $ERR"
}

# every line of the files parses as one JSON object
all_json() {
	local f
	for f in "$@"; do
		python3 -c '
import json, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    try:
        v = json.loads(line)
    except ValueError:
        sys.exit("%s line %d is not JSON: %r" % (sys.argv[1], n, line))
    if not isinstance(v, dict):
        sys.exit("%s line %d is not an object: %r" % (sys.argv[1], n, line))
' "$f" || nk_fail "--json output is not JSON only: $(cat "$f")"
	done
}

# the one failure shape: {"event":"error","command":CMD,"error":"...","errno":"E..."|null,"exit":N}
error_shape() { # FILE CMD EXIT [ERRNO]
	python3 - "$@" <<'EOF' || nk_fail "$1: not the failure shape: $(cat "$1")"
import json, sys
f, cmd, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
want_errno = sys.argv[4] if len(sys.argv) > 4 else None
errs = [v for v in map(json.loads, open(f)) if v.get("event") == "error"]
assert len(errs) >= 1, "no error object"
e = errs[-1]
assert set(e) == {"event", "command", "error", "errno", "exit"}, e
assert e["command"] == cmd and e["exit"] == code and isinstance(e["error"], str) and e["error"], e
assert e["errno"] == want_errno if want_errno else e["errno"] is None or e["errno"].startswith("E"), e
EOF
}

nk_keygen a b
id_a=$ID_a id_b=$ID_b

# Servers holding ports: a hub (TCP $hub), a STUN server (UDP $busy), a TURN server ($turn).
hub=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$hub"
nk_wait_for_log "$NK_TMP/hub.log" 'natkit-hub: listening on' 10 || nk_fail "hub did not start"
[[ $NK_MATCH =~ ^$NK_LOG_TS\ natkit-hub:\ listening\ on\ tcp\ 127\.0\.0\.1:$hub\  ]] ||
	nk_fail "hub log line without its time and prefix: $NK_MATCH"
busy=$(nk_free_port 1)
nk_start stun "$NK_TMP/stun.log" "$NATKIT" stun-server --listen "127.0.0.1:$busy" --no-tcp
nk_wait_for_log "$NK_TMP/stun.log" 'natkit-stun-server: listening on' 10 || nk_fail "stun-server did not start"
[[ $NK_MATCH =~ ^$NK_LOG_TS\ natkit-stun-server:\ listening ]] || nk_fail "stun-server log line: $NK_MATCH"
turn=$(nk_free_port 1)
nk_start turn "$NK_TMP/turn.log" "$NATKIT" turn-server --listen "127.0.0.1:$turn" --realm test \
	--user "u:right" --relay-ip 127.0.0.1
nk_wait_for_log "$NK_TMP/turn.log" 'natkit-turn-server: listening on' 10 || nk_fail "turn-server did not start"
[[ $NK_MATCH =~ ^$NK_LOG_TS\ natkit-turn-server:\ listening ]] || nk_fail "turn-server log line: $NK_MATCH"
closed=$(nk_free_port 1) # nothing listens there (TCP or UDP)

# ---- startup failures: message and exit status ----
expect 1 "natkit listen: cannot bind 127\.0\.0\.1:$busy: Address already in use" \
	"$NATKIT" listen --hub "127.0.0.1:$hub" --bind "127.0.0.1:$busy" --key "$NK_TMP/a.key"
expect 1 "natkit connect: cannot connect to hub 127\.0\.0\.1:$closed: Connection refused" \
	"$NATKIT" connect "$id_b" --hub "127.0.0.1:$closed" --key "$NK_TMP/a.key"
expect 1 "$NK_LOG_TS natkit-hub: cannot bind 127\.0\.0\.1:$hub: Address already in use" \
	"$NATKIT" hub --listen "127.0.0.1:$hub"
expect 1 "$NK_LOG_TS natkit-hub: cannot read certificate $NK_TMP/none\.pem: No such file or directory" \
	"$NATKIT" hub --tls-listen 127.0.0.1:0 --cert "$NK_TMP/none.pem" --key "$NK_TMP/none.pem"
expect 1 "$NK_LOG_TS natkit-turn-server: cannot read certificate $NK_TMP/none\.pem: No such file or directory" \
	"$NATKIT" turn-server --listen 127.0.0.1:0 --realm r --user u:p --relay-ip 127.0.0.1 \
	--tls-listen 127.0.0.1:0 --cert "$NK_TMP/none.pem" --key "$NK_TMP/none.pem"
expect 1 "$NK_LOG_TS natkit-turn-server: --relay-ip 192\.0\.2\.1 cannot be used \(not an address of this host\?\): cannot bind it: Cannot assign requested address" \
	"$NATKIT" turn-server --listen 127.0.0.1:0 --realm r --user u:p --relay-ip 192.0.2.1
expect 1 "$NK_LOG_TS natkit-turn-server: cannot read --config $NK_TMP/none\.conf: No such file or directory" \
	"$NATKIT" turn-server --config "$NK_TMP/none.conf"
for srv in hub stun-server; do # the same rule through the shared getopt reader
	expect 1 "natkit $srv: cannot read --config $NK_TMP/none\.conf: No such file or directory" \
		"$NATKIT" "$srv" --config "$NK_TMP/none.conf"
done
expect 1 "$NK_LOG_TS natkit-stun-server: cannot bind UDP 127\.0\.0\.1:$busy: Address already in use" \
	"$NATKIT" stun-server --listen "127.0.0.1:$busy" --no-tcp
expect 2 "natkit connect: $id_a is this host's own peer ID \(from $NK_TMP/a\.key\); a peer cannot connect to itself: give the ID of another peer" \
	"$NATKIT" connect "$id_a" --hub "127.0.0.1:$hub" --key "$NK_TMP/a.key"
expect 1 "natkit listen: cannot read --allow-file '$NK_TMP/none': No such file or directory" \
	"$NATKIT" listen --hub "127.0.0.1:$hub" --allow-file "$NK_TMP/none" --key "$NK_TMP/a.key"
# a password or secret longer than its buffer is an error naming its source, never cut short
# (turn-user cut such a line at 1,023 bytes and stored the rest as the password)
head -c 1100 /dev/zero | tr '\0' p >"$NK_TMP/long.pass"
expect 2 "natkit turn-user: --pass-file '$NK_TMP/long\.pass': a line longer than 1023 bytes \(it is not cut short\)" \
	"$NATKIT" turn-user add --userdb "$NK_TMP/users.db" --realm r --user u --pass-file "$NK_TMP/long.pass"
expect 2 "natkit turn-user: --secret-file '$NK_TMP/long\.pass': a line longer than 1023 bytes \(it is not cut short\)" \
	"$NATKIT" turn-user add-secret --userdb "$NK_TMP/users.db" --realm r --secret-file "$NK_TMP/long.pass"
ERR=$("$NATKIT" turn-user add --userdb "$NK_TMP/users.db" --realm r --user u --pass-file - <"$NK_TMP/long.pass" 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "^natkit turn-user: --pass-file - (standard input): a line longer than 1023 bytes" <<<"$ERR" ||
	nk_fail "turn-user --pass-file - with a long line: exit $rc: $ERR"
ERR=$(NATKIT_TURN_PASS=$(cat "$NK_TMP/long.pass") "$NATKIT" turn-user add --userdb "$NK_TMP/users.db" --realm r --user u 2>&1 </dev/null)
rc=$?
[ $rc -eq 2 ] && grep -q '^natkit turn-user: \$NATKIT_TURN_PASS: longer than 1023 bytes' <<<"$ERR" ||
	nk_fail "turn-user with a long \$NATKIT_TURN_PASS: exit $rc: $ERR"
expect 1 "natkit turn-user: cannot read --pass-file '$NK_TMP/none': No such file or directory" \
	"$NATKIT" turn-user add --userdb "$NK_TMP/users.db" --realm r --user u --pass-file "$NK_TMP/none"
expect 2 "natkit hub: --redis-password-file '$NK_TMP/long\.pass': a line longer than 511 bytes \(it is not cut short\)" \
	"$NATKIT" hub --listen 127.0.0.1:0 --redis "127.0.0.1:$closed" --redis-password-file "$NK_TMP/long.pass"
expect 1 "natkit hub: cannot read --redis-password-file '$NK_TMP/none': No such file or directory" \
	"$NATKIT" hub --listen 127.0.0.1:0 --redis "127.0.0.1:$closed" --redis-password-file "$NK_TMP/none"
expect 2 "natkit hub: --redis '::1:6379': want HOST:PORT \(\[IPv6\]:PORT\)" \
	"$NATKIT" hub --listen 127.0.0.1:0 --redis ::1:6379
[ -e "$NK_TMP/users.db" ] && nk_fail "turn-user wrote $NK_TMP/users.db though every password was refused"
expect 1 "natkit discover: cannot bind 127\.0\.0\.1:$busy: Address already in use" \
	"$NATKIT" discover --stun "127.0.0.1:$busy" --bind "127.0.0.1:$busy"
expect 2 "natkit listen: --bind 'nonsense': want IP:PORT" \
	"$NATKIT" listen --hub "127.0.0.1:$hub" --bind nonsense
nk_log "startup failures name their cause"

# ---- the same with --json: JSON only, one failure shape ----
json_fail() { # WANT_RC CMD ERRNO|- natkit-args...
	local want=$1 cmd=$2 en=$3 rc
	shift 3
	timeout 20 "$NATKIT" "$@" --json >"$NK_TMP/j.out" 2>"$NK_TMP/j.err" </dev/null
	rc=$?
	[ $rc -eq "$want" ] || nk_fail "natkit $* --json: exit $rc, want $want: $(cat "$NK_TMP/j.err")"
	all_json "$NK_TMP/j.out" "$NK_TMP/j.err"
	if [ "$en" = - ]; then error_shape "$NK_TMP/j.err" "$cmd" "$want"; else error_shape "$NK_TMP/j.err" "$cmd" "$want" "$en"; fi
}
json_fail 1 listen EADDRINUSE listen --hub "127.0.0.1:$hub" --bind "127.0.0.1:$busy" --key "$NK_TMP/a.key"
grep -q '"error":"cannot bind 127.0.0.1:'"$busy"': Address already in use"' "$NK_TMP/j.err" ||
	nk_fail "JSON error without the cause: $(cat "$NK_TMP/j.err")"
json_fail 1 connect ECONNREFUSED connect "$id_b" --hub "127.0.0.1:$closed" --key "$NK_TMP/a.key"
json_fail 2 connect - connect "$id_a" --hub "127.0.0.1:$hub" --key "$NK_TMP/a.key"
json_fail 2 listen - listen --hub "127.0.0.1:$hub" --bogus
json_fail 1 discover - discover --stun "127.0.0.1:$closed" --timeout 0.3
json_fail 1 nat-type - nat-type --stun "127.0.0.1:$closed" --timeout 0.3
# a new key made on the way is an event, not a plain line
XDG_CONFIG_HOME=$NK_TMP/cfg json_fail 1 connect ECONNREFUSED connect "$id_b" --hub "127.0.0.1:$closed"
grep -q '"event":"key-created"' "$NK_TMP/j.err" || nk_fail "no key-created event: $(cat "$NK_TMP/j.err")"
nk_log "--json failures: JSON only, one shape"

# ---- warnings that are not fatal; a live --json session stays JSON only ----
# A listener with wrong TURN credentials: warned, registered, and it serves.
nk_start listen "$NK_TMP/listen.log" bash -c 'exec "$@" </dev/null >"$0"' "$NK_TMP/listen.out" \
	"$NATKIT" listen --hub "127.0.0.1:$hub" --bind 127.0.0.1:0 --json \
	--key "$NK_TMP/a.key" --turn "127.0.0.1:$turn" --user u --pass wrong
nk_wait_for_log "$NK_TMP/listen.log" '"event":"warning"' 15 || nk_fail "no warning about the refused TURN credentials"
[[ $NK_MATCH == *'refused our credentials'*"127.0.0.1:$turn"* ]] || nk_fail "TURN warning: $NK_MATCH"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register"

# A connector whose STUN server does not answer: warned, and it still connects and delivers.
mkfifo "$NK_TMP/c.in"
head -c 100000 /dev/urandom >"$NK_TMP/data"
nk_start connect "$NK_TMP/connect.err" bash -c 'out=$1; shift; exec "$@" <"$0" >"$out"' "$NK_TMP/c.in" "$NK_TMP/connect.out" \
	"$NATKIT" connect "$id_a" --hub "127.0.0.1:$hub" --bind 127.0.0.1:0 --json --key "$NK_TMP/b.key" \
	--stun "127.0.0.1:$closed" --timeout 20
exec {cfd}>"$NK_TMP/c.in"
nk_wait_for_log "$NK_TMP/connect.err" '"event":"connected"' 20 || nk_fail "connector did not connect"
nk_wait_for_log "$NK_TMP/connect.err" '"event":"warning"' 20 || nk_fail "no warning about the silent STUN server"
[[ $NK_MATCH == *'no STUN server answered'*"127.0.0.1:$closed"* ]] || nk_fail "STUN warning: $NK_MATCH"
cat "$NK_TMP/data" >&$cfd
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/connect.err" '^\[nk\] connect exited with status' 20 || nk_fail "connector did not finish"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connector after the warning: $NK_MATCH"
grep -q '"event":"done"' "$NK_TMP/connect.err" || nk_fail "no done event"
nk_stop listen
rc=$?
[ $rc -eq 0 ] || nk_fail "listener exited $rc after SIGTERM, want 0"
cmp -s "$NK_TMP/data" "$NK_TMP/listen.out" || nk_fail "the listener's stdout is not the bytes sent"
grep -v '^\[nk\]' "$NK_TMP/connect.err" >"$NK_TMP/connect.json"
grep -v '^\[nk\]' "$NK_TMP/listen.log" >"$NK_TMP/listen.json"
all_json "$NK_TMP/connect.json" "$NK_TMP/connect.out" "$NK_TMP/listen.json"
[ -s "$NK_TMP/connect.out" ] && nk_fail "connect --json wrote to stdout though the listener sent nothing: $(head -c 200 "$NK_TMP/connect.out")"
# unknown values are null, never -1 or ""
if grep -Eq '":-1[,}]|":""' "$NK_TMP/connect.json" "$NK_TMP/listen.json"; then
	nk_fail "-1 or \"\" for an unknown value: $(grep -E '":-1[,}]|":""' "$NK_TMP/connect.json" "$NK_TMP/listen.json")"
fi
nk_log "warnings are not fatal; the session's events are JSON only"

# ---- every server log line has the time and the prefix ----
for s in hub stun turn; do
	nk_stop "$s" || nk_fail "$s did not exit 0 on SIGTERM"
	bad=$(grep -v '^\[nk\]' "$NK_TMP/$s.log" | grep -Ev "^$NK_LOG_TS natkit-(hub|stun-server|turn-server): ")
	[ -z "$bad" ] || nk_fail "$s log lines without time and prefix: $bad"
done
grep -Eq "^$NK_LOG_TS natkit-hub: stats " "$NK_TMP/hub.log" || nk_fail "hub printed no stats line"
grep -Eq "^$NK_LOG_TS natkit-turn-server: stopped; " "$NK_TMP/turn.log" || nk_fail "turn-server printed no stats line"

nk_pass "startup failures name their cause with the documented exit status; --json is JSON only with one failure shape; warnings not fatal; server logs timestamped"
