"""Retries against an HTTP/2 upstream (the gateway's h2UpgradePolicy: UPGRADE origination
to a scripted python3-h2 origin: test_upstream_h2_exact's set-up with these paths added).
The walkthrough's route has no `retries`, so Istio's default policy applies: a stream the
server refused (REFUSED_STREAM) and a 503 are retried, the POST body replayed, each
attempt counted in x-envoy-attempt-count; another reset is not. (The HTTP/2 mesh hop as
an upstream: test_retries.py test_mesh_hop_*.)"""
import socket

from test_gateway import mesh  # noqa: F401 (fixture)
from test_upstream_h2_exact import SCRIPTS as H2_SCRIPTS, env as h2env  # noqa: F401
from test_upstream_h2_exact import split_head
from gwlib import mesh_context
from test_gateway import CNN


def h2_flaky(first):
    """A script answering its path's first request as first says, later ones 200."""
    seen = []

    def script(c, req):
        seen.append(req)
        if len(seen) == 1 and first == "refused":
            c.reset(req.sid, 7)                          # REFUSED_STREAM
        elif len(seen) == 1 and first == "reset":
            c.reset(req.sid, 2)                          # INTERNAL_ERROR
        else:
            code = 503 if len(seen) == 1 else 200
            c.head(req.sid, code, [("content-length", "3")])
            c.data(req.sid, b"%d\n" % len(seen), end=True)
    script.seen = seen
    return script


H2_FLAKY = {"/h2retry/refused": h2_flaky("refused"), "/h2retry/503": h2_flaky("503"),
            "/h2retry/reset": h2_flaky("reset")}
H2_SCRIPTS.update(H2_FLAKY)


def h2_post(env, path, body):
    ctx = mesh_context(env["mesh"]["client"])
    with socket.create_connection((env["g"].ip, 80), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=CNN) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: {CNN}\r\ncontent-length: {len(body)}\r\n"
                      "Connection: close\r\n\r\n".encode() + body)
            out = b""
            while True:
                d = s.recv(65536)
                if not d:
                    return out
                out += d


def test_http2_upstream_refused_stream_and_503_retried(h2env):  # noqa: F811
    body = b"post body " * 100
    for path in ("/h2retry/refused", "/h2retry/503"):
        status, _, rest = split_head(h2_post(h2env, path, body))
        assert status == b"HTTP/1.1 200 OK", (path, status)
        seen = H2_FLAKY[path].seen
        assert len(seen) == 2 and all(bytes(r.body) == body for r in seen), path
        assert [r.get(b"x-envoy-attempt-count") for r in seen] == [b"1", b"2"]
    # A reset other than REFUSED_STREAM is not in the default policy: 503, once.
    status, _, _ = split_head(h2_post(h2env, "/h2retry/reset", body))
    assert status.startswith(b"HTTP/1.1 503")
    assert len(H2_FLAKY["/h2retry/reset"].seen) == 1
