#!/usr/bin/env bash
# The README's "60-second tour" works when pasted into one interactive shell (issue 15, item 6):
# its sh block is taken from README.md as it is (so this test breaks when the README drifts),
# only its fixed ports become free ones, `build/natkit` the binary under test, and the two things
# a test host lacks (sshd on port 22, `make`) an HTTP server and nothing. It is pasted at once
# into `bash -i` on a pseudo-terminal (tests/integration/pty_paste.py): job control is on, so
# `natkit listen ... &` runs in a background process group with the terminal as its stdin, where
# reading stdin would stop it (SIGTTIN) and the tour would hang. Checked: no command fails, no
# job is stopped, both transfers arrive byte for byte, the forwarded HTTP fetch is identical.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init readme_tour
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
SRC=${NK_SOURCE_DIR:-$(dirname "$0")/../..}
nk_require python3 curl cmp turnutils_peer

tour=$(awk '/^## A 60-second tour/ { on = 1 } on && /^```sh$/ { inside = 1; next }
	inside && /^```$/ { exit } inside { print }' "$SRC/README.md")
[ -n "$tour" ] || nk_fail "no sh block under '## A 60-second tour' in README.md"
tour=$'\n'"$tour" # (so its first line, too, starts after a newline)

# sub FROM TO: every FROM in the tour becomes TO; FROM must be there (else the README drifted)
shopt -u patsub_replacement 2>/dev/null # (bash 5.2: '&' in TO is TO's own)
sub() {
	[[ $tour == *"$1"* ]] || nk_fail "README tour changed: no '$1' in it any more (update this test)"
	tour=${tour//"$1"/$2}
}
stun=$(nk_free_port 2); turn=$(nk_free_port 1); hub=$(nk_free_port 1); echo_peer=$(nk_free_port 1)
local_port=$(nk_free_port 1); http=$(nk_free_port 1)
sub $'\nmake\n' $'\n:\n'
sub 'ssh -p 2222 user@127.0.0.1' \
	"until (exec 3<>/dev/tcp/127.0.0.1/@LOCAL@) 2>/dev/null; do :; done; curl -sS --max-time 30 -o fwd.out http://127.0.0.1:@LOCAL@/hello.txt && cmp fwd.out www/hello.txt && echo FORWARD\"\"-OK"
sub 'build/natkit ' '"$NATKIT" '
# the fixed ports become placeholders first, then the free ports: a free port that starts with
# a later fixed one (22220 after 3480 -> 127.0.0.1:22220, then 2222 -> ...) must not be rewritten
sub '127.0.0.1:3478' '127.0.0.1:@STUN@'
sub '127.0.0.1:3480' '127.0.0.1:@TURN@'
sub '127.0.0.1:7000' '127.0.0.1:@HUB@'
sub '127.0.0.1:2222' '127.0.0.1:@LOCAL@'
sub '127.0.0.1:9000' '127.0.0.1:@ECHO@'
sub '-p 9000' '-p @ECHO@'
sub '--forward 127.0.0.1:22 ' '--forward 127.0.0.1:@HTTP@ '
sub @STUN@ "$stun"
sub @TURN@ "$turn"
sub @HUB@ "$hub"
sub @LOCAL@ "$local_port"
sub @ECHO@ "$echo_peer"
sub @HTTP@ "$http"

mkdir -p "$NK_TMP/home" "$NK_TMP/www"
head -c 3000 /dev/urandom | base64 >"$NK_TMP/www/hello.txt"
nk_start http "$NK_TMP/http.log" python3 -m http.server --bind 127.0.0.1 --directory "$NK_TMP/www" "$http"
nk_wait_tcp "$http" 10 || nk_fail "python3 http.server did not accept connections on 127.0.0.1:$http"

# What is pasted: a trap that names every failing command, the tour, then the checks. The
# markers are built when they run ("A""B"), so the terminal's echo of the input never matches.
{
	echo "export NATKIT='$NATKIT' HOME='$NK_TMP/home'"
	echo "trap 'echo \"TOUR-FAIL\"\"(\$?): \$BASH_COMMAND\"' ERR"
	printf '%s\n' "$tour"
	echo 'jobs -l'
	echo 'cat big.file big.file | cmp - received.bin && echo TOUR-RECEIVED""-OK'
	# (SIGCONT only to stopped jobs, though there should be none: sent to a process at exit it can
	# hang ASan's leak check, whose tracer then waits for ever)
	echo 'trap - ERR; for p in $(jobs -p); do kill -TERM -- -$p; done; for p in $(jobs -sp); do kill -CONT -- -$p; done; wait'
	echo 'echo TOUR-ALL""-DONE'
	echo 'exit'
} >"$NK_TMP/paste.sh"
mkdir -p "$NK_TMP/run"
ln -s "$NK_TMP/www" "$NK_TMP/run/www"

python3 "$SRC/tests/integration/pty_paste.py" "$NK_TMP/paste.sh" "$NK_TMP/run" 240 '^TOUR-ALL-DONE' \
	>"$NK_TMP/transcript.txt" 2>&1
rc=$?
tr -d '\r' <"$NK_TMP/transcript.txt" >"$NK_TMP/t.txt"
NK_LOGS[transcript]=$NK_TMP/t.txt
[ $rc -eq 0 ] || nk_fail "the pasted tour did not finish (pty_paste exit $rc)"
grep -q '^TOUR-FAIL' "$NK_TMP/t.txt" && nk_fail "a tour command failed: $(grep '^TOUR-FAIL' "$NK_TMP/t.txt" | head -3)"
grep -qE '^\[[0-9]+\][-+ ]+[0-9]* *Stopped' "$NK_TMP/t.txt" && nk_fail "a job was stopped: $(grep -E 'Stopped' "$NK_TMP/t.txt" | head -3)"
grep -q '^identical$' "$NK_TMP/t.txt" || nk_fail "the tour's cmp big.file received.bin did not say identical"
grep -q '^TOUR-RECEIVED-OK$' "$NK_TMP/t.txt" || nk_fail "received.bin is not big.file twice (the plain and the --tcp transfer)"
grep -q '^FORWARD-OK$' "$NK_TMP/t.txt" || nk_fail "the HTTP fetch through listen --forward / connect --local failed"
grep -q '"event":"done","sent":20000000' "$NK_TMP/t.txt" || nk_fail "connect --json did not report the 20 MB done"
grep -qE '^received: [1-9]' "$NK_TMP/t.txt" || nk_fail "turn-check did not get its 10 echoes back through the relay"
nk_pass "the README tour ($(printf '%s\n' "$tour" | grep -c '"$NATKIT"') natkit commands) ran pasted into an interactive bash on a pty"
