"""egressctl proxy-config endpoint and the per-endpoint part of /clusters (issue 16):
istioctl's ENDPOINT / STATUS / OUTLIER CHECK / CLUSTER table and Envoy's per-host counters
(cx_active, cx_total, rq_total, rq_success, rq_error) and /failed_outlier_check flag,
summed over the gateway's workers, against upstreams that count what they receive.

Path: plain HTTP client -> gateway (two workers) -> ServiceEntry pool.test (STATIC), two
Upstream servers of test_conn_pool.py (one answering 200, one 503), DestinationRule with
outlierDetection and a 1 s upstream idle timeout."""
import json
import re
import subprocess
import time

import pytest

from conftest import Ctl
from gwlib import Gateway, loopback_ip, wait_port, wait_until
from test_conn_pool import (HOST, PORT, Upstream, config, log_for, mesh, od_policy,  # noqa: F401
                            request, setup)

CLUSTER = f"outbound|{PORT}||{HOST}"
POLICY = """    loadBalancer:
      simple: ROUND_ROBIN
    connectionPool:
      http:
        idleTimeout: 1s
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 10s
      baseEjectionTime: 60s
      maxEjectionPercent: 50
"""


@pytest.fixture
def gw2(mesh, tmp_path):  # noqa: F811 (mesh is the fixture imported above)
    good, bad = Upstream(loopback_ip(), "good", 200), Upstream(loopback_ip(), "bad", 503)
    store = tmp_path / "store"
    Ctl(mesh.ctl_bin, store, tmp_path).ok("apply", "-f", "-",
                                          input=config([bad.ip, good.ip], POLICY))
    gw = Gateway(tmp_path, store, mesh.gw_id, loopback_ip(), mesh.hosts,
                 mesh.gw_id / "root-cert.pem", workers=2)
    wait_port(gw.ip, 80, proc=gw.proc)
    yield gw, good, bad, mesh.ctl_bin
    assert gw.proc.poll() is None, gw.stderr()[-3000:]
    assert gw.stop() == 0
    good.stop()
    bad.stop()


def clusters_text(gw):
    code, body = gw.admin("/clusters")
    assert code == 200
    return body


def host_lines(gw, ip):
    """{field: value} of the /clusters lines of endpoint ip:PORT of CLUSTER."""
    pre = f"{CLUSTER}::{ip}:{PORT}::"
    return {ln[len(pre):].split("::")[0]: ln[len(pre):].split("::", 1)[1]
            for ln in clusters_text(gw).splitlines() if ln.startswith(pre)}


def prom(gw, name):
    code, body = gw.admin("/stats/prometheus")
    m = re.search(rf"^egressgw_{name} (\d+)$", body, re.M)
    assert m, name
    return int(m[1])


def pc(ctl_bin, gw, *args):
    p = subprocess.run([ctl_bin, "proxy-config", "endpoint", f"127.0.0.1:{gw.admin_port}", *args],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def tab(rows):
    """istioctl's layout (Go tabwriter minwidth 0, padding 5, last column unpadded)."""
    w = [max(len(r[i]) for r in rows) + 5 for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w[i]) for i, c in enumerate(r[:-1])) + r[-1] + "\n"
                   for r in rows)


def test_endpoint_counters_outlier_state_and_table(gw2):
    gw, good, bad, ctl_bin = gw2
    ips = sorted([good.ip, bad.ip])

    # Before any request: both endpoints listed, healthy, counters at zero.
    for ip in ips:
        h = host_lines(gw, ip)
        assert (h["cx_total"], h["rq_total"], h["cx_active"], h["health_flags"]) == \
            ("0", "0", "0", "healthy"), h
    rc, out, err = pc(ctl_bin, gw)
    assert rc == 0 and err == "", err
    assert out == tab([["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]] +
                      [[f"{ip}:{PORT}", "HEALTHY", "OK", CLUSTER] for ip in ips]), out

    # Requests (a connection each, so both workers get some) until a worker ejects the
    # failing endpoint after its second consecutive 503.
    i = 0
    while prom(gw, "outlier_detection_ejections_enforced_total") == 0:
        request(gw, f"/r{i}", f"rid-{i}")
        i += 1
        assert i < 60, clusters_text(gw)
    for j in range(6):
        request(gw, f"/more{j}", f"rid-more-{j}")
    # Per-endpoint counters are what each upstream saw: its connections and requests.
    def counted():
        g, b = host_lines(gw, good.ip), host_lines(gw, bad.ip)
        (gc, gr), (bc, br) = good.seen(), bad.seen()
        return (int(g["cx_total"]), int(g["rq_total"]), int(g["rq_success"]), int(g["rq_error"]),
                int(b["cx_total"]), int(b["rq_total"]), int(b["rq_success"]), int(b["rq_error"])) == \
            (gc, len(gr), len(gr), 0, bc, len(br), 0, len(br)) or None
    wait_until(counted, timeout=5, what=f"per-endpoint counters {clusters_text(gw)}")
    g = host_lines(gw, good.ip)
    assert 1 <= int(g["cx_active"]) <= int(g["cx_total"]), g

    # Outlier state: ejected on the workers that saw two 503s in a row (as many as the
    # ejections active), shown as Envoy's flag and on how many of the two workers.
    active = prom(gw, "outlier_detection_ejections_active")
    assert active in (1, 2)
    b = host_lines(gw, bad.ip)
    assert b["health_flags"] == "/failed_outlier_check", b
    assert b["outlier_ejected_workers"] == f"{active}/2", b
    assert host_lines(gw, good.ip)["health_flags"] == "healthy"
    check = "FAILED" if active == 2 else "FAILED (1/2 workers)"
    rows = [[f"{ip}:{PORT}", "HEALTHY", check if ip == bad.ip else "OK", CLUSTER] for ip in ips]
    rc, out, err = pc(ctl_bin, gw)
    assert rc == 0 and out == tab([["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]] + rows), out

    # Filters: istioctl's --address, --port, --cluster (case-insensitive), --status.
    rc, out, _ = pc(ctl_bin, gw, "--address", bad.ip)
    assert out.splitlines()[1:] == tab([["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]] +
                                       [r for r in rows if r[0].startswith(bad.ip + ":")]
                                       ).splitlines()[1:]
    assert len(pc(ctl_bin, gw, "--cluster", CLUSTER.upper())[1].splitlines()) == 3
    assert len(pc(ctl_bin, gw, "--port", "1")[1].splitlines()) == 1
    assert len(pc(ctl_bin, gw, "--status", "healthy")[1].splitlines()) == 3
    assert pc(ctl_bin, gw, "--status", "unhealthy")[1] == "ENDPOINT     STATUS     OUTLIER CHECK     CLUSTER\n"

    # -o json: the cluster statuses with a selected host, counters included.
    rc, out, _ = pc(ctl_bin, gw, "--address", bad.ip, "-o", "json")
    doc = json.loads(out)
    assert [c["name"] for c in doc] == [CLUSTER]
    hs = {h["address"]["socket_address"]["address"]: h for h in doc[0]["host_statuses"]}
    assert hs[bad.ip]["health_status"] == {"eds_health_status": "HEALTHY",
                                           "failed_outlier_check": True}
    assert hs[bad.ip]["outlier_detection"] == {"ejected_workers": active, "workers": 2}
    st = {s["name"]: s for s in hs[bad.ip]["stats"]}
    assert st["rq_error"]["value"] == str(len(bad.seen()[1]))
    assert st["cx_active"]["type"] == "GAUGE"
    rc, out, _ = pc(ctl_bin, gw, "-o", "yaml", "--cluster", "outbound|1||none")
    assert rc == 0 and out.strip() == "[]", out

    # explain-request lists the ejected endpoint and on how many workers; the endpoint it
    # names is the first in service on some worker.
    r = subprocess.run([ctl_bin, "explain-request", f"http://{HOST}/x", f"127.0.0.1:{gw.admin_port}",
                        "-o", "json"], capture_output=True, text=True, timeout=30)
    e = json.loads(r.stdout)
    assert e["cluster"]["ejected_endpoints"] == [
        {"endpoint": f"{bad.ip}:{PORT}", "ejected_workers": active, "workers": 2}], e
    assert e["endpoint"] == f"{good.ip if active == 2 else bad.ip}:{PORT}", e
    r = subprocess.run([ctl_bin, "explain-request", f"http://{HOST}/x", f"127.0.0.1:{gw.admin_port}"],
                       capture_output=True, text=True, timeout=30)
    assert re.search(rf"^Ejected:\s+{re.escape(bad.ip)}:{PORT}, ejected by outlier detection on "
                     rf"{active} of 2 worker\(s\)$", r.stdout, re.M), r.stdout

    # The upstream idle timeout (1 s) closes the pooled connections: cx_active back to 0,
    # cx_total stays.
    wait_until(lambda: all(host_lines(gw, ip)["cx_active"] == "0" for ip in ips) or None,
               timeout=5, what="idle upstream connections closed")
    assert int(host_lines(gw, good.ip)["cx_total"]) == good.seen()[0]


def test_explain_says_no_healthy_upstream_when_all_are_ejected(setup, mesh):  # noqa: F811
    """One endpoint, ejected on the only worker, no panic threshold: explain-request says
    503 UH, which is what the next request gets."""
    gw, (bad,) = setup(od_policy("""      consecutive5xxErrors: 2
      baseEjectionTime: 30s
      maxEjectionPercent: 100
"""), statuses=(503,))

    def explain():
        r = subprocess.run([mesh.ctl_bin, "explain-request", f"http://{HOST}/x",
                            f"127.0.0.1:{gw.admin_port}", "-o", "json"],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, json.loads(r.stdout)
    rc, e = explain()
    assert rc == 0 and e["result"] == "forward" and e["cluster"]["ejected_endpoints"] == []
    for i in range(2):
        assert request(gw, f"/r{i}", f"rid-{i}")[0] == 503
    rc, e = explain()
    assert rc == 1 and (e["response_code"], e["response_flags"]) == (503, "UH"), e
    assert e["cluster"]["ejected_endpoints"] == [
        {"endpoint": f"{bad.ip}:{PORT}", "ejected_workers": 1, "workers": 1}]
    assert request(gw, "/next", "rid-next")[0] == 503
    assert log_for(gw, "rid-next")["flags"] == "UH"
