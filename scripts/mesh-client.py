#!/usr/bin/python3
"""mesh-client: what the sidecar does on the application's behalf until `egressgw --role
sidecar` exists: send one HTTP/1.1 request to the egress gateway over ISTIO_MUTUAL (a
workload certificate, the gateway verified against the mesh root and its SPIFFE identity),
and print the response head the way `curl -sS -o /dev/null -D -` does.

Usage: mesh-client.py --identity DIR --gateway IP:PORT --sni NAME
                      [--expect-identity spiffe://...] [--body] URL
"""
import argparse
import socket
import ssl
import sys
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identity", required=True, help="dir with cert-chain.pem, key.pem, root-cert.pem")
    ap.add_argument("--gateway", required=True, help="IP:PORT of the gateway's listener")
    ap.add_argument("--sni", required=True, help="server name to send (the DestinationRule's sni)")
    ap.add_argument("--expect-identity", help="SPIFFE id the gateway must present")
    ap.add_argument("--body", action="store_true", help="print the body too")
    ap.add_argument("url")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, _, port = a.gateway.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(f"{a.identity}/cert-chain.pem", f"{a.identity}/key.pem")
    ctx.load_verify_locations(f"{a.identity}/root-cert.pem")
    ctx.check_hostname = False   # mesh certificates carry SPIFFE URIs, checked below
    with socket.create_connection((host, int(port)), timeout=15) as raw, \
            ctx.wrap_socket(raw, server_hostname=a.sni) as s:
        if a.expect_identity:
            sans = [v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "URI"]
            if a.expect_identity not in sans:
                sys.exit(f"mesh-client: gateway identity {sans} is not {a.expect_identity}")
        path = (u.path or "/") + (("?" + u.query) if u.query else "")
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: curl/7.88.1\r\n"
                  f"Accept: */*\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    sys.stdout.write(head.decode("latin-1").replace("\r\n", "\n") + "\n\n")
    if a.body:
        sys.stdout.write(body.decode("utf-8", "replace"))


if __name__ == "__main__":
    main()
