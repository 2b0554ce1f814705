#!/usr/bin/env python3
"""Pastes a file into an interactive bash on a pseudo-terminal, as a person would.

    pty_paste.py FILE DIR SECONDS DONE-REGEX

Runs `bash --norc --noprofile -i` on a new pty (its own session, job control on, so `cmd &`
runs in a background process group with the terminal as stdin) in DIR, writes FILE's bytes to
the terminal all at once, and copies everything the terminal shows to stdout until a line
matches DONE-REGEX (exit 0) or SECONDS pass (exit 1). Every process left in the shell's
session is then sent SIGKILL (found by session id in /proc: only what this shell started).
"""
import os
import pty
import re
import select
import signal
import sys
import threading
import time


def session_members(sid):
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session
            pids.append(int(name))
    return pids


def main():
    path, workdir, seconds, done = sys.argv[1], sys.argv[2], float(sys.argv[3]), re.compile(sys.argv[4])
    with open(path, "rb") as f:
        text = f.read()
    env = dict(os.environ, PS1="$ ", PS2="> ", HISTFILE="/dev/null", TERM="dumb")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(workdir)
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)

    def paste():
        view = memoryview(text)
        while view:
            n = os.write(fd, view[:512])  # blocks while the terminal's input queue is full
            view = view[n:]

    writer = threading.Thread(target=paste, daemon=True)
    writer.start()
    deadline = time.monotonic() + seconds
    rc, buf = 1, b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the shell is gone
            break
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        if any(done.search(l.decode("utf-8", "replace")) for l in lines):
            rc = 0
            break
    if rc != 0:
        print(f"\n[pty_paste] no line matching {done.pattern!r} within {seconds:.0f} s", flush=True)
    for p in session_members(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    sys.exit(rc)


if __name__ == "__main__":
    main()
