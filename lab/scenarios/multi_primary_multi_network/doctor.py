"""`lab doctor` for multi-primary-multi-network: walk curl (cluster1) -> httpbin (cluster2) hop by hop.

Pure part: `Facts` (what was observed; None = not observed) and one decide function per hop, in the order of
docs/multi-primary-faults.md "What the doctor checks": DNS proxy -> client cluster -> east-west gateway -> remote
secret/endpoints -> root -> httpbin. `walk` returns every hop; the first `fail` is named as the cause.
Remote secrets hold credentials: the facts keep only the kubeconfig's server URL, never the secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import urlparse

from lab.scenarios.multi_primary_multi_network import names

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
SPIFFE_CURL = f"spiffe://cluster.local/ns/{names.APP_NS}/sa/{names.CLIENT_APP}"
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
    xfcc: str | None = None
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
    if f.xfcc is not None and SPIFFE_CURL not in f.xfcc:
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


def parse_clusters(text: str, cluster: str = HTTPBIN_CLUSTER) -> list[str]:
    """Envoy admin /clusters text (`<cluster>::<host:port>::<stat>::<value>` lines): the hosts of `cluster`."""
    hosts: list[str] = []
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) >= 3 and parts[0] == cluster and parts[1] not in ("default_priority", "high_priority",
                                                                          "added_via_api", "observability_name",
                                                                          "outlier") and ":" in parts[1] \
                and parts[1] not in hosts:
            hosts.append(parts[1])
    return hosts


# --- the thin part: collect Facts from the running lab through lab.cluster handles ---------------------------------

def _kubeconfig_server(kubeconfig_yaml: str) -> str:
    """Only the first cluster's `server` of a remote secret's kubeconfig; the credentials are never kept."""
    import yaml

    doc = yaml.safe_load(kubeconfig_yaml) or {}
    for entry in doc.get("clusters") or []:
        server = (entry.get("cluster") or {}).get("server")
        if server:
            return str(server)
    return ""


def collect(client: object, server: object) -> Facts:
    """Facts from cluster1 (`client`) and cluster2 (`server`), lab.cluster.ClusterHandle objects. Each read that
    fails leaves its fact None with the one-line reason in `errors`."""
    import base64

    from lab.errors import LabError

    f = Facts()

    def read(key: str, fn: Callable[[], object]) -> None:
        try:
            setattr(f, key, fn())
        except LabError as err:
            f.errors[key] = str(err).splitlines()[0] if str(err) else type(err).__name__

    c, s = client, server

    def curl_pod() -> str:
        return str(c.running_pod(names.APP_NS, f"app={names.CLIENT_APP}").metadata.name)  # type: ignore[attr-defined]

    def sidecar() -> bool:
        pod = c.running_pod(names.APP_NS, f"app={names.CLIENT_APP}")  # type: ignore[attr-defined]
        return any(x.name == "istio-proxy" for x in (pod.spec.containers or []) + (pod.spec.init_containers or []))

    def capture() -> bool:
        dump = c.envoy_admin(names.APP_NS, curl_pod(), "config_dump?resource=bootstrap")  # type: ignore[attr-defined]
        meta = ((json.loads(dump).get("configs") or [{}])[0].get("bootstrap") or {}).get("node", {}).get("metadata", {})
        return str(meta.get("ISTIO_META_DNS_CAPTURE") or meta.get("DNS_CAPTURE") or "").lower() == "true"

    def lookup() -> bool:
        res = c.exec(names.APP_NS, curl_pod(), names.CLIENT_APP, ["nslookup", names.SERVER_HOST])  # type: ignore
        return bool(res.ok)

    def gateway() -> str:
        svc = s.service(names.ISTIO_NS, names.EASTWEST_GATEWAY)  # type: ignore[attr-defined]
        lb = svc.status.load_balancer if svc.status else None
        ingress = [i.ip or i.hostname for i in ((lb.ingress if lb else None) or [])]
        return (ingress or list(svc.spec.external_i_ps or []) or [""])[0] or ""

    def secret_server() -> str:
        sec = c.secret(names.ISTIO_NS, names.remote_secret_name("cluster2"))  # type: ignore[attr-defined]
        if sec is None:
            return ""
        blob = (sec.data or {}).get("cluster2") or next(iter((sec.data or {}).values()), "")
        return _kubeconfig_server(base64.b64decode(blob).decode()) if blob else ""

    def endpoints() -> list[str]:
        return parse_clusters(c.envoy_admin(names.APP_NS, curl_pod(), "clusters"))  # type: ignore[attr-defined]

    def ready(h: object, ns: str, name: str) -> bool | None:
        r = h.readiness(ns, name)  # type: ignore[attr-defined]
        return None if r is None else bool(r.ok)

    def networks() -> dict[str, str]:
        return {h.name: str(((h.core.read_namespace(names.ISTIO_NS).metadata.labels) or {})  # type: ignore
                            .get(names.NETWORK_LABEL, "")) for h in (c, s)}

    def passthrough() -> bool:
        from lab.cluster import GATEWAY

        gw = s.find_object(GATEWAY, names.ISTIO_NS, names.CROSS_NETWORK_GATEWAY)  # type: ignore[attr-defined]
        return gw is not None and gateway_passthrough(gw)

    def roots() -> bool:
        pems = {str((h.configmap(names.APP_NS, "istio-ca-root-cert").data or {})  # type: ignore[attr-defined]
                    .get("root-cert.pem", "")).strip() for h in (c, s)}
        return len(pems) == 1 and "" not in pems

    read("networks", networks)
    read("gateway_passthrough", passthrough)
    read("roots_equal", roots)
    read("istiod_ready", lambda: ready(c, names.ISTIO_NS, "istiod"))
    read("curl_has_sidecar", sidecar)
    read("dns_capture", capture)
    read("nslookup_sidecar", lookup)
    read("gateway_address", gateway)
    read("remote_secret_server", secret_server)
    read("endpoints", endpoints)
    read("httpbin_ready", lambda: ready(s, names.APP_NS, names.SERVER_APP))
    return f


def command(profile_name: str | None, home: object, as_json: bool, out: object) -> int:
    """`lab doctor` for this scenario: hops as text or JSON on `out`; exit 0 only when every hop is ok."""
    from pathlib import Path

    from lab.cluster import ClusterHandle
    from lab.errors import NoLabError
    from lab.scenario import load_profile
    from lab.state import State

    home = Path(str(home))
    if not (home / "state.json").exists():
        raise NoLabError(home)
    rec = State.load(home).profile or {}
    prof = load_profile(profile_name or rec.get("name", "multi-primary"),
                        {} if profile_name else rec.get("overrides") or {})
    handles = {c.role: ClusterHandle(c.name, home / "kubeconfig" / c.name, c.context)
               for c in prof.clusters}
    hops = walk(collect(handles["client"], handles["server"]))
    print(render_json(hops) if as_json else render_text(hops), file=out)  # type: ignore[call-overload]
    return exit_code(hops)
