"""A real Prometheus (Debian's prometheus) scraping the walkthrough's gateway and sidecar
(issue 16): after a known load, the PromQL of Istio's standard dashboards answers with the
right values (requests by response code, p50/p99 latency from histogram_quantile, TCP
bytes), and every query of the shipped Grafana dashboard (deploy/grafana/egressgw.json)
runs against it."""
import json
import math
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import REPO
from gwlib import free_port, loopback_ip, scaled, wait_port
from sidecarlib import CNN, EGW_HOST, LOG_RE
from test_istio_metrics import ISTIO_LE, N_404, N_OK, N_TCP, known_load, parse, scrape, total, \
    wait_tcp_closed
from test_sidecar import Topology

DASHBOARD = REPO / "deploy" / "grafana" / "egressgw.json"
SCRAPE_S = 1


class Prometheus:
    def __init__(self, tmp, targets):
        self.ip = loopback_ip()
        self.port = free_port(self.ip)
        jobs = "".join(
            f"  - job_name: {job}\n    metrics_path: /stats/prometheus\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in targets.items())
        cfg = tmp / "prometheus.yml"
        cfg.write_text(f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: "
                       f"{SCRAPE_S}s\nscrape_configs:\n{jobs}")
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address={self.ip}:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        try:
            wait_port(self.ip, self.port, timeout=scaled(30), proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def query(self, q):
        url = f"http://{self.ip}:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", (q, body)
        return body["data"]["result"]

    def values(self, q, by):
        """{label value of `by`: float} of an instant vector query."""
        return {s["metric"].get(by, ""): float(s["value"][1]) for s in self.query(q)}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prom_quantile(q, cumulative):
    """Prometheus' histogram_quantile over [(le, cumulative count)], le ascending, +Inf
    last: linear interpolation inside the bucket where the rank falls."""
    count = cumulative[-1][1]
    rank = q * count
    prev_le, prev_c = 0.0, 0.0
    for le, c in cumulative:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    raise AssertionError("no bucket")


@pytest.fixture
def topo(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs):
    t = Topology(tmp_path, ctl, egressctl_bin, store, walkthrough, walkthrough_certs)
    t.prom = None
    yield t
    if t.prom:
        t.prom.stop()
    assert t.stop() == [0] * (1 + len(t.sidecars)), "egressgw did not exit 0 on SIGTERM"


def wait_scraped(prom, q, want, timeout=20.0):
    deadline = time.time() + scaled(timeout)
    got = None
    while time.time() < deadline:
        r = prom.query(q)
        got = float(r[0]["value"][1]) if r else None
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"{q}: {got}, want {want}")


def test_prometheus_answers_istio_dashboard_queries(topo, tmp_path):
    t = topo
    sc = t.start_sidecar("sleep", t.sleep_id, extra=["--labels", "app=sleep,version=v1"])
    t.prom = prom = Prometheus(tmp_path, {"gateway": t.gateway.admin_port,
                                          "sidecar": sc.admin_port})
    def scraped_both():
        """Prometheus has scraped both proxies: the load that follows spans scrapes."""
        for job in ("gateway", "sidecar"):
            wait_scraped(prom, f'up{{job="{job}"}}', 1)

    # Paced over a few scrapes, so that rate() sees the counters move.
    size = known_load(t, sc, pace=0.15, before_load=scraped_both)
    wait_tcp_closed(sc, N_TCP)
    gw_direct = parse(scrape(t.gateway))[1]
    sc_direct = parse(scrape(sc))[1]
    ok = total(gw_direct, "istio_requests_total", destination_service=CNN, response_code="200")
    assert ok > N_OK
    sent = total(sc_direct, "istio_tcp_sent_bytes_total", destination_service=CNN)
    received = total(sc_direct, "istio_tcp_received_bytes_total", destination_service=CNN)
    # Prometheus has scraped after the load when it sees the last counters.
    wait_scraped(prom, f'sum(istio_tcp_sent_bytes_total{{job="sidecar",destination_service="{CNN}"}})',
                 sent)
    wait_scraped(prom, f'sum(istio_requests_total{{job="gateway",destination_service="{CNN}"}})',
                 ok + N_404)
    # rate() needs two samples in its window: every series has been scraped twice.
    for name in ("istio_requests_total", "istio_request_duration_milliseconds_bucket",
                 "istio_response_bytes_bucket", "istio_tcp_sent_bytes_total",
                 "istio_tcp_connections_opened_total", "envoy_cluster_upstream_rq_xx_total",
                 "envoy_cluster_upstream_cx_total"):
        deadline = time.time() + scaled(20)
        while True:
            r = prom.query(f"min(count_over_time({name}[1m]))")
            if r and float(r[0]["value"][1]) >= 2:
                break
            assert time.time() < deadline, f"{name}: not scraped twice"
            time.sleep(0.2)

    # Requests by response code (Istio's service dashboard, "Incoming Requests By Source
    # And Response Code"), both as counts and as the dashboard's rate.
    assert prom.values(f'sum by (response_code) (istio_requests_total{{job="gateway",'
                       f'reporter="source",destination_service="{CNN}"}})', "response_code") == \
        {"200": ok, "404": N_404}
    assert prom.values(f'sum by (response_code) (istio_requests_total{{job="sidecar",'
                       f'destination_service="{EGW_HOST}"}})', "response_code") == \
        {"200": ok, "404": N_404}
    rate = prom.values(f'sum by (response_code) (rate(istio_requests_total{{job="gateway",'
                       f'reporter="source",destination_service="{CNN}"}}[1m]))', "response_code")
    assert set(rate) == {"200", "404"} and all(v > 0 for v in rate.values()), rate
    assert prom.values(f'sum by (source_workload) (istio_requests_total{{job="sidecar"}})',
                       "source_workload").keys() == {"sleep"}

    # p50 and p99 latency: histogram_quantile over the gateway's buckets equals the
    # quantile of the access log's durations bucketed the same way.
    durs = [int(m["dur"]) for m in map(LOG_RE.match, t.gateway.log_lines())
            if m["code"] == "200" and m["authority"] == CNN]
    assert len(durs) == ok
    les = [float(le) for le in ISTIO_LE]
    cumulative = [(le, sum(d <= le for d in durs)) for le in les]
    sel = f'job="gateway",destination_service="{CNN}",response_code="200"'
    for q in (0.5, 0.99):
        got = prom.values(f'histogram_quantile({q}, sum by (le) '
                          f'(istio_request_duration_milliseconds_bucket{{{sel}}}))', "")
        assert math.isclose(got[""], prom_quantile(q, cumulative), rel_tol=1e-9), \
            (q, got, durs)
        # The dashboard's form, over a rate: the same buckets, scaled alike.
        got_rate = prom.values(f'histogram_quantile({q}, sum by (le) (rate('
                               f'istio_request_duration_milliseconds_bucket{{{sel}}}[1m])))', "")
        assert got_rate[""] > 0, got_rate
    # Response sizes: every body is `size` bytes, all in one bucket.
    assert prom.values(f'sum(istio_response_bytes_sum{{{sel}}}) / '
                       f'sum(istio_response_bytes_count{{{sel}}})', "") == {"": size}

    # TCP bytes (the CONNECT tunnels), as the sidecar counted them.
    assert prom.values(f'sum(istio_tcp_sent_bytes_total{{job="sidecar",'
                       f'destination_service="{CNN}"}})', "") == {"": sent}
    assert prom.values(f'sum(istio_tcp_received_bytes_total{{job="sidecar",'
                       f'destination_service="{CNN}"}})', "") == {"": received}
    assert prom.values(f'sum(istio_tcp_connections_closed_total{{job="sidecar",'
                       f'destination_service="{CNN}"}})', "") == {"": N_TCP}
    assert sent > N_TCP * size and received > 0

    # The Grafana dashboard: every query runs; those the load feeds return data.
    dash = json.loads(DASHBOARD.read_text())
    fed = {"Request rate by response code", "Success rate (non-5xx responses)",
           "Request duration p50 / p90 / p99", "Response size p50 / p99",
           "TCP bytes sent / received", "TCP connections opened / closed",
           "Upstream requests by cluster and class", "Upstream connections opened and failed"}
    titles = set()
    for panel in dash["panels"]:
        titles.add(panel["title"])
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", "1m")
                    .replace("$service", ".*").replace("$cluster", ".*"))
            assert "$" not in expr, expr
            result = prom.query(expr)
            if panel["title"] in fed:
                assert result, (panel["title"], expr)
    assert fed <= titles
    success = prom.values(f'sum by (destination_service) (rate(istio_requests_total{{'
                          f'job="gateway", response_code!~"5.*"}}[1m])) / sum by '
                          f'(destination_service) (rate(istio_requests_total{{job="gateway"}}[1m]))',
                          "destination_service")
    assert success[CNN] == 1.0, success
