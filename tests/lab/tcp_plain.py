#!/usr/bin/env python3
"""Plain TCP baseline for test_tcp_upgrade.sh: both ends send a file and receive
the other's at the same time (like natkit accept/dial), then print one line
"plain: sent N received M seconds S" timed from the connection to both done.
  tcp_plain.py server IP PORT SEND_FILE RECV_FILE   (prints "listening" when ready)
  tcp_plain.py client IP PORT SEND_FILE RECV_FILE
"""
import socket
import sys
import threading
import time


def transfer(sock, send_path, recv_path):
    t0 = time.monotonic()
    sent = [0]

    def sender():
        with open(send_path, "rb") as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                sock.sendall(chunk)
                sent[0] += len(chunk)
        sock.shutdown(socket.SHUT_WR)

    th = threading.Thread(target=sender)
    th.start()
    got = 0
    with open(recv_path, "wb") as out:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            out.write(data)
            got += len(data)
    th.join()
    secs = time.monotonic() - t0
    print("plain: sent %d received %d seconds %.3f" % (sent[0], got, secs), flush=True)


def main():
    mode, ip, port, send_path, recv_path = sys.argv[1:6]
    if mode == "server":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((ip, int(port)))
        ls.listen(1)
        ls.settimeout(30)
        print("listening", flush=True)
        sock, _ = ls.accept()
        ls.close()
    else:
        sock = socket.create_connection((ip, int(port)), timeout=30)
    sock.settimeout(60)
    transfer(sock, send_path, recv_path)
    sock.close()


if __name__ == "__main__":
    main()
