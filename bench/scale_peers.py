#!/usr/bin/env python3
"""The configuration of issue 15's scale scenario for HAProxy and nginx, and their start cost.

    bench/scale_peers.py config --hosts N --dir D --listen IP:PORT --ca CA [--ip 127.0.0.1]
    bench/scale_peers.py ready --port IP:PORT -- COMMAND...

"config" writes D/haproxy.cfg and D/nginx.conf for the hosts of bench/gen_hosts.py
(svcNNNNNN.example.com): one HAProxy backend per host (TLS to the host's address on 443,
verify required against CA, SNI and verifyhost the host name), chosen by the Host header
through a map; one nginx upstream per host (keepalive 4), chosen by a map of $host, the
proxied connection verified against CA with the host as SNI and name. The same job as
egressgw's per-host ServiceEntry, VirtualService and DestinationRule (tls SIMPLE).

"ready" starts COMMAND and prints "ready_s=... cpu_s=... rss_kb=..." when IP:PORT accepts
a connection (both proxies bind their listeners once the whole configuration is loaded):
wall time from exec, CPU (user + system) and RSS of the process and its children then.
"""
import os
import socket
import subprocess
import sys
import time

from gen_hosts import host_name


def write_configs(n, d, listen, ca, ip):
    host, port = listen.rsplit(":", 1)
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    with open(os.path.join(d, "hosts.map"), "w") as f:
        for i in range(n):
            f.write(f"{host_name(i)} b{i}\n")
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(f"""global
  maxconn 4000
defaults
  mode http
  timeout connect 10s
  timeout client 60s
  timeout server 60s
frontend fe
  bind {host}:{port}
  use_backend %[req.hdr(host),lower,map({d}/hosts.map)]
""")
        for i in range(n):
            h = host_name(i)
            f.write(f"backend b{i}\n  http-reuse always\n  server s {ip}:443 ssl ca-file {ca} "
                    f"verify required sni str({h}) verifyhost {h}\n")
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        user = "user root;" if os.getuid() == 0 else ""
        f.write(f"""{user} worker_processes 1; daemon off; master_process off;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
  map_hash_bucket_size 128; map_hash_max_size {2 * n + 64};
  variables_hash_max_size 1024;
  map $host $up {{
""")
        for i in range(n):
            f.write(f"    {host_name(i)} u{i};\n")
        f.write("  }\n")
        for i in range(n):
            f.write(f"  upstream u{i} {{ server {ip}:443; keepalive 4; }}\n")
        f.write(f"""  server {{
    listen {host}:{port};
    location / {{
      proxy_pass https://$up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_trusted_certificate {ca}; proxy_ssl_verify on;
      proxy_ssl_name $host; proxy_ssl_server_name on; proxy_ssl_session_reuse on;
    }}
  }}
}}
""")


def tree(pid):
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def cpu_rss(pid):
    cpu, rss = 0.0, 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open(f"/proc/{p}/status") as f:
                rss += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return cpu, rss


def ready(port, cmd, timeout=300.0):
    host, p = port.rsplit(":", 1)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited {proc.returncode} before it listened")
            try:
                socket.create_connection((host, int(p)), timeout=0.5).close()
                break
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{cmd[0]} did not listen in time")
            time.sleep(0.002)
        t = time.monotonic() - t0
        cpu, rss = cpu_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"ready_s={t:.3f} cpu_s={cpu:.2f} rss_kb={rss}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "config":
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("--hosts", type=int, required=True)
        ap.add_argument("--dir", required=True)
        ap.add_argument("--listen", required=True)
        ap.add_argument("--ca", required=True)
        ap.add_argument("--ip", default="127.0.0.1")
        a = ap.parse_args(sys.argv[2:])
        write_configs(a.hosts, a.dir, a.listen, a.ca, a.ip)
        return 0
    if len(sys.argv) > 4 and sys.argv[1] == "ready" and sys.argv[2] == "--port" and sys.argv[4] == "--":
        ready(sys.argv[3], sys.argv[5:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
