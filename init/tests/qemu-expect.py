#!/usr/bin/env python3
"""Runs a command (QEMU with its serial console on stdio), waits for patterns in its output
and sends lines to it, in the order given; kills it at the timeout. Exit 0 when every
--expect matched and the command ended, 1 otherwise. The whole output goes to --log.

usage: qemu-expect.py --timeout S --log FILE [--expect REGEX | --send LINE]... -- COMMAND...
"""
import os
import re
import selectors
import subprocess
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    if "--" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    split = args.index("--")
    opts, cmd = args[:split], args[split + 1:]
    timeout, log, script = 120.0, None, []
    i = 0
    while i < len(opts):
        o, v = opts[i], opts[i + 1]
        if o == "--timeout":
            timeout = float(v)
        elif o == "--log":
            log = v
        elif o in ("--expect", "--send"):
            script.append((o[2:], v))
        else:
            print(f"unknown option {o}", file=sys.stderr)
            return 2
        i += 2
    deadline = time.monotonic() + timeout
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.set_blocking(p.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    out = b""
    pos = 0
    ok = True
    logf = open(log, "wb") if log else None
    eof = False

    def pump(wait: float) -> None:
        nonlocal out, eof
        for _key, _ in sel.select(timeout=wait):
            chunk = p.stdout.read1(65536) if hasattr(p.stdout, "read1") else p.stdout.read(65536)
            if chunk is None:
                return
            if not chunk:
                eof = True
                sel.unregister(p.stdout)
                return
            out += chunk
            if logf:
                logf.write(chunk)
                logf.flush()

    for kind, value in script:
        if kind == "send":
            time.sleep(0.5)
            p.stdin.write(value.encode() + b"\n")
            p.stdin.flush()
            continue
        rx = re.compile(value.encode(), re.M)
        while True:
            m = rx.search(out, pos)
            if m:
                pos = m.end()
                break
            if eof or time.monotonic() > deadline:
                print(f"qemu-expect: did not see {value!r} ({'output ended' if eof else 'timeout'})", file=sys.stderr)
                ok = False
                break
            pump(0.2)
        if not ok:
            break
    while not eof and time.monotonic() < deadline:
        pump(0.2)
    if p.poll() is None:
        p.kill()
        ok = ok and eof
        if not eof:
            print("qemu-expect: killed at the timeout", file=sys.stderr)
    p.wait()
    if logf:
        logf.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
