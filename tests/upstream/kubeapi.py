"""A local Kubernetes control plane for the upstream lane: etcd and kube-apiserver as processes, no kubelet.

Both are built from the wrapper module `upstream/kube-apiserver-1.36` (k8s.io/kubernetes v1.36.1 and the
go.etcd.io/etcd/server/v3 v3.6.8 it pins; tests/upstream/gobuild.py caches the binaries). One etcd serves every API
server; each API server keeps its objects under its own `--etcd-prefix`, so two of them are two independent
clusters. etcd starts as Kubernetes' own test helper starts it (k8s.io/kubernetes hack/lib/etcd.sh at v1.36.1:
client URL, data dir, `--listen-peer-urls http://localhost:0`), kube-apiserver with the subset of
hack/local-up-cluster.sh's flags an API server without nodes needs: serving certificate, client CA, a static token
file, the service-account key pair and issuer, RBAC, the service range. Certificates and keys are generated here
(`cryptography`), ports are free ones picked at start, data lives in a temporary directory removed at teardown,
and readiness is waited for against a deadline (`tenacity`), failing with the log's tail when a process exits.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import requests
import tenacity
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.upstream.gobuild import go_build

MODULE = "kube-apiserver-1.36"
VERSION = "v1.36.1"
ETCD_VERSION = "3.6.8"
# -X of k8s.io/component-base/version, as Kubernetes' own build stamps it (hack/lib/version.sh), so /version says
# which release answers; -s -w: no symbol tables (a smaller binary, a quicker link).
KUBE_LDFLAGS = ("-s -w -X k8s.io/component-base/version.gitVersion=v1.36.1 "
                "-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36")
START_DEADLINE = 180.0  # seconds: two API servers starting together on 2 busy cores take 20-60 s


class StartError(RuntimeError):
    """etcd or kube-apiserver did not become ready: the message carries the log's tail."""


def build() -> tuple[Path, Path]:
    """(kube-apiserver, etcd), built once per module fingerprint."""
    apiserver = go_build(MODULE, ".", name="kube-apiserver-1.36.1", ldflags=KUBE_LDFLAGS)
    etcd = go_build(MODULE, "./etcd", name="etcd-3.6.8", ldflags="-s -w")
    return apiserver, etcd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates ---------------------------------------------------------------------------------------------------
def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name | None, subject: x509.Name, *, ca: bool = False,
           server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name or subject)
         .public_key(key.public_key() if ca_name else ca_key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return cert, (key if ca_name else ca_key)


@dataclass
class Pki:
    """The files kube-apiserver reads and the credentials the kubeconfig carries."""

    dir: Path
    ca: bytes
    admin_cert: bytes
    admin_key: bytes
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    nobody_token: str = field(default_factory=lambda: secrets.token_hex(16))  # a user RBAC grants nothing

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @classmethod
    def create(cls, where: Path) -> Pki:
        where.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-upstream-ca")])
        ca, _ = _issue(ca_key, None, ca_name, ca=True)
        serving, serving_key = _issue(ca_key, ca_name, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                    "kube-apiserver")]), server=True)
        # system:masters: the group RBAC's bootstrap policy binds to cluster-admin (as kind's admin kubeconfig)
        admin, admin_key = _issue(ca_key, ca_name, x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "lab-admin")]))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pki = cls(where, _pem(ca), _pem(admin), _key_pem(admin_key))
        pki.ca_file.write_bytes(pki.ca)
        (where / "serving.crt").write_bytes(_pem(serving))
        (where / "serving.key").write_bytes(_key_pem(serving_key))
        (where / "sa.key").write_bytes(_key_pem(sa_key))
        # the static token file (--token-auth-file): token,user,uid,"groups"
        (where / "tokens.csv").write_text(f'{pki.admin_token},lab-admin-token,1,"system:masters"\n'
                                          f"{pki.nobody_token},lab-nobody,2\n", encoding="utf-8")
        for f in where.iterdir():
            f.chmod(0o600)
        return pki


# --- processes ------------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def _spawn(name: str, argv: list[str], log: Path) -> Proc:
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    return Proc(name, popen, log)


class _NotYet(Exception):
    pass


def wait_ready(proc: Proc, probe, deadline: float = START_DEADLINE) -> None:
    """Call `probe()` (True when ready) until it says so, `deadline` seconds at most; StartError with the log's
    tail when the process exits first or the deadline passes."""
    def attempt() -> None:
        if proc.popen.poll() is not None:
            raise StartError(f"{proc.name} exited {proc.popen.returncode} before it was ready:\n{proc.tail()}")
        try:
            ok = probe()
        except (requests.RequestException, OSError) as err:
            raise _NotYet(str(err)) from None
        if not ok:
            raise _NotYet("not ready")

    try:
        tenacity.Retrying(stop=tenacity.stop_after_delay(deadline), wait=tenacity.wait_fixed(0.25),
                          retry=tenacity.retry_if_exception_type(_NotYet), reraise=True)(attempt)
    except _NotYet as err:
        raise StartError(f"{proc.name} not ready within {deadline:.0f}s ({err}):\n{proc.tail()}") from None


@dataclass
class ControlPlane:
    """etcd, one kube-apiserver per cluster name, the PKI, and a kubeconfig with these contexts per cluster:
    NAME (client certificate, system:masters), NAME-token (bearer token, system:masters), NAME-nobody (a token
    RBAC grants nothing), NAME-badtoken (a token the server does not know), and `unreachable` (a closed port)."""

    root: Path
    pki: Pki
    kubeconfig: Path
    servers: dict[str, str]  # cluster name -> https URL
    service_cidrs: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # API servers before etcd
            proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start(apiserver: Path, etcd: Path, service_cidrs: dict[str, str]) -> ControlPlane:
    """Start etcd and one API server per entry of `service_cidrs` (cluster name -> its Service range)."""
    root = Path(tempfile.mkdtemp(prefix="lab-kubeapi-"))
    pki = Pki.create(root / "pki")
    plane = ControlPlane(root, pki, root / "kubeconfig", {}, dict(service_cidrs))
    try:
        etcd_url = f"http://127.0.0.1:{free_port()}"
        store = _spawn("etcd", [str(etcd), "--data-dir", str(root / "etcd"), "--listen-client-urls", etcd_url,
                                "--advertise-client-urls", etcd_url, "--listen-peer-urls", "http://localhost:0",
                                "--log-level", "warn", "--unsafe-no-fsync"], root / "etcd.log")
        plane.procs.append(store)
        wait_ready(store, lambda: requests.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true")
        starting = []
        for name, cidr in service_cidrs.items():
            port = free_port()
            plane.servers[name] = f"https://127.0.0.1:{port}"
            d = pki.dir
            argv = [str(apiserver), f"--etcd-servers={etcd_url}", f"--etcd-prefix=/registry-{name}",
                    "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={root / name}",
                    f"--tls-cert-file={d / 'serving.crt'}", f"--tls-private-key-file={d / 'serving.key'}",
                    f"--client-ca-file={pki.ca_file}", f"--token-auth-file={d / 'tokens.csv'}",
                    f"--service-account-key-file={d / 'sa.key'}",
                    f"--service-account-signing-key-file={d / 'sa.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--authorization-mode=RBAC", f"--service-cluster-ip-range={cidr}", "--profiling=false"]
            proc = _spawn(f"kube-apiserver ({name})", argv, root / f"kube-apiserver-{name}.log")
            plane.procs.append(proc)
            starting.append((proc, plane.servers[name]))
        write_kubeconfig(plane)
        cert = (str(root / "admin.crt"), str(root / "admin.key"))
        Path(cert[0]).write_bytes(pki.admin_cert)
        Path(cert[1]).write_bytes(pki.admin_key)
        for proc, url in starting:
            wait_ready(proc, lambda url=url: requests.get(f"{url}/readyz", cert=cert, verify=str(pki.ca_file),
                                                          timeout=5).status_code == 200)
    except BaseException:
        plane.stop()
        raise
    return plane


def write_kubeconfig(plane: ControlPlane) -> None:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    clusters, users, contexts = [], [], []
    servers = {**plane.servers, "unreachable": f"https://127.0.0.1:{free_port()}"}
    for name, url in servers.items():
        clusters.append({"name": name, "cluster": {"server": url, "certificate-authority-data": b64(plane.pki.ca)}})
    users += [{"name": "admin", "user": {"client-certificate-data": b64(plane.pki.admin_cert),
                                         "client-key-data": b64(plane.pki.admin_key)}},
              {"name": "admin-token", "user": {"token": plane.pki.admin_token}},
              {"name": "nobody", "user": {"token": plane.pki.nobody_token}},
              {"name": "badtoken", "user": {"token": secrets.token_hex(16)}}]
    for name in plane.servers:
        for suffix, user in (("", "admin"), ("-token", "admin-token"), ("-nobody", "nobody"),
                             ("-badtoken", "badtoken")):
            contexts.append({"name": name + suffix, "context": {"cluster": name, "user": user}})
    contexts.append({"name": "unreachable", "context": {"cluster": "unreachable", "user": "admin"}})
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users, "contexts": contexts,
           "current-context": next(iter(plane.servers))}
    plane.kubeconfig.write_text(yaml.safe_dump(doc), encoding="utf-8")
    plane.kubeconfig.chmod(0o600)
