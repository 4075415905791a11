#!/usr/bin/env python3
"""Small, bounded HTTP/1.1 clients for benches/proxy.sh (127.0.0.1 only, standard library only).

  seq  PORT PATH COUNT EXPECT [Header: value ...]
       COUNT requests, one after the other, on one keep-alive connection (reopened only if the
       server closes it). Every answer must have status EXPECT, or the run fails. A fixed
       request count, so instruction and syscall counts can be divided by it.
  idle PORT PATH COUNT HOLD_SECONDS
       Opens COUNT connections, sends one keep-alive `GET PATH` on each, reads the answer and
       keeps the socket open. Prints `ready OK FAILED` once all are done, then holds them for
       at most HOLD_SECONDS (or until SIGTERM) and closes them.
"""
import asyncio
import http.client
import resource
import signal
import sys
import time

HOST = "127.0.0.1"


def seq(port, path, count, expect, headers):
    hdrs = {}
    for h in headers:
        k, _, v = h.partition(":")
        hdrs[k.strip()] = v.strip()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    deadline = time.monotonic() + 600
    reopened = 0
    for i in range(count):
        if time.monotonic() > deadline:
            sys.exit(f"seq: still running after 600 s at request {i}")
        try:
            conn.request("GET", path, headers=hdrs)
            resp = conn.getresponse()
            resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closed an idle keep-alive connection: one retry on a new one.
            reopened += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("GET", path, headers=hdrs)
            resp = conn.getresponse()
            resp.read()
        if resp.status != expect:
            sys.exit(f"seq: request {i} to :{port}{path} got {resp.status}, expected {expect}")
        if resp.will_close:
            reopened += 1
    conn.close()
    print(f"seq: {count} requests, {reopened} reconnects", file=sys.stderr)


async def idle(port, path, count, hold):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
        except ValueError:
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        sys.exit(f"idle: open-file limit {soft} < {want}; raise `ulimit -Hn`")
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: keep-alive\r\n\r\n".encode()
    gate = asyncio.Semaphore(200)  # connects in flight: stays under the listen backlog
    writers = []
    failed = 0

    async def one():
        nonlocal failed
        async with gate:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), 20)
                w.write(req)
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 20)
                status = head.split(b" ", 2)[1]
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await asyncio.wait_for(r.readexactly(length), 20)
                if status != b"200":
                    raise RuntimeError(status)
                writers.append(w)
            except Exception:
                failed += 1

    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 300)
    print(f"ready {len(writers)} {failed} {time.monotonic() - start:.1f}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), hold)
    except asyncio.TimeoutError:
        pass
    for w in writers:
        w.transport.abort()


def main():
    mode = sys.argv[1]
    if mode == "seq":
        port, path, count, expect = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        seq(port, path, count, expect, sys.argv[6:])
    elif mode == "idle":
        port, path, count, hold = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
        asyncio.run(idle(port, path, count, hold))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
