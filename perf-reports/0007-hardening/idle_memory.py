#!/usr/bin/env python3
"""Idle keep-alive connection memory: ringgate builds vs nginx, side by side in one run.

usage: perf-reports/0007-hardening/idle_memory.py [--conns N] [--silent N] NAME=BINARY...

Each NAME=BINARY is a ringgate binary (e.g. before=/tmp/ringgate-before after=target/release/
ringgate); nginx is always measured too (NAME "nginx"). Every proxy runs one worker on the same
loopback upstream (an nginx answering 200 "ok" with keep-alive), in turn:
  1. start it, send 200 warm-up requests on one connection, read its RSS ("base");
  2. open N client connections, each sends one GET and reads the response, then stays open and
     silent (keep-alive idle), plus --silent connections that never send anything; read RSS
     ("idle"), and for ringgate the admin API's ringgate_conn_buffers_in_use;
  3. close every client connection; read RSS 1 s and 10 s later ("closed", "closed+10s").
RSS is VmRSS from /proc of all the proxy's processes (nginx: master and worker). Per connection
is (idle - base) / (N + silent). Raises its own RLIMIT_NOFILE to the hard limit (the proxies
inherit it). Only processes started here are stopped, by their PID. Loopback only.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


def wait_port(port, within=10.0):
    t0 = time.time()
    while time.time() - t0 < within:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def get(sock, path=b"/"):
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(4096)
        if not d:
            raise SystemExit("connection closed before a response")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        body += sock.recv(4096)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected response: {head[:40]!r}")


def nginx_conf(d, port, body, upstream=None):
    loc = (
        f"proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";"
        if upstream
        else f"return 200 \"{body}\";"
    )
    ups = f"upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}" if upstream else ""
    conf = f"""worker_processes 1;
daemon off;
worker_rlimit_nofile 60000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  {ups}
  server {{ listen 127.0.0.1:{port}; location / {{ {loc} }} }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def metric(admin, name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read()
    except OSError:
        return None
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def measure(name, pids, port, conns, silent, admin=None):
    warm = socket.create_connection(("127.0.0.1", port))
    for _ in range(200):
        get(warm)
    warm.close()
    time.sleep(1.0)
    base = rss_kib(pids)
    held = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        get(s)
        held.append(s)
    for _ in range(silent):
        held.append(socket.create_connection(("127.0.0.1", port)))
    time.sleep(2.0)
    idle = rss_kib(pids)
    bufs = metric(admin, "ringgate_conn_buffers_in_use") if admin else None
    for s in held:
        s.close()
    time.sleep(1.0)
    closed = rss_kib(pids)
    time.sleep(9.0)
    closed10 = rss_kib(pids)
    n = conns + silent
    per = (idle - base) * 1024 / n
    print(
        f"{name:>12}  base {base/1024:7.1f} MB  idle {idle/1024:7.1f} MB  "
        f"per conn {per:7.0f} B  closed {closed/1024:7.1f} MB  closed+10s {closed10/1024:7.1f} MB"
        + (f"  conn_buffers_in_use {bufs:.0f}" if bufs is not None else ""),
        flush=True,
    )


def main():
    args = sys.argv[1:]
    conns, silent = 10000, 0
    builds = []
    while args:
        a = args.pop(0)
        if a == "--conns":
            conns = int(args.pop(0))
        elif a == "--silent":
            silent = int(args.pop(0))
        elif "=" in a:
            builds.append(tuple(a.split("=", 1)))
        else:
            raise SystemExit(__doc__)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"conns {conns} keep-alive idle + {silent} silent; RLIMIT_NOFILE {hard}; "
          f"MIMALLOC env: {[k + '=' + v for k, v in os.environ.items() if k.startswith('MIMALLOC')]}")
    d = tempfile.mkdtemp(prefix="idle-memory-")
    procs = []
    try:
        up_port = free_port()
        os.makedirs(f"{d}/up")
        procs.append(subprocess.Popen(
            ["nginx", "-c", nginx_conf(f"{d}/up", up_port, "ok"), "-p", f"{d}/up"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(up_port)
        for name, binary in builds:
            port, admin = free_port(), free_port()
            cfg = f"{d}/{name}.toml"
            with open(cfg, "w") as f:
                f.write(f'version = "idle"\n[[listeners]]\naddress = "127.0.0.1:{port}"\n'
                        f'[admin]\naddress = "127.0.0.1:{admin}"\n'
                        f'[[upstreams]]\nname = "up"\nendpoints = ["127.0.0.1:{up_port}"]\n'
                        f'[[routes]]\nid = "all"\npath = {{ prefix = "/" }}\nupstream = "up"\n')
            prof = f"{d}/{name}.profile.toml"
            with open(prof, "w") as f:
                f.write("[workers]\ncount = 1\npin = false\n[limits]\n"
                        f"max_connections_per_core = {conns + silent + 100}\n")
            p = subprocess.Popen([binary, "serve", "--config", cfg, "--profile", prof],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port)
            measure(name, [p.pid], port, conns, silent, admin)
            p.send_signal(signal.SIGKILL)
            p.wait()
        port = free_port()
        os.makedirs(f"{d}/proxy")
        ng = subprocess.Popen(
            ["nginx", "-c", nginx_conf(f"{d}/proxy", port, "", upstream=up_port), "-p", f"{d}/proxy"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(ng)
        wait_port(port)
        measure("nginx", [ng.pid] + children(ng.pid), port, conns, silent)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
