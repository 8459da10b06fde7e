"""A regression test from the hardening issue: a request the parser refuses is logged with
the codec's protocol, "HTTP/1.1", as Envoy logs it ("- - HTTP/1.1"), not "HTTP/1.0" (fwd.c
d_process's H1_ERROR branch once zeroed the parsed version). An operator reading
"HTTP/1.0" would look for the wrong client."""
import pytest

from conftest import Ctl
from gwlib import loopback_ip
from hardlib import (RawClient, RecordingServer, log_entry, plain_gateway_yaml,
                     service_entry_yaml, start_gateway, virtual_service_yaml, write_hosts)

HOST = "rec.test"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, egressctl_bin):
    tmp = tmp_path_factory.mktemp("pending")
    up_ip = loopback_ip()
    up = RecordingServer(up_ip, 80)
    hosts = tmp / "hosts"
    write_hosts(hosts, {HOST: up_ip})
    store = tmp / "store"
    Ctl(egressctl_bin, store, tmp).ok("apply", "-f", "-", input="---\n".join(
        [plain_gateway_yaml(), service_entry_yaml(HOST, 80, "HTTP"), virtual_service_yaml(HOST, HOST, 80)]))
    g = start_gateway(tmp, store, hosts)
    yield g
    try:
        g.stop()
    finally:
        up.stop()


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: rec.test\r\nX-A : a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: rec.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_refused_http11_request_is_not_logged_as_http10(gw, request_bytes):
    c = RawClient(gw.ip)
    try:
        c.send(request_bytes)
        status, _, _ = c.response()
        port = c.s.getsockname()[1]
    finally:
        c.close()
    assert status == 400
    m = log_entry(gw, f"127.0.0.1:{port} ")
    assert m["flags"] == "DPE", m.string
    assert m["proto"] == "HTTP/1.1", f"logged as {m['proto']}: {m.string}"
