"""Upstream TLS failure matrix (issue 6): every way an origination can fail ends in 503 UF
with the specific check that failed in the access log's UPSTREAM_TRANSPORT_FAILURE_REASON
and in the response body, and one more egressgw_upstream_tls_failure_total{reason="..."}.
The gateway never falls back to plaintext, and never reuses a pooled connection for a
request whose TLS settings differ.

Peers: `openssl s_server -www` per case, each on a loopback address of its own that the
gateway's hosts file names; certificates from small CAs made with `openssl ca` (any
validity window, revocation, CRLs). One gateway serves every case (plain HTTP front on
port 80, one ServiceEntry + VirtualService + DestinationRule per upstream)."""
import ssl
import subprocess
import uuid

import pytest

from conftest import Ctl
from gwlib import loopback_ip
from hardlib import (MiniCA, RawClient, RecordingServer, SServer, destination_rule_yaml,
                     log_entry, plain_gateway_yaml, service_entry_yaml, sh, start_gateway,
                     stats, tls_failures, virtual_service_yaml, write_hosts)


class Case:
    def __init__(self, host, category=None, reason=None, flags="UF"):
        self.host, self.category, self.reason, self.flags = host, category, reason, flags


FAIL_CASES = [
    Case("expired.test", "cert_expired", "CERTIFICATE_VERIFY_FAILED:certificate has expired"),
    Case("future.test", "cert_not_yet_valid", "CERTIFICATE_VERIFY_FAILED:certificate is not yet valid"),
    Case("wronghost.test", "hostname_mismatch", "hostname mismatch (want wronghost.test"),
    Case("cnonly.test", "hostname_mismatch", "hostname mismatch (want cnonly.test"),
    Case("selfsigned.test", "self_signed", "self-signed certificate"),
    Case("unknownca.test", "unknown_ca", "unable to get local issuer certificate"),
    Case("nointermediate.test", "unknown_ca", "unable to get local issuer certificate"),
    Case("revoked.test", "revoked", "certificate revoked"),
    Case("revokedmutual.test", "revoked", "certificate revoked"),
    Case("tls11.test", "protocol_version", "TLS_error:|"),
    Case("weakcipher.test", "handshake_failure", "HANDSHAKE_FAILURE"),
    Case("clientauth.test", "bad_purpose", "unsuitable certificate purpose"),
    Case("needcert.test", "client_cert_required", "server requires a client certificate"),
    Case("needcert12.test", "client_cert_required", "server requires a client certificate"),
    Case("plaintext.test", "protocol_version", "WRONG_VERSION_NUMBER"),
]
OK_HOSTS = ["ok.test", "chain.test", "crlok.test", "mutualok.test"]
POOL_HOSTS = ["pa.test", "pb.test", "pc.test"]


class PlaintextOnTlsPort:
    """A plain HTTP server on a port where TLS is expected: it keeps every byte it gets
    and answers like a web server would (400), then closes."""

    @staticmethod
    def handler(sock, reader):
        try:
            reader._more()
        except EOFError:
            return
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
                     b"Bad Request")


def s_client_works(ip, args):
    """Proves a fixture server really speaks what it was configured for: an openssl
    s_client with the same (weak) settings gets the status page."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"{ip}:443", "-ign_eof", *args],
                       input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True, timeout=20)
    return p.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def env(tmp_path_factory, egressctl_bin):
    tmp = tmp_path_factory.mktemp("uptls")
    e = type("Env", (), {})()
    e.tmp = tmp
    root = MiniCA(tmp, "root")
    inter = MiniCA(tmp, "inter", parent=root)
    other = MiniCA(tmp, "other")
    crlca = MiniCA(tmp, "crlca")
    servers, ips = [], {}

    def serve(host, cert, key, args=()):
        ip = loopback_ip()
        ips[host] = ip
        servers.append(SServer(tmp, ip, cert, key, args))
        return ip

    serve("ok.test", *root.issue("ok.test"))
    serve("expired.test", *root.issue("expired.test", start="20200101000000Z",
                                      end="20200201000000Z"))
    serve("future.test", *root.issue("future.test", start="20350101000000Z",
                                     end="20360101000000Z"))
    serve("wronghost.test", *root.issue("wronghost", cn="www.example.org"))
    serve("cnonly.test", *root.issue("cnonly.test", sans=[]))
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 5 "
       "-subj /CN=selfsigned.test -addext subjectAltName=DNS:selfsigned.test "
       "-keyout ss.key -out ss.crt", tmp)
    serve("selfsigned.test", tmp / "ss.crt", tmp / "ss.key")
    serve("unknownca.test", *other.issue("unknownca.test"))
    leaf, lkey = inter.issue("nointermediate.test", sans=["nointermediate.test", "chain.test"])
    serve("nointermediate.test", leaf, lkey)
    serve("chain.test", leaf, lkey, ["-cert_chain", str(inter.cert)])
    rev, revkey = crlca.issue("revoked.test")
    crlca.revoke(rev)
    serve("revoked.test", rev, revkey)
    serve("crlok.test", *crlca.issue("crlok.test"))
    rev2, rev2key = crlca.issue("revokedmutual.test")
    crlca.revoke(rev2)
    verify_client = ["-Verify", "1", "-CAfile", str(root.cert)]
    serve("revokedmutual.test", rev2, rev2key, verify_client)
    e.crl = crlca.crl()
    client_cert, client_key = root.issue("client", cn="client.test", eku="clientAuth")
    serve("mutualok.test", *root.issue("mutualok.test"), verify_client)
    # OpenSSL 3 refuses TLS 1.1 at the default security level: SECLEVEL=0 makes the
    # server side work (checked below with s_client), so the refusal is ours.
    e.tls11_ip = serve("tls11.test", *root.issue("tls11.test"),
                       ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
    # Debian's OpenSSL 3 has neither RC4 nor 3DES any more: the weakest suites it can
    # still offer are the NULL ones (authentication, no encryption), TLS 1.2 only.
    e.weak_ip = serve("weakcipher.test", *root.issue("weakcipher.test"),
                      ["-no_tls1_3", "-cipher", "eNULL@SECLEVEL=0"])
    serve("clientauth.test", *root.issue("clientauth.test", eku="clientAuth"))
    # The same servers as mutualok.test, which shows that a certificate would do.
    serve("needcert.test", *root.issue("needcert.test"), verify_client)
    serve("needcert12.test", *root.issue("needcert12.test"), verify_client + ["-no_tls1_3"])

    ips["plaintext.test"] = loopback_ip()
    e.plain = RecordingServer(ips["plaintext.test"], 443, PlaintextOnTlsPort.handler, raw=True)

    # Pool isolation: three hosts on ONE address and port. pa/pb differ by SNI, pa/pc
    # share the SNI but not the TLS context (pc names its CA file explicitly).
    pool_ip = loopback_ip()
    for h in POOL_HOSTS:
        ips[h] = pool_ip
    pcert, pkey = root.issue("pool", sans=["sni-a.test", "sni-b.test"])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(str(pcert), str(pkey))

    def on_sni(sslsock, name, _ctx):
        sslsock.sni_seen = name
    sctx.sni_callback = on_sni

    def pool_handler(sock, req):
        body = f"sni={getattr(sock, 'sni_seen', None)} host={req.header('host')}\n".encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return True
    e.pool = RecordingServer(pool_ip, 443, pool_handler, ctx=sctx)

    e.hosts = tmp / "hosts"
    write_hosts(e.hosts, ips)
    e.ips = ips
    docs = [plain_gateway_yaml()]
    tls_extra = {
        "revoked.test": {"caCertificates": str(crlca.cert), "caCrl": str(e.crl)},
        "crlok.test": {"caCertificates": str(crlca.cert), "caCrl": str(e.crl)},
        "revokedmutual.test": {"mode": "MUTUAL", "caCertificates": str(crlca.cert),
                               "caCrl": str(e.crl), "clientCertificate": str(client_cert),
                               "privateKey": str(client_key)},
        "mutualok.test": {"mode": "MUTUAL", "clientCertificate": str(client_cert),
                          "privateKey": str(client_key)},
        "pa.test": {"sni": "sni-a.test"},
        "pb.test": {"sni": "sni-b.test"},
        "pc.test": {"sni": "sni-a.test", "caCertificates": str(root.cert)},
    }
    for h in ips:
        docs.append(service_entry_yaml(h, 443, "HTTPS"))
        docs.append(virtual_service_yaml(h, h, 443))
        docs.append(destination_rule_yaml(h, {"mode": "SIMPLE", **tls_extra.get(h, {})}))
    store = tmp / "store"
    Ctl(egressctl_bin, store, tmp).ok("apply", "-f", "-", input="---\n".join(docs))
    # The system trust store of the gateway (SSL_CERT_FILE) is the root CA only.
    e.gw = start_gateway(tmp, store, e.hosts, root.cert)
    yield e
    try:
        e.gw.stop()
    finally:
        for s in servers:
            s.stop()
        e.plain.stop()
        e.pool.stop()


def get(env, host, path="/"):
    rid = str(uuid.uuid4())
    c = RawClient(env.gw.ip)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nx-request-id: {rid}\r\n\r\n".encode())
        status, headers, body = c.response()
    finally:
        c.close()
    return status, body.decode(errors="replace"), log_entry(env.gw, rid)


def test_fixture_servers_really_speak_tls_1_1_and_null_ciphers(env):
    """The weak servers are not merely broken: an OpenSSL client allowed to use what they
    offer gets the page, so the gateway's refusal below is its own policy."""
    out = s_client_works(env.tls11_ip, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
    assert "Protocol  : TLSv1.1" in out and "200 ok" in out, out[-2000:]
    out = s_client_works(env.weak_ip, ["-tls1_2", "-cipher", "eNULL@SECLEVEL=0"])
    assert "ECDHE-ECDSA-NULL-SHA" in out and "200 ok" in out, out[-2000:]


@pytest.mark.parametrize("host", OK_HOSTS)
def test_valid_upstreams_work(env, host):
    """Controls: a good certificate, a chain sent whole, a CRL that revokes another one."""
    status, body, m = get(env, host)
    assert status == 200, (body, m.string)
    assert m["flags"] == "-" and m["tls"] == "-", m.string


@pytest.mark.parametrize("case", FAIL_CASES, ids=lambda c: c.host.split(".")[0])
def test_upstream_tls_failure(env, case):
    before = tls_failures(env.gw, case.category)
    status, body, m = get(env, case.host)
    assert status == 503, (body, m.string)
    assert m["code"] == "503", m.string
    assert "UF" in m["flags"].split(","), m.string
    assert m["details"].startswith("upstream_reset_before_response_started"), m.string
    assert m["tls"].startswith("TLS_error:|") and m["tls"].endswith(":TLS_error_end"), m.string
    assert case.reason in m["tls"], m.string
    assert case.reason in body, body
    # Each attempt's handshake failure counts: Istio's default policy retries a connection
    # failure twice (URX), not a connection the server closed after it (UC).
    tries = 3 if "URX" in m["flags"].split(",") else 1
    assert tls_failures(env.gw, case.category) == before + tries, stats(env.gw)


def test_tls_1_1_refusal_names_the_versions(env):
    _, body, m = get(env, "tls11.test")
    assert m["flags"] == "UF,URX"                # retried twice: Istio's default policy
    # Either the server's protocol_version alert or our own refusal of its ServerHello:
    # both must say that no version is shared.
    assert ("UNSUPPORTED_PROTOCOL" in m["tls"] or "PROTOCOL_VERSION" in m["tls"]), m.string
    assert "no TLS version in common (ours: TLSv1.2 to TLSv1.3)" in m["tls"], m.string


def test_handshake_failures_are_uf_only(env):
    """Failures inside the handshake are UF alone (URX: retried by Istio's default policy)."""
    for host in ["expired.test", "weakcipher.test", "needcert12.test", "plaintext.test"]:
        _, _, m = get(env, host)
        assert m["flags"] == "UF,URX", m.string
        assert m["details"] == "upstream_reset_before_response_started{connection_failure}", m.string


def test_never_falls_back_to_plaintext(env):
    """A plaintext HTTP server on the TLS port: UF, and all it ever received were TLS
    records (a ClientHello), never a request in clear."""
    for _ in range(2):
        status, body, m = get(env, "plaintext.test", "/secret-path")
        assert status == 503 and m["flags"] == "UF,URX", m.string
        assert "does not speak TLS here" in m["tls"], m.string
    conns = env.plain.snapshot()
    assert conns, "the plaintext server saw no connection"
    for c in conns:
        raw = bytes(c.raw)
        assert raw[:1] == b"\x16" and raw[1:2] == b"\x03", raw[:40]
        assert b"secret-path" not in raw and b"HTTP/1.1" not in raw and b"Host:" not in raw, raw[:200]


def test_pool_never_mixes_tls_settings(env):
    """Three hosts on one address:port. pa and pb differ by SNI; pa and pc by TLS
    context. Each keeps its own upstream connection, reused for its own requests only."""
    before = len(env.pool.snapshot())
    c = RawClient(env.gw.ip)
    try:
        for host in POOL_HOSTS * 3:
            c.send(f"GET /{host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, _, body = c.response()
            assert status == 200, body
            want_sni = "sni-b.test" if host == "pb.test" else "sni-a.test"
            assert body.decode() == f"sni={want_sni} host={host}\n"
    finally:
        c.close()
    conns = env.pool.snapshot()[before:]
    assert len(conns) == 3, [(x.n, [r.target for r in x.requests]) for x in conns]
    for x in conns:
        hosts = {r.header("host") for r in x.requests}
        assert len(hosts) == 1 and len(x.requests) == 3, (x.n, hosts)


def test_revocation_names_the_revoked_certificate(env):
    """The CRL is what fails revoked.test: crlok.test, from the same CA and checked
    against the same CRL, passes (above); the failure names the leaf."""
    for host in ["revoked.test", "revokedmutual.test"]:
        _, _, m = get(env, host)
        assert f"certificate revoked (depth 0: CN={host})" in m["tls"], m.string


def test_client_certificate_required_in_tls_1_3_is_reported_after_the_handshake(env):
    """In TLS 1.3 the client finishes its handshake before the server checks the client
    certificate: the refusal arrives as an alert on the first read. It is still a 503
    with UF (and UC: the connection was up) and the certificate_required reason."""
    _, _, m = get(env, "needcert.test")
    assert m["flags"] == "UF,UC", m.string
    assert "TLSV13_ALERT_CERTIFICATE_REQUIRED" in m["tls"], m.string
