#!/usr/bin/env python3
"""A tiny, independent NAT behaviour prober for `natlab.sh check` (not STUN).

serve IP1 IP2: answers on IP1/IP2 x 3478/3479. A request "ID MODE" is answered
with "ID SEEN-IP:PORT" from: the same socket (MODE=echo), IP2:3479 (MODE=ipport)
or IP1:3479 (MODE=port).
probe IP1 IP2: prints "mapping=... filtering=... hairpin=yes|no" (RFC 4787 terms),
or "udp-blocked". Every wait is bounded.
"""
import select
import socket
import sys

PORTS = (3478, 3479)


def serve(ip1, ip2):
    socks = {}
    for ip in (ip1, ip2):
        for port in PORTS:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, port))
            socks[(ip, port)] = s
    while True:
        ready, _, _ = select.select(list(socks.values()), [], [])
        for s in ready:
            data, peer = s.recvfrom(2048)
            try:
                rid, mode = data.decode().split()
            except ValueError:
                continue
            out = {"echo": s, "ipport": socks[(ip2, 3479)], "port": socks[(ip1, 3479)]}.get(mode)
            if out is not None:
                out.sendto(("%s %s:%d" % (rid, peer[0], peer[1])).encode(), peer)


def ask(sock, dest, rid, mode, tries=3, wait=0.3):
    """Sends "rid mode" to dest; returns the mapped "IP:PORT" text or None."""
    for _ in range(tries):
        sock.sendto(("%s %s" % (rid, mode)).encode(), dest)
        while True:
            r, _, _ = select.select([sock], [], [], wait)
            if not r:
                break
            data, _ = sock.recvfrom(2048)
            parts = data.decode(errors="replace").split()
            if len(parts) == 2 and parts[0] == rid:
                return parts[1]
    return None


def fresh():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    return s


def probe(ip1, ip2):
    a = fresh()
    m1 = ask(a, (ip1, 3478), "1", "echo")
    if m1 is None:
        print("udp-blocked")
        return
    m2 = ask(a, (ip2, 3478), "2", "echo")
    m3 = ask(a, (ip2, 3479), "3", "echo")
    if m1 == m2:
        mapping = "endpoint-independent"
    elif m2 == m3:
        mapping = "address-dependent"
    else:
        mapping = "address-and-port-dependent"
    b = fresh()
    ask(b, (ip1, 3478), "4", "echo")
    if ask(b, (ip1, 3478), "5", "ipport") is not None:
        filtering = "endpoint-independent"
    else:
        c = fresh()
        ask(c, (ip1, 3478), "6", "echo")
        filtering = "address-dependent" if ask(c, (ip1, 3478), "7", "port") else "address-and-port-dependent"
    # hairpinning: socket d sends to a's mapped address (the one toward ip1:3478)
    d = fresh()
    ip, port = m1.rsplit(":", 1)
    d.sendto(b"hairpin", (ip, int(port)))
    r, _, _ = select.select([a], [], [], 0.5)
    hairpin = "no"
    if r:
        data, _ = a.recvfrom(2048)
        hairpin = "yes" if data == b"hairpin" else "no"


    print("mapping=%s filtering=%s hairpin=%s public=%s" % (mapping, filtering, hairpin, m1))


if __name__ == "__main__":
    {"serve": serve, "probe": probe}[sys.argv[1]](sys.argv[2], sys.argv[3])
