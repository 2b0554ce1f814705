#!/usr/bin/env python3
"""Helpers for test_source_limits.sh (loopback only, bounded in count and time).

  tcp-flood HOST PORT -n N [--bind IP]
      Opens N idle TCP connections from IP (never sends a byte), prints
      "connected=C failed=F" once every attempt has ended, then one line
      "open=O closed=X t_ms=T" each time the server closes some (T: ms since
      the connects ended), "all closed t_ms=T connect_ms=C start_ms=S" when
      none is left (C: how long the connects took; S: ms since the first
      connect began, so never less than the server's deadline); runs until
      killed or all are closed (at most --max-seconds). The first of these lines
      ("open=C closed=0 t_ms=0") comes right after the connects.
  udp-flood HOST PORT -n N --kind allocate|binding [--bind IP]
      Sends N unauthenticated 20-byte requests as fast as the socket takes
      them, reads answers until 1 s passes without one, prints one JSON object
      {"sent","answers","answer_bytes","request_bytes","elapsed_ms","kernel_drops"}
      (kernel_drops: how much the host's UDP RcvbufErrors grew meanwhile, the
      datagrams a full socket buffer lost before any program saw them).
  hub-pair HOST PORT --bind-a IP --bind-b IP
      Registers two peers (fresh Ed25519 keys) at a natkit hub from two local
      IPs; A sends a SIGNAL to B; exits 0 when B gets it tagged with A's ID.
"""
import argparse
import json
import os
import resource
import select
import socket
import struct
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def now_ms():
    return time.monotonic() * 1000.0


def say(line):
    print(line, flush=True)


# ---- idle TCP flood ----

def tcp_flood(a):
    raise_nofile()
    ep = select.epoll()
    socks = {}
    t_start = now_ms()
    for _ in range(a.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if a.bind:
            s.bind((a.bind, 0))
        try:
            s.connect((a.host, a.port))
        except BlockingIOError:
            pass
        socks[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLOUT)
    pending, connected, failed = set(socks), set(), 0
    deadline = now_ms() + 30000
    while pending and now_ms() < deadline:
        for fd, _ in ep.poll(1.0):
            if fd not in pending:
                continue
            pending.discard(fd)
            err = socks[fd].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                connected.add(fd)
                ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
            else:
                failed += 1
                ep.unregister(fd)
    failed += len(pending)
    say("connected=%d failed=%d" % (len(connected), failed))
    t0 = now_ms()
    open_fds, closed = set(connected), 0
    say("open=%d closed=0 t_ms=0" % len(open_fds))
    end = t0 + a.max_seconds * 1000
    while open_fds and now_ms() < end:
        changed = False
        for fd, _ in ep.poll(0.2):
            if fd not in open_fds:
                continue
            try:
                data = socks[fd].recv(4096)
            except (ConnectionResetError, BlockingIOError, OSError) as e:
                if isinstance(e, BlockingIOError):
                    continue
                data = b""
            if data:
                continue  # a server that talks first (the hub's challenge): still open
            open_fds.discard(fd)
            ep.unregister(fd)
            closed += 1
            changed = True
        if changed:
            say("open=%d closed=%d t_ms=%d" % (len(open_fds), closed, now_ms() - t0))
    if not open_fds:
        t = now_ms()
        say("all closed t_ms=%d connect_ms=%d start_ms=%d" % (t - t0, t0 - t_start, t - t_start))
    else:
        say("timeout open=%d" % len(open_fds))
    return 0


# ---- UDP request flood ----

def stun_request(method):
    return struct.pack("!HHI12s", method, 0, 0x2112A442, os.urandom(12))


def udp_rcvbuf_errors():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def udp_flood(a):
    drops0 = udp_rcvbuf_errors()
    method = 0x0003 if a.kind == "allocate" else 0x0001
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if a.bind:
        s.bind((a.bind, 0))
    s.connect((a.host, a.port))
    s.setblocking(False)
    sent = answers = answer_bytes = request_bytes = 0
    t0 = now_ms()
    last = t0

    def drain():
        nonlocal answers, answer_bytes, last
        while True:
            try:
                d = s.recv(65536)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue
            answers += 1
            answer_bytes += len(d)
            last = now_ms()

    while sent < a.n:
        r = stun_request(method)
        try:
            s.send(r)
        except BlockingIOError:
            select.select([s], [s], [], 0.05)
            drain()
            continue
        sent += 1
        request_bytes += len(r)
        if sent % 64 == 0:
            drain()
    while True:
        r, _, _ = select.select([s], [], [], 1.0)
        if not r:
            break
        drain()
    say(json.dumps({"sent": sent, "answers": answers, "answer_bytes": answer_bytes,
                    "request_bytes": request_bytes, "elapsed_ms": int(last - t0),
                    "kernel_drops": udp_rcvbuf_errors() - drops0}))
    return 0


# ---- two hub peers ----

T_CHALLENGE, T_REGISTER, T_REGISTERED, T_SIGNAL, T_CLOSE = 0x01, 0x02, 0x03, 0x13, 0x7F


def frame(t, body):
    return struct.pack("!BBH", t, 0, len(body)) + body


class Peer:
    def __init__(self, host, port, bind, deadline):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives import serialization
        self.key = Ed25519PrivateKey.generate()
        self.id = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.s = socket.create_connection((host, port), timeout=10, source_address=(bind, 0))
        self.rest = b""
        self.deadline = deadline
        t, body, self.rest = read_frame_with(self.s, b"", deadline)
        if t != T_CHALLENGE:
            raise ValueError("first frame %#x, not CHALLENGE" % t)
        version, challenge = body[0], body[1:33]
        hub = struct.pack("!BH", 4, port) + socket.inet_aton(host) + bytes(12)
        msg = b"natkit-hub-register-v1\x00" + bytes([version]) + challenge + hub + self.id
        self.s.sendall(frame(T_REGISTER, bytes([version]) + self.id + self.key.sign(msg)))
        t, body = self.next()
        if t != T_REGISTERED:
            raise ValueError("answer %#x to REGISTER, not REGISTERED: %r" % (t, body))

    def next(self):
        if len(self.rest) >= 4:
            t, _, n = struct.unpack("!BBH", self.rest[:4])
            if len(self.rest) >= 4 + n:
                body, self.rest = self.rest[4:4 + n], self.rest[4 + n:]
                return t, body
        t, body, more = read_frame_with(self.s, self.rest, self.deadline)
        self.rest = more
        return t, body


def read_frame_with(s, buf, deadline):
    while True:
        if len(buf) >= 4:
            t, _, n = struct.unpack("!BBH", buf[:4])
            if len(buf) >= 4 + n:
                return t, buf[4:4 + n], buf[4 + n:]
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame from the hub")
        s.settimeout(left)
        d = s.recv(65536)
        if not d:
            raise ConnectionError("hub closed the connection")
        buf += d


def hub_pair(a):
    deadline = time.monotonic() + a.timeout
    t0 = now_ms()
    pa = Peer(a.host, a.port, a.bind_a, deadline)
    pb = Peer(a.host, a.port, a.bind_b, deadline)
    registered_ms = now_ms() - t0
    payload = os.urandom(16)
    pa.s.sendall(frame(T_SIGNAL, pb.id + payload))
    while True:
        t, body = pb.next()
        if t == T_SIGNAL:
            break
    if body[:32] != pa.id or body[32:] != payload:
        say(json.dumps({"ok": False, "error": "signal not from A or altered"}))
        return 1
    say(json.dumps({"ok": True, "registered_ms": int(registered_ms)}))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("tcp-flood")
    f.add_argument("host")
    f.add_argument("port", type=int)
    f.add_argument("-n", type=int, required=True)
    f.add_argument("--bind")
    f.add_argument("--max-seconds", type=float, default=120)
    u = sub.add_parser("udp-flood")
    u.add_argument("host")
    u.add_argument("port", type=int)
    u.add_argument("-n", type=int, required=True)
    u.add_argument("--kind", choices=["allocate", "binding"], required=True)
    u.add_argument("--bind")
    h = sub.add_parser("hub-pair")
    h.add_argument("host")
    h.add_argument("port", type=int)
    h.add_argument("--bind-a", required=True)
    h.add_argument("--bind-b", required=True)
    h.add_argument("--timeout", type=float, default=10)
    a = p.parse_args()
    if getattr(a, "n", 0) > 10000:
        p.error("-n: at most 10000")
    return {"tcp-flood": tcp_flood, "udp-flood": udp_flood, "hub-pair": hub_pair}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
