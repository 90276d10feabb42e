"""The multi-primary-multi-network scenario's own fault catalogue (issue 11 item 5): eight ways the Istio 1.30 lab
breaks, as data plus the code that breaks and heals a running lab.

Shape as lab/scenarios/replicated_control_planes/faults.py (the scenarios do not import each other):
- `FAULTS`: one `Fault` each, with what it breaks and the expected probe class per Istio 1.30.x range
  (`Expectation`: class, confidence, why with the 1.30.3 source line). Every expectation is reasoned from the
  source (docs/multi-primary-faults.md walks each one), none observed yet: when a real run disagrees, change the
  data and add an `Observation`.
- `inject` / `restore` for each, over the one lab handle (lab.cluster.LabHandle): ClusterHandle's reads, custom
  objects, rollouts, exec and logs; what it has no method for (Secrets, Services, Namespaces and ServiceCIDRs
  written, a pod template patched) goes through small private helpers over `handle.core` / `handle.api` below.
  Saved objects live in `FaultLab.saved` and are never logged (a remote secret holds a kubeconfig with a token).
- How long a change takes to reach the probe, from the pushes and caches on the way (`XDS_PUSH`, the remote
  cluster's sync timeout, the listener drain), `probe_class` (curl from cluster1's curl to httpbin, classified
  with the client sidecar's access log) and `restore_and_heal`.
- `catalogue_table` / `with_catalogue_table`: the table in docs/multi-primary-faults.md between its markers.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client as k8s

from lab import catalogue, certs
from lab.catalogue import Expectation as Expectation
from lab.catalogue import Observation as Observation
from lab.catalogue import clean as clean
from lab.catalogue import heal, with_table
from lab.catalogue import settled_class as settled_class
from lab.classify import classify
from lab.cluster import GATEWAY, STRATEGIC_MERGE, ClusterHandle, LabHandle
from lab.errors import LabError, NotFoundError
from lab.probe import curl_argv, parse_curl
from lab.retry import NotYet, poll
from lab.scenarios.multi_primary_multi_network.names import (
    APP_NS,
    CLIENT_APP,
    CROSS_NETWORK_GATEWAY,
    EASTWEST_GATEWAY,
    ISTIO_NS,
    NETWORK_LABEL,
    SERVER_APP,
    SERVER_HOST,
    SERVER_PORT,
    remote_secret_name,
)
from lab.scenarios.multi_primary_multi_network.profiles import ISTIO_RELEASES, Profile
from lab.settings import TIMEOUTS

log = logging.getLogger("lab.scenarios.multi_primary_multi_network.faults")

PROBE_URL = f"http://{SERVER_HOST}:{SERVER_PORT}/headers"
PROBE_MAX_TIME = 10  # lab.probe.curl_argv's default --max-time

# --- how long a change takes to reach the probe (docs/multi-primary-faults.md F3-F5, F9) --------------------------
# istiod's push debounce: 100 ms after the last change, at most 10 s (PILOT_DEBOUNCE_AFTER/MAX,
# pilot/pkg/features/tuning.go@1.30.3:77-90; EDS debounced too, :92-97). The sidecar's DNS table is one NDS push away,
# and the Alpine curl image (musl) keeps no DNS cache, so a changed name reaches the next probe with that push.
XDS_PUSH = 10.0
# A remote cluster that has not synced within PILOT_REMOTE_CLUSTER_TIMEOUT is marked `timeout`
# (pilot/pkg/features/pilot.go@1.30.3:130-134, pkg/kube/multicluster/cluster.go@1.30.3:198-211).
REMOTE_CLUSTER_TIMEOUT = 30.0
# A removed listener keeps its connections for drainDuration (45 s, pkg/config/mesh/mesh.go@1.30.3:44), which is
# why the gateway faults renew cluster1's client connections instead of waiting for the drain.
LISTENER_DRAIN = 45.0
# Envoy's connect timeout (meshConfig.connectTimeout 10 s, mesh.go@1.30.3:94) times three attempts (F2): a
# black-holed endpoint answers after 30 s, the probe gives up after 10 s (class `timeout`).
CONNECT_ATTEMPTS = 3 * 10.0
# pilot-agent starts Envoy with --file-flush-interval-msec 1000 (pkg/envoy/proxy.go@1.30.3:131-147): a request's
# access-log line reaches the container log up to 1 s after the response. The probe waits that long (and a little)
# before reading it, when the call failed.
ACCESS_LOG_FLUSH = 1.5
# After its settling time a fault must show a stable class within a few probes (each at most PROBE_MAX_TIME).
CONVERGE = XDS_PUSH + 6 * PROBE_MAX_TIME

# --- what the faults touch -----------------------------------------------------------------------------------------
ISTIOD = "istiod"  # the Deployment, pods labelled app=istiod, container `discovery` (istio-discovery chart@1.30.3)
ISTIOD_SELECTOR = "app=istiod"
ISTIOD_CONTAINER = "discovery"
CLIENT_SELECTOR = f"app={CLIENT_APP}"
SIDECAR = "istio-proxy"
# The pod annotation whose ProxyConfig is merged over meshConfig.defaultConfig for that pod at injection
# (annotation.ProxyConfig.Name; pilot/pkg/model/proxy_config.go@1.30.3:57-64 via GetProxyConfigOrDefault,
# pkg/kube/inject/webhook.go@1.30.3:1138; proxyMetadata merged key by key: pkg/config/mesh/mesh.go@1.30.3:146-156).
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
DNS_CAPTURE_OFF = json.dumps({"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "false"}}, separators=(",", ":"))
# MetalLB's per-Service pool request (metallb.io/address-pool); a pool that does not exist makes the controller
# clear the address and fail to allocate (controller/service.go convergeBalancer, docs/multi-primary-faults.md (d)).
METALLB_POOL_ANNOTATION = "metallb.io/address-pool"
NO_SUCH_POOL = "lab-no-such-pool"
# The shared-subnet fault's objects in cluster1 (docs/multi-primary-faults.md (h)).
SHARED_CIDR = "lab-shared-subnet"
COLLIDER = "lab-collider"
ROOT_CONFIGMAP = "istio-ca-root-cert"
ROOT_KEY = "root-cert.pem"


# --- data ---------------------------------------------------------------------------------------------------------
@dataclass
class FaultLab:
    """A running lab as the faults see it: the profile, the one lab handle, scratch space, what inject saved."""

    profile: Profile
    lab: LabHandle
    workdir: Path
    istioctl: Path | None = None
    istio_dir: Path | None = None
    saved: dict[str, Any] = field(default_factory=dict)  # what inject took away, for restore (never printed)
    sleep: Callable[[float], None] | None = None  # the waits' sleep (tests pass a fake one)

    @classmethod
    def connect(cls, profile: Profile, provider: Any, workdir: Path, *, kubectl_binary: str = "kubectl",
                istioctl: Path | None = None, istio_dir: Path | None = None,
                sleep: Callable[[float], None] | None = None) -> FaultLab:
        handle = LabHandle.from_provider(profile.clusters, provider, kubectl_binary)
        return cls(profile, handle, Path(workdir), istioctl, istio_dir, sleep=sleep)

    @property
    def client(self) -> ClusterHandle:
        return self.lab[self.profile.client.name]

    @property
    def server(self) -> ClusterHandle:
        return self.lab[self.profile.server.name]

    def wait(self, seconds: float) -> None:
        (self.sleep or time.sleep)(seconds)


@dataclass(frozen=True)
class Fault(catalogue.Fault["FaultLab"]):
    """A fault of this catalogue (lab.catalogue.Fault), with its timings: an xDS push to settle, then up to six
    probes' time to reach a stable class."""

    settle: float = XDS_PUSH
    timeout: float = CONVERGE


def expectation(fault: Fault, istio_version: str) -> Expectation:
    return fault.expected_for(istio_version)


# --- pure helpers ---------------------------------------------------------------------------------------------------
def loopback_secret(secret: dict[str, Any], port: int) -> dict[str, Any]:
    """The remote secret with every kubeconfig's server rewritten to https://127.0.0.1:<port> (what
    `istioctl create-remote-secret` writes without --server on kind, istioctl/pkg/multicluster/remote_secret.go
    @1.30.3:468-481). Pure; a copy. No message says anything of the kubeconfig's content."""
    out = copy.deepcopy(secret)
    data = out.get("data") or {}
    if not data:
        raise LabError("the remote secret holds no kubeconfig; recreate it with `make lab-up`")
    for key, value in data.items():
        try:
            config = yaml.safe_load(base64.b64decode(value))
        except (ValueError, yaml.YAMLError):
            raise LabError(f"the remote secret's key {key} is not a kubeconfig; recreate it with `make lab-up`") \
                from None
        clusters = config.get("clusters") if isinstance(config, dict) else None
        if not clusters:
            raise LabError(f"the remote secret's key {key} names no cluster; recreate it with `make lab-up`")
        for entry in clusters:
            entry.setdefault("cluster", {})["server"] = f"https://127.0.0.1:{port}"
        data[key] = base64.b64encode(yaml.safe_dump(config, sort_keys=False).encode()).decode("ascii")
    return out


def kubeconfig_servers(secret: dict[str, Any]) -> list[str]:
    """The API server URLs in a remote secret's kubeconfigs (for checks; the URL is not secret)."""
    out = []
    for value in (secret.get("data") or {}).values():
        config = yaml.safe_load(base64.b64decode(value)) or {}
        out += [str((c.get("cluster") or {}).get("server", "")) for c in config.get("clusters") or []]
    return out


def remote_clusters(text: str) -> dict[str, str]:
    """istiod's /debug/clusterz (a JSON list of {id, secretName, syncStatus}: pkg/cluster/debug.go@1.30.3,
    pkg/kube/multicluster/secretcontroller.go@1.30.3:518-540) as cluster id -> sync status."""
    try:
        items = json.loads(text.strip() or "[]")
    except ValueError as err:
        raise ValueError(f"istiod's debug/clusterz is not JSON ({err})") from None
    return {str(i.get("id")): str(i.get("syncStatus")) for i in items if isinstance(i, dict)}


# --- thin helpers over the handle -----------------------------------------------------------------------------------
def _name(obj: Any) -> str:
    return str(obj.metadata.name) if obj.metadata is not None else ""


def _read_secret(h: ClusterHandle, namespace: str, name: str) -> dict[str, Any] | None:
    found = h.secret(namespace, name)
    return clean(h.json_of(found)) if found is not None else None


def _patch_service(h: ClusterHandle, namespace: str, name: str, patch: dict[str, Any]) -> None:
    h.call(f"patch service {namespace}/{name}", lambda: h.core.patch_namespaced_service(
        name, namespace, patch, _content_type=STRATEGIC_MERGE, _request_timeout=h.request_timeout))


def _patch_namespace(h: ClusterHandle, name: str, patch: dict[str, Any]) -> None:
    h.call(f"patch namespace {name}", lambda: h.core.patch_namespace(
        name, patch, _content_type=STRATEGIC_MERGE, _request_timeout=h.request_timeout))


def _patch_template(h: ClusterHandle, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    h.call(f"patch deployment {namespace}/{name}", lambda: h.apps.patch_namespaced_deployment(
        name, namespace, patch, _content_type=STRATEGIC_MERGE, _request_timeout=h.request_timeout))


def _poll(lab: FaultLab, fn: Callable[[], Any], what: str, timeout: float) -> Any:
    return poll(fn, timeout=timeout, what=what, retry_on=(NotYet, LabError, ValueError), sleep=lab.sleep)


# --- remote secrets (faults a, b) ------------------------------------------------------------------------------------
def _remote_secret(lab: FaultLab) -> str:
    return remote_secret_name(lab.profile.server.name)


def clusterz(h: ClusterHandle) -> dict[str, str]:
    """istiod's remote clusters and their sync status, asked inside the istiod pod (`pilot-discovery request`,
    pilot/cmd/pilot-discovery/app/request.go@1.30.3: 127.0.0.1:15014, which the debug handlers serve without
    authentication only from localhost: pilot/pkg/xds/debug.go@1.30.3:244-251)."""
    pod = _name(h.running_pod(ISTIO_NS, ISTIOD_SELECTOR))
    res = h.exec(ISTIO_NS, pod, ISTIOD_CONTAINER,
                 ["pilot-discovery", "request", "GET", "/debug/clusterz"])
    if not res.ok:
        raise LabError(f"istiod's debug/clusterz on {h.context}: pilot-discovery exited {res.exit_code}")
    return remote_clusters(res.stdout)


def _await_remote(lab: FaultLab, want: Callable[[str | None], bool], what: str, timeout: float) -> str | None:
    cluster = lab.profile.server.name

    def check() -> str | None:
        status = clusterz(lab.client).get(cluster)
        if not want(status):
            raise NotYet(f"{cluster} is {status or 'absent'} in cluster1's istiod")
        return status

    result: str | None = _poll(lab, check, f"{cluster} {what} in {lab.client.context}'s istiod", timeout)
    return result


def _save_remote_secret(lab: FaultLab) -> None:
    if "remote-secret" in lab.saved:
        return
    found = _read_secret(lab.client, ISTIO_NS, _remote_secret(lab))
    if found is None:
        raise NotFoundError(f"no secret {ISTIO_NS}/{_remote_secret(lab)} on {lab.client.context}; run `make lab-up` "
                            "first")
    lab.saved["remote-secret"] = found


def _drop_remote_secret(lab: FaultLab) -> None:
    """Delete the remote secret and wait until istiod has let the cluster go (so a new secret of the same name is
    an Add, not the make-before-break Update: secretcontroller.go@1.30.3:441-452)."""
    lab.client.delete_secret(ISTIO_NS, _remote_secret(lab))
    _await_remote(lab, lambda s: s is None, "gone", XDS_PUSH + REMOTE_CLUSTER_TIMEOUT)


def _inject_no_remote_secret(lab: FaultLab) -> None:
    _save_remote_secret(lab)
    _drop_remote_secret(lab)


def _inject_remote_secret_loopback(lab: FaultLab) -> None:
    _save_remote_secret(lab)
    _drop_remote_secret(lab)
    port = urlsplit(lab.server.server).port or 443  # kind publishes the API server on 127.0.0.1:<port>
    lab.client.put_secret(loopback_secret(lab.saved["remote-secret"], port))
    _await_remote(lab, lambda s: s is not None, "added", XDS_PUSH)


def _restore_remote_secret(lab: FaultLab) -> None:
    if "remote-secret" not in lab.saved:
        return
    live = _read_secret(lab.client, ISTIO_NS, _remote_secret(lab))
    if live is not None and live != lab.saved["remote-secret"]:
        _drop_remote_secret(lab)  # a bad one in place: replacing it would keep the bad cluster until it synced
    lab.client.put_secret(lab.saved["remote-secret"])
    _await_remote(lab, lambda s: s == "synced", "synced", XDS_PUSH + REMOTE_CLUSTER_TIMEOUT)
    lab.saved.pop("remote-secret", None)


# --- network labels (fault c) ----------------------------------------------------------------------------------------
def _inject_network_unknown(lab: FaultLab) -> None:
    h = lab.server
    ns = h.call(f"read namespace {ISTIO_NS}", lambda: h.core.read_namespace(ISTIO_NS,
                                                                              _request_timeout=h.request_timeout))
    lab.saved.setdefault("network-label", (ns.metadata.labels or {}).get(NETWORK_LABEL) or lab.profile.server.network)
    _patch_namespace(h, ISTIO_NS, {"metadata": {"labels": {NETWORK_LABEL: None}}})
    for pod in h.pods(APP_NS, f"app={SERVER_APP}"):
        name = _name(pod)
        h.call(f"patch pod {APP_NS}/{name}", lambda n=name: h.core.patch_namespaced_pod(  # type: ignore[misc]
            n, APP_NS, {"metadata": {"labels": {NETWORK_LABEL: None}}}, _content_type=STRATEGIC_MERGE,
            _request_timeout=h.request_timeout))


def _restore_network_unknown(lab: FaultLab) -> None:
    h = lab.server
    network = lab.saved.get("network-label") or lab.profile.server.network
    _patch_namespace(h, ISTIO_NS, {"metadata": {"labels": {NETWORK_LABEL: network}}})
    # New pods get the label from the injector again (webhook.go@1.30.3:767-770).
    h.restart_and_wait(APP_NS, [SERVER_APP])
    lab.saved.pop("network-label", None)


# --- the east-west gateway (faults d, e) -----------------------------------------------------------------------------
def _gateway_address(h: ClusterHandle) -> str | None:
    return h.service_address(ISTIO_NS, EASTWEST_GATEWAY)


def _inject_eastwest_no_address(lab: FaultLab) -> None:
    h = lab.server
    svc = h.service(ISTIO_NS, EASTWEST_GATEWAY)
    annotations = (svc.metadata.annotations or {}) if svc.metadata else {}
    lab.saved.setdefault("eastwest", {"pool": annotations.get(METALLB_POOL_ANNOTATION),
                                      "externalIPs": list(svc.spec.external_ips or []) if svc.spec else []})
    _patch_service(h, ISTIO_NS, EASTWEST_GATEWAY, {"metadata": {"annotations": {METALLB_POOL_ANNOTATION:
                                                                                 NO_SUCH_POOL}},
                                                   "spec": {"externalIPs": None}})

    def pending() -> None:
        address = _gateway_address(h)
        if address:
            raise NotYet(f"the east-west gateway still has {address}")

    _poll(lab, pending, f"the east-west gateway's address withdrawn on {h.context}", TIMEOUTS.rollout)


def _restore_eastwest_address(lab: FaultLab) -> None:
    if "eastwest" not in lab.saved:
        return
    h = lab.server
    saved = lab.saved["eastwest"]
    _patch_service(h, ISTIO_NS, EASTWEST_GATEWAY, {"metadata": {"annotations": {METALLB_POOL_ANNOTATION:
                                                                                 saved["pool"]}},
                                                   "spec": {"externalIPs": saved["externalIPs"] or None}})

    def assigned() -> str:
        address = _gateway_address(h)
        if not address:
            raise NotYet("the east-west gateway has no address yet")
        return address

    _poll(lab, assigned, f"an address for the east-west gateway on {h.context}", TIMEOUTS.rollout)
    lab.saved.pop("eastwest", None)


def renew_client_connections(lab: FaultLab) -> None:
    """Restart cluster1's curl, and with it the sidecar's pooled connections through cluster2's gateway, so that
    the probes judge the changed gateway rather than a connection opened before it (the listener drain:
    LISTENER_DRAIN)."""
    lab.client.restart_and_wait(APP_NS, [CLIENT_APP])


def _inject_no_auto_passthrough(lab: FaultLab) -> None:
    h = lab.server
    if "cross-network-gateway" not in lab.saved:
        live = h.get_object(GATEWAY, ISTIO_NS, CROSS_NETWORK_GATEWAY)
        lab.saved["cross-network-gateway"] = clean(live)
    h.delete_object(GATEWAY, ISTIO_NS, CROSS_NETWORK_GATEWAY)
    lab.wait(XDS_PUSH)  # the push that takes the gateway's 15443 listener away
    renew_client_connections(lab)


def _restore_auto_passthrough(lab: FaultLab) -> None:
    if "cross-network-gateway" in lab.saved:
        obj = dict(lab.saved["cross-network-gateway"])
        obj.pop("apiVersion", None)  # the saved version's; put_object writes through GATEWAY's
        lab.server.put_object(GATEWAY, {"apiVersion": f"{GATEWAY.group}/{GATEWAY.version}", **obj})
        lab.saved.pop("cross-network-gateway", None)


# --- roots (fault f) -------------------------------------------------------------------------------------------------
def _restart_istiod(lab: FaultLab) -> None:
    """Restart cluster2's istiod (1.30 refuses a new root without a restart: istio_ca.go@1.30.3:331-367) and wait
    until its root is in istio-ca-root-cert of istio-system and sample, which new pods mount."""
    h = lab.server
    h.restart_and_wait(ISTIO_NS, [ISTIOD])

    def published() -> None:
        want = h.istiod_root(ISTIO_NS)
        if want is None:
            raise NotYet("neither cacerts nor istio-ca-secret holds a root yet")
        for namespace in (ISTIO_NS, APP_NS):
            cm = h.find_configmap(namespace, ROOT_CONFIGMAP)
            published_root = ((cm.data or {}).get(ROOT_KEY) or "") if cm is not None else ""
            if published_root.strip() != want.strip():
                raise NotYet(f"configmap {namespace}/{ROOT_CONFIGMAP} does not hold istiod's current root yet")

    _poll(lab, published, f"istiod's root in {ROOT_CONFIGMAP} on {h.context}", TIMEOUTS.rollout)


def _restart_server_workloads(lab: FaultLab) -> None:
    lab.server.restart_and_wait(ISTIO_NS, [EASTWEST_GATEWAY])
    lab.server.restart_and_wait(APP_NS, [SERVER_APP])


def _inject_root_ca_mismatch(lab: FaultLab) -> None:
    h = lab.server
    if "cacerts" not in lab.saved:
        found = _read_secret(h, ISTIO_NS, "cacerts")
        if found is None:
            raise NotFoundError(f"no secret {ISTIO_NS}/cacerts on {h.context}; run `make lab-up` first")
        lab.saved["cacerts"] = found
    other = certs.untrusted_ca(lab.workdir, lab.profile.server.name)
    files = {key: path.read_bytes() for key, path in certs.cacerts_files(other).items()}
    h.put_secret(certs.secret_object("cacerts", ISTIO_NS, files))
    h.delete_secret(ISTIO_NS, "istio-ca-secret")
    _restart_istiod(lab)
    _restart_server_workloads(lab)


def _restore_certificates(lab: FaultLab) -> None:
    h = lab.server
    if "cacerts" in lab.saved:
        h.put_secret(lab.saved["cacerts"])
    h.delete_secret(ISTIO_NS, "istio-ca-secret")
    _restart_istiod(lab)
    _restart_server_workloads(lab)
    lab.saved.pop("cacerts", None)


# --- DNS capture (fault g) -------------------------------------------------------------------------------------------
def _inject_dns_capture_off(lab: FaultLab) -> None:
    h = lab.client
    _patch_template(h, APP_NS, CLIENT_APP, {PROXY_CONFIG_ANNOTATION: DNS_CAPTURE_OFF})
    h.wait_rollout(APP_NS, CLIENT_APP)


def _restore_dns_capture(lab: FaultLab) -> None:
    h = lab.client
    _patch_template(h, APP_NS, CLIENT_APP, {PROXY_CONFIG_ANNOTATION: None})
    h.wait_rollout(APP_NS, CLIENT_APP)


# --- the same service subnet (fault h) -------------------------------------------------------------------------------
def shared_subnet_objects(service_subnet: str, cluster_ip: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """cluster1's extra ServiceCIDR over cluster2's service range (networking.k8s.io/v1, GA in Kubernetes 1.33)
    and a TCP Service without endpoints on httpbin's cluster2 ClusterIP and port. Pure."""
    cidr = {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": SHARED_CIDR},
            "spec": {"cidrs": [service_subnet]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": COLLIDER, "namespace": APP_NS},
           "spec": {"clusterIP": cluster_ip, "ports": [{"name": "tcp", "port": SERVER_PORT, "protocol": "TCP"}]}}
    return cidr, svc


def _networking(h: ClusterHandle) -> k8s.NetworkingV1Api:
    return k8s.NetworkingV1Api(h.api)


def _inject_shared_subnet(lab: FaultLab) -> None:
    client, server = lab.client, lab.server
    ip = server.cluster_ip(APP_NS, SERVER_APP)
    if not ip:
        raise LabError(f"service {APP_NS}/{SERVER_APP} has no ClusterIP on {server.context}; run `make lab-up`")
    cidr: Any
    svc: Any
    cidr, svc = shared_subnet_objects(lab.profile.server.service_subnet, ip)
    lab.saved["shared-subnet"] = True
    net = _networking(client)
    client.call(f"create servicecidr {SHARED_CIDR}", lambda: net.create_service_cidr(
        cidr, _request_timeout=client.request_timeout))
    client.call(f"create service {APP_NS}/{COLLIDER}", lambda: client.core.create_namespaced_service(
        APP_NS, svc, _request_timeout=client.request_timeout))


def _restore_shared_subnet(lab: FaultLab) -> None:
    client = lab.client
    net = _networking(client)
    for doing, fn in ((f"delete service {APP_NS}/{COLLIDER}", lambda: client.core.delete_namespaced_service(
            # not decoded: the API answers a Service or a Status depending on its version
            COLLIDER, APP_NS, _preload_content=False,
            _request_timeout=client.request_timeout).release_conn()),  # type: ignore[attr-defined]
            (f"delete servicecidr {SHARED_CIDR}", lambda: net.delete_service_cidr(
                SHARED_CIDR, _request_timeout=client.request_timeout))):
        with contextlib.suppress(NotFoundError):
            client.call(doing, fn)

    def gone() -> None:  # its finalizer holds it until no address of the range is in use
        try:
            client.call(f"read servicecidr {SHARED_CIDR}", lambda: net.read_service_cidr(
                SHARED_CIDR, _request_timeout=client.request_timeout))
        except NotFoundError:
            return
        raise NotYet(f"servicecidr {SHARED_CIDR} is still there")

    _poll(lab, gone, f"servicecidr {SHARED_CIDR} deleted on {client.context}", TIMEOUTS.rollout)
    lab.saved.pop("shared-subnet", None)


# --- the catalogue ---------------------------------------------------------------------------------------------------
ALL = f"{ISTIO_RELEASES[0]}-{ISTIO_RELEASES[-1]}"
DOC = "docs/multi-primary-faults.md"

FAULTS: tuple[Fault, ...] = (
    Fault(
        id="no-remote-secret",
        cluster="client",
        breaks="delete cluster2's remote secret (istio-system/istio-remote-secret-cluster2) in cluster1",
        expectations=(
            Expectation(ALL, "dns-failure", 85,
                        "cluster1's istiod drops cluster2's registry (pkg/kube/multicluster/secretcontroller.go"
                        "@1.30.3:493-502), so httpbin is in no sidecar scope nor the DNS proxy's name table "
                        "(pkg/dns/server/name_table.go@1.30.3:42-62); kube-dns has no such Service in cluster1: "
                        f"curl 6 ({DOC} (a))"),
        ),
        inject=_inject_no_remote_secret,
        restore=_restore_remote_secret,
    ),
    Fault(
        id="remote-secret-loopback",
        cluster="client",
        breaks="cluster2's remote secret in cluster1 with server `https://127.0.0.1:<port>` (istio#31081), put in "
               "after the good one was deleted",
        expectations=(
            Expectation(ALL, "dns-failure", 80,
                        "the new cluster's namespace filter never syncs (pkg/kube/multicluster/cluster.go"
                        "@1.30.3:198-226), no handler registers cluster2's services, so the name is unknown as "
                        "without a secret; replacing a working secret in place would keep it working "
                        f"(secretcontroller.go@1.30.3:441-452), hence the deletion first ({DOC} (b))"),
        ),
        inject=_inject_remote_secret_loopback,
        restore=_restore_remote_secret,
        timeout=REMOTE_CLUSTER_TIMEOUT + CONVERGE,
    ),
    Fault(
        id="network-label-missing",
        cluster="server",
        breaks="remove topology.istio.io/network from cluster2's istio-system namespace and from httpbin's pods",
        expectations=(
            Expectation(ALL, "timeout", 60,
                        "an endpoint's network is its pod label first, the namespace label only without it "
                        "(pilot/pkg/serviceregistry/kube/controller/endpoint_builder.go@1.30.3:102-106), so the "
                        "namespace label alone changes nothing (webhook.go@1.30.3:767-770 labels the pods from "
                        "values.global.network; the issue's 'pod IPs' needs both gone); with no network httpbin "
                        "matches network1 (pilot/pkg/model/context.go@1.30.3:419-423) and cluster1 gets its pod "
                        "IP (pilot/pkg/xds/endpoints/ep_filters.go@1.30.3:154-163), which it cannot route: curl 28 "
                        f"before Envoy's 3 x 10 s connect attempts end ({DOC} (c'))"),
        ),
        inject=_inject_network_unknown,
        restore=_restore_network_unknown,
    ),
    Fault(
        id="eastwest-no-address",
        cluster="server",
        breaks="cluster2's east-west gateway Service without an address (MetalLB pool that does not exist, "
               "externalIPs removed): EXTERNAL-IP `<pending>`",
        expectations=(
            Expectation(ALL, "timeout", 65,
                        "a network's gateway comes from the gateway Service's addresses "
                        "(pilot/pkg/serviceregistry/kube/controller/network.go@1.30.3:270-310); without one network2 "
                        "has no gateway and its endpoints are kept as pod IPs (ep_filters.go@1.30.3:49-67,154-163), "
                        f"black-holed from cluster1: curl 28 ({DOC} (d))"),
        ),
        inject=_inject_eastwest_no_address,
        restore=_restore_eastwest_address,
    ),
    Fault(
        id="no-auto-passthrough-gateway",
        cluster="server",
        breaks="delete the `*.local` AUTO_PASSTHROUGH Gateway cross-network-gateway in cluster2",
        expectations=(
            Expectation(ALL, "upstream-connect-failure", 75,
                        "no Gateway selects the east-west gateway, so it has no 15443 listener "
                        "(pilot/pkg/networking/core/gateway.go@1.30.3:119-120,926-927) while cluster1 still sends "
                        "there (the gateway comes from the Service): refused, retried, 503 UF,URX "
                        f"'remote connection failure' ({DOC} (e))"),
        ),
        inject=_inject_no_auto_passthrough,
        restore=_restore_auto_passthrough,
    ),
    Fault(
        id="root-ca-mismatch",
        cluster="server",
        breaks="cluster2's cacerts from another root, then restart istiod, the east-west gateway and httpbin",
        expectations=(
            Expectation(ALL, "upstream-tls-failure", 75,
                        "cluster1's sidecar fails to verify httpbin's chain; Istio 1.30.3's Envoy (1.38.4-dev) no "
                        "longer puts the transport reason in the 503 body (envoyproxy/envoy changelogs/1.38.1.yaml, "
                        "hide_transport_failure_reason_in_response_body), so only the client sidecar's access log "
                        "names CERTIFICATE_VERIFY_FAILED (pilot/pkg/model/telemetry_logging.go@1.30.3:44-51); "
                        f"from the body alone: upstream-connect-failure ({DOC} (f))"),
        ),
        inject=_inject_root_ca_mismatch,
        restore=_restore_certificates,
        settle=15.0,
    ),
    Fault(
        id="dns-capture-off",
        cluster="client",
        breaks=f"ISTIO_META_DNS_CAPTURE false for cluster1's curl (pod annotation {PROXY_CONFIG_ANNOTATION})",
        expectations=(
            Expectation(ALL, "dns-failure", 90,
                        "the annotation is merged over meshConfig.defaultConfig at injection "
                        "(pilot/pkg/model/proxy_config.go@1.30.3:57-64, pkg/config/mesh/mesh.go@1.30.3:146-156), so "
                        "istio-init gets no port-53 redirect (tools/istio-iptables/pkg/cmd/root.go@1.30.3:116-118) "
                        "and the agent no DNS server (pkg/istio-agent/agent.go@1.30.3:601); kube-dns in cluster1 "
                        f"has no httpbin: curl 6 ({DOC} (g))"),
        ),
        inject=_inject_dns_capture_off,
        restore=_restore_dns_capture,
    ),
    Fault(
        id="shared-service-subnet",
        cluster="client",
        breaks="cluster2's service range added to cluster1 (ServiceCIDR) and a TCP Service without endpoints on "
               "httpbin's cluster2 ClusterIP:8000 (istio#32819)",
        expectations=(
            Expectation(ALL, "connection-reset", 55,
                        "the DNS proxy answers cluster2's ClusterIP (pilot/pkg/model/service.go@1.30.3:1934-1973); "
                        "a local TCP service on that IP and port gets its own listener "
                        "(pilot/pkg/networking/core/listener.go@1.30.3:832-870), preferred to the HTTP wildcard, "
                        f"and with no endpoints the TCP proxy closes at once: curl 52 or 56 ({DOC} (h))"),
        ),
        inject=_inject_shared_subnet,
        restore=_restore_shared_subnet,
    ),
)

BY_ID: dict[str, Fault] = {f.id: f for f in FAULTS}


# --- observing ------------------------------------------------------------------------------------------------------
def probe_class(lab: FaultLab) -> tuple[str, list[str]]:
    """One call from cluster1's curl to httpbin.sample.svc.cluster.local:8000, classified with the client
    sidecar's last access-log lines (which tell a certificate failure from a refused connection: F1)."""
    h = lab.client
    pod = _name(h.running_pod(APP_NS, CLIENT_SELECTOR))
    res = h.exec(APP_NS, pod, CLIENT_APP, curl_argv(PROBE_URL, max_time=PROBE_MAX_TIME),
                 timeout=PROBE_MAX_TIME + 30)
    result = parse_curl(res.stdout, res.exit_code, stderr=res.stderr)
    if not result.ok:
        lab.wait(ACCESS_LOG_FLUSH)
    try:
        access_log: str | None = h.logs(APP_NS, pod, SIDECAR, tail=5)
    except LabError as err:
        access_log = None
        log.debug("no access log from %s/%s: %s", APP_NS, pod, err)
    verdict = classify(result.output, result.exit_code, access_log)
    return verdict.cls, list(verdict.evidence)


def restore_and_heal(lab: FaultLab, fault: Fault, observe: Callable[[], str] | None = None, *,
                     on_failure: Callable[[str], None] | None = None, history: list[str] | None = None) -> None:
    """Undo `fault`, then wait until the probe says `ok` again (lab.catalogue.heal). Any failure is told to
    `on_failure` (the e2e suite marks the lab unhealthy), then propagates."""
    heal(fault.id, lambda: fault.restore(lab), observe or (lambda: probe_class(lab)[0]),
         timeout=fault.settle + fault.timeout, sleep=lab.sleep, on_failure=on_failure, history=history)


# --- the docs' table ------------------------------------------------------------------------------------------------
TABLE_BEGIN = ("<!-- fault table: generated from lab/scenarios/multi_primary_multi_network/faults.py (FAULTS) by "
               "`python -m lab faults table --scenario multi-primary-multi-network --write "
               "docs/multi-primary-faults.md`; edit the catalogue, not this table -->")
TABLE_END = "<!-- end of fault table -->"
TABLE_VERSIONS = (ISTIO_RELEASES[-1],)


def catalogue_table(versions: tuple[str, ...] = TABLE_VERSIONS) -> str:
    head = ["id", "cluster", "how it breaks the lab", f"expected on {versions[0]}", *(f"on {v}" for v in versions[1:]),
            "slow lane"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fault in FAULTS:
        cells = [f"`{fault.id}`", fault.cluster, fault.breaks]
        for i, version in enumerate(versions):
            exp = fault.expected_for(version)
            cells.append(f"`{exp.cls}`" + (f" ({exp.confidence}%)" if i == 0 else ""))
        cells.append("reinstall" if fault.needs_reinstall else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def with_catalogue_table(text: str) -> str:
    """`text` with the lines between its two table markers replaced by `catalogue_table()`."""
    return with_table(text, TABLE_BEGIN, TABLE_END, catalogue_table())
