"""Istio's standard metrics on /stats/prometheus (issue 16), from the gateway and the
sidecar of the walkthrough, after a known load: istio_requests_total, the three histograms
with Envoy's default buckets, the TCP families from CONNECT tunnels, Envoy's per-cluster
series; # HELP and # TYPE for every family and counters ending in _total, as Prometheus'
own linter (promtool check metrics) checks them. Prometheus scraping the same proxies and
answering the dashboards' PromQL is in test_prometheus.py."""
import re
import subprocess
import time

from sidecarlib import CNN, EGW_HOST, LOG_RE
from test_sidecar import apply_cnn, topo, wait_routed  # noqa: F401 (topo: the fixture)

SLEEP_SPIFFE = "spiffe://cluster.local/ns/default/sa/sleep"
# Envoy's default histogram buckets, which Istio keeps for its three histograms.
ISTIO_LE = ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
            "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"]
# Istio's label set, in the order Envoy prints it.
ISTIO_HTTP_LABELS = [
    "reporter", "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_cluster", "destination_workload", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_service",
    "destination_canonical_service", "destination_canonical_revision",
    "destination_service_name", "destination_service_namespace", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags",
    "connection_security_policy"]
N_OK, N_404, N_TCP = 20, 5, 3
ISTIO_UNIT_LINT = ('istio_request_duration_milliseconds use base unit "seconds" instead of '
                   '"milliseconds"')

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse(text):
    """Prometheus text format -> (families {name: (type, help)}, samples [(name, [(k, v)],
    value)]); label order kept."""
    families, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            families.setdefault(name, [None, None])[1] = help_
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            families.setdefault(name, [None, None])[0] = typ
        elif line:
            m = SAMPLE_RE.match(line)
            assert m, f"malformed sample line {line!r}"
            labels = LABEL_RE.findall(m[2] or "")
            assert ",".join(f'{k}="{v}"' for k, v in labels) == (m[2] or ""), line
            samples.append((m[1], labels, float(m[3])))
    return families, samples


def family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count", ""):
        base = name[:-len(suffix)] if suffix and name.endswith(suffix) else name
        if base in families and (not suffix or families[base][0] == "histogram"):
            return base
    return None


def select(samples, name, **want):
    return [(dict(labels), v) for n, labels, v in samples
            if n == name and all(dict(labels).get(k) == w for k, w in want.items())]


def total(samples, name, **want):
    return sum(v for _, v in select(samples, name, **want))


def scrape(proxy):
    code, text = proxy.admin("/stats/prometheus")
    assert code == 200
    return text


def check_format(text):
    """Every sample belongs to a family with # HELP and # TYPE; counters end in _total;
    promtool (Prometheus' linter) finds nothing to say."""
    families, samples = parse(text)
    for name, (typ, help_) in families.items():
        assert typ in ("counter", "gauge", "histogram"), (name, typ)
        assert help_, f"{name}: no # HELP"
        if typ == "counter":
            assert name.endswith("_total"), f"counter {name} does not end in _total"
    for name, _, _ in samples:
        assert family_of(name, families), f"sample {name} has no # TYPE"
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    # The one lint promtool has is Istio's own name (Istio chose milliseconds; dashboards
    # and alerts query that name, so it stays).
    lints = [ln for ln in (r.stdout + r.stderr).splitlines() if ln and ln != ISTIO_UNIT_LINT]
    assert r.returncode in (0, 3) and not lints, (r.returncode, r.stdout, r.stderr)
    return samples


def histogram_ok(samples, name, labels):
    """The _bucket series of one label set: Istio's le values in order, cumulative, +Inf
    equal to _count. Returns (buckets {le: count}, sum, count)."""
    rows = [(dict(lb), v) for n, lb, v in samples if n == name + "_bucket"
            and all(dict(lb).get(k) == w for k, w in labels.items())]
    les = [lb["le"] for lb, _ in rows]
    assert les == ISTIO_LE, les
    counts = [v for _, v in rows]
    assert counts == sorted(counts), counts
    count = total(samples, name + "_count", **labels)
    assert counts[-1] == count
    return dict(zip(les, counts)), total(samples, name + "_sum", **labels), count


def known_load(t, sc, pace=0.0, before_load=None):
    """The walkthrough's TLS origination, then N_OK GETs of /politics with N_404 GETs of a
    missing page among them (one every pace seconds), and N_TCP CONNECT tunnels to
    edition.cnn.com:443, all through sidecar sc. before_load() runs once the routes are in
    force. Returns the size of /politics."""
    apply_cnn(t)
    wait_routed(t, sidecar=sc)
    if before_load:
        before_load()
    size, n404 = None, 0
    for i in range(N_OK):
        r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                   f"http://{CNN}/politics", sidecar=sc)
        code, size = r.stdout.split()
        assert code == "200", (r.stdout, r.stderr)
        if i % (N_OK // N_404) == 0 and n404 < N_404:
            r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{CNN}/missing",
                       sidecar=sc)
            assert r.stdout == "404", (r.stdout, r.stderr)
            n404 += 1
        time.sleep(pace)
    assert n404 == N_404
    for _ in range(N_TCP):
        r = t.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://{CNN}/politics",
                   sidecar=sc)
        assert r.stdout == "200", (r.stdout, r.stderr)
        time.sleep(pace)
    return int(size)


def wait_tcp_closed(proxy, n):
    deadline = time.time() + 10
    while time.time() < deadline:
        s = parse(scrape(proxy))[1]
        if total(s, "istio_tcp_connections_closed_total") >= n:
            return
        time.sleep(0.1)
    raise AssertionError("tunnels not closed")


def test_istio_standard_metrics_from_gateway_and_sidecar(topo):
    t = topo
    sc = t.start_sidecar("sleep", t.sleep_id, extra=["--labels", "app=sleep,version=v1"])
    size = known_load(t, sc)
    wait_tcp_closed(sc, N_TCP)
    side = check_format(scrape(sc))
    gw = check_format(scrape(t.gateway))

    # Sidecar: reporter=source describes the sleep workload; every request went to the
    # egress gateway's service (the VirtualService's mesh route), wait_routed's included.
    reqs = select(side, "istio_requests_total", destination_service=EGW_HOST)
    assert reqs, side
    for labels, _ in reqs:
        assert list(labels) == ISTIO_HTTP_LABELS, list(labels)
        assert (labels["reporter"], labels["source_workload"], labels["source_app"],
                labels["source_version"], labels["source_workload_namespace"],
                labels["source_principal"], labels["source_canonical_service"],
                labels["source_canonical_revision"]) == \
            ("source", "sleep", "sleep", "v1", "default", SLEEP_SPIFFE, "sleep", "v1"), labels
        assert (labels["destination_service_name"], labels["destination_service_namespace"],
                labels["request_protocol"], labels["connection_security_policy"],
                labels["grpc_response_status"]) == \
            ("istio-egressgateway", "istio-system", "http", "unknown", ""), labels
    ok = total(side, "istio_requests_total", destination_service=EGW_HOST, response_code="200",
               response_flags="-")
    assert N_OK < ok <= N_OK + 50      # + wait_routed's polls
    assert total(side, "istio_requests_total", destination_service=EGW_HOST,
                 response_code="404") == N_404

    # Gateway: the source is its mesh peer (the sidecar's SPIFFE identity, mutual TLS);
    # the destination the external service.
    g200 = dict(destination_service=CNN, response_code="200", source_principal=SLEEP_SPIFFE)
    assert total(gw, "istio_requests_total", **g200) == ok
    assert total(gw, "istio_requests_total", destination_service=CNN, response_code="404") == N_404
    for labels, _ in select(gw, "istio_requests_total", destination_service=CNN):
        assert list(labels) == ISTIO_HTTP_LABELS, list(labels)
        assert (labels["reporter"], labels["source_workload_namespace"],
                labels["connection_security_policy"], labels["destination_service_name"]) == \
            ("source", "default", "mutual_tls", CNN), labels

    # Histograms: Istio's buckets; response bytes are the body sizes; durations agree
    # with the access log's.
    buckets, rsum, count = histogram_ok(gw, "istio_response_bytes", g200)
    assert count == ok and rsum == ok * size, (rsum, ok, size)
    assert buckets["25"] == 0 and buckets["50"] == ok, buckets   # 47-byte page
    histogram_ok(gw, "istio_request_bytes", g200)
    dbuckets, dsum, dcount = histogram_ok(gw, "istio_request_duration_milliseconds", g200)
    assert dcount == ok
    logged = [LOG_RE.match(line) for line in t.gateway.log_lines()]
    durs = [int(m["dur"]) for m in logged if m["code"] == "200" and m["authority"] == CNN]
    assert len(durs) == ok and dsum == sum(durs), (dsum, durs)
    assert sum(dbuckets[le] > 0 for le in ISTIO_LE) >= 1
    histogram_ok(side, "istio_request_duration_milliseconds",
                 dict(destination_service=EGW_HOST, response_code="200"))

    # TCP: the CONNECT tunnels, on the sidecar, bytes both ways.
    tcp = dict(destination_service=CNN)
    assert total(side, "istio_tcp_connections_opened_total", **tcp) == N_TCP
    assert total(side, "istio_tcp_connections_closed_total", **tcp) == N_TCP
    assert total(side, "istio_tcp_sent_bytes_total", **tcp) > N_TCP * size
    assert total(side, "istio_tcp_received_bytes_total", **tcp) > 0
    for labels, _ in select(side, "istio_tcp_connections_opened_total", **tcp):
        assert (labels["request_protocol"], labels["source_workload"]) == ("tcp", "sleep")

    # Envoy's per-cluster series, by cluster name.
    cl = f"outbound|443||{CNN}"
    assert total(gw, "envoy_cluster_upstream_rq_total", cluster_name=cl) == ok + N_404
    assert total(gw, "envoy_cluster_upstream_rq_xx_total", cluster_name=cl,
                 response_code_class="2") == ok
    assert total(gw, "envoy_cluster_upstream_rq_xx_total", cluster_name=cl,
                 response_code_class="4") == N_404
    assert total(gw, "envoy_cluster_ssl_handshake_total", cluster_name=cl) >= 1
    assert total(gw, "envoy_cluster_upstream_cx_total", cluster_name=cl) >= 1
    assert total(side, "envoy_cluster_upstream_rq_total",
                 cluster_name=f"outbound|80|cnn|{EGW_HOST}") == ok + N_404
    # The sidecar's hop to the gateway is HTTP/2 (up_h2.c): its connections and mutual TLS
    # handshakes count in the cluster that opened them.
    assert total(side, "envoy_cluster_upstream_cx_total",
                 cluster_name=f"outbound|80|cnn|{EGW_HOST}") >= 1
    assert total(side, "envoy_cluster_ssl_handshake_total",
                 cluster_name=f"outbound|80|cnn|{EGW_HOST}") >= 1
