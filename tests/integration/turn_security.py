#!/usr/bin/env python3
"""Security checks against a running `natkit turn-server` on real sockets (used by
test_turn_security.sh). A tiny independent STUN/TURN encoder, so the server is judged by
something other than natkit's own codec.

usage: turn_security.py PORT USER PASS REALM STALE_NONCE_SECONDS
"""
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import sys
import time

COOKIE = 0x2112A442
PORT, USER, PASS, REALM, STALE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
SERVER = ("127.0.0.1", int(PORT))
KEY = hashlib.md5(f"{USER}:{REALM}:{PASS}".encode()).digest()
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def xor_addr(ip, port, tid):
    a = ipaddress.ip_address(ip)
    xport = port ^ (COOKIE >> 16)
    if a.version == 4:
        x = bytes(b ^ c for b, c in zip(a.packed, struct.pack("!I", COOKIE)))
        return struct.pack("!BBH", 0, 1, xport) + x
    pad = struct.pack("!I", COOKIE) + tid
    return struct.pack("!BBH", 0, 2, xport) + bytes(b ^ c for b, c in zip(a.packed, pad))


def message(method, attrs, nonce=None, key=None, cls=0):
    tid = os.urandom(12)
    t = ((method & 0xF80) << 2) | ((method & 0x70) << 1) | (method & 0xF) | cls
    body = b"".join(attr(a, v(tid) if callable(v) else v) for a, v in attrs)
    if nonce is not None:
        body += attr(0x0006, USER.encode()) + attr(0x0014, REALM.encode()) + attr(0x0015, nonce)
        hdr = struct.pack("!HHI", t, len(body) + 24, COOKIE) + tid
        mac = hmac.new(key or KEY, hdr + body, hashlib.sha1).digest()
        body += attr(0x0008, mac)
    return struct.pack("!HHI", t, len(body), COOKIE) + tid + body


def parse(p):
    t, n, _ = struct.unpack("!HHI", p[:8])
    attrs, off = {}, 20
    while off + 4 <= 20 + n:
        at, al = struct.unpack("!HH", p[off:off + 4])
        attrs.setdefault(at, p[off + 4:off + 4 + al])
        off += 4 + al + (-al % 4)
    code = None
    if 0x0009 in attrs:
        e = attrs[0x0009]
        code = (e[2] & 7) * 100 + e[3]
    return t, code, attrs


def exchange(sock, msg):
    sock.send(msg)
    sock.settimeout(5)
    p = sock.recv(4096)
    return p, parse(p)


def new_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(SERVER)
    return s


REQ_UDP = (0x0019, bytes([17, 0, 0, 0]))
s = new_socket()

# 1. unauthenticated: only a bounded 401 with REALM and NONCE, whatever the request's size
tiny = message(0x003, [])
p, (t, code, attrs) = exchange(s, tiny)
check(code == 401 and set(attrs) == {0x0009, 0x0014, 0x0015}, f"20-byte Allocate: 401 with REALM+NONCE only ({len(p)} bytes)")
challenge_len = len(p)
check(challenge_len <= 20 + 24 + 4 + len(REALM) + 3 + 4 + 32, f"challenge size {challenge_len} bytes is bounded")
big = message(0x003, [REQ_UDP, (0x8022, b"x" * 1000)])
p, (t, code, attrs) = exchange(s, big)
check(code == 401 and len(p) == challenge_len, f"{len(big)}-byte Allocate: the same {len(p)}-byte 401")
for method, name in ((0x004, "Refresh"), (0x008, "CreatePermission"), (0x009, "ChannelBind")):
    p, (t, code, attrs) = exchange(s, message(method, [REQ_UDP]))
    check(code == 401 and len(p) == challenge_len, f"unauthenticated {name}: 401, {len(p)} bytes")
nonce = attrs[0x0015]

# 2. bad integrity (wrong password) and a forged nonce
p, (t, code, attrs) = exchange(s, message(0x003, [REQ_UDP], nonce, key=hashlib.md5(b"x").digest()))
check(code == 401 and 0x0008 not in attrs, "wrong password: 401 without MESSAGE-INTEGRITY")
p, (t, code, attrs) = exchange(s, message(0x003, [REQ_UDP], b"00000000" + b"a" * 24))
check(code == 438 and 0x0015 in attrs, "forged nonce: 438 with a fresh NONCE")

# 3. stale nonce (the server runs with --stale-nonce STALE)
time.sleep(STALE + 1.1)  # the nonce's age is what is tested, not readiness
p, (t, code, attrs) = exchange(s, message(0x003, [REQ_UDP], nonce))
check(code == 438, f"nonce older than {STALE:.0f} s: 438")
nonce = attrs.get(0x0015, nonce)
p, (t, code, attrs) = exchange(s, message(0x003, [REQ_UDP, (0x0017, bytes([2, 0, 0, 0]))], nonce))
check(code == 440, f"REQUESTED-ADDRESS-FAMILY IPv6 on an IPv4 relay: 440 (got {code})")
p, (t, code, attrs) = exchange(s, message(0x003, [REQ_UDP, (0x001A, b"")], nonce))
check(t == 0x0103, "the fresh nonce allocates, with DONT-FRAGMENT (DF set on the relay socket)")

# 4. every denied range and mapped form: 403 (CreatePermission and ChannelBind)
denied = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
          "0.0.0.1", "224.0.0.1", "255.255.255.255", "::1", "::", "fd00::1", "fe80::1", "ff02::1",
          "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::a00:1",
          "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
          "::7f00:1", "::ffff:0:c0a8:101", "64:ff9b:1::a00:1", "64:ff9b:1:7f00:0:100:808:808",
          "2001:0:a00:1:8000:63bf:3fff:fdd2"]
for ip in denied:
    p, (t, code, attrs) = exchange(s, message(0x008, [(0x0012, lambda tid, ip=ip: xor_addr(ip, 9, tid))], nonce))
    check(code == 403, f"CreatePermission {ip}: 403 (got {code})")
    p, (t, code, attrs) = exchange(s, message(0x009, [(0x000C, b"\x40\x00\x00\x00"),
                                                      (0x0012, lambda tid, ip=ip: xor_addr(ip, 9, tid))], nonce))
    check(code == 403, f"ChannelBind {ip}: 403 (got {code})")
p, (t, code, attrs) = exchange(s, message(0x008, [(0x0012, lambda tid: xor_addr("8.8.8.8", 53, tid))], nonce))
check(t == 0x0108, "CreatePermission 8.8.8.8 (public): success")
p, (t, code, attrs) = exchange(s, message(0x004, [(0x000D, b"\0\0\0\0")], nonce))
check(t == 0x0104, "Refresh 0: the allocation is gone")

# 5. what is not TURN is dropped without an answer (and counted: the caller reads the stats line)
s.send(b"\xde\xad\xbe\xef not stun")
s.send(message(0x001, [(0x8022, b"x" * 6000)]))  # larger than any TURN message the server takes
s.settimeout(0.5)
try:
    s.recv(4096)
    check(False, "junk and an oversized datagram: no answer")
except socket.timeout:
    check(True, "junk and an oversized datagram: no answer")
p, (t, code, attrs) = exchange(s, message(0x001, []))
check(t == 0x0101, "the server still answers a Binding after them")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all security checks passed")
