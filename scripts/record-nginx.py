#!/usr/bin/env python3
"""Record real nginx `hash $request_uri consistent` mappings, for lbkit's nginx preset tests.

Starts one nginx (loopback only) holding an upstream with `hash $request_uri consistent` over
loopback servers that answer with their own port, sends it every key, and writes one TSV per
server set: `key<TAB>server` where server is the `127.0.0.1:PORT` that answered. A set may name
"dead" servers (a port nothing listens on): nginx then falls back along the ring exactly as it
does in production, and the recorded server is the fallback.

Usage: scripts/record-nginx.py OUT_DIR   (needs nginx on PATH or in /usr/sbin)
"""
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BASE_PORT = 18100
PROXY_PORT = 18099

# name -> list of (port, weight, alive)
SETS = {
    "one": [(BASE_PORT, 1, True)],
    "three": [(BASE_PORT + i, 1, True) for i in range(3)],
    "ten-weighted": [(BASE_PORT + i, [1, 2, 3, 5][i % 4], True) for i in range(10)],
    "fifty-weighted": [(BASE_PORT + i, 1 + (i * 7) % 4, True) for i in range(50)],
    "ten-two-dead": [(BASE_PORT + i, 1 + i % 3, i not in (2, 7)) for i in range(10)],
}


def keys():
    """A deterministic mix of key shapes (the URI nginx hashes is `/` + key)."""
    out = [f"user:{i:08d}" for i in range(2500)]
    out += [f"k{i}" for i in range(1500)]
    x = 12345
    for _ in range(1000):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append(f"s/{x:x}/{x >> 40}")
    return out


def config(prefix, servers):
    upstream = "\n".join(
        f"        server 127.0.0.1:{port} weight={weight} max_fails=1 fail_timeout=60s;"
        for port, weight, _ in servers
    )
    backends = "\n".join(
        f"    server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"127.0.0.1:{port}\"; }} }}"
        for port, _, alive in servers
        if alive
    )
    return f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream pool {{
        hash $request_uri consistent;
{upstream}
    }}
    server {{
        listen 127.0.0.1:{PROXY_PORT};
        location / {{ proxy_pass http://pool; proxy_connect_timeout 2s; }}
    }}
{backends}
}}
"""


def record(nginx, name, servers, out_dir):
    prefix = tempfile.mkdtemp(prefix="lbkit-nginx-")
    with open(f"{prefix}/nginx.conf", "w") as f:
        f.write(config(prefix, servers))
    proc = subprocess.Popen([nginx, "-p", prefix, "-c", f"{prefix}/nginx.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", PROXY_PORT, timeout=1).connect()
                break
            except OSError:
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", PROXY_PORT, timeout=5)
        lines = []
        for key in keys():
            conn.request("GET", "/" + key)
            resp = conn.getresponse()
            body = resp.read().decode()
            if resp.status != 200:
                raise SystemExit(f"{name}: key {key!r}: HTTP {resp.status}")
            lines.append(f"{key}\t{body}\n")
        with open(os.path.join(out_dir, f"nginx-{name}.tsv"), "w") as f:
            f.write(f"# nginx {nginx_version(nginx)}: hash $request_uri consistent; key = URI without the leading /\n")
            f.write("# servers: " + " ".join(
                f"127.0.0.1:{p}={w}{'' if alive else '(dead)'}" for p, w, alive in servers) + "\n")
            f.writelines(lines)
        print(f"nginx-{name}: {len(lines)} keys", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


def nginx_version(nginx):
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    return out.split("/", 1)[-1]


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        raise SystemExit("nginx not found: apt-get install nginx")
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, servers in SETS.items():
        record(nginx, name, servers, sys.argv[1])


if __name__ == "__main__":
    main()
