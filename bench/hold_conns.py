#!/usr/bin/python3
"""Opens N keep-alive HTTP/1.1 connections to a proxy and holds them idle.

Each connection sends one GET and reads the whole response (Content-Length framed), so the
proxy sees a keep-alive connection that has served a request and now waits for the next.
Once all are open it prints "held N" on stdout and sleeps until killed (SIGTERM). Used by
bench/s4.sh to measure a proxy's memory per idle downstream connection.

Usage: hold_conns.py HOST PORT N PATH [HOSTHEADER]
Exits 1 (with the reason on stderr) if a connection fails or a response is not 200.
"""
import resource
import socket
import struct
import sys
import time


def read_response(s):
    """Reads one response; returns its status code. Needs Content-Length framing."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length: %r" % lines[0])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        body += chunk
    return status


def main():
    host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    hosthdr = sys.argv[5] if len(sys.argv) > 5 else host
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, hosthdr)).encode()
    socks = []
    for i in range(n):
        try:
            s = socket.create_connection((host, port), timeout=10)
            # Closed with a reset when we exit: no TIME_WAIT left behind for 10,000 ports.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(req)
            status = read_response(s)
        except (OSError, ValueError) as e:
            sys.stderr.write("hold_conns: connection %d of %d: %s\n" % (i + 1, n, e))
            return 1
        if status != 200:
            sys.stderr.write("hold_conns: connection %d of %d: status %d\n" % (i + 1, n, status))
            return 1
        socks.append(s)
    print("held %d" % len(socks), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
