#!/usr/bin/env python3
"""Plain TCP baseline for bench/dataplane.sh: one file one way, as natkit connect -> listen
carries it (stdin of the sender, a file at the receiver).
  tcp_oneway.py recv IP PORT OUT_FILE   prints "listening" when ready, then, at the sender's
                                        FIN, "plain: received N seconds S" (S from the
                                        accepted connection to the last byte written)
  tcp_oneway.py send IP PORT IN_FILE    sends the file (sendfile), half-closes, waits for
                                        the receiver to close
Kernel defaults for everything (buffers, congestion control: what `ss -i` would show).
"""
import os
import socket
import sys
import time


def recv(ip, port, out_path):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, int(port)))
    ls.listen(1)
    ls.settimeout(30)
    print("listening", flush=True)
    sock, _ = ls.accept()
    ls.close()
    sock.settimeout(120)
    t0 = time.monotonic()
    got = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    while True:
        n = sock.recv_into(buf)
        if n == 0:
            break
        off = 0
        while off < n:
            off += os.write(fd, view[off:n])
        got += n
    os.close(fd)
    secs = time.monotonic() - t0
    sock.close()
    print("plain: received %d seconds %.3f" % (got, secs), flush=True)


def send(ip, port, in_path):
    sock = socket.create_connection((ip, int(port)), timeout=30)
    sock.settimeout(120)
    with open(in_path, "rb") as f:
        sock.sendfile(f)
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()


def main():
    mode, ip, port, path = sys.argv[1:5]
    if mode == "recv":
        recv(ip, port, path)
    elif mode == "send":
        send(ip, port, path)
    else:
        sys.exit("usage: tcp_oneway.py recv|send IP PORT FILE")


if __name__ == "__main__":
    main()
