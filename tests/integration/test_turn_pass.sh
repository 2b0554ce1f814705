#!/usr/bin/env bash
# TURN passwords kept out of `ps` (issue 15, item 6), on loopback with natkit turn-server:
# - turn-check with --pass-file FILE, and with $NATKIT_TURN_PASS, gets every echo back through
#   the relay; a wrong password in the file is refused (401); usage errors exit 2 naming the cause,
#   a file that cannot be read exits 1, and a password longer than its buffer (in a file or in
#   $NATKIT_TURN_PASS) is refused, not cut short;
# - listen and connect with --turn --user --pass-file allocate on the server (its counters at stop:
#   one allocation each, none with a wrong password in the file) and carry a file byte-identical;
# - --pass still works, and is wiped from the command line that `ps` shows (/proc/PID/cmdline).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_pass
nk_require turnutils_peer cmp
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}

COUNT=20
port=$(nk_free_port 1)
peer_port=$(nk_free_port 1)
hub=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)
relay_hi=$((relay_lo + 63))
printf 's3cret\n' >"$NK_TMP/pass"
printf 'wrong\n' >"$NK_TMP/wrong"
chmod 600 "$NK_TMP/pass" "$NK_TMP/wrong"

nk_turn_echo_peer "$peer_port"
start_turn() { # NAME
	nk_start "$1" "$NK_TMP/$1.log" "$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test \
		--user alice:s3cret --relay-ip 127.0.0.1 --relay-ports "$relay_lo-$relay_hi" --allow-peer 127.0.0.0/8
	nk_wait_for_log "$NK_TMP/$1.log" 'listening on' 15 || nk_fail "turn-server $1 did not start"
}
# allocations NAME: stops turn-server NAME; ALLOC: how many allocations it made
allocations() {
	nk_stop "$1" || nk_fail "turn-server $1 did not stop cleanly"
	ALLOC=$(sed -nE 's/.*stopped; allocations ([0-9]+) .*/\1/p' "$NK_TMP/$1.log")
	[ -n "$ALLOC" ] || nk_fail "turn-server $1 did not print its counters"
}

# ---- turn-check ----
start_turn t1
check_echo "--pass-file" --turn "127.0.0.1:$port" --user alice --pass-file "$NK_TMP/pass"
NATKIT_TURN_PASS=s3cret check_echo "\$NATKIT_TURN_PASS" --turn "127.0.0.1:$port" --user alice
check_refused "wrong password in --pass-file" '401' --turn "127.0.0.1:$port" --user alice --pass-file "$NK_TMP/wrong" \
	--peer "127.0.0.1:$peer_port"
exits() { # WANT-RC WANT-TEXT ARGS...
	local want_rc=$1 want=$2 out rc
	shift 2
	out=$("$NATKIT" "$@" 2>&1 </dev/null)
	rc=$?
	[ $rc -eq "$want_rc" ] || nk_fail "natkit $*: exit $rc, want $want_rc: $out"
	echo "$out" | grep -qF -- "$want" || nk_fail "natkit $*: no '$want' in: $out"
}
usage() { exits 2 "$@"; }
# a --pass-file that cannot be read is the system refusing (1), one that does not hold a password a usage error (2)
exits 1 "cannot read --pass-file '$NK_TMP/none': No such file or directory" turn-check --turn "127.0.0.1:$port" --user alice \
	--pass-file "$NK_TMP/none" --peer "127.0.0.1:$peer_port"
usage 'one of --pass and --pass-file' turn-check --turn "127.0.0.1:$port" --user alice --pass x \
	--pass-file "$NK_TMP/pass" --peer "127.0.0.1:$peer_port"
usage "credentials needed" turn-check --turn "127.0.0.1:$port" --user alice --peer "127.0.0.1:$peer_port"
: >"$NK_TMP/empty"
usage "its first line is empty" listen --hub "127.0.0.1:$hub" --turn "127.0.0.1:$port" --user alice --pass-file "$NK_TMP/empty"
exits 1 "cannot read --pass-file '$NK_TMP/none': No such file" connect aaaa --hub "127.0.0.1:$hub" --turn "127.0.0.1:$port" --user alice \
	--pass-file "$NK_TMP/none"
head -c 300 /dev/zero | tr '\0' p >"$NK_TMP/long" # over the 255 bytes a TURN password may have: refused, not cut short
usage "--pass-file '$NK_TMP/long': a line longer than 255 bytes" turn-check --turn "127.0.0.1:$port" --user alice \
	--pass-file "$NK_TMP/long" --peer "127.0.0.1:$peer_port"
usage 'one of --pass and --pass-file' listen --hub "127.0.0.1:$hub" --pass x --pass-file "$NK_TMP/pass"
nk_keygen long
# an over-long $NATKIT_TURN_PASS is refused as turn-user refuses it, never passed over in silence
NATKIT_TURN_PASS=$(cat "$NK_TMP/long") usage '$NATKIT_TURN_PASS: longer than 255 bytes (it is not cut short)' \
	listen --hub "127.0.0.1:$hub" --turn "127.0.0.1:$port" --user alice
NATKIT_TURN_PASS=$(cat "$NK_TMP/long") usage '$NATKIT_TURN_PASS: longer than 255 bytes (it is not cut short)' \
	connect "$ID_long" --hub "127.0.0.1:$hub" --turn "127.0.0.1:$port" --user alice
NATKIT_TURN_PASS=$(cat "$NK_TMP/long") usage '$NATKIT_TURN_PASS: longer than 255 bytes (it is not cut short)' \
	turn-check --turn "127.0.0.1:$port" --user alice --peer "127.0.0.1:$peer_port"
usage '--turn needs --user and a password' listen --hub "127.0.0.1:$hub" --turn "127.0.0.1:$port" --user alice
allocations t1
[ "$ALLOC" -ge 2 ] || nk_fail "turn-server t1 counted fewer allocations than the two good turn-checks"

# ---- listen / connect ----
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$hub"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
nk_keygen a b
head -c 200000 /dev/urandom >"$NK_TMP/up.bin"

# transfer NAME TURN-NAME PASSFILE [listen args]: listen + connect with --turn; ALLOC: the allocations
transfer() {
	local name=$1 t=$2 pf=$3
	shift 3
	start_turn "$t"
	mkfifo "$NK_TMP/$name.in"
	nk_start "l$name" "$NK_TMP/l$name.log" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
		"$NK_TMP/$name.in" "$NK_TMP/$name.out" "$NATKIT" listen --hub "127.0.0.1:$hub" --bind 127.0.0.1:0 \
		--key "$NK_TMP/a.key" --turn "127.0.0.1:$port" --user alice "$@"
	exec {w}>"$NK_TMP/$name.in"
	nk_wait_for_log "$NK_TMP/l$name.log" 'registered at the hub' 10 || nk_fail "$name: listen did not register"
	"$NATKIT" connect "$ID_a" --hub "127.0.0.1:$hub" --bind 127.0.0.1:0 --key "$NK_TMP/b.key" --timeout 20 \
		--turn "127.0.0.1:$port" --user alice --pass-file "$pf" <"$NK_TMP/up.bin" >/dev/null 2>"$NK_TMP/c$name.log" ||
		nk_fail "$name: connect failed: $(cat "$NK_TMP/c$name.log")"
	cmp "$NK_TMP/up.bin" "$NK_TMP/$name.out" || nk_fail "$name: the file differs"
	if [ "$pf" = "$NK_TMP/pass" ] && [ $# -gt 0 ] && [ "$1" = --pass ]; then
		# the password is no longer on the command line ps shows
		local pid
		pid=$(pgrep -g "${NK_PROCS[l$name]}" -x natkit | head -1)
		[ -n "$pid" ] || nk_fail "$name: no natkit process in the listener's group"
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q s3cret && nk_fail "$name: --pass is still visible in ps: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
	fi
	nk_stop "l$name"
	exec {w}>&-
	allocations "$t"
}
transfer good t2 "$NK_TMP/pass" --pass-file "$NK_TMP/pass"
[ "$ALLOC" = 2 ] || nk_fail "listen and connect with --pass-file: the TURN server made $ALLOC allocations, want 2"
NATKIT_TURN_PASS=s3cret transfer env t3 "$NK_TMP/pass"
[ "$ALLOC" = 2 ] || nk_fail "listen with \$NATKIT_TURN_PASS: the TURN server made $ALLOC allocations, want 2"
transfer argv t4 "$NK_TMP/pass" --pass s3cret
[ "$ALLOC" = 2 ] || nk_fail "listen with --pass: the TURN server made $ALLOC allocations, want 2"
transfer bad t5 "$NK_TMP/wrong" --pass-file "$NK_TMP/wrong"
[ "$ALLOC" = 0 ] || nk_fail "a wrong password in --pass-file: the TURN server made $ALLOC allocations, want 0"
nk_pass "TURN passwords from --pass-file and \$NATKIT_TURN_PASS work for turn-check, listen and connect; --pass is wiped from ps"
