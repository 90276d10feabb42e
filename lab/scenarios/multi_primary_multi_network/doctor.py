"""`lab doctor` for multi-primary-multi-network: walk curl (cluster1) -> httpbin (cluster2) hop by hop.

Pure part: `Facts` (what was observed; None = not observed) and one decide function per hop, in the order of
docs/multi-primary-faults.md "What the doctor checks": DNS proxy -> client cluster -> east-west gateway -> remote
secret/endpoints -> root -> httpbin. `walk` returns every hop; the first `fail` is named as the cause.
Remote secrets hold credentials: the facts keep only the kubeconfig's server URL, never the secret.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from lab.cluster import GATEWAY, ClusterHandle, LabHandle
from lab.errors import LabError, NoLabError, UnreachableError, UsageError
from lab.probe import CurlResult, Prober, curl_argv, parse_curl
from lab.scenarios.multi_primary_multi_network import names
from lab.scenarios.multi_primary_multi_network.profiles import Profile
from lab.state import State
from lab.xfcc import HEADER as XFCC_HEADER
from lab.xfcc import client_uris, header_values, spiffe_id

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
SPIFFE_CURL = spiffe_id(names.APP_NS, names.CLIENT_APP)
HTTPBIN_CLUSTER = f"outbound|{names.SERVER_PORT}||{names.SERVER_HOST}"
HOPS = ("dns-proxy", "client-cluster", "eastwest-gateway", "remote-secret-endpoints", "root", "httpbin")


@dataclass(frozen=True)
class Hop:
    name: str
    status: str  # ok | fail | unknown
    detail: str  # one line: what is wrong and what to do (or what is fine)


@dataclass
class Facts:
    dns_capture: bool | None = None  # the client sidecar's ISTIO_META_DNS_CAPTURE in effect
    nslookup_sidecar: bool | None = None  # curl container resolves SERVER_HOST
    nslookup_plain: bool | None = None  # a pod without a sidecar resolves SERVER_HOST (should not)
    vip_collision: str | None = None  # the answered VIP when it is also a cluster1 Service ClusterIP; "" = none
    istiod_ready: bool | None = None  # cluster1
    curl_has_sidecar: bool | None = None
    networks: dict[str, str] | None = None  # cluster -> istio-system namespace network label ("" when absent)
    gateway_address: str | None = None  # cluster2's east-west gateway: LB ingress or externalIPs; "" when none
    gateway_passthrough: bool | None = None  # cross-network-gateway: AUTO_PASSTHROUGH *.local on 15443
    remote_secret_server: str | None = None  # "" when the secret is absent
    endpoints: list[str] | None = None  # "ip:port" of HTTPBIN_CLUSTER in the client sidecar
    roots_equal: bool | None = None  # cacerts root-cert.pem and istio-ca-root-cert, both clusters
    httpbin_ready: bool | None = None
    curl_status: int | None = None
    xfcc: str | None = None  # the X-Forwarded-Client-Cert httpbin received ("" when none)
    errors: dict[str, str] = field(default_factory=dict)  # fact -> why it could not be read


def _unknown(name: str, f: Facts, *keys: str) -> Hop | None:
    missing = [k for k in keys if getattr(f, k) is None]
    if not missing:
        return None
    why = "; ".join(f"{k}: {f.errors.get(k, 'not observed')}" for k in missing)
    return Hop(name, UNKNOWN, f"could not read {why}")


def dns_proxy(f: Facts) -> Hop:
    n = "dns-proxy"
    if f.dns_capture is False:
        return Hop(n, FAIL, "the curl sidecar runs without ISTIO_META_DNS_CAPTURE=true: set it in meshConfig."
                            "defaultConfig.proxyMetadata and restart the curl deployment")
    if f.vip_collision:
        return Hop(n, FAIL, f"the address the DNS proxy answers for {names.SERVER_HOST} ({f.vip_collision}) is a "
                            "cluster1 Service's ClusterIP (shared service subnet, istio#32819): give the clusters "
                            "distinct service subnets")
    if f.nslookup_plain is True:
        return Hop(n, FAIL, f"{names.SERVER_HOST} resolves in a pod without a sidecar: a local Service of that "
                            "name exists in cluster1; delete it so the DNS proxy is what answers")
    if f.dns_capture and f.nslookup_sidecar is False:
        # capture is on: the agent's name table lacks the name because istiod has no endpoints for it, which the
        # remote-secret hop explains; this hop itself is in effect
        return Hop(n, OK, f"DNS capture on; {names.SERVER_HOST} not in the table yet (see remote-secret-endpoints)")
    return _unknown(n, f, "dns_capture", "nslookup_sidecar", "nslookup_plain", "vip_collision") or \
        Hop(n, OK, "DNS capture on; the name resolves through the sidecar only")


def client_cluster(f: Facts) -> Hop:
    n = "client-cluster"
    if f.istiod_ready is False:
        return Hop(n, FAIL, "istiod is not ready in cluster1: check `kubectl -n istio-system get pods`")
    if f.curl_has_sidecar is False:
        return Hop(n, FAIL, f"the curl pod has no istio-proxy: label namespace {names.APP_NS} "
                            "istio-injection=enabled and restart curl")
    for cluster, net in sorted((f.networks or {}).items()):
        if not net:
            return Hop(n, FAIL, f"{cluster}'s istio-system has no {names.NETWORK_LABEL} label: label it "
                                "(network1/network2) and restart istiod")
    return _unknown(n, f, "istiod_ready", "curl_has_sidecar", "networks") or \
        Hop(n, OK, "istiod ready, curl has a sidecar, networks " +
            ", ".join(f"{c}={v}" for c, v in sorted((f.networks or {}).items())))


def eastwest_gateway(f: Facts) -> Hop:
    n = "eastwest-gateway"
    if f.gateway_address == "":
        return Hop(n, FAIL, f"cluster2's {names.EASTWEST_GATEWAY} Service has no address (<pending>): install "
                            "MetalLB with a pool, or set spec.externalIPs")
    if f.gateway_passthrough is False:
        return Hop(n, FAIL, f"no {names.CROSS_NETWORK_GATEWAY} Gateway with AUTO_PASSTHROUGH *.local on "
                            f"{names.EASTWEST_TLS_PORT} in cluster2: apply expose-services.yaml")
    return _unknown(n, f, "gateway_address", "gateway_passthrough") or \
        Hop(n, OK, f"address {f.gateway_address}, AUTO_PASSTHROUGH on {names.EASTWEST_TLS_PORT}")


def server_host(server: str) -> str:
    return (urlparse(server).hostname or "").lower()


def remote_endpoints(f: Facts) -> Hop:
    n = "remote-secret-endpoints"
    sec = names.remote_secret_name("cluster2")
    if f.remote_secret_server == "":
        return Hop(n, FAIL, f"no {sec} in cluster1: run istioctl create-remote-secret --name cluster2 --server "
                            f"https://<control-plane IP>:{names.API_SERVER_PORT} and apply it in cluster1")
    if f.remote_secret_server is not None and (
            server_host(f.remote_secret_server) in ("127.0.0.1", "localhost", "::1")):
        return Hop(n, FAIL, f"{sec} points at {f.remote_secret_server}, a loopback address istiod cannot reach "
                            "(istio#31081): recreate it with --server https://<control-plane container IP>:6443")
    if f.endpoints is not None:
        want = f"{f.gateway_address}:{names.EASTWEST_TLS_PORT}" if f.gateway_address else None
        if not f.endpoints or f.nslookup_sidecar is False:
            return Hop(n, FAIL, f"the curl sidecar has no endpoints for {HTTPBIN_CLUSTER}: check istiod's log for "
                                "the remote cluster's sync")
        if want and f.endpoints != [want]:
            return Hop(n, FAIL, f"the curl sidecar's endpoints are {', '.join(f.endpoints)}, not {want}: pod IPs "
                                "mean istiod sees no network gateway (network labels, the gateway address)")
    if f.nslookup_sidecar is False:
        return Hop(n, FAIL, f"{names.SERVER_HOST} does not resolve in curl with DNS capture on: istiod has no "
                            "cluster2 endpoints for it; check istiod's log for the remote cluster's sync")
    return _unknown(n, f, "remote_secret_server", "endpoints") or \
        Hop(n, OK, f"{sec} server {f.remote_secret_server}; endpoints {', '.join(f.endpoints or [])}")


def root(f: Facts) -> Hop:
    n = "root"
    if f.roots_equal is False:
        return Hop(n, FAIL, "cluster1 and cluster2 have different roots (cacerts/istio-ca-root-cert): recreate "
                            "cacerts from one root in both and restart istiod and the workloads")
    return _unknown(n, f, "roots_equal") or Hop(n, OK, "one root in both clusters")


def httpbin(f: Facts) -> Hop:
    n = "httpbin"
    if f.httpbin_ready is False:
        return Hop(n, FAIL, "httpbin is not ready in cluster2: check `kubectl -n sample get pods`")
    if f.curl_status is not None and f.curl_status != 200:
        return Hop(n, FAIL, f"curl to {names.SERVER_HOST}:{names.SERVER_PORT} got {f.curl_status or 'no reply'}: "
                            "see the client sidecar's access log")
    if f.xfcc is not None and SPIFFE_CURL not in client_uris(f.xfcc):
        return Hop(n, FAIL, f"httpbin's X-Forwarded-Client-Cert does not carry {SPIFFE_CURL}: mTLS is not end "
                            "to end; check PeerAuthentication/DestinationRules")
    return _unknown(n, f, "httpbin_ready", "curl_status", "xfcc") or Hop(n, OK, f"200 with {SPIFFE_CURL}")


DECIDE: tuple[Callable[[Facts], Hop], ...] = (dns_proxy, client_cluster, eastwest_gateway, remote_endpoints, root,
                                              httpbin)


def walk(f: Facts) -> list[Hop]:
    return [d(f) for d in DECIDE]


def cause(hops: list[Hop]) -> Hop | None:
    return next((h for h in hops if h.status == FAIL), None)


def exit_code(hops: list[Hop]) -> int:
    return 0 if all(h.status == OK for h in hops) else 1


def render_json(hops: list[Hop]) -> str:
    first = cause(hops)
    return json.dumps({"scenario": names.SCENARIO, "ok": exit_code(hops) == 0,
                       "cause": first.name if first else None, "hops": [asdict(h) for h in hops]}, indent=2)


def render_text(hops: list[Hop]) -> str:
    first = cause(hops)
    lines = [f"{h.status:7} {h.name}: {h.detail}" for h in hops]
    lines.append(f"cause: {first.name}: {first.detail}" if first else
                 "all hops ok" if exit_code(hops) == 0 else "no hop failed, but some could not be read")
    return "\n".join(lines)


def gateway_passthrough(gateway: dict[str, object]) -> bool:
    """A networking.istio.io Gateway object serves `*.local` with tls.mode AUTO_PASSTHROUGH on EASTWEST_TLS_PORT."""
    servers = (gateway.get("spec") or {}).get("servers") or []  # type: ignore[attr-defined]
    return any((srv.get("port") or {}).get("number") == names.EASTWEST_TLS_PORT
               and (srv.get("tls") or {}).get("mode") == "AUTO_PASSTHROUGH"
               and "*.local" in (srv.get("hosts") or []) for srv in servers)


# A host line of the admin's /clusters text after "<cluster>::": "<address>::<stat>::<value>", the address
# "<ip or name>:<port>" or, for IPv6, "[<ip>]:<port>" (so it holds "::" itself); the value may be empty (hostname,
# region). Envoy's admin clusters handler (envoyproxy/envoy source/server/admin/clusters_handler.cc), checked on
# Envoy 1.40.0's own output in tests/integration/test_envoy_clusters.py (tests/data/envoy_admin/).
_HOST_LINE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+(?:%[^\]]+)?\]:\d+|[^:\[\]]+:\d+)"
                        r"::(?P<stat>[a-z_]+)::(?P<value>.*)$")


def parse_clusters(text: str, cluster: str = HTTPBIN_CLUSTER) -> list[str]:
    """Envoy admin /clusters text (`<cluster>::<host:port>::<stat>::<value>` lines, beside the cluster's own
    `<cluster>::<setting>[::<name>]::<value>` lines): the hosts of `cluster`, in Envoy's order, each once."""
    prefix = cluster + "::"
    hosts: list[str] = []
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        m = _HOST_LINE.match(line[len(prefix):])
        if m and m["host"] not in hosts:
            hosts.append(m["host"])
    return hosts


# --- the thin part: collect Facts from the running lab through the one lab handle (lab.cluster.LabHandle) ---------
SIDECAR = "istio-proxy"
PROBE_URL = f"http://{names.SERVER_HOST}:{names.SERVER_PORT}/headers"
PROBE_MAX_TIME = 10  # seconds: lab.probe.curl_argv's default --max-time, as the fault probe uses
ROOT_CONFIGMAP, ROOT_KEY = "istio-ca-root-cert", "root-cert.pem"  # istiod publishes its root in every namespace
CACERTS = "cacerts"  # the lab's per-cluster intermediate and the shared root (issue 11 item 3)
DNS_CAPTURE_ENV = "ISTIO_META_DNS_CAPTURE"
# getent's exit status for "key not found" (glibc nss/getent.c: 2); 0 is an answer.
GETENT_NOT_FOUND = 2


def _kubeconfig_server(kubeconfig_yaml: str) -> str:
    """Only the first cluster's `server` of a remote secret's kubeconfig; the credentials are never kept."""
    import yaml

    doc = yaml.safe_load(kubeconfig_yaml) or {}
    for entry in doc.get("clusters") or []:
        server = (entry.get("cluster") or {}).get("server")
        if server:
            return str(server)
    return ""


def dns_capture_env(pod: Any) -> bool | None:
    """ISTIO_META_DNS_CAPTURE of the pod's istio-proxy (a container or, as a native sidecar, an init container), as
    the agent reads it from its environment (pilot/cmd/pilot-agent/options/options.go@1.30.3:100); the injector writes
    every proxyMetadata entry there (injection-template.yaml@1.30.3:353-356), the pod's proxy.istio.io/config
    annotation merged over meshConfig's. None when the pod has no istio-proxy."""
    proxy = _sidecar(pod)
    if proxy is None:
        return None
    env = {e.name: e.value for e in proxy.env or []}
    return str(env.get(DNS_CAPTURE_ENV) or "").lower() == "true"


def _sidecar(pod: Any) -> Any:
    """The pod's istio-proxy container (a container or, as a native sidecar, an init container), or None."""
    spec = pod.spec
    every = list(spec.containers or []) + list(spec.init_containers or []) if spec is not None else []
    return next((c for c in every if c.name == SIDECAR), None)


def has_sidecar(pod: Any) -> bool:
    return _sidecar(pod) is not None


def vip_collision(answered: list[str], cluster_ips: set[str]) -> str:
    """The first address the DNS proxy answered that is also a Service ClusterIP in the client cluster (istio#32819:
    the sidecar sends it to that local Service), or "" when none is."""
    return next((a for a in answered if a in cluster_ips), "")


def roots_equal(roots: dict[str, dict[str, str]]) -> bool:
    """Each cluster's roots (`istio-ca-root-cert` in the app namespace, what the workloads verify with; `cacerts`'
    root-cert.pem, what istiod signs under) are one and the same certificate; an absent source is left out, but a
    cluster with neither counts as different."""
    seen: set[str] = set()
    for found in roots.values():
        present = {v.strip() for v in found.values() if v.strip()}
        if not present:
            return False
        seen |= present
    return len(seen) == 1


def xfcc_of(body: str) -> str:
    """httpbin's `/headers` answer (JSON) -> its X-Forwarded-Client-Cert, "" when it has none. Bad JSON: ValueError."""
    headers = json.loads(body).get("headers") or {}
    return ",".join(header_values(headers, XFCC_HEADER))


def _secret_server(sec: Any, cluster: str) -> str:
    """The API server URL in a remote secret (its key is the remote cluster's name, `istioctl create-remote-secret
    --name`), "" when there is no secret."""
    if sec is None:
        return ""
    data = sec.data or {}
    blob = data.get(cluster) or next(iter(data.values()), "")
    return _kubeconfig_server(base64.b64decode(blob).decode()) if blob else ""


@dataclass
class _Reader:
    """One collection over the client cluster's (`c`) and the server cluster's (`s`) handle; each method reads one
    fact (a failure is recorded by `collect`)."""

    c: ClusterHandle
    s: ClusterHandle
    _pod: Any = None

    def curl_pod(self) -> Any:
        if self._pod is None:
            self._pod = self.c.running_pod(names.APP_NS, f"app={names.CLIENT_APP}")
        return self._pod

    def curl_pod_name(self) -> str:
        return str(self.curl_pod().metadata.name)

    def network(self, h: ClusterHandle) -> str:
        """The network label of `h`'s istio-system namespace ("" when absent): the first read on each cluster."""
        ns = h.namespace(names.ISTIO_NS)
        return str(((ns.metadata.labels if ns.metadata else None) or {}).get(names.NETWORK_LABEL, ""))

    def istiod_ready(self) -> bool | None:
        r = self.c.readiness(names.ISTIO_NS, "istiod")
        return None if r is None else r.ok

    def curl_has_sidecar(self) -> bool:
        return has_sidecar(self.curl_pod())

    def dns_capture(self) -> bool:
        found = dns_capture_env(self.curl_pod())
        if found is None:
            raise LabError(f"the curl pod {self.curl_pod_name()} has no {SIDECAR} container")
        return found

    def lookup(self) -> list[str]:
        res = Prober(self.c, container=names.CLIENT_APP).nslookup(names.APP_NS, self.curl_pod_name(),
                                                                   names.SERVER_HOST)
        return res.addresses

    def plain_lookup(self) -> bool:
        """The same name looked up past the DNS proxy: from the curl pod's istio-proxy container, which runs as the
        proxy's uid 1337, whose DNS the sidecar's iptables return before the redirect to the agent
        (tools/istio-iptables/pkg/capture/run.go@1.30.3: the uid-owner RETURN rules come before the
        ISTIO_OUTPUT_DNS jump, testdata/dns-uid-gid.golden:16-28), so it asks kube-dns as a pod without a sidecar
        does, with the pod's own resolv.conf. `getent hosts` (glibc, in the proxyv2 image's Ubuntu base,
        docker/Dockerfile.base@1.30.3) creates nothing in the cluster."""
        res = self.c.exec(names.APP_NS, self.curl_pod_name(), SIDECAR, ["getent", "hosts", names.SERVER_HOST])
        if res.exit_code == GETENT_NOT_FOUND:
            return False
        if res.ok:
            return True
        raise LabError(f"getent hosts {names.SERVER_HOST} in {SIDECAR} exited {res.exit_code}: "
                       f"{' '.join(res.output.split())[:120]}")

    def cluster_ips(self) -> set[str]:
        return {svc.spec.cluster_ip for svc in self.c.services()
                if svc.spec is not None and svc.spec.cluster_ip and svc.spec.cluster_ip != "None"}

    def gateway_address(self) -> str:
        return self.s.service_address(names.ISTIO_NS, names.EASTWEST_GATEWAY) or ""

    def gateway_passthrough(self) -> bool:
        gw = self.s.find_object(GATEWAY, names.ISTIO_NS, names.CROSS_NETWORK_GATEWAY)
        return gw is not None and gateway_passthrough(gw)

    def remote_secret_server(self) -> str:
        return _secret_server(self.c.secret(names.ISTIO_NS, names.remote_secret_name(self.s.name)), self.s.name)

    def endpoints(self) -> list[str]:
        return parse_clusters(self.c.envoy_admin(names.APP_NS, self.curl_pod_name(), "clusters"))

    def roots(self) -> bool:
        roots: dict[str, dict[str, str]] = {}
        for h in (self.c, self.s):
            cm = h.find_configmap(names.APP_NS, ROOT_CONFIGMAP)
            sec = h.secret(names.ISTIO_NS, CACERTS)
            cacert = (sec.data or {}).get(ROOT_KEY) if sec is not None else None
            roots[h.name] = {"configmap": str(((cm.data if cm else None) or {}).get(ROOT_KEY, "")),
                             "cacerts": base64.b64decode(cacert).decode() if cacert else ""}
        return roots_equal(roots)

    def httpbin_ready(self) -> bool | None:
        r = self.s.readiness(names.APP_NS, names.SERVER_APP)
        return None if r is None else r.ok

    def curl(self) -> CurlResult:
        """curl from the curl container to httpbin's /headers (lab.probe.curl_argv, as faults.probe_class runs it)."""
        res = self.c.exec(names.APP_NS, self.curl_pod_name(), names.CLIENT_APP,
                          curl_argv(PROBE_URL, max_time=PROBE_MAX_TIME), timeout=PROBE_MAX_TIME + 30)
        return parse_curl(res.stdout, res.exit_code, stderr=res.stderr)


# lab.cluster's line for an API server that refused the connection or did not answer (an ApiError without an HTTP
# status, lab.cluster._unreachable): "<doing>: cannot reach the API server <url> (<why>); is the lab up? ..."
def unreachable(err: Exception) -> str | None:
    """"<server> (<why>)" when `err` says the cluster's API server did not answer at all (lab.cluster raises
    UnreachableError); None for any other failure (an HTTP error, a missing object: the API server answered)."""
    return f"{err.server} ({err.why})" if isinstance(err, UnreachableError) else None


def unreachable_line(down: dict[str, str]) -> str:
    """The one line `lab doctor` stops with when no cluster's API server answers (cluster -> `unreachable`)."""
    where = "; ".join(f"{cluster} at {why}" for cluster, why in sorted(down.items()))
    return (f"neither cluster's API server answers ({where}): the lab's clusters are stopped or deleted; "
            f"`make lab-status` shows what is left, `make lab-up LAB_ARGS=\"--scenario {names.SCENARIO}\"` "
            "builds the lab again")


def _why(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _attempt(fn: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """fn's value, or the failure a read may meet (ValueError: bad JSON from a half-started proxy or app)."""
    try:
        return fn(), None
    except (LabError, ValueError, KeyError) as err:
        return None, err


def _networks(f: Facts, r: _Reader) -> None:
    """`networks`, read on both clusters even when the first fails: when neither API server answers, nothing else
    can be observed, so the doctor stops with one line (as the replicated-control-planes doctor does) instead of
    six unknown hops; one cluster down leaves the walk to say which hops it leaves unknown."""
    nets: dict[str, str] = {}
    failed: dict[str, Exception] = {}
    for h in (r.c, r.s):
        value, err = _attempt(partial(r.network, h))
        if err is None:
            nets[h.name] = value
        else:
            failed[h.name] = err
    down = {name: why for name, err in failed.items() if (why := unreachable(err)) is not None}
    if len(down) == 2:
        raise LabError(unreachable_line(down))
    if failed:
        f.errors["networks"] = _why(next(iter(failed.values())))
    else:
        f.networks = nets


def _read(f: Facts, keys: str, fn: Callable[[], Any]) -> Any:
    """fn's value, set as fact `keys` when that is one name; on a failure, None and the one-line reason in `errors`
    for each of `keys` (space separated)."""
    value, err = _attempt(fn)
    if err is not None:
        for key in keys.split():
            f.errors[key] = _why(err)
        return None
    if " " not in keys:
        setattr(f, keys, value)
    return value


def _client_cluster_facts(f: Facts, r: _Reader) -> None:
    _networks(f, r)
    _read(f, "istiod_ready", r.istiod_ready)
    _read(f, "curl_has_sidecar", r.curl_has_sidecar)


def _dns_proxy_facts(f: Facts, r: _Reader) -> None:
    _read(f, "dns_capture", r.dns_capture)
    answered = _read(f, "nslookup_sidecar vip_collision", r.lookup)
    if answered is not None:
        f.nslookup_sidecar = bool(answered)
        ips = _read(f, "vip_collision", r.cluster_ips) if answered else set()
        if ips is not None:
            f.vip_collision = vip_collision(answered, ips)
    _read(f, "nslookup_plain", r.plain_lookup)


def _eastwest_gateway_facts(f: Facts, r: _Reader) -> None:
    _read(f, "gateway_address", r.gateway_address)
    _read(f, "gateway_passthrough", r.gateway_passthrough)


def _remote_endpoints_facts(f: Facts, r: _Reader) -> None:
    _read(f, "remote_secret_server", r.remote_secret_server)
    _read(f, "endpoints", r.endpoints)


def _root_facts(f: Facts, r: _Reader) -> None:
    _read(f, "roots_equal", r.roots)


def _httpbin_facts(f: Facts, r: _Reader) -> None:
    _read(f, "httpbin_ready", r.httpbin_ready)
    result = _read(f, "curl_status xfcc", r.curl)
    if result is None:
        return
    f.curl_status = result.status or 0
    if result.status == 200:
        _read(f, "xfcc", lambda: xfcc_of(result.body))
    else:
        f.errors["xfcc"] = f"curl got {result.status or 'no reply'} (exit {result.exit_code}), no headers"


# The facts of each hop, in reading order: the client cluster's first (its `networks` is the first read on both
# clusters, where a lab whose API servers do not answer stops), then the hops in HOPS' order.
READ_ORDER: tuple[Callable[[Facts, _Reader], None], ...] = (
    _client_cluster_facts, _dns_proxy_facts, _eastwest_gateway_facts, _remote_endpoints_facts, _root_facts,
    _httpbin_facts)


def collect(lab: LabHandle) -> Facts:
    """Facts from the lab's client (cluster1) and server (cluster2) cluster. Each read that fails leaves its fact
    None with the one-line reason in `errors`; neither API server answering is one LabError (`_networks`)."""
    f = Facts()
    r = _Reader(lab.by_role("client"), lab.by_role("server"))
    for facts_of_hop in READ_ORDER:
        facts_of_hop(f, r)
    return f


def lab_handle(profile: Any, home: Path) -> LabHandle:
    """The lab handle from the provider of the lab in `home` (lab.executor.provider_for: kubeconfig and context come
    only from it), or a one-line LabError when its kubeconfig files are not there."""
    from lab import executor  # the engine's commands, which know the provider; imported late

    provider = executor.provider_for(profile, home)
    for cluster in profile.clusters:
        kubeconfig = provider.kubeconfig(cluster)
        if not kubeconfig.is_file():
            raise LabError(f"no lab here: {kubeconfig} does not exist; run `make lab-up` first "
                           "(or set LAB_HOME to the lab's state directory)")
    return LabHandle.from_provider(profile.clusters, provider)


def _profile(profile_name: str | None, home: Path) -> Profile:
    from lab.scenario import load_profile

    if not (home / "state.json").exists():
        raise NoLabError(home)
    if profile_name is None:
        rec = State.load(home).profile or {}
        try:
            prof = load_profile(rec.get("name", "multi-primary"), rec.get("overrides") or {})
        except LabError as err:
            raise LabError(f"the profile recorded in {home / 'state.json'} no longer loads ({err}); pass --profile "
                           "NAME") from err
    else:
        prof = load_profile(profile_name)
    if not isinstance(prof, Profile):
        raise UsageError(f"profile {getattr(prof, 'name', prof)!r} is not one of the {names.SCENARIO} scenario's; "
                         "its own scenario's doctor reads it")
    return prof


def run(profile_name: str | None, home: Path) -> list[Hop]:
    """Collect from the running lab and walk the hops (what `lab doctor` does)."""
    lab = lab_handle(_profile(profile_name, Path(home)), Path(home))
    try:
        return walk(collect(lab))
    finally:
        lab.close()


def command(profile_name: str | None, home: Path, as_json: bool, out: TextIO) -> int:
    """`lab doctor` for this scenario: hops as text or JSON on `out`; exit 0 only when every hop is ok."""
    hops = run(profile_name, home)
    print(render_json(hops) if as_json else render_text(hops), file=out)
    return exit_code(hops)
