#!/bin/bash
# natkit connect / listen carry a 20 MB random file byte-identical on every lab path
# (issue 12, "Tests in make test"):
#   direct  port-restricted cone -> full cone             0 % and 10 % loss
#   turn    symmetric -> symmetric (natkit's TURN server)  0 % and 10 % loss
#   hub     UDP blocked -> full cone (the hub's TCP relay) 0 % and 10 % loss (of TCP packets:
#           the lab's loss= drops UDP only, which the hub path does not use)
#   move    port-restricted -> full cone while the direct path is cut (all UDP dropped at the
#           connector's NAT) and healed mid-transfer: direct -> hub -> direct
#   forward python3's http.server behind `listen --forward` (a symmetric NAT), fetched
#           with curl through `connect --local` from behind a full cone (direct), another symmetric
#           NAT (TURN) and UDP blocked (hub), body identical; sshd behind another --forward,
#           reached with `natkit connect` as ssh's ProxyCommand from the same three, a 2 MB
#           file read over ssh identical; a peer not in --allow is refused
# Each transfer: the connector's stdin is the file, the listener's stdout must equal it (cmp),
# connect must exit 0. Loss (10 %) is on one side's NAT link, both directions.
# Prints per case the path(s) taken, the time and MB/s (from connect's "done" event) to stdout
# and to $NK_BUILD_DIR/test-reports/p2p_stream.txt.
# Needs root and network namespaces (exit 77 with a SKIP line otherwise).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"
export LC_ALL=C
nk_init p2p_stream_lab
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
export NATKIT
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"
nk_require python3 curl cmp ssh ssh-keygen
[ -x "$(command -v sshd || echo /usr/sbin/sshd)" ] || nk_fail "no sshd (scripts/deps.sh installs openssh-server)"
NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT

SIZE=20000000
lab_up || nk_fail "lab_up failed"
lab_add_nat pr port-restricted-cone || nk_fail "lab_add_nat pr"
lab_add_nat prL port-restricted-cone loss=10 || nk_fail "lab_add_nat prL"
lab_add_nat fc full-cone || nk_fail "lab_add_nat fc"
lab_add_nat symA symmetric || nk_fail "lab_add_nat symA"
lab_add_nat symL symmetric loss=10 || nk_fail "lab_add_nat symL"
lab_add_nat symB symmetric || nk_fail "lab_add_nat symB"
lab_add_nat blk udp-blocked || nk_fail "lab_add_nat blk"
lab_add_nat blkL udp-blocked || nk_fail "lab_add_nat blkL"
# 10 % of the TCP packets through blkL's router dropped, both directions
printf 'table ip tcploss {\n  chain f { type filter hook forward priority -10;\n    meta l4proto tcp numgen random mod 100 < 10 drop\n  }\n}\n' |
    lab_exec_router blkL nft -f - || nk_fail "TCP loss rule on blkL"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun turn hub || nk_fail "the lab's servers did not start"
NK_LOGS[hub]=${LAB_LOG[hub]} NK_LOGS[turn]=${LAB_LOG[turn]}

COMMON=(--hub "$LAB_HUB" --stun "$LAB_STUN" --stun "$LAB_STUN_ALT"
    --turn "$LAB_TURN" --user "$LAB_TURN_USER" --pass "$LAB_TURN_PASS" --json)
head -c $SIZE /dev/urandom >"$NK_TMP/data.bin"
declare -A ID=()
keygen() { "$NATKIT" keygen --out "$NK_TMP/$1.key" 2>/dev/null | tail -1; }

# listener HOST TAG [args]: natkit listen behind HOST, stdin a FIFO held open by this script,
# stdout $NK_TMP/TAG.out, stderr $NK_TMP/TAG.err; waits until it registered.
declare -A LW=()
listener() {
    local host=$1 tag=$2 fd
    shift 2
    ID[$tag]=$(keygen "$tag") || nk_fail "keygen $tag"
    mkfifo "$NK_TMP/$tag.in"
    exec {fd}<>"$NK_TMP/$tag.in"
    LW[$tag]=$fd
    nk_start "$tag" "$NK_TMP/$tag.err" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
        "$NK_TMP/$tag.in" "$NK_TMP/$tag.out" \
        ip netns exec "$(lab_ns "$host")" "$NATKIT" listen "${COMMON[@]}" --key "$NK_TMP/$tag.key" "$@"
    nk_wait_for_log "$NK_TMP/$tag.err" '"event":"registered"' 20 || nk_fail "listener $tag behind $host did not register"
}

paths_of() { # LOG: the connector's path(s): a>b>c
    grep -aE '"event":"(connected|path-changed)"' "$1" | sed -E 's/.*"path":"([a-z]+)".*/\1/' | paste -sd'>' -
}

REPORT=/dev/null
if [ -n "${NK_BUILD_DIR:-}" ]; then
    mkdir -p "$NK_BUILD_DIR/test-reports" && REPORT="$NK_BUILD_DIR/test-reports/p2p_stream.txt"
    : >"$REPORT"
fi
report() { printf "$@" | tee -a "$REPORT"; }
report '\nNAT lab: %d MB random file through natkit connect -> natkit listen (byte-identical each time)\n' $((SIZE / 1000000))
report '%-8s %-38s %-5s %-20s %9s %8s\n' case "connector -> listener" loss "path(s)" "time ms" "MB/s"
declare -a FAILS=()

# transfer CASE CONN_HOST LISTEN_TAG LOSS WANT_FINAL_PATH [connect args]: the file through connect
# (started in the background; sets CPID) — finish with transfer_check.
transfer_start() {
    local name=$1 host=$2 ltag=$3
    shift 3
    ID[$name]=$(keygen "$name") || nk_fail "keygen $name"
    nk_start "$name" "$NK_TMP/$name.err" bash -c 'exec "$@" <"$0" >/dev/null' "${SRC:-$NK_TMP/data.bin}" \
        ip netns exec "$(lab_ns "$host")" "$NATKIT" connect "${ID[$ltag]}" "${COMMON[@]}" --key "$NK_TMP/$name.key" \
        --timeout 30 "$@"
}
transfer_check() { # CASE HOST LTAG LOSS WANT LIMIT_S
    local name=$1 host=$2 ltag=$3 loss=$4 want=$5 limit=$6 paths ms done_ev mark=ok
    if ! nk_wait_for_log "$NK_TMP/$name.err" '^\[nk\] .* exited with status' "$limit"; then
        mark="did not finish within $limit s"
    elif [[ $NK_MATCH != *"status 0" ]]; then
        mark="connect: $NK_MATCH"
    elif ! cmp -s "$NK_TMP/data.bin" "$NK_TMP/$ltag.out"; then
        mark="the listener's stdout differs from the file ($(stat -c %s "$NK_TMP/$ltag.out") bytes)"
    fi
    paths=$(paths_of "$NK_TMP/$name.err")
    done_ev=$(grep -a '"event":"done"' "$NK_TMP/$name.err" | tail -1)
    ms=$(nk_json_get "$done_ev" ms 2>/dev/null || echo "-")
    [ "$mark" != ok ] || [ "${paths##*>}" = "$want" ] || mark="ended on path ${paths##*>}, want $want"
    [ "$mark" != ok ] || [ "$name" != move ] || [[ $paths == direct*'>hub>'*direct ]] || mark="paths $paths, want direct>...>hub>...>direct"
    [ "$mark" != ok ] || case $want in direct|turn|hub) [[ $paths == "$want"* ]] || [ "$name" = move ] || mark="started on ${paths%%>*}, want $want" ;; esac
    local mbs=-
    [ "$ms" = - ] || mbs=$(awk -v ms="$ms" -v b=$SIZE 'BEGIN { if (ms > 0) printf "%.2f", b / 1e6 / (ms / 1e3); else printf "-" }')
    report '%-8s %-38s %-5s %-20s %9s %8s  %s\n' "$name" "$host -> ${LHOST[$ltag]}" "$loss%" "${paths:--}" "$ms" "$mbs" "$mark"
    [ "$mark" = ok ] || FAILS+=("$name: $mark [logs: $NK_TMP/$name.err, $NK_TMP/$ltag.err]")
    nk_stop "$name" >/dev/null
}

declare -A LHOST=()
START=$SECONDS
run_case() { # CASE CONN_HOST LISTEN_HOST LOSS WANT LIMIT_S
    local name=$1 host=$2 lhost=$3 loss=$4 want=$5 limit=$6
    LHOST[l-$name]=$lhost
    listener "$lhost" "l-$name"
    transfer_start "$name" "$host" "l-$name"
    transfer_check "$name" "$host" "l-$name" "$loss" "$want" "$limit"
    nk_stop "l-$name" >/dev/null
}
run_case direct0 pr fc 0 direct 60
run_case direct10 prL fc 10 direct 90
run_case turn0 symA symB 0 turn 60
run_case turn10 symL symB 10 turn 90
run_case hub0 blk fc 0 hub 60
run_case hub10 blkL fc 10 hub 90

# --- the path moves mid-transfer: direct -> (cut) hub -> (healed) direct ---
# The file goes in at ~1.5 MB/s (python3 paces it), so the transfer spans the cut and the heal;
# keepalives every second on both sides make the agent notice the cut within a few seconds.
LHOST[l-move]=fc
listener fc l-move --keepalive 1
mkfifo "$NK_TMP/move.src"
SRC=$NK_TMP/move.src transfer_start move pr l-move --keepalive 1
python3 - "$NK_TMP/data.bin" "$NK_TMP/move.src" <<'EOF' &
import sys, time
data = open(sys.argv[1], 'rb').read()
with open(sys.argv[2], 'wb', buffering=0) as out:
    t0 = time.monotonic()
    for off in range(0, len(data), 65536):
        out.write(data[off:off + 65536])
        lag = off / 1.5e6 - (time.monotonic() - t0)
        if lag > 0:
            time.sleep(lag)
EOF
FEEDER=$!
nk_wait_for_log "$NK_TMP/move.err" '"event":"connected".*"path":"direct"' 30 || nk_fail "move: no direct connection"
# the cut: every UDP packet through the connector's NAT dropped (TURN goes too: hub is what is left)
printf 'table ip cut {\n  chain f { type filter hook forward priority -20; meta l4proto udp drop; }\n}\n' |
    lab_exec_router pr nft -f - || nk_fail "move: the cut rule"
CUT_AT=${EPOCHREALTIME//[.,]/}
nk_wait_for_log "$NK_TMP/move.err" '"event":"path-changed".*"path":"hub"' 40 ||
    FAILS+=("move: no move to the hub within 40 s of the cut")
HUB_MS=$(( (${EPOCHREALTIME//[.,]/} - CUT_AT) / 1000 ))
# heal at once: the bytes go over the hub relay until the agent finds the direct path again
lab_exec_router pr nft delete table ip cut || nk_fail "move: removing the cut"
HEAL_AT=${EPOCHREALTIME//[.,]/}
nk_wait_for_log "$NK_TMP/move.err" '"event":"path-changed".*"path":"direct"' 60 ||
    FAILS+=("move: no move back to direct within 60 s of the heal")
BACK_MS=$(( (${EPOCHREALTIME//[.,]/} - HEAL_AT) / 1000 ))
wait "$FEEDER"
transfer_check move pr l-move 0 direct 120
report '         (move: on the hub %s ms after the cut, back on the direct path %s ms after the heal)\n' "$HUB_MS" "$BACK_MS"
nk_stop l-move >/dev/null

# --- port forwarding: HTTP behind a NATed listen --forward (behind a symmetric NAT), through
# connect --local, on each path: from behind a full cone (direct), another symmetric NAT (TURN:
# symmetric <-> symmetric has no direct path; port-restricted <-> symmetric is direct since
# birthday probing), UDP blocked (hub) ---
hport=28080 lport=28081
mkdir -p "$NK_TMP/www"
head -c 3000000 /dev/urandom >"$NK_TMP/www/body.bin"
nk_start http "$NK_TMP/http.log" ip netns exec "$(lab_ns symB)" python3 -m http.server --bind 127.0.0.1 \
    --directory "$NK_TMP/www" "$hport"
deadline=$((SECONDS + 10))
until lab_exec symB bash -c "exec 3<>/dev/tcp/127.0.0.1/$hport" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || nk_fail "http.server did not start behind symB"
done
FWD_FROM=(fc:direct symA:turn blk:hub)
allow=()
for fw in "${FWD_FROM[@]}"; do
    ID[fwd-${fw%%:*}]=$(keygen "fwd-${fw%%:*}")
    allow+=(--allow "${ID[fwd-${fw%%:*}]}")
done
LHOST[l-fwd]=symB
listener symB l-fwd --forward "127.0.0.1:$hport" "${allow[@]}"
for fw in "${FWD_FROM[@]}"; do
    host=${fw%%:*} want=${fw#*:}
    nk_start "fwd-$host" "$NK_TMP/fwd-$host.err" ip netns exec "$(lab_ns "$host")" "$NATKIT" connect "${ID[l-fwd]}" \
        "${COMMON[@]}" --key "$NK_TMP/fwd-$host.key" --timeout 30 --local "127.0.0.1:$lport"
done
for fw in "${FWD_FROM[@]}"; do
    host=${fw%%:*} want=${fw#*:}
    nk_wait_for_log "$NK_TMP/fwd-$host.err" '"event":"connected"' 40 || nk_fail "forward: connect --local behind $host did not connect"
    t0=${EPOCHREALTIME//[.,]/}
    rm -f "$NK_TMP/got.bin"
    if lab_exec "$host" curl -sS --max-time 60 -o "$NK_TMP/got.bin" "http://127.0.0.1:$lport/body.bin" &&
        cmp -s "$NK_TMP/www/body.bin" "$NK_TMP/got.bin"; then
        mark=ok
    else
        mark="the body fetched through the forward differs or curl failed"
    fi
    ms=$(( (${EPOCHREALTIME//[.,]/} - t0) / 1000 ))
    paths=$(paths_of "$NK_TMP/fwd-$host.err")
    [ "$mark" != ok ] || [ "$paths" = "$want" ] || mark="path $paths, want $want"
    [ "$mark" = ok ] || FAILS+=("forward from $host: $mark [logs: $NK_TMP/fwd-$host.err $NK_TMP/l-fwd.err]")
    report '%-8s %-38s %-5s %-20s %9s %8s  %s\n' forward "$host (curl, --local) -> symB (--forward)" "0%" \
        "$paths" "$ms" "-" "$mark (3 MB over HTTP)"
done
# ssh through the forward on each path: sshd behind symB, `natkit connect` (stdin/stdout) as ssh's
# ProxyCommand from behind each of the three NATs; a 2 MB file read over ssh must be identical
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
mkdir -p /run/sshd "$NK_TMP/ssh"
ssh-keygen -q -t ed25519 -N '' -f "$NK_TMP/ssh/host" && ssh-keygen -q -t ed25519 -N '' -f "$NK_TMP/ssh/user" ||
    nk_fail "ssh-keygen failed"
cp "$NK_TMP/ssh/user.pub" "$NK_TMP/ssh/authorized_keys"
chmod 600 "$NK_TMP/ssh/authorized_keys"
head -c 2000000 /dev/urandom >"$NK_TMP/ssh/file.bin"
nk_start sshd "$NK_TMP/sshd.log" ip netns exec "$(lab_ns symB)" "$SSHD" -D -e -p 2222 -o ListenAddress=127.0.0.1 \
    -h "$NK_TMP/ssh/host" -o AuthorizedKeysFile="$NK_TMP/ssh/authorized_keys" -o PidFile=none -o UsePAM=no \
    -o StrictModes=no -o PermitRootLogin=prohibit-password
nk_wait_for_log "$NK_TMP/sshd.log" 'Server listening on 127.0.0.1 port 2222' 10 || nk_fail "sshd did not start behind symB"
allow=()
for fw in "${FWD_FROM[@]}"; do
    ID[ssh-${fw%%:*}]=$(keygen "ssh-${fw%%:*}")
    allow+=(--allow "${ID[ssh-${fw%%:*}]}")
done
LHOST[l-ssh]=symB
listener symB l-ssh --forward 127.0.0.1:2222 "${allow[@]}"
for fw in "${FWD_FROM[@]}"; do
    host=${fw%%:*} want=${fw#*:}
    proxy="$NATKIT connect ${ID[l-ssh]} ${COMMON[*]} --key $NK_TMP/ssh-$host.key --timeout 30 2>$NK_TMP/ssh-$host.err"
    t0=${EPOCHREALTIME//[.,]/}
    if lab_exec "$host" timeout 60 ssh -o ProxyCommand="$proxy" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o BatchMode=yes -i "$NK_TMP/ssh/user" root@natkit-forward "cat $NK_TMP/ssh/file.bin" 2>"$NK_TMP/ssh-$host.ssh.err" |
        cmp -s - "$NK_TMP/ssh/file.bin"; then
        mark=ok
    else
        mark="ssh through the forward failed or the file differs ($(tail -c 200 "$NK_TMP/ssh-$host.ssh.err" | tr '\n' ' '))"
    fi
    ms=$(( (${EPOCHREALTIME//[.,]/} - t0) / 1000 ))
    paths=$(paths_of "$NK_TMP/ssh-$host.err")
    [ "$mark" != ok ] || [ "$paths" = "$want" ] || mark="path $paths, want $want"
    [ "$mark" = ok ] || FAILS+=("ssh from $host: $mark [logs: $NK_TMP/ssh-$host.err $NK_TMP/l-ssh.err]")
    report '%-8s %-38s %-5s %-20s %9s %8s  %s\n' ssh "$host (ProxyCommand) -> symB (--forward)" "0%" \
        "$paths" "$ms" "-" "$mark (2 MB over ssh)"
done

# a peer not allowed is refused
ID[other]=$(keygen other)
out=$(lab_exec pr "$NATKIT" connect "${ID[l-fwd]}" "${COMMON[@]}" --key "$NK_TMP/other.key" --timeout 30 \
    --local 127.0.0.1:$lport 2>&1)
rc=$?
if [ $rc -ne 1 ] || ! grep -q 'refused by the listener: not allowed' <<<"$out"; then
    FAILS+=("forward: a peer not in --allow: exit $rc, want 1 and 'refused by the listener: not allowed'")
fi

SAN_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:'
for f in "$NK_TMP"/*.err; do
    if grep -aqE "$SAN_RE" "$f"; then FAILS+=("sanitizer report in $f"); fi
done
report '(%d s in all)\n\n' $((SECONDS - START))
if [ ${#FAILS[@]} -gt 0 ]; then
    for f in "${FAILS[@]}"; do report 'FAIL %s\n' "$f"; done
    nk_fail "${#FAILS[@]} failure(s)"
fi
nk_pass "20 MB byte-identical on direct, TURN and hub at 0 and 10 % loss and across direct -> hub -> direct; HTTP through --forward/--local; refusal"
