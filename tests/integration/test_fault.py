"""VirtualService fault injection (delay, abort), directResponse, and redirect
scheme/port/derivePort, as Envoy's fault filter and router do them for Istio: checked at a
Python upstream that records what reached it (an abort or a direct response reaches
nothing; a delayed request arrives only after the delay), in the access log (flags DI, FI,
details), in the counters, and in what the client gets. Through the sidecar over HTTP/1.1
and HTTP/2, through the gateway alone, and on the gateway behind the sidecar (the HTTP/2
mesh hop); gRPC aborts with grpcio."""
import base64
import json
import os
import re
import subprocess
import time

import grpc
import pytest

from gwlib import scaled
from meshlib import Mesh, egress_gateway_yaml
from test_rewrite import API, SE, api  # noqa: F401 (api: the recording upstream fixture)

DEST = f"""    route:
    - destination:
        host: {API}
"""


def rule(name, prefix, body, dest=True):
    return (f"  - name: {name}\n    match:\n    - uri:\n        prefix: {prefix}\n" + body +
            (DEST if dest else ""))


BIN = b"\x00\x01bin\xff"
RULES = "".join([
    rule("abort", "/abort", "    fault:\n      abort:\n        httpStatus: 503\n"
         "        percentage:\n          value: 100\n"),
    rule("half", "/half", "    fault:\n      abort:\n        httpStatus: 418\n"
         "        percentage:\n          value: 50\n"),
    rule("zero", "/zero", "    fault:\n      abort:\n        httpStatus: 503\n"
         "        percentage:\n          value: 0\n"),
    rule("nopct", "/nopct", "    fault:\n      abort:\n        httpStatus: 503\n"),
    rule("delay", "/delay", "    fault:\n      delay:\n        fixedDelay: 1500ms\n"
         "        percentage:\n          value: 100\n"),
    # The route timeout starts after the delay (the fault filter is before the router).
    rule("delaytimeout", "/dto", "    timeout: 1s\n    fault:\n      delay:\n"
         "        fixedDelay: 1500ms\n        percentage:\n          value: 100\n"),
    rule("delayabort", "/dab", "    fault:\n      delay:\n        fixedDelay: 500ms\n"
         "        percentage:\n          value: 100\n      abort:\n        httpStatus: 429\n"
         "        percentage:\n          value: 100\n"),
    rule("longdelay", "/long", "    fault:\n      delay:\n        fixedDelay: 3s\n"
         "        percentage:\n          value: 100\n"),
    rule("grpcabort", "/test.Echo/Grpc", "    fault:\n      abort:\n"
         "        grpcStatus: RESOURCE_EXHAUSTED\n        percentage:\n          value: 100\n"),
    rule("grpchttp", "/test.Echo/", "    fault:\n      abort:\n        httpStatus: 403\n"
         "        percentage:\n          value: 100\n"),
    rule("direct", "/direct", "    directResponse:\n      status: 418\n      body:\n"
         "        string: \"short and stout\\n\"\n", dest=False),
    rule("bytes", "/bytes", "    directResponse:\n      status: 200\n      body:\n"
         f"        bytes: {base64.b64encode(BIN).decode()}\n", dest=False),
    rule("empty", "/empty", "    directResponse:\n      status: 503\n", dest=False),
    rule("https", "/rs", "    redirect:\n      scheme: https\n", dest=False),
    rule("port", "/rp", "    redirect:\n      uri: /there\n      port: 8443\n", dest=False),
    rule("derive", "/rd", "    redirect:\n      scheme: https\n"
         "      derivePort: FROM_REQUEST_PORT\n", dest=False),
    rule("default", "/rx", "    redirect:\n      scheme: https\n"
         "      derivePort: FROM_PROTOCOL_DEFAULT\n", dest=False),
    rule("p443", "/r443", "    redirect:\n      scheme: https\n      port: 443\n", dest=False),
    rule("moved", "/moved", "    directResponse:\n      status: 302\n", dest=False),
    rule("created", "/created", "    directResponse:\n      status: 201\n      body:\n"
         "        string: made\n", dest=False),
    rule("ddirect", "/ddirect", "    fault:\n      delay:\n        fixedDelay: 300ms\n"
         "        percentage:\n          value: 100\n    directResponse:\n      status: 307\n",
         dest=False),
    f"  - name: rest\n{DEST}",
])

VS = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  http:
{RULES}"""


@pytest.fixture
def mesh(tmp_path, ctl, egressctl_bin, store, api):
    r = ctl("apply", "-f", "-", input=SE + "---\n" + VS)
    assert r.rc == 0, r.err
    # A rule with neither percentage nor percent never fires (Istio's API): said.
    assert re.search(r"spec\.http\[3\]\.fault\.abort: no percentage: no request will be "
                     r"aborted", r.err), r.err
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]})
    yield m
    assert m.stop() == [0]


def codes(m, path, n, *extra):
    """n requests on one keep-alive connection; their status codes."""
    args = [a for _ in range(n) for a in ("-o", "/dev/null", f"http://{API}{path}")]
    r = m.curl("-w", "%{http_code}\n", *extra, *args, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def noproxy_env():
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def bg_curl(m, url):
    """curl through the sidecar, in the background."""
    return subprocess.Popen(["curl", "-sS", "-x", f"http://127.0.0.1:{m.sidecar.outbound}", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=noproxy_env())


def h2(m, *args):
    """curl over HTTP/2 (prior knowledge) straight to the sidecar's outbound port."""
    return m.curl("--noproxy", "*", "--http2-prior-knowledge", "--connect-to",
                  f"{API}:80:127.0.0.1:{m.sidecar.outbound}", *args)


def test_abort_answers_without_the_upstream(mesh, api):
    _, rec = api
    r = mesh.curl("-i", f"http://{API}/abort/x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/1.1 503"), r.stdout
    assert r.stdout.endswith("fault filter abort"), r.stdout
    assert re.search(r"^content-type: text/plain\r?$", r.stdout, re.M), r.stdout
    assert rec.count() == 0
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/abort/x")
    assert (m["code"], m["flags"], m["details"]) == ("503", "FI", "fault_filter_abort")
    assert m["route"] == "abort" and m["uhost"] in ("", "-"), m.string
    assert mesh.sidecar.stat("fault_aborts_injected_total") == 1
    assert mesh.sidecar.stat("fault_delays_injected_total") == 0
    _, text = mesh.sidecar.admin("/stats")
    assert re.search(r"^egressgw\.fault_aborts_injected_total: 1$", text, re.M), text
    # Istio's metrics carry the flag, as Envoy's response_flags label does.
    _, prom = mesh.sidecar.admin("/stats/prometheus")
    assert re.search(r'^istio_requests_total\{[^}]*response_code="503"[^}]*'
                     r'response_flags="FI"[^}]*\} 1$', prom, re.M), prom[-3000:]
    # The other routes still reach the upstream.
    assert mesh.curl(f"http://{API}/other").stdout == "api\n"
    assert rec.count() == 1 and rec.last()["path"] == "/other"


def test_abort_percentages(mesh, api):
    _, rec = api
    got = codes(mesh, "/half", 200)
    aborted = got.count("418")
    assert got.count("200") + aborted == 200, got
    # 50% of 200: mean 100, standard deviation 7.1; 60..140 is more than 5.6 of them.
    assert 60 <= aborted <= 140, aborted
    assert rec.count() == 200 - aborted
    assert mesh.sidecar.stat("fault_aborts_injected_total") == aborted
    assert codes(mesh, "/zero", 50) == ["200"] * 50
    assert codes(mesh, "/nopct", 50) == ["200"] * 50
    assert codes(mesh, "/abort", 50) == ["503"] * 50
    assert rec.count() == 200 - aborted + 100


def test_delay_holds_the_request_before_the_upstream(mesh, api):
    _, rec = api
    t0 = time.monotonic()
    p = bg_curl(mesh, f"http://{API}/delay/1")
    time.sleep(0.8)
    assert rec.count() == 0            # still held at the sidecar
    out, err = p.communicate(timeout=20)
    took = time.monotonic() - t0
    assert p.returncode == 0 and out == "api\n", err
    assert took >= 1.5, took
    assert rec.count() == 1 and rec.last()["path"] == "/delay/1"
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/delay/1")
    assert (m["code"], m["flags"], m["details"]) == ("200", "DI", "via_upstream"), m.string
    assert int(m["dur"]) >= 1500
    assert mesh.sidecar.stat("fault_delays_injected_total") == 1
    # Other requests are not held while one waits (no thread is).
    p = bg_curl(mesh, f"http://{API}/delay/2")
    t1 = time.monotonic()
    assert mesh.curl(f"http://{API}/other").stdout == "api\n"
    assert time.monotonic() - t1 < 1.0
    p.communicate(timeout=20)


def test_route_timeout_starts_after_the_delay(mesh, api):
    """timeout 1s, delay 1.5s: the upstream answers at once, so the request succeeds, as
    in Envoy, where the router (and its timeout) comes after the fault filter."""
    _, rec = api
    r = mesh.curl("-w", " %{http_code}", f"http://{API}/dto")
    assert r.stdout == "api\n 200", (r.stdout, r.stderr)
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/dto")
    assert m["flags"] == "DI" and m["code"] == "200", m.string


def test_delay_then_abort(mesh, api):
    _, rec = api
    t0 = time.monotonic()
    got = codes(mesh, "/dab", 1)
    assert got == ["429"] and time.monotonic() - t0 >= 0.5
    assert rec.count() == 0
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/dab")
    assert (m["flags"], m["details"]) == ("DI,FI", "fault_filter_abort"), m.string


def test_client_leaving_during_the_delay(mesh, api):
    """The delay's timer goes with the request: logged DC (with DI), the upstream never
    sees it, and the proxy serves on."""
    _, rec = api
    r = mesh.curl("--max-time", "0.5", f"http://{API}/long")
    assert r.returncode == 28, r                  # curl's timeout
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/long")
    assert m["code"] == "0" and set(m["flags"].split(",")) == {"DC", "DI"}, m.string
    time.sleep(3.2)
    assert rec.count() == 0
    assert mesh.curl(f"http://{API}/other").stdout == "api\n"


def test_direct_response(mesh, api):
    _, rec = api
    r = mesh.curl("-i", f"http://{API}/direct")
    assert r.stdout.startswith("HTTP/1.1 418"), r.stdout
    assert r.stdout.endswith("\n\nshort and stout\n"), r.stdout
    assert re.search(r"^content-type: text/plain\r?$", r.stdout, re.M), r.stdout
    assert re.search(r"^content-length: 16\r?$", r.stdout, re.M), r.stdout
    r = subprocess.run(["curl", "-sS", "-x", f"http://127.0.0.1:{mesh.sidecar.outbound}",
                        f"http://{API}/bytes"], capture_output=True, env=noproxy_env())
    assert r.stdout == BIN, r
    r = mesh.curl("-i", f"http://{API}/empty")
    assert r.stdout.startswith("HTTP/1.1 503"), r.stdout
    assert re.search(r"^content-length: 0\r?$", r.stdout, re.M), r.stdout
    assert not re.search(r"^content-type:", r.stdout, re.M | re.I), r.stdout
    assert rec.count() == 0
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/direct")
    assert (m["code"], m["flags"], m["details"]) == ("418", "-", "direct_response"), m.string
    # 201 and 3xx carry the request's own URL as location (Envoy's newUri), after a delay
    # too (the request is looked at again when the timer fires).
    for path, code in (("/moved/a?b=1", "302"), ("/created", "201"), ("/ddirect/x", "307")):
        for r in (mesh.curl("-i", f"http://{API}{path}"), h2(mesh, "-i", f"http://{API}{path}")):
            assert re.search(rf"^HTTP/[12.]+ {code}", r.stdout), r
            assert re.search(rf"^location: http://{re.escape(API)}{re.escape(path)}\r?$",
                             r.stdout, re.M), r.stdout
    assert not re.search(r"^location:", mesh.curl("-i", f"http://{API}/direct").stdout,
                         re.M | re.I)
    # Keep-alive: three direct responses and a forwarded request on one connection.
    assert codes(mesh, "/direct", 3) == ["418"] * 3


def test_direct_response_and_abort_over_http2(mesh, api):
    _, rec = api
    r = h2(mesh, "-i", f"http://{API}/direct")
    assert r.stdout.startswith("HTTP/2 418"), (r.stdout, r.stderr)
    assert r.stdout.endswith("short and stout\n"), r.stdout
    r = h2(mesh, "-i", f"http://{API}/empty")
    assert r.stdout.startswith("HTTP/2 503"), (r.stdout, r.stderr)
    r = h2(mesh, "-i", f"http://{API}/abort")
    assert r.stdout.startswith("HTTP/2 503") and r.stdout.endswith("fault filter abort")
    t0 = time.monotonic()
    r = h2(mesh, f"http://{API}/delay/h2")
    assert r.stdout == "api\n" and time.monotonic() - t0 >= 1.5, r
    assert rec.count() == 1
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/abort")
    assert (m["proto"], m["flags"], m["details"]) == ("HTTP/2", "FI", "fault_filter_abort")
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/delay/h2")
    assert (m["proto"], m["flags"], m["code"]) == ("HTTP/2", "DI", "200")


@pytest.mark.parametrize("path,want", [
    ("/rs/a?b=1", f"https://{API}/rs/a?b=1"),       # scheme only: host and path kept
    ("/rp/a", f"http://{API}:8443/there"),          # port
    ("/rd/a", f"https://{API}:80/rd/a"),            # FROM_REQUEST_PORT: the port routed on
    ("/rx/a", f"https://{API}/rx/a"),               # FROM_PROTOCOL_DEFAULT: none
    ("/r443", f"https://{API}/r443"),               # https on 443: left out, as Istio does
])
def test_redirect_scheme_and_port(mesh, path, want):
    r = mesh.curl("-i", f"http://{API}{path}")
    assert r.stdout.startswith("HTTP/1.1 301"), r.stdout
    assert re.search(rf"^location: {re.escape(want)}\r?$", r.stdout, re.M), r.stdout
    r = h2(mesh, "-i", f"http://{API}{path}")
    assert r.stdout.startswith("HTTP/2 301"), (r.stdout, r.stderr)
    assert re.search(rf"^location: {re.escape(want)}\r?$", r.stdout, re.M), r.stdout


def test_grpc_abort(mesh, api):
    """gRPC requests get a trailers-only answer (HTTP 200, grpc-status): grpcStatus as
    configured, httpStatus mapped as Envoy maps it (403 -> PERMISSION_DENIED)."""
    _, rec = api
    ch = grpc.insecure_channel(f"127.0.0.1:{mesh.sidecar.outbound}",
                               options=[("grpc.default_authority", API)])
    try:
        for method, code in (("/test.Echo/Grpc", grpc.StatusCode.RESOURCE_EXHAUSTED),
                             ("/test.Echo/Unary", grpc.StatusCode.PERMISSION_DENIED)):
            call = ch.unary_unary(method)
            with pytest.raises(grpc.RpcError) as e:
                call(b"x", timeout=scaled(10))
            assert e.value.code() == code, e.value
            assert e.value.details() == "fault filter abort"
    finally:
        ch.close()
    assert rec.count() == 0
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/test.Echo/Grpc")
    assert (m["code"], m["flags"], m["proto"]) == ("200", "FI", "HTTP/2"), m.string


def test_proxy_config_shows_it(mesh, ctl):
    _, text = mesh.sidecar.admin("/config_dump")
    routes = {r["name"]: r for t in json.loads(text)["route_configs"]
              for v in t["virtual_hosts"] for r in v["routes"]}
    assert routes["half"]["fault"] == {"abort": {
        "http_status": 418, "percentage": {"numerator": 500000, "denominator": "MILLION"}}}
    assert routes["delay"]["fault"]["delay"]["fixed_delay_ms"] == 1500
    assert routes["grpcabort"]["fault"]["abort"]["grpc_status"] == "RESOURCE_EXHAUSTED"
    assert routes["direct"]["direct_response"] == {"status": 418, "body_bytes": 16,
                                                   "body": "short and stout\n"}
    assert "body" not in routes["bytes"]["direct_response"]
    assert routes["derive"]["redirect"]["derive_port"] == "FROM_REQUEST_PORT"
    assert routes["port"]["redirect"]["port"] == 8443
    assert "fault" not in routes["rest"] and "direct_response" not in routes["rest"]


@pytest.mark.parametrize("body,err", [
    ("    directResponse:\n      status: 99\n", r"directResponse\.status: status code 99 is "
     r"not in range 200-599"),
    ("    directResponse:\n      status: 200\n      body:\n        string: a\n"
     "        bytes: YQ==\n", r"directResponse\.body: only one of string or bytes"),
    ("    directResponse:\n      status: 200\n      body:\n        bytes: '%%%'\n",
     r"directResponse\.body\.bytes: illegal base64 data"),
    ("    directResponse:\n      status: 200\n      body:\n        string: " + "a" * 1048577 +
     "\n", r"directResponse\.body: large direct_responses .* must be less than 1MB"),
    ("    directResponse:\n      status: 200\n" + DEST, r"cannot contain both route and "
     r"direct response"),
    ("    fault:\n      delay:\n        exponentialDelay: 1s\n" + DEST,
     r"exponentialDelay not supported"),
    ("    fault:\n      abort:\n        http2Error: x\n" + DEST, r"http2Error.*not supported"),
], ids=["status", "string-and-bytes", "base64", "over-1MiB", "with-route", "exponential",
        "http2Error"])
def test_refused_at_apply(ctl, store, tmp_path, body, err):
    f = tmp_path / "vs.yaml"
    f.write_text(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad
spec:
  hosts: [{API}]
  http:
  - name: r
""" + body)
    r = ctl("apply", "-f", f)
    assert r.rc != 0
    assert re.search(rf"{re.escape(str(f))}:\d+:\d+: VirtualService default/bad: "
                     rf"spec\.http\[0\].*{err}", r.err), r.err
    assert not list((store / "config").rglob("*bad*"))


# The same features on the egress gateway: its own port 80 (a client straight to it), and
# behind the sidecar, whose mesh route sends everything to the gateway over the HTTP/2
# ISTIO_MUTUAL hop.
GW_RULES = "".join([
    rule("gabort", "/abort", "    fault:\n      abort:\n        httpStatus: 503\n"
         "        percentage:\n          value: 100\n"),
    rule("gdelay", "/delay", "    fault:\n      delay:\n        fixedDelay: 1s\n"
         "        percentage:\n          value: 100\n"),
    rule("ggrpc", "/test.Echo/", "    fault:\n      abort:\n        grpcStatus: UNAVAILABLE\n"
         "        percentage:\n          value: 100\n"),
    rule("gdirect", "/direct", "    directResponse:\n      status: 418\n      body:\n"
         "        string: gateway says no\n", dest=False),
    rule("gderive", "/rd", "    redirect:\n      scheme: https\n"
         "      derivePort: FROM_REQUEST_PORT\n", dest=False),
    rule("gscheme", "/rs", "    redirect:\n      scheme: https\n", dest=False),
    f"  - name: grest\n{DEST}",
]).replace("    match:\n    - uri:", "    match:\n    - gateways: [istio-egressgateway]\n"
           "      uri:")

GW = egress_gateway_yaml(API) + f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [{API}]
  gateways: [istio-egressgateway, mesh]
  http:
  - name: to-gateway
    match:
    - gateways: [mesh]
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: api
        port:
          number: 80
{GW_RULES.replace("  - name: grest", "  - name: grest" + chr(10) + "    match:" + chr(10) + "    - gateways: [istio-egressgateway]")}"""


@pytest.fixture
def gwmesh(tmp_path, ctl, egressctl_bin, store, api):
    ctl.ok("apply", "-f", "-", input=SE + "---\n" + GW)
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]}, gateway=True)
    yield m
    assert m.stop() == [0, 0]


def gw_curl(m, *args):
    """curl straight to the gateway's port 80."""
    return m.curl("--noproxy", "*", "--connect-to", f"{API}:80:{m.gw_ip}:80", *args)


def test_gateway_alone(gwmesh, api):
    """A client straight to the gateway's plain port 80 (HTTP/1.1; the gateway's HTTP/2
    downstream is the mesh hop of test_gateway_behind_the_sidecar)."""
    _, rec = api
    want, proto = "HTTP/1.1", ()
    r = gw_curl(gwmesh, *proto, "-i", f"http://{API}/abort/g")
    assert r.stdout.startswith(f"{want} 503") and r.stdout.endswith("fault filter abort"), r
    r = gw_curl(gwmesh, *proto, "-i", f"http://{API}/direct")
    assert r.stdout.startswith(f"{want} 418") and r.stdout.endswith("gateway says no"), r
    t0 = time.monotonic()
    r = gw_curl(gwmesh, *proto, f"http://{API}/delay/g")
    assert r.stdout == "api\n" and time.monotonic() - t0 >= 1.0, r
    assert rec.count() == 1 and rec.last()["path"] == "/delay/g"
    # derivePort: the gateway's port (80) with https; the Host's own port goes.
    r = gw_curl(gwmesh, *proto, "-i", "-H", f"Host: {API}:8080", f"http://{API}/rd/x")
    assert re.search(rf"^location: https://{re.escape(API)}:80/rd/x\r?$", r.stdout, re.M), r
    # scheme only: Envoy keeps the Host's port (not the old scheme's default)...
    r = gw_curl(gwmesh, *proto, "-i", "-H", f"Host: {API}:8080", f"http://{API}/rs/x")
    assert re.search(rf"^location: https://{re.escape(API)}:8080/rs/x\r?$", r.stdout, re.M), r
    # ... and drops :80, the old scheme's default, when the scheme changes.
    r = gw_curl(gwmesh, *proto, "-i", "-H", f"Host: {API}:80", f"http://{API}/rs/x")
    assert re.search(rf"^location: https://{re.escape(API)}/rs/x\r?$", r.stdout, re.M), r
    g = gwmesh.gateway
    m = g.wait_log(lambda x: x["path"] == "/abort/g")
    assert (m["proto"], m["flags"], m["details"]) == (want, "FI", "fault_filter_abort")
    m = g.wait_log(lambda x: x["path"] == "/delay/g")
    assert (m["proto"], m["flags"], m["code"]) == (want, "DI", "200")
    assert g.stat("fault_aborts_injected_total") == 1
    assert g.stat("fault_delays_injected_total") == 1


def test_gateway_behind_the_sidecar(gwmesh, api):
    """The gateway applies its rules to requests that came over the HTTP/2 mesh hop; the
    sidecar, whose route has none, relays what the gateway answered."""
    _, rec = api
    r = gwmesh.curl("-i", f"http://{API}/abort/m")
    assert r.stdout.startswith("HTTP/1.1 503") and r.stdout.endswith("fault filter abort"), r
    r = gwmesh.curl("-i", f"http://{API}/direct")
    assert r.stdout.startswith("HTTP/1.1 418") and r.stdout.endswith("gateway says no"), r
    t0 = time.monotonic()
    r = gwmesh.curl(f"http://{API}/delay/m")
    assert r.stdout == "api\n" and time.monotonic() - t0 >= 1.0, r
    assert rec.count() == 1
    g, s = gwmesh.gateway, gwmesh.sidecar
    m = g.wait_log(lambda x: x["path"] == "/abort/m")
    assert (m["proto"], m["flags"], m["details"]) == ("HTTP/2", "FI", "fault_filter_abort")
    m = s.wait_log(lambda x: x["path"] == "/abort/m")
    # The sidecar's route has no `retries`: Istio's default policy retries a 503 twice,
    # then logs URX (Envoy under Istio does the same with a gateway's injected abort).
    assert (m["code"], m["flags"], m["details"]) == ("503", "URX", "via_upstream"), m.string
    assert sum(1 for line in g.log_lines() if '"GET /abort/m ' in line) == 3
    m = g.wait_log(lambda x: x["path"] == "/delay/m")
    assert (m["proto"], m["flags"]) == ("HTTP/2", "DI")
    assert s.stat("fault_delays_injected_total") == 0
    # gRPC end to end: the trailers-only answer crosses the sidecar.
    ch = grpc.insecure_channel(f"127.0.0.1:{s.outbound}", options=[("grpc.default_authority", API)])
    try:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Unary")(b"x", timeout=scaled(10))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        assert e.value.details() == "fault filter abort"
    finally:
        ch.close()
    assert rec.count() == 1


def test_explain_request(mesh, ctl):
    """egressctl explain-request says what these routes do: the fault as configured (it
    is decided per request), a direct response, a redirect's Location."""
    def ex(path):
        r = ctl("explain-request", f"http://{API}{path}",
                f"127.0.0.1:{mesh.sidecar.admin_port}", "-o", "json")
        assert r.rc == 0, r.err
        return json.loads(r.out)

    a = ex("/direct")
    assert (a["result"], a["response_code"]) == ("direct_response", 418), a
    a = ex("/rd/a?x=1")
    assert (a["result"], a["location"]) == ("redirect", f"https://{API}:80/rd/a?x=1"), a
    a = ex("/half")
    assert a["fault"]["abort"]["percentage"]["numerator"] == 500000, a


def test_delay_with_a_request_body(mesh, api, tmp_path):
    """A body larger than what the proxy buffers (its reading pauses) waits out the delay
    and then reaches the upstream whole, over HTTP/1.1 and HTTP/2."""
    _, rec = api
    body = tmp_path / "body"
    body.write_bytes(b"x" * 300_000)
    for proto in ((), ("--http2-prior-knowledge",)):
        t0 = time.monotonic()
        if proto:
            r = h2(mesh, *proto, "--data-binary", f"@{body}", f"http://{API}/delay/post")
        else:
            r = mesh.curl("-H", "Expect:", "--data-binary", f"@{body}",
                          f"http://{API}/delay/post")
        assert r.stdout == "api\n" and time.monotonic() - t0 >= 1.5, r
        got = rec.last()
        assert got["method"] == "POST" and got["headers"]["content-length"] == "300000"
    assert rec.count() == 2


def test_http2_reset_during_the_delay(mesh, api):
    """An HTTP/2 client that gives up during the delay: its stream is logged DC with DI,
    the upstream sees nothing, and other streams are served."""
    _, rec = api
    r = h2(mesh, "--max-time", "0.5", f"http://{API}/long/h2")
    assert r.returncode == 28, r
    m = mesh.sidecar.wait_log(lambda x: x["path"] == "/long/h2")
    assert m["proto"] == "HTTP/2" and set(m["flags"].split(",")) == {"DC", "DI"}, m.string
    assert h2(mesh, f"http://{API}/other").stdout == "api\n"
    time.sleep(3.2)
    assert rec.count() == 1 and rec.last()["path"] == "/other"


def test_gateway_api_redirect_scheme_and_port(tmp_path, ctl, egressctl_bin, store, api):
    """An HTTPRoute's RequestRedirect scheme and port, as Istio translates them: a port
    given is used; without one, the scheme's default when a scheme is given, else the
    request's port."""
    ctl.ok("apply", "-f", "-", input=SE + f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: api
spec:
  parentRefs:
  - kind: ServiceEntry
    group: networking.istio.io
    name: api
  rules:
  - matches:
    - path: {{type: PathPrefix, value: /s}}
    filters:
    - type: RequestRedirect
      requestRedirect: {{scheme: https, statusCode: 301}}
  - matches:
    - path: {{type: PathPrefix, value: /p}}
    filters:
    - type: RequestRedirect
      requestRedirect: {{port: 8080}}
  - matches:
    - path: {{type: PathPrefix, value: /n}}
    filters:
    - type: RequestRedirect
      requestRedirect: {{scheme: https, hostname: other.example.test}}
""")
    m = Mesh(tmp_path, ctl, egressctl_bin, store, {API: api[0]})
    try:
        for path, code, want in (("/s/a", "301", f"https://{API}/s/a"),
                                 ("/p/a", "302", f"http://{API}:8080/p/a"),
                                 ("/n/a", "302", "https://other.example.test/n/a")):
            r = m.curl("-i", f"http://{API}{path}")
            assert r.stdout.startswith(f"HTTP/1.1 {code}"), r
            assert re.search(rf"^location: {re.escape(want)}\r?$", r.stdout, re.M), r.stdout
    finally:
        assert m.stop() == [0]
