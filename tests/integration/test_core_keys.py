"""Private keys out of core files (issue 17): even with --allow-core-dumps, a core file of
a gateway holding a workload identity (the mesh key) and a client credential (the
walkthrough's MUTUAL origination to nginx) contains none of their bytes: not the PEM
text, not the DER, not the private scalars (OpenSSL's secure heap, mlocked and
MADV_DONTDUMP, holds the keys; egressgw's own copies are wiped after use).

The core is the kernel's (SIGABRT with RLIMIT_CORE unlimited, core_pattern "core" in
the process's directory), taken after a request went through the credential."""
import base64
import os
import pathlib
import re
import resource
import signal
import subprocess
import tempfile

from gwlib import BUILD, free_port, loopback_ip, mesh_request, wait_port
from test_mtls import NGINX_HOST, WELCOME, Env, certs, mesh  # noqa: F401


PRIVATE_FIELDS = ("privateExponent", "prime1", "prime2", "exponent1", "exponent2",
                  "coefficient", "priv")


def key_needles(path):
    """Byte strings that would betray the key at path: every PEM body line of its file,
    and the first 32 bytes of each private component big- and little-endian (BIGNUM limbs
    are stored little-endian). Not DER windows: the key's DER holds its public part too,
    which the certificate carries."""
    text = pathlib.Path(path).read_text()
    body = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.*?)-----END", text, re.S).group(1)
    needles = {f"pem line {i}": ln.encode()
               for i, ln in enumerate(body.split("\n")) if len(ln) >= 40}
    out = subprocess.run(["openssl", "pkey", "-in", str(path), "-text", "-noout"],
                         capture_output=True, text=True, check=True).stdout
    for name, hexes in re.findall(r"^(\w+):\n((?:\s+[0-9a-f:]+\n)+)", out, re.M):
        if name not in PRIVATE_FIELDS:
            continue
        b = bytes.fromhex("".join(hexes.split()).replace(":", "")).lstrip(b"\0")
        needles[f"{name} big-endian"] = b[:32]
        needles[f"{name} little-endian"] = b[::-1][:32]
    assert len(needles) >= 4, out
    return needles


def test_core_file_holds_no_private_key(tmp_path, certs, mesh, walkthrough):
    e = Env(tmp_path, certs, mesh, walkthrough)
    d = pathlib.Path(tempfile.mkdtemp(prefix="egressgw-core-", dir=tmp_path))
    p = None
    try:
        e.create_credential()
        ip = loopback_ip()
        env = dict(os.environ)
        env["SSL_CERT_FILE"] = str(mesh["gw"] / "root-cert.pem")
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":disable_coredump=0").lstrip(":")

        def unlimited_core():
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        p = subprocess.Popen(
            [str(BUILD / "egressgw"), "--role", "gateway", "--store", str(e.store),
             "--namespace", "istio-system", "--labels", "istio=egressgateway",
             "--identity", str(mesh["gw"]), "--listen-address", ip,
             "--admin", f"127.0.0.1:{free_port()}", "--hosts-file", str(e.hosts),
             "--workers", "1", "--allow-core-dumps"],
            cwd=str(d), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=unlimited_core)
        wait_port(ip, 443, proc=p)
        status, _, body = mesh_request(ip, 443, NGINX_HOST, mesh["client"], path="/")
        assert status == 200 and WELCOME in body, body
        assert e.nginx.wait_serials(1) == ["01"]
        os.kill(p.pid, signal.SIGABRT)
        _, st = os.waitpid(p.pid, 0)
        p.returncode = -signal.SIGABRT
        assert os.WCOREDUMP(st), f"no core dump: {sorted(x.name for x in d.iterdir())}"
        cores = [x for x in d.iterdir() if x.name.startswith("core")]
        assert cores, sorted(x.name for x in d.iterdir())
        core = cores[0].read_bytes()
        assert len(core) > 1 << 20, len(core)
        # The control: the certificate (public) is in the core, so the search can find
        # what is there.
        crt = pathlib.Path(mesh["gw"] / "cert-chain.pem").read_text()
        crt_der = base64.b64decode("".join(crt.split("-----")[2].split()))
        assert crt_der[40:88] in core, "the search does not find the workload certificate"
        found = []
        for what, path in (("workload key", mesh["gw"] / "key.pem"),
                           ("client credential key", certs / "client.example.com.key")):
            for name, needle in key_needles(path).items():
                if needle in core:
                    found.append(f"{what}: {name}")
        assert not found, found
    finally:
        if p and p.returncode is None:
            p.kill()
            p.wait()
        e.stop()
