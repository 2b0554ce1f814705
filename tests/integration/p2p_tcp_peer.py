#!/usr/bin/env python3
"""TCP ends for the port-forwarding tests (test_p2p_stream.sh).

server PORT        accepts on 127.0.0.1:PORT; per connection: reads until EOF and answers with
                   the SHA-256 (hex) of what it got, then closes -- unless the data starts with
                   b"RST", then it closes at once with an RST (SO_LINGER 0). Prints "listening".
client PORT half   sends 2 MB of random bytes, shutdown(SHUT_WR), reads the answer until EOF:
                   it must be the bytes' SHA-256 (the half-close went through both ways)
client PORT rst    sends b"RST...", then reads: the connection must be reset (ECONNRESET)
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
    ls.listen(16)
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


def client(port, mode):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if mode == "half":
        data = os.urandom(2_000_000)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
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
