#!/usr/bin/env bash
# natkit accept / natkit dial on loopback: the cases the NAT lab does not cover.
#   - UDP fallback (--udp-only on both sides): 300 KB each way, and a dialer with empty stdin
#     still gets the acceptor's 300 KB (each side waits for the other's FIN); 20 MB of random
#     bytes each way at once, byte-identical;
#   - --udp-only on one side only: both fall back to UDP at once, data both ways; the
#     acceptor's TCP listener is closed after the fallback;
#   - forged QUIC Initials sent to the acceptor before the real dialer (one of full length that
#     does not decrypt, one too short to open a connection): it still gets through and the
#     acceptor counts the dropped datagrams;
#   - a REPLY whose peer ID was changed on the way (trust on first use): the QUIC handshake
#     refuses the acceptor's real key, the dialer exits 1, no session on either side;
#   - idle TCP connections to the announced port: six before the dialer's (the oldest make
#     room; the dialer's stream comes up), and two that are dropped after the 5 s deadline;
#   - an acceptor stopped by SIGTERM while waiting (nothing read, nothing lost): exit 0;
#   - an acceptor whose stdout is not read (TCP and UDP): its loop goes on (its stdin reaches
#     the dialer), the dialer's 20 MB wait (backpressure), and arrive once stdout is read.
# The idle connections need the announced port before the dialer connects: a UDP relay
# between the two (python3) holds the acceptor's datagrams once the session is up (its
# listener is open then) until the idle connections are made.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init direct_loopback
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require python3 sha256sum cmp

nk_keygen acc dial
SIZE=$((300 * 1024))
head -c $SIZE /dev/urandom >"$NK_TMP/a.bin"
head -c $SIZE /dev/urandom >"$NK_TMP/b.bin"
: >"$NK_TMP/empty"

# start_side NAME STDIN natkit-args...: natkit with stdin from STDIN, stdout to $NK_TMP/NAME.out,
# stderr (and the "[nk] NAME exited" line) to $NK_TMP/NAME.log.
start_side()
{
	local name=$1 in=$2
	shift 2
	nk_start "$name" "$NK_TMP/$name.log" bash -c 'in=$0 out=$1; shift; exec "$@" <"$in" >"$out"' \
		"$in" "$NK_TMP/$name.out" "$NATKIT" "$@"
}

# start_acceptor NAME STDIN [args...]: sets ACC_ADDR.
start_acceptor()
{
	local name=$1 in=$2
	shift 2
	start_side "$name" "$in" accept --key "$NK_TMP/acc.key" --advertise-ip 127.0.0.1 "$@"
	nk_wait_for_log "$NK_TMP/$name.log" '^UDP listen addr to share: ' 10 || nk_fail "$name printed no address"
	ACC_ADDR=${NK_MATCH#UDP listen addr to share: }
}

start_dialer() # NAME STDIN ADDR [args...]
{
	local name=$1 in=$2 addr=$3
	shift 3
	start_side "$name" "$in" dial "$addr" --key "$NK_TMP/dial.key" --timeout 10 "$@"
}

# expect_data NAME FILE: NAME's stdout is FILE, byte for byte.
expect_data()
{
	cmp -s "$NK_TMP/$1.out" "$2" || nk_fail "$1 received $(stat -c %s "$NK_TMP/$1.out") bytes, not $(stat -c %s "$2")"
}

expect_log() # NAME REGEX WHAT
{
	grep -qE "$2" "$NK_TMP/$1.log" || nk_fail "$1: $3 (no line matching '$2')"
}

refuse_log() # NAME REGEX WHAT
{
	! grep -qE "$2" "$NK_TMP/$1.log" || nk_fail "$1: $3: $(grep -E "$2" "$NK_TMP/$1.log")"
}

# run_pair TAG ACC_IN DIAL_IN ACC_ARGS DIAL_ARGS: one accept/dial run, both must exit 0.
run_pair()
{
	local tag=$1 ain=$2 din=$3
	start_acceptor "$tag.acc" "$ain" $4
	start_dialer "$tag.dial" "$din" "$ACC_ADDR" $5
	nk_expect_exit "$tag.dial" 0 30
	nk_expect_exit "$tag.acc" 0 10
	expect_data "$tag.acc" "$din"
	expect_data "$tag.dial" "$ain"
}

# --- 1. UDP fallback: each side waits for the other's data
run_pair udp "$NK_TMP/a.bin" "$NK_TMP/b.bin" --udp-only --udp-only
expect_log udp.acc 'UDP: sent 307200 bytes, received 307200 bytes in [0-9]\.[0-9]{3} s' "summary measured from the data phase"
run_pair udpempty "$NK_TMP/a.bin" "$NK_TMP/empty" --udp-only --udp-only
expect_log udpempty.dial 'the peer finished sending' "no end marker from the acceptor"
nk_log "UDP fallback: 300 KB both ways, and to a dialer with empty stdin"

# 20 MB of random bytes each way at once over the UDP fallback (QUIC streams), byte-identical
BIG=$((20 * 1024 * 1024))
head -c $BIG /dev/urandom >"$NK_TMP/big_a.bin"
head -c $BIG /dev/urandom >"$NK_TMP/big_b.bin"
run_pair udpbig "$NK_TMP/big_a.bin" "$NK_TMP/big_b.bin" --udp-only --udp-only
expect_log udpbig.acc "UDP: sent $BIG bytes, received $BIG bytes in " "20 MB summary"
nk_log "UDP fallback: 20 MB each way, $(sed -n 's/.*UDP: sent .* in \([0-9.]* s (.*)\)$/\1/p' "$NK_TMP/udpbig.dial.log")"
rm -f "$NK_TMP"/big_a.bin "$NK_TMP"/big_b.bin "$NK_TMP"/udpbig.*.out

# --- 2. --udp-only on one side
run_pair mixacc "$NK_TMP/a.bin" "$NK_TMP/b.bin" --udp-only ""
expect_log mixacc.dial 'the acceptor carries the data over the UDP session: so do we' "did not follow the acceptor"
refuse_log mixacc.dial 'no TCP announcement within' "waited for an announcement"

# The acceptor's stdin is a FIFO written here once the fallback is seen. Both sides start before
# the writing end is opened (a process started later would inherit it, and EOF would never come),
# so the acceptor gets fixed ports.
uport=$(nk_free_port 1)
tport=$(nk_free_port 1)
mkfifo "$NK_TMP/mixdial.in"
start_side mixdial.acc "$NK_TMP/mixdial.in" accept --key "$NK_TMP/acc.key" --port "$uport" --tcp-port "$tport"
start_dialer mixdial.dial "$NK_TMP/b.bin" "127.0.0.1:$uport" --udp-only
exec {afd}>"$NK_TMP/mixdial.in"
nk_wait_for_log "$NK_TMP/mixdial.acc.log" 'the dialer carries the data over the UDP session: so do we' 15 ||
	nk_fail "the acceptor did not follow a --udp-only dialer"
! (exec 3<>"/dev/tcp/127.0.0.1/$tport") 2>/dev/null || nk_fail "the TCP listener is still open after the fallback"
cat "$NK_TMP/a.bin" >&$afd
exec {afd}>&-
nk_expect_exit mixdial.dial 0 30
nk_expect_exit mixdial.acc 0 10
expect_data mixdial.acc "$NK_TMP/b.bin"
expect_data mixdial.dial "$NK_TMP/a.bin"
expect_log mixdial.dial 'declining: --udp-only' "did not decline the announcement"
expect_log mixdial.acc 'the dialer has the announcement after [0-9]+ sends?$' "announcement count"
nk_log "--udp-only on either side alone: UDP both ways, listener closed"

# --- 3. forged QUIC Initials before the real dialer
start_acceptor forged.acc "$NK_TMP/a.bin"
python3 - "${ACC_ADDR##*:}" <<'EOF' || nk_fail "could not send the forged INITs"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
to = ("127.0.0.1", int(sys.argv[1]))
# long header, Initial, version 1, DCID 8 bytes, SCID 8 bytes, no token, length 2 bytes
hdr = bytes([0xC3, 0, 0, 0, 1, 8]) + os.urandom(8) + bytes([8]) + os.urandom(8) + bytes([0, 0x44, 0x90])
s.sendto(hdr + os.urandom(1200 - len(hdr)), to) # full length, does not decrypt
s.sendto(hdr + os.urandom(100), to)             # too short for a client's first datagram
EOF
start_dialer forged.dial "$NK_TMP/b.bin" "$ACC_ADDR"
nk_expect_exit forged.dial 0 30
nk_expect_exit forged.acc 0 10
expect_data forged.acc "$NK_TMP/b.bin"
expect_data forged.dial "$NK_TMP/a.bin"
expect_log forged.acc 'ignored 2 datagrams before that' "the forged INITs were not counted"
expect_log forged.acc 'TCP stream with .* is up' "no TCP stream"
nk_log "forged QUIC Initials: dropped and counted, the real dialer got through"

# --- 3b. a REPLY naming another peer ID (trusted on first use): the QUIC handshake refuses the
# acceptor's key (TLS 1.3 raw public key), the dialer exits 1 and nothing reaches its stdout
cat >"$NK_TMP/forge_reply.py" <<'EOF'
# forge_reply.py ACC_UDP_PORT: UDP relay dialer <-> acceptor that changes the peer ID in the REPLY
import select, socket, sys
acc = ("127.0.0.1", int(sys.argv[1]))
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind(("127.0.0.1", 0))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); back.bind(("127.0.0.1", 0))
print("relay on", front.getsockname()[1], flush=True)
dialer = None
while True:
    r, _, _ = select.select([front, back], [], [])
    if front in r:
        data, dialer = front.recvfrom(4096)
        back.sendto(data, acc)
    if back in r:
        data, _ = back.recvfrom(4096)
        if len(data) == 61 and data[:2] == b"\xa8R":
            data = data[:10] + bytes([data[10] ^ 1]) + data[11:]   # the first byte of the peer ID
            print("forged a REPLY", flush=True)
        front.sendto(data, dialer)
EOF
start_acceptor forgedreply.acc "$NK_TMP/a.bin"
nk_start forgedreply.relay "$NK_TMP/forgedreply.relay.log" python3 "$NK_TMP/forge_reply.py" "${ACC_ADDR##*:}"
nk_wait_for_log "$NK_TMP/forgedreply.relay.log" '^relay on [0-9]+' 10 || nk_fail "relay did not start"
start_dialer forgedreply.dial "$NK_TMP/b.bin" "127.0.0.1:${NK_MATCH#relay on }"
nk_expect_exit forgedreply.dial 1 20
nk_stop forgedreply.relay
nk_stop forgedreply.acc
expect_log forgedreply.relay 'forged a REPLY' "the relay forged no REPLY"
expect_log forgedreply.dial 'the session closed: .*peer ID mismatch' "the forged ID was not refused in the handshake"
refuse_log forgedreply.dial 'secure session up' "a session came up with a forged peer ID"
refuse_log forgedreply.acc 'secure session up' "the acceptor took a dialer that refused it"
[ ! -s "$NK_TMP/forgedreply.dial.out" ] || nk_fail "the dialer wrote data after a refused handshake"
nk_log "a forged REPLY (another peer ID): refused in the QUIC handshake, exit 1"

# --- 4. idle TCP connections to the announced port
cat >"$NK_TMP/relay.py" <<'EOF'
# relay.py ACC_UDP_PORT TCP_PORT MODE N: UDP relay dialer <-> acceptor. At the acceptor's first
# datagram holding a QUIC short-header (1-RTT) packet, alone or after coalesced long-header ones
# (its handshake is done; its listener opens then, so a refused try is repeated at its next
# datagram) it opens N idle TCP connections to TCP_PORT
# and holds the acceptor's datagrams: MODE evict releases them at once, MODE deadline when the
# acceptor has closed every idle connection (or after 12 s).
import select, socket, sys, time
acc = ("127.0.0.1", int(sys.argv[1])); tport = int(sys.argv[2]); mode = sys.argv[3]; n = int(sys.argv[4])
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); front.bind(("127.0.0.1", 0))
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); back.bind(("127.0.0.1", 0))
print("relay on", front.getsockname()[1], flush=True)
dialer = None; held = []; state = "wait"; idle = []; t0 = 0
def varint(d, i):
    n = 1 << (d[i] >> 6); v = d[i] & 0x3F
    for k in range(1, n):
        v = (v << 8) | d[i + k]
    return v, i + n
def has_short_header(d):
    # walk the coalesced long-header packets (RFC 9000 17.2): a short header one ends the datagram
    # (ngtcp2 greases the fixed bit, RFC 9287: only the form bit 0x80 tells long from short)
    i = 0
    try:
        while i < len(d):
            b = d[i]
            if b & 0x80 == 0:
                return True
            j = i + 5; j += 1 + d[j]; j += 1 + d[j]
            if (b >> 4) & 3 == 0:
                tl, j = varint(d, j); j += tl
            ln, j = varint(d, j)
            i = j + ln
    except IndexError:
        pass
    return False
def connect_idle():
    # the acceptor's first data packet can leave just before its listener opens: then the idle
    # connections are tried again at each datagram it sends next (its announcement is resent
    # until acknowledged, and the relay holds every one), never by waiting a fixed time
    opened = []
    try:
        for _ in range(n):
            opened.append(socket.create_connection(("127.0.0.1", tport)))
    except ConnectionRefusedError:
        for c in opened:
            c.close()
        return None
    return opened
while True:
    r, _, _ = select.select([front, back] + idle, [], [], 0.2)
    if front in r:
        data, dialer = front.recvfrom(4096)
        back.sendto(data, acc)
    if back in r:
        data, _ = back.recvfrom(4096)
        if state == "wait" and data[:2] != b"\xa8R" and has_short_header(data):
            state = "connecting"
        if state == "connecting":
            idle = connect_idle()
            if idle is None:
                idle = []; held.append(data); continue
            t0 = time.monotonic(); state = "hold"
            print("idle connections open:", n, flush=True)
        if state == "hold":
            held.append(data)
        else:
            front.sendto(data, dialer)
    for c in [c for c in idle if c in r]:
        try:
            gone = c.recv(1) == b""
        except OSError:
            gone = True
        if gone:
            idle.remove(c); c.close()
    if state == "hold" and (mode == "evict" or not idle or time.monotonic() - t0 > 12):
        if mode == "deadline":
            print("idle connections %s after %.1f s" % ("closed" if not idle else "still open", time.monotonic() - t0), flush=True)
        for d in held:
            front.sendto(d, dialer)
        held = []; state = "open"
EOF
relay_case()
{
	local tag=$1 mode=$2 n=$3 tport
	tport=$(nk_free_port 1)
	start_acceptor "$tag.acc" "$NK_TMP/a.bin" --tcp-port "$tport"
	nk_start "$tag.relay" "$NK_TMP/$tag.relay.log" python3 "$NK_TMP/relay.py" "${ACC_ADDR##*:}" "$tport" "$mode" "$n"
	nk_wait_for_log "$NK_TMP/$tag.relay.log" '^relay on [0-9]+' 10 || nk_fail "relay did not start"
	start_dialer "$tag.dial" "$NK_TMP/b.bin" "127.0.0.1:${NK_MATCH#relay on }"
	nk_expect_exit "$tag.dial" 0 40
	nk_expect_exit "$tag.acc" 0 10
	nk_stop "$tag.relay"
	expect_data "$tag.acc" "$NK_TMP/b.bin"
	expect_data "$tag.dial" "$NK_TMP/a.bin"
	expect_log "$tag.relay" "idle connections open: $n" "the relay opened no idle connections"
	expect_log "$tag.acc" 'TCP stream with .* is up' "no TCP stream"
	expect_log "$tag.dial" 'TCP stream with .* is up' "no TCP stream"
}
relay_case evict evict 6
[ "$(grep -c 'the slots are full' "$NK_TMP/evict.acc.log")" -ge 3 ] ||
	nk_fail "expected the oldest idle connections to make room: $(grep 'refused a TCP' "$NK_TMP/evict.acc.log")"
relay_case deadline deadline 2
expect_log deadline.relay 'idle connections closed after ([4-8])\.' "idle connections not closed after about 5 s"
[ "$(grep -c 'not authenticated within 5 s' "$NK_TMP/deadline.acc.log")" = 2 ] || nk_fail "deadline not reported twice"
nk_log "idle TCP connections: the oldest make room, idle ones are dropped after 5 s"

# --- 6. the acceptor's stdout is not read: stdout is written without blocking the loop, so the
# acceptor goes on (its own stdin still reaches the dialer) while the dialer's 20 MB are held back
# (backpressure, nothing lost); once the reader runs everything arrives. With a blocking write
# the acceptor's loop stopped in write() and the dialer never got the acceptor's bytes.
STALL=$((20 * 1024 * 1024))
head -c $STALL /dev/urandom >"$NK_TMP/stall.bin"
stall_case() # TAG WAIT-REGEX [accept/dial args]
{
	local tag=$1 up=$2
	shift 2
	# the acceptor's stdin: a.bin once a line comes on $tag.in; its stdout: read once one comes on $tag.go
	mkfifo "$NK_TMP/$tag.in" "$NK_TMP/$tag.go"
	nk_start "$tag.acc" "$NK_TMP/$tag.acc.log" bash -c 'in=$1 go=$2 out=$3 src=$4; shift 4
		{ read -r _ <"$in"; cat "$src"; } | "$@" | { read -r _ <"$go"; cat >"$out"; }; exit ${PIPESTATUS[1]}' _ \
		"$NK_TMP/$tag.in" "$NK_TMP/$tag.go" "$NK_TMP/$tag.acc.out" "$NK_TMP/a.bin" \
		"$NATKIT" accept --key "$NK_TMP/acc.key" --advertise-ip 127.0.0.1 "$@"
	nk_wait_for_log "$NK_TMP/$tag.acc.log" '^UDP listen addr to share: ' 10 || nk_fail "$tag.acc printed no address"
	start_dialer "$tag.dial" "$NK_TMP/stall.bin" "${NK_MATCH#UDP listen addr to share: }" "$@"
	nk_wait_for_log "$NK_TMP/$tag.acc.log" "$up" 20 || nk_fail "$tag: no data phase: $NK_MATCH"
	echo go >"$NK_TMP/$tag.in"
	nk_wait_for_log "$NK_TMP/$tag.dial.log" 'the peer finished sending' 15 ||
		nk_fail "$tag: the acceptor's bytes did not reach the dialer while its stdout was not read: $NK_MATCH"
	expect_data "$tag.dial" "$NK_TMP/a.bin"
	refuse_log "$tag.dial" '^\[nk\] .* exited' "the dialer ended while the acceptor's stdout was stalled"
	echo go >"$NK_TMP/$tag.go"
	nk_expect_exit "$tag.dial" 0 60
	nk_expect_exit "$tag.acc" 0 10
	expect_data "$tag.acc" "$NK_TMP/stall.bin"
}
stall_case stalltcp 'TCP stream with .* is up'
stall_case stalludp 'the data goes over the UDP session' --udp-only
nk_log "a stalled stdout: the acceptor goes on, the dialer waits, 20 MB arrive once it is read (TCP and UDP)"
rm -f "$NK_TMP"/stall*.bin "$NK_TMP"/stall*.out

# --- 5. SIGTERM while waiting for a dialer: nothing lost, exit 0
start_acceptor stopped.acc "$NK_TMP/a.bin"
nk_stop stopped.acc
rc=$?
[ $rc = 0 ] || nk_fail "an acceptor stopped while waiting exited $rc"
expect_log stopped.acc 'stopped by a signal; nothing was lost' "no word about the signal"

nk_pass "accept/dial on loopback: UDP fallback both ways (300 KB, 20 MB), mixed --udp-only, forged Initials, forged REPLY, idle TCP candidates, SIGTERM, stalled stdout"
