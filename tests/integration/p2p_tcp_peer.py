#!/usr/bin/env python3
"""TCP ends for the port-forwarding tests (test_p2p_stream.sh).

server PORT        accepts on 127.0.0.1:PORT; per connection: reads until EOF and answers with
                   the SHA-256 (hex) of what it got, then closes -- unless the data starts with
                   b"RST", then it closes at once with an RST (SO_LINGER 0). Prints "listening".
client PORT half   sends 2 MB of random bytes, shutdown(SHUT_WR), reads the answer until EOF:
                   it must be the bytes' SHA-256 (the half-close went through both ways)
client PORT rst    sends b"RST...", then reads: the connection must be reset (ECONNRESET)
client PORT many N opens N connections, all at once (each is connected and has sent 100 kB of
                   its own random bytes before any is half-closed), then half-closes each and
                   reads every answer: each must be the SHA-256 of its own bytes (all N were
                   open at the same time, since the server answers only at EOF)
"""
import hashlib
import os
import socket
import struct
import sys
import threading


def serve(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(256)  # 80 connections at once: a short queue overflows into SYN cookies, which reset
    print("listening", flush=True)

    def one(c):
        with c:
            h, first, data = hashlib.sha256(), b"", b""
            while True:
                data = c.recv(65536)
                if not data:
                    break
                if len(first) < 3:
                    first += data[: 3 - len(first)]
                    if first == b"RST":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return
                h.update(data)
            c.sendall(h.hexdigest().encode())

    while True:
        c, _ = ls.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def recv_all(s):
    """Everything the peer sends until its end of the stream."""
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            return got
        got += b


def many(port, n):
    conns = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        data = os.urandom(100_000)
        s.sendall(data)
        conns.append((s, data))
    for s, _ in conns:
        s.shutdown(socket.SHUT_WR)
    for i, (s, data) in enumerate(conns):
        got = recv_all(s)
        s.close()
        if got.decode(errors="replace") != hashlib.sha256(data).hexdigest():
            sys.exit(f"many: connection {i}: answer {got[:80]!r} is not the SHA-256 of its 100 kB")
    print(f"{n} connections ok")


def client(port, mode):
    if mode == "many":
        many(port, int(sys.argv[4]))
        return
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if mode == "half":
        data = os.urandom(2_000_000)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        if got.decode(errors="replace") != hashlib.sha256(data).hexdigest():
            sys.exit(f"half-close: answer {got[:80]!r} is not the SHA-256 of the 2 MB sent")
        print("half-close ok")
    else:
        s.sendall(b"RST please")
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            print("reset ok")
            return
        sys.exit("rst: the connection ended with a FIN, not a reset")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), sys.argv[3])
