"""`make demo` (scripts/demo.sh): the whole walkthrough runs to the end and shows what the
walkthrough shows at each step."""
import os
import re
import subprocess

from conftest import BUILD, REPO


def test_demo_runs_the_whole_walkthrough():
    env = dict(os.environ)
    env["EGRESSGW_BUILD"] = str(BUILD)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "EGRESSGW_STORE"):
        env.pop(k, None)
    p = subprocess.run([str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True,
                       env=env, timeout=180, cwd=str(REPO))
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout)
    assert p.returncode == 0, (out[-4000:], p.stderr[-4000:])
    assert out.rstrip().endswith("demo: done")

    def section(title, until):
        a = out.index(title)
        return out[a:out.index(until, a)]

    # 1. ServiceEntry only: the plain-HTTP site's 301, then https through a CONNECT tunnel.
    s = section("== 2. Verify that the ServiceEntry", "== 3.")
    assert "$ curl -sSL -o /dev/null -D - http://edition.cnn.com/politics" in s
    heads = [ln for ln in s.splitlines() if ln.startswith("HTTP/")]
    assert heads == ["HTTP/1.1 301 Moved Permanently", "HTTP/1.1 200 Connection established",
                     "HTTP/1.1 200 OK"], s
    assert "Location: https://edition.cnn.com/politics" in s
    # 2. Through the egress gateway: 200, no 301; the gateway's log line.
    s = section("== 5. Send an HTTP request to http://edition.cnn.com/politics", "== Cleanup")
    assert [ln for ln in s.splitlines() if ln.startswith("HTTP/")] == ["HTTP/1.1 200 OK"], s
    assert "301" not in s.split("== 6.")[0].split("\n", 1)[1]
    assert re.search(r'"GET /politics HTTP/2" 200 - via_upstream .* outbound\|443\|\|edition\.cnn\.com '
                     r'\S+ 127\.0\.0\.11:80 \S+ edition\.cnn\.com -', s), s
    assert "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local" in s
    # 3. Mutual TLS: the walkthrough's commands, the credential, the welcome page.
    assert "$ openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 -subj '/O=example Inc./CN=example.com'" in out
    assert "secret/client-credential created" in out
    s = section("== 5. The credential is supplied", "== 6.")
    assert re.search(r"^kubernetes://client-credential\s+Cert Chain\s+ACTIVE\s+true\s+1\s", s, re.M), s
    assert re.search(r"^kubernetes://client-credential-cacert\s+Cert Chain\s+ACTIVE\s+true\s", s, re.M), s
    s = section("== 6. Send an HTTP request to http://my-nginx", "== 7.")
    assert "<title>Welcome to nginx!</title>" in s
    s = section("== 7.", "== Cleanup")
    assert re.search(r'"GET / HTTP/2" 200 - via_upstream .* outbound\|443\|\|my-nginx\.mesh-external'
                     r'\.svc\.cluster\.local ', s), s
    # 4. Cleanup, as the walkthrough writes it.
    for line in ['destinationrule.networking.istio.io "egressgateway-for-cnn" deleted',
                 'secret "client-credential" deleted', 'namespace "mesh-external" deleted',
                 'destinationrule.networking.istio.io "originate-mtls-for-nginx" deleted',
                 'destinationrule.networking.istio.io "egressgateway-for-nginx" deleted']:
        assert line in out
