"""A reload storm and a rotation storm together, under load (issue 17: "A 60 s reload
storm and a 60 s rotation storm together: 0 failed requests, no descriptor or RSS
growth").

Not part of `make test` (it takes STORM_SECONDS, default 60): `make storm` runs it. The
file name does not match pytest's test_*.py on purpose, so `pytest tests/integration`
leaves it out; named on the command line, it runs.

Against the walkthrough's nginx (MUTUAL origination, ssl_verify_client on, the client
certificate's serial in its access log), through a gateway with two workers. One thread
changes the configuration for the whole run, one change at a time, each waited for until
the gateway reports it applied (egressgw_config_version):

- a reload: the VirtualService's rewrite sends requests to /gN/ (N counts the reloads),
  whose index.html says gen=N, so each response names the snapshot that routed it;
- a rotation: the credentialName Secret alternates between the client certificates of
  serial 1 and 2, so nginx's log line for each request names the credential that made
  its upstream connection.

Four client threads send requests meanwhile (mesh mTLS, a new connection each, a unique
id in the query). A request that started after state k was applied, and ended before
state m's write began, must be answered 200 with the (gen, serial) of one state in k..m
(a pair: the snapshot that routed it holds both). Afterwards the gateway's descriptors,
nginx's connections and the gateway's RSS are back to the working set, nothing drains,
and the gateway exits 0 (no sanitizer report)."""
import os
import re
import socket
import threading
import time

from gwlib import BUILD, mesh_context, read_response
from test_mtls import NGINX_HOST, apply_mutual_dr, certs, env, mesh  # noqa: F401
from test_pool_follow import draining, established_to, fds, rotate

STORM_SECONDS = float(os.environ.get("STORM_SECONDS", "60"))
CLIENTS = 4
ASAN = b"__asan_init" in (BUILD / "egressgw").read_bytes()


def vs_yaml(gen):
    return f"""apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: direct-nginx-through-egress-gateway
spec:
  hosts:
  - {NGINX_HOST}
  gateways:
  - istio-egressgateway
  http:
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
      uri:
        prefix: /
    rewrite:
      uri: /g{gen}/
    route:
    - destination:
        host: {NGINX_HOST}
        port:
          number: 443
"""


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)[1]) * 1024


class Storm:
    def __init__(self, env):
        self.env = env
        self.html = env.nginx.dir / "html"
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.next_id = 0
        self.results = []       # (id, t0, t1, status, gen or None)
        self.states = []        # (write started, seen applied, gen, serial)

    def page(self, gen):
        d = self.html / f"g{gen}"
        d.mkdir(exist_ok=True)
        (d / "index.html").write_text(f"gen={gen}\n")

    def client(self):
        ctx = mesh_context(self.env.mesh["client"])
        while not self.stop_ev.is_set():
            with self.lock:
                rid = self.next_id
                self.next_id += 1
            t0 = time.time()
            status, gen = None, None
            try:
                with socket.create_connection((self.env.gw.ip, 443), timeout=10) as raw:
                    with ctx.wrap_socket(raw, server_hostname=NGINX_HOST) as s:
                        s.sendall(f"GET /?storm={rid} HTTP/1.1\r\nHost: {NGINX_HOST}\r\n"
                                  "Connection: close\r\n\r\n".encode())
                        status, _, body = read_response(s)
                        m = re.fullmatch(rb"gen=(\d+)\n", body)
                        gen = int(m[1]) if m else body[:80]
            except Exception as exc:  # noqa: BLE001 - every failure counts
                status = repr(exc)
            with self.lock:
                self.results.append((rid, t0, time.time(), status, gen))

    def change(self, gen, serial, what, applied):
        """Makes one change and waits until the gateway serves it: applied() sees its
        content in what the gateway says it serves (another reload, still pending from
        the change before, may land in between and must not count)."""
        started = time.time()
        what()
        deadline = started + 10
        while not applied():
            assert time.time() < deadline, f"change to gen={gen} serial={serial} never applied"
            time.sleep(0.005)
        self.states.append((started, time.time(), gen, serial))


def dump_has_gen(gw, gen):
    """/config_dump is the snapshot the workers serve (published and adopted on the
    thread that answers it)."""
    code, body = gw.admin("/config_dump")
    return code == 200 and f'"/g{gen}/"' in body


def serial_in_use(gw, n, serial):
    """The credential's "in use" line is logged once every worker serves it: the n+1th
    such line, for this serial."""
    lines = re.findall(r"in use \(certificate serial (\S+),", gw.stderr())
    return len(lines) > n and int(lines[-1], 16) == serial


def nginx_serials(env):
    """storm id -> the client certificate serial nginx saw (nginx logs after answering)."""
    out = {}
    for m in re.finditer(r'"GET /g\d+/\?storm=(\d+) HTTP/1.1".*serial=(\S*)$',
                         env.nginx.access_log.read_text(), re.M):
        out[int(m[1])] = int(m[2], 16)
    return out


def test_reload_and_rotation_storm_under_load(env, certs):  # noqa: F811
    apply_mutual_dr(env, "")
    storm = Storm(env)
    storm.page(0)
    env.ctl("apply", "-f", "-", input=vs_yaml(0))
    env.create_credential()
    gw = env.start(workers=2)
    storm.states.append((0, time.time(), 0, 1))
    clients = [threading.Thread(target=storm.client) for _ in range(CLIENTS)]
    for t in clients:
        t.start()
    try:
        # Warm-up, then the working set: the most seen over a second of load.
        time.sleep(2)
        base_fd = base_up = base_rss = 0
        for _ in range(20):
            base_fd = max(base_fd, fds(gw.proc.pid))
            base_up = max(base_up, established_to(env.nginx.ip, 443))
            base_rss = max(base_rss, rss(gw.proc.pid))
            time.sleep(0.05)
        gen, serial, t_end = 0, 1, time.time() + STORM_SECONDS
        while time.time() < t_end:
            gen += 1
            storm.page(gen)
            storm.change(gen, serial, lambda: env.ctl("apply", "-f", "-", input=vs_yaml(gen)),
                         lambda: dump_has_gen(gw, gen))
            serial = 3 - serial
            n = len(re.findall(r"in use \(certificate serial", gw.stderr()))
            storm.change(gen, serial, lambda: rotate(env, certs, serial),
                         lambda: serial_in_use(gw, n, serial))
        # The load goes on for two more seconds: the working set is what it uses.
        deadline = time.time() + 2
        while time.time() < deadline:
            now_fd, now_up = fds(gw.proc.pid), established_to(env.nginx.ip, 443)
            if now_fd <= base_fd + 4 and now_up <= base_up + 4:
                break
            time.sleep(0.05)
        time.sleep(max(0, deadline - time.time()))
        now_rss = rss(gw.proc.pid)
    finally:
        storm.stop_ev.set()
        for t in clients:
            t.join(20)

    time.sleep(0.5)
    serials = nginx_serials(env)
    states = storm.states
    bad, failed, unknown = [], [], 0
    for rid, t0, t1, status, got_gen in storm.results:
        if status != 200:
            failed.append((rid, status, got_gen))
            continue
        k = max(i for i, s in enumerate(states) if s[1] <= t0)
        m = max(i for i, s in enumerate(states) if s[0] < t1)
        if rid not in serials:
            unknown += 1
            continue
        pair = (got_gen, serials[rid])
        if pair not in [(s[2], s[3]) for s in states[k:m + 1]]:
            bad.append((rid, round(t0 - states[k][1], 3), pair, [(s[2], s[3]) for s in states[k:m + 1]]))
    n = len(storm.results)
    reloads = sum(1 for i in range(1, len(states)) if states[i][2] != states[i - 1][2])
    print(f"\nstorm: {STORM_SECONDS:.0f}s, {len(states) - 1} changes ({reloads} reloads, "
          f"{len(states) - 1 - reloads} rotations), {n} requests, {len(failed)} failed, "
          f"{len(bad)} with a superseded snapshot or credential; descriptors {base_fd} -> "
          f"{now_fd}, nginx connections {base_up} -> {now_up}, RSS {base_rss >> 10} -> "
          f"{now_rss >> 10} KiB")
    late = gw.stderr().count("not every worker has taken it")
    print(f"superseded: {bad[:5]}; adoption timeouts logged: {late}")
    assert len(states) > 10 and n > 100, (len(states), n)
    assert not failed, failed[:10]
    assert not bad, bad[:10]
    assert unknown == 0, f"{unknown} requests not in nginx's log"
    assert now_fd <= base_fd + 4, (now_fd, base_fd)
    assert now_up <= base_up + 4, (now_up, base_up)
    # Snapshots, contexts and sessions of 100s of changes are freed: RSS back to the
    # working set (glibc may keep a little in its arenas).
    if not ASAN:    # ASan's RSS holds its quarantine
        assert now_rss <= base_rss * 1.2 + (4 << 20), (now_rss, base_rss)
    assert all(v == 0 for v in draining(gw).values()), draining(gw)
    assert gw.proc.poll() is None, "the gateway died"
