"""Real CoreDNS processes in network namespaces, for the upstream lane's DNS tests (test_coredns.py, test_musl.py).

Why namespaces rather than rewritten ports: every CoreDNS runs in a network namespace of its own, where only
loopback and one veth link exist, so the Corefiles run as the lab writes them, byte for byte: `.:53` and `global:53`,
`health` on :8080, `ready` on :8181, `prometheus :9153`, all inside the namespace and off the host's ports (other
processes on this machine, the host's own resolver). The lab's `forward` target is an IP literal on port 53 and may
not be loopback (lab.scenarios.replicated_control_planes.corefile.forward_target), so the stand-in for istiocoredns
needs a non-loopback address on port
53: the far end of the veth link, in a second namespace.

The topology of one `DnsLab`:

    namespace <kube>  (kube-dns: the CoreDNS under test)        namespace <istio>  (CoreDNS 1.6.2 stand-ins)
      lo 127.0.0.1, fake API server on 127.0.0.1:6443            192.0.2.2:53  istiocoredns: A from `hosts`,
      veth 192.0.2.1/24  ------------------------------------->                 NXDOMAIN to AAAA (as the plugin)
      no default route: nothing leaves the machine               192.0.2.3:53  "the node's resolver": NXDOMAIN
      /etc/netns/<kube>/resolv.conf: nameserver 192.0.2.3                       for every name (no TLD `global`)

192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed. `forward . /etc/resolv.conf` in kube-dns therefore reaches
the resolver stand-in, and a forward to any other address (8.8.8.8 in some real Corefiles) fails inside the
namespace with "network unreachable".

The `kubernetes` plugin gets a fake API server (FakeApiServer): a loopback HTTP server answering the list and watch
calls with empty lists. The test copy of a Corefile gets one line more in its `kubernetes` block,
`endpoint http://127.0.0.1:6443` (with_api_endpoint): the plugin then builds its client from that URL (no token,
no TLS) instead of the in-cluster service account config, which would need files under /var/run/secrets. Nothing
else in the Corefile changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from lab.errors import NotReadyError
from lab.retry import NotYet, poll
from lab.scenarios.replicated_control_planes.names import REMOTE_HOST
from lab.scenarios.replicated_control_planes.profiles import DEFAULT_CLUSTERS
from tests.upstream.gobuild import LOG, go_build

KUBE_SIDE = "192.0.2.1"
ISTIOCOREDNS = "192.0.2.2"
RESOLVER = "192.0.2.3"
API_PORT = 6443
VIP = DEFAULT_CLUSTERS[0].vip  # the VIP of httpbin.bar.global in the client cluster
CLONE_NEWNET = 0x40000000

# The stand-ins, both in CoreDNS 1.6.2 (the version istiocoredns runs). `template` runs before `hosts` (plugin.cfg),
# so every AAAA query under `global` gets NXDOMAIN, as istio-coredns-plugin's plugin.go answers every query that
# is not an A query (docs/sources.md#istiocoredns-plugin); A queries get the ServiceEntry's VIP from `hosts`.
# (An A query for an unknown name gets SERVFAIL from `hosts`, where the plugin says NXDOMAIN; no test asks one.)
STANDIN_COREFILE = f"""\
global:53 {{
    bind {ISTIOCOREDNS}
    template IN AAAA global {{
        rcode NXDOMAIN
    }}
    hosts {{
        {VIP} {REMOTE_HOST}
    }}
}}
.:53 {{
    bind {RESOLVER}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def skip_reason() -> str | None:
    """Why the namespace-based DNS tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root: the CoreDNS and musl tests run each server in its own network namespace (ip netns add)"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2) on PATH: the CoreDNS and musl tests need `ip netns` and veth links"
    return None


def run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")


_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Netns:
    """A network namespace the tests created (and delete), with loopback up and its own /etc/netns files."""

    name: str

    def add(self) -> Netns:
        run(["ip", "netns", "add", self.name])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
        shutil.rmtree(self.etc, ignore_errors=True)

    @property
    def etc(self) -> Path:
        return Path("/etc/netns") / self.name

    def write_resolv_conf(self, text: str) -> None:
        """Replace (rename, a new inode) the resolv.conf that `ip netns exec` bind-mounts for processes started
        after this; a process started earlier keeps the file it was given."""
        self.etc.mkdir(parents=True, exist_ok=True)
        tmp = self.etc / "resolv.conf.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.etc / "resolv.conf")

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket of this namespace: made by a short-lived thread that has entered it (setns affects one thread)."""
        result: dict[str, object] = {}

        def enter_and_make() -> None:
            try:
                with open(f"/run/netns/{self.name}") as handle:
                    if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns into {self.name}: {os.strerror(err)}")
                result["sock"] = socket.socket(family, kind)
            except BaseException as err:  # handed to the caller's thread
                result["err"] = err

        thread = threading.Thread(target=enter_and_make)
        thread.start()
        thread.join()
        if "err" in result:
            raise result["err"]  # type: ignore[misc]
        return result["sock"]  # type: ignore[return-value]


def link(a: Netns, addr_a: str, b: Netns, addrs_b: list[str], tag: str) -> None:
    """A veth pair between two namespaces, /24 addresses on both ends, both up."""
    run(["ip", "link", "add", f"va{tag}", "netns", a.name, "type", "veth", "peer", "name", f"vb{tag}",
         "netns", b.name])
    run(["ip", "-n", a.name, "addr", "add", f"{addr_a}/24", "dev", f"va{tag}"])
    for addr in addrs_b:
        run(["ip", "-n", b.name, "addr", "add", f"{addr}/24", "dev", f"vb{tag}"])
    run(["ip", "-n", a.name, "link", "set", f"va{tag}", "up"])
    run(["ip", "-n", b.name, "link", "set", f"vb{tag}", "up"])


def query(ns: Netns, name: str, rdtype: str, server: str = "127.0.0.1", timeout: float = 2.0) -> dns.message.Message:
    """One UDP query from inside `ns` (dnspython), the reply message; raises dns.exception.Timeout."""
    sock = ns.socket()
    sock.setblocking(False)  # dnspython waits on a caller's socket with select, up to `timeout`
    try:
        msg = dns.message.make_query(name, rdtype)
        return dns.query.udp(msg, server, timeout=timeout, port=53, sock=sock)
    finally:
        sock.close()


def answers(reply: dns.message.Message) -> list[str]:
    return sorted(rr.to_text() for rrset in reply.answer for rr in rrset)


def http_get(ns: Netns, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH from inside `ns`."""
    sock = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


# --- the fake API server -------------------------------------------------------------------------------------------

_KINDS = {"services": "Service", "endpoints": "Endpoints", "namespaces": "Namespace", "pods": "Pod",
          "endpointslices": "EndpointSlice"}


class FakeApiServer:
    """Answers Kubernetes list calls with empty lists and holds watch calls open without events.

    Serves from a thread of the test process, on a socket made inside the namespace (127.0.0.1:6443 there).
    `requests` records (method, path) of every call, so a test can show that the kubernetes plugin talked to it.
    """

    def __init__(self, ns: Netns, port: int = API_PORT) -> None:
        self.requests: list[tuple[str, str]] = []
        self._stop = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: the calls are in owner.requests
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                owner.requests.append(("GET", self.path))
                params = parse_qs(url.query)
                resource = url.path.rstrip("/").rsplit("/", 1)[-1]
                group = "discovery.k8s.io/v1beta1" if resource == "endpointslices" else "v1"
                if resource not in _KINDS:
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                     "reason": "NotFound", "message": f"the fake API server has no {url.path}"})
                    return
                if params.get("watch", [""])[0] in ("true", "1"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                    owner._stop.wait(float(params.get("timeoutSeconds", ["600"])[0]))
                    with contextlib.suppress(OSError):  # the client may have gone
                        self.wfile.write(b"0\r\n\r\n")
                    self.close_connection = True
                    return
                self._send(200, {"kind": f"{_KINDS[resource]}List", "apiVersion": group,
                                 "metadata": {"resourceVersion": "1"}, "items": []})

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.socket.close()
        server.socket = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def with_api_endpoint(corefile: str, port: int = API_PORT) -> str:
    """The test copy: `endpoint http://127.0.0.1:PORT` as the first line of every `kubernetes` plugin block.

    A `kubernetes` line without a block gets one. Only lines whose first token is `kubernetes` are touched.
    """
    out: list[str] = []
    for line in corefile.splitlines(keepends=True):
        m = re.match(r"^(\s*)kubernetes(\s.*?)?(\s*\{)?\s*$", line.rstrip("\r\n"))
        if not m:
            out.append(line)
            continue
        indent, args, brace = m.group(1), m.group(2) or "", m.group(3)
        nl = line[len(line.rstrip("\r\n")):] or "\n"
        if brace:
            out.append(line if line.endswith(("\n", "\r")) else line + nl)
            out.append(f"{indent}   endpoint http://127.0.0.1:{port}{nl}")
        else:
            out.append(f"{indent}kubernetes{args} {{{nl}{indent}   endpoint http://127.0.0.1:{port}{nl}{indent}}}{nl}")
    return "".join(out)


# --- CoreDNS processes ---------------------------------------------------------------------------------------------


@dataclass
class CoreDNS:
    """One CoreDNS process started in a namespace with a Corefile; its output goes to a log file."""

    binary: Path
    ns: Netns
    corefile: Path
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> CoreDNS:
        handle = self.log.open("wb")
        self.proc = subprocess.Popen(self.ns.argv([str(self.binary), "-conf", str(self.corefile)]),
                                     stdout=handle, stderr=subprocess.STDOUT, cwd=self.corefile.parent)
        handle.close()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGKILL: `health { lameduck 5s }` would delay a SIGTERM by five seconds and nothing is being drained."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def wait_serving(self, probe: Callable[[], object], timeout: float = 30.0) -> None:
        """Poll until `probe` (a DNS query into the namespace) returns; NotReadyError with the log if the process
        exits or the deadline passes."""

        def once() -> object:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ExitedError(self.proc.returncode, self.output())
            try:
                return probe()
            except (OSError, dns.exception.Timeout) as err:
                raise NotYet(f"no answer yet ({err})") from err

        try:
            poll(once, timeout=timeout, interval=0.1, what=f"CoreDNS ({self.corefile.name}) serving")
        except NotReadyError as err:
            raise NotReadyError(f"{err}\n--- CoreDNS output ---\n{self.output()}") from err

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit status of a CoreDNS expected to refuse its Corefile."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        try:
            return self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as err:
            raise NotReadyError(f"CoreDNS ({self.corefile.name}) still running after {timeout:.0f}s; "
                                f"output:\n{self.output()}") from err


class ExitedError(Exception):
    """The CoreDNS process ended while it was expected to serve."""

    def __init__(self, code: int, output: str) -> None:
        self.code = code
        self.output = output
        super().__init__(f"CoreDNS exited {code}:\n{output}")


@functools.cache
def coredns_binaries() -> dict[str, Path]:
    """CoreDNS 1.6.2, 1.7.0 and 1.8.0 from the wrapper modules (cached builds); their versions go to the summary."""
    bins = {}
    for v in ("1.6.2", "1.7.0", "1.8.0"):
        bins[v] = go_build(f"coredns-{v}", name=f"coredns-{v}")
        LOG.versions.append((f"coredns-{v}", version(bins[v])))
    return bins


def version(binary: Path) -> str:
    """`coredns -version`'s first line (CoreDNS-1.8.0)."""
    out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30).stdout
    return out.strip().splitlines()[0] if out.strip() else "(no output)"


@dataclass
class DnsLab:
    """Two namespaces (kube-dns side, istiocoredns side), the 1.6.2 stand-ins and the fake API server."""

    tag: str
    workdir: Path
    standin_binary: Path
    kube: Netns = field(init=False)
    istio: Netns = field(init=False)
    standin: CoreDNS | None = field(default=None, init=False)
    api: FakeApiServer | None = field(default=None, init=False)
    _running: list[CoreDNS] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.kube = Netns(f"labdns-{self.tag}-kube")
        self.istio = Netns(f"labdns-{self.tag}-istio")

    def up(self) -> DnsLab:
        for ns in (self.kube, self.istio):
            ns.delete()  # a namespace left by a killed run of this same tag
            ns.add()
        link(self.kube, KUBE_SIDE, self.istio, [ISTIOCOREDNS, RESOLVER], self.tag[:8])
        self.kube.write_resolv_conf(f"nameserver {RESOLVER}\n")
        path = self.workdir / "standin.Corefile"
        path.write_text(STANDIN_COREFILE)
        self.standin = CoreDNS(self.standin_binary, self.istio, path, self.workdir / "standin.log").start()
        self.standin.wait_serving(lambda: query(self.istio, REMOTE_HOST, "A", server=ISTIOCOREDNS))
        self.api = FakeApiServer(self.kube)
        return self

    def down(self) -> None:
        for proc in [*self._running, self.standin]:
            if proc is not None:
                proc.stop()
        if self.api is not None:
            self.api.close()
        for ns in (self.kube, self.istio):
            ns.delete()

    def coredns(self, binary: Path, corefile: str, name: str) -> CoreDNS:
        """Start kube-dns (`binary`) in the kube namespace with the test copy of `corefile` (API endpoint added)."""
        path = self.workdir / f"{name}.Corefile"
        path.write_text(with_api_endpoint(corefile))
        proc = CoreDNS(binary, self.kube, path, self.workdir / f"{name}.log").start()
        self._running.append(proc)
        return proc

    def serving(self, proc: CoreDNS, timeout: float = 30.0) -> None:
        """Wait until kube-dns answers (any reply) on 127.0.0.1:53 in the kube namespace."""
        proc.wait_serving(lambda: query(self.kube, "kubernetes.default.svc.cluster.local", "A", timeout=0.5),
                          timeout=timeout)


def rcode(reply: dns.message.Message) -> str:
    return dns.rcode.to_text(reply.rcode())

