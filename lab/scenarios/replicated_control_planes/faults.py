"""The documented-failure catalogue: every way docs/design.md says the `.global` scenario breaks, as data plus the
code that breaks and heals a running lab.

What this module owns:
- `FAULTS`: one `Fault` per row of the README's fault table (same ids), with what it breaks, the expected probe
  class per Istio 1.7.x version range (`Expectation`: class, confidence, why), and a place for what real runs observed
  (`Observation`). The expectations are reasoned from Istio's source, not observed on a real lab (the gateway faults'
  configuration side and their `gateway_state` are checked against pilot's own output, tests/upstream/test_pilot.py):
  when a real run disagrees, change the data here and add an Observation saying what was seen.
- `inject` / `restore` for each fault, built on the same modules the plan uses, acting on the lab through its one
  handle (`FaultLab.lab`, a lab.cluster.LabHandle: reads, writes, rollout waits and exec on the Kubernetes API; only
  the reinstall runs istioctl), the Corefile through
  `lab.scenarios.replicated_control_planes.corefile.patch/unpatch`, ServiceEntries through
  `lab.scenarios.replicated_control_planes.serviceentry`'s renderers (validation
  bypassed on purpose for the VIP faults, whose point is to show what the validation prevents), another root of
  trust through `lab.certs.generate`.
- How long a change takes to reach the probe, derived from the caches on its way (`ADDRESS_CHANGE`,
  `COREFILE_CHANGE`: the `cache` TTLs of the lab's `global` block and of istiocoredns's Corefile, and the plugin's
  refresh), and for a change on cluster2's gateway, `reach_new_connections`: wait until the gateway's config dump
  shows it, then give the probe new connections (cluster1's sidecar pools its connections through the gateway).
- `settled_class`: poll a probe until its class is stable, counting only probes begun after the settling time;
  `restore_and_heal`: put the lab back and wait for `ok`, reporting any failure.
- `catalogue_table` / `with_catalogue_table`: the README's fault table, generated from `FAULTS`.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import catalogue, certs, cluster
from lab.catalogue import Expectation as Expectation
from lab.catalogue import Observation as Observation
from lab.catalogue import clean, heal, pick, with_table
from lab.catalogue import settled_class as settled_class
from lab.classify import classify
from lab.cluster import ENVOY_FILTER, SERVICE_ENTRY, ClusterHandle, KubeconfigSource, Resource
from lab.configdump import TCP_CLUSTER_REWRITE, analyze, sni_dnat_name
from lab.errors import LabError
from lab.files import atomic_write
from lab.probe import Prober
from lab.profile import version_key
from lab.retry import NotYet, poll
from lab.scenarios.replicated_control_planes import corefile, istio, serviceentry
from lab.scenarios.replicated_control_planes.names import (
    CLIENT_NS,
    ENVOYFILTER,
    ENVOYFILTER_FIXED_IN,
    GATEWAY_SELECTOR,
    GATEWAY_SERVICE,
    GATEWAY_TLS_PORT,
    ISTIO_NS,
    ISTIOCOREDNS_SERVICE,
    REMOTE_HOST,
    REMOTE_NAME,
    REMOTE_PORT,
    SERVER_NS,
)
from lab.scenarios.replicated_control_planes.profiles import Profile
from lab.settings import TIMEOUTS
from lab.shell import Runner

log = logging.getLogger("lab.scenarios.replicated_control_planes.faults")

# Every Istio release the scenario targets (git tags 1.7.0 ... 1.7.8; docs/sources.md#istio-release).
ISTIO_VERSIONS: tuple[str, ...] = tuple(f"1.7.{n}" for n in range(9))

# Where the scenario's objects live (the write-up's names; docs/sources.md#istio-recipes-lookups).
PROBE_URL = f"http://{REMOTE_HOST}:{REMOTE_PORT}/headers"  # the write-up's check

# A VIP of each forbidden kind (docs/sources.md#istio-docs-serviceentry; the write-up's
# "不能使用多播地址 ... 也不能使用环回地址").
MULTICAST_VIP = "224.0.0.2"
LOOPBACK_VIP = "127.0.0.2"

# The clusters cluster2's gateway may end a `.global` connection in (sni-dnat mode): the SNI cluster itself, built
# only for a name the gateway knows (cluster2's ServiceEntry), and the local one the 1.7.5+ EnvoyFilter rewrites to.
LOCAL_HOST = f"{REMOTE_NAME}.{SERVER_NS}.svc.cluster.local"
GLOBAL_SNI_CLUSTER = sni_dnat_name(REMOTE_HOST, REMOTE_PORT)  # outbound_.8000_._.httpbin.bar.global
LOCAL_SNI_CLUSTER = sni_dnat_name(LOCAL_HOST, REMOTE_PORT)  # outbound_.8000_._.httpbin.bar.svc.cluster.local
CLIENT_DEPLOYMENT = "sleep"  # samples/sleep/sleep.yaml, in cluster1's foo

# --- how long a change takes to reach the probe -----------------------------------------------------------------
# cluster1's sleep resolves httpbin.bar.global through kube-dns's `global` block (the lab's,
# lab/scenarios/replicated_control_planes/corefile.py), which
# forwards to istiocoredns (its own Corefile, manifests/charts/istiocoredns/templates/configmap.yaml at 1.7.x), whose
# gRPC plugin answers from the ServiceEntries it re-reads on a ticker (docs/sources.md#istiocoredns-plugin).
KUBE_DNS_CACHE = float(corefile.cache_ttl(corefile.render_block("192.0.2.53")) or 0)  # `cache 30` in the lab's block
ISTIOCOREDNS_CACHE = 30.0  # `cache 30` in the chart's `.:53` block (tests/data/corefile, the rendered chart)
PLUGIN_REFRESH = 5.0  # the plugin re-reads every ServiceEntry every 5 s into a fresh map
# A ServiceEntry's `addresses` changed: the plugin sees it within one refresh, then each cache may still hold the
# old answer for its TTL. The sidecar does not resolve the name (1.7 has no DNS proxy) and musl does not cache.
ADDRESS_CHANGE = PLUGIN_REFRESH + ISTIOCOREDNS_CACHE + KUBE_DNS_CACHE
# kube-dns's Corefile rewritten and CoreDNS restarted: the new pods start with an empty cache, but a replica of the
# old configuration can answer from its cache until it is gone, and keeps serving for its lameduck time after
# `rollout status` returned (kubeadm's Corefile: `health { lameduck 5s }`).
KUBE_DNS_LAMEDUCK = 5.0
COREFILE_CHANGE = KUBE_DNS_CACHE + KUBE_DNS_LAMEDUCK
# An xDS change (a ServiceEntry's endpoint, the gateway's listeners and clusters): istiod's push debounce (100 ms,
# PILOT_DEBOUNCE_AFTER) up to 10 s (PILOT_DEBOUNCE_MAX) at 1.7.8, pilot/pkg/features/pilot.go.
XDS_PUSH = 10.0
# After its settling time a fault must show a stable class within one more full DNS cycle: every probe resolves the
# name through both caches, whatever the fault changed.
CONVERGE = ADDRESS_CHANGE


# --- data ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Followup:
    """A second step after the injection, with its own expectation (e.g. the write-up's fix applied on top)."""

    title: str
    apply: Callable[[FaultLab], None]
    expectations: tuple[Expectation, ...]
    gateway_state: GatewayCheck | None = None  # as Fault.gateway_state, for the state after `apply`

    def expected_for(self, version: str) -> Expectation:
        return pick(self.expectations, version, self.title)


@dataclass(frozen=True)
class Fault(catalogue.Fault["FaultLab"]):
    """A fault of this catalogue (lab.catalogue.Fault: id, cluster, breaks, expectations, inject, restore,
    needs_reinstall, settle, timeout, observed), with the 1.7 scenario's timings and fields."""

    settle: float = XDS_PUSH  # seconds after inject before a verdict counts (DNS caches, xDS pushes)
    timeout: float = CONVERGE  # seconds after settling to reach a stable class
    certificates: bool = False  # restarts istiod and workloads; restore deletes istio-ca-secret
    followup: Followup | None = None
    # For a fault on cluster2's gateway: what the gateway's config dump must show once the change landed (see
    # reach_new_connections); None for the others.
    gateway_state: GatewayCheck | None = None


# --- the lab the faults act on -----------------------------------------------------------------------------------
@dataclass
class FaultLab:
    """A running lab as the faults see it: the profile, the one lab handle (lab.cluster.LabHandle: kubeconfig and
    context from the provider), scratch space for what they save, and the runner for the istioctl the reinstall
    fault runs."""

    profile: Profile
    lab: cluster.LabHandle
    workdir: Path  # scratch: another root's certificates, the install overlay
    istioctl: Path | None = None  # needed by the reinstall faults
    istio_dir: Path | None = None
    saved: dict[str, Any] = field(default_factory=dict)  # what inject took away, for restore (never printed)
    sleep: Callable[[float], None] | None = None  # the polls' sleep (tests pass a fake one)
    runner: Runner = field(default_factory=Runner)  # runs istioctl

    @classmethod
    def connect(cls, profile: Profile, provider: KubeconfigSource, workdir: Path, *, kubectl_binary: str = "kubectl",
                istioctl: Path | None = None, istio_dir: Path | None = None,
                sleep: Callable[[float], None] | None = None, runner: Runner | None = None) -> FaultLab:
        """The faults' view of the lab the provider made (lab.cluster.LabHandle.from_provider)."""
        handle = cluster.LabHandle.from_provider(profile.clusters, provider, kubectl_binary)
        return cls(profile, handle, Path(workdir), istioctl, istio_dir, sleep=sleep, runner=runner or Runner())

    @property
    def client(self) -> ClusterHandle:
        return self.lab[self.profile.client.name]

    @property
    def server(self) -> ClusterHandle:
        return self.lab[self.profile.server.name]


# --- thin helpers over the lab handle -----------------------------------------------------------------------------
_CUSTOM: dict[str, Resource] = {r.kind: r for r in (SERVICE_ENTRY, ENVOY_FILTER)}


def _put(k: ClusterHandle, obj: dict[str, Any]) -> None:
    """Replace the object whole (so removed fields stay removed), or create it when it does not exist: a Secret, or
    one of the Istio kinds the faults change (ServiceEntry, EnvoyFilter). Without a resourceVersion the live one is
    used, as `kubectl replace` does (k8s.io/cli-runtime pkg/resource/helper.go, Helper.Replace with overwrite)."""
    kind = str(obj.get("kind"))
    if kind == "Secret":
        k.put_secret(obj)
    elif kind in _CUSTOM:
        k.put_object(_CUSTOM[kind], obj)
    else:
        raise LabError(f"the faults do not write {kind} objects")


def _serviceentries(k: ClusterHandle, host: str = REMOTE_HOST) -> list[dict[str, Any]]:
    return [i for i in k.list_objects(SERVICE_ENTRY) if host in (i.get("spec") or {}).get("hosts", [])]


def _save_serviceentries(lab: FaultLab, key: str, k: ClusterHandle) -> list[dict[str, Any]]:
    found = _serviceentries(k)
    if not found:
        raise LabError(f"no ServiceEntry for {REMOTE_HOST} on {k.context}; run `make lab-up` first")
    saved = [clean(i) for i in found]
    lab.saved.setdefault(key, saved)
    return saved


def _restore_saved(lab: FaultLab, key: str, k: ClusterHandle) -> None:
    for obj in lab.saved.get(key, []):
        _put(k, obj)
    lab.saved.pop(key, None)


def _gateway_endpoint(k: ClusterHandle) -> tuple[str, int]:
    """cluster2's gateway node IP and 15443 nodePort, as the write-up looks them up (the gateway pod's hostIP and the
    Service's nodePort; docs/sources.md#istio-recipes-lookups)."""
    address = k.pod_host_ip(ISTIO_NS, GATEWAY_SELECTOR)
    port = k.node_port(ISTIO_NS, GATEWAY_SERVICE, GATEWAY_TLS_PORT)
    if not address or not port:
        raise LabError(f"cannot find the ingress gateway's node IP and 15443 nodePort on {k.context}")
    return address, port


def _istiocoredns_ip(k: ClusterHandle) -> str:
    ip = k.cluster_ip(ISTIO_NS, ISTIOCOREDNS_SERVICE)
    if not ip:
        raise LabError(f"service istiocoredns has no ClusterIP on {k.context}; is Istio installed?")
    return ip


# --- DNS faults (kube-system CoreDNS in the calling cluster) --------------------------------------------------------
def _write_corefile(k: ClusterHandle, text: str) -> None:
    cm = k.coredns()
    data = dict(cm.data or {})
    if data.get("Corefile") == text:
        return
    data["Corefile"] = text
    cm.data = data
    k.replace_configmap(cm)  # with the version it was read at: a change in between is a conflict, not lost
    # The write-up restarts CoreDNS after the change ("可以手动重启k8s的dns pod来使其生效"); it also empties its cache.
    k.restart_and_wait("kube-system", ["coredns"])


def _set_global_block(lab: FaultLab, *, present: bool = True, aaaa_guard: bool | None = None) -> None:
    """Write cluster1's `global` block as `lab up` does (the defaults: present, with the profile's AAAA guard), or
    without the guard, or not at all."""
    k = lab.client
    guard = lab.profile.aaaa_guard if aaaa_guard is None else aaaa_guard
    text = (k.coredns().data or {})["Corefile"]
    new = corefile.patch(text, _istiocoredns_ip(k), aaaa_guard=guard) if present else corefile.unpatch(text)
    _write_corefile(k, new)


# --- ServiceEntry faults --------------------------------------------------------------------------------------------
def _inject_missing_local_serviceentry(lab: FaultLab) -> None:
    for obj in _save_serviceentries(lab, "server-se", lab.server):
        lab.server.delete_object(SERVICE_ENTRY, obj["metadata"]["namespace"], obj["metadata"]["name"])


def _restore_serviceentries(lab: FaultLab, *, role: str) -> None:
    """Put back the ServiceEntries an inject saved in the cluster with `role` ("client" or "server")."""
    _restore_saved(lab, f"{role}-se", lab.client if role == "client" else lab.server)


_restore_server_serviceentries = functools.partial(_restore_serviceentries, role="server")
_restore_client_serviceentries = functools.partial(_restore_serviceentries, role="client")


def _inject_serviceentry_without_addresses(lab: FaultLab) -> None:
    for obj in _save_serviceentries(lab, "client-se", lab.client):
        broken = copy.deepcopy(obj)
        broken["spec"].pop("addresses", None)
        _put(lab.client, broken)


def _client_serviceentry(lab: FaultLab, *, vip: str | None = None, port: int | None = None) -> None:
    """cluster1's ServiceEntry as the plan renders it, with `vip` and/or the endpoint port forced (None: the
    profile's VIP, the gateway's 15443 nodePort).

    The renderer is given the profile's (valid) VIP and the bad one is written into the result afterwards: the
    validation that refuses multicast and loopback VIPs is bypassed on purpose to show what it prevents.
    """
    saved = _save_serviceentries(lab, "client-se", lab.client)
    address, node_port = _gateway_endpoint(lab.server)
    svc = serviceentry.RemoteService("httpbin", SERVER_NS, port=REMOTE_PORT)
    obj = serviceentry.render_client(svc, lab.profile.client.vip, address, node_port if port is None else port)
    if vip is not None:
        obj["spec"]["addresses"] = [vip]
    # Same name and namespace as the live object, so this replaces it rather than adding a second entry.
    obj["metadata"]["name"] = saved[0]["metadata"]["name"]
    obj["metadata"]["namespace"] = saved[0]["metadata"]["namespace"]
    _put(lab.client, obj)


_inject_vip_multicast = functools.partial(_client_serviceentry, vip=MULTICAST_VIP)
_inject_vip_loopback = functools.partial(_client_serviceentry, vip=LOOPBACK_VIP)
# The istio.io page's literal 15443 ("Do not change this port value"), which on a NodePort gateway is not where
# anything listens on the node.
_inject_wrong_gateway_port = functools.partial(_client_serviceentry, port=15443)


# --- the gateway's EnvoyFilter --------------------------------------------------------------------------------------
def legacy_envoyfilter(obj: dict[str, Any]) -> dict[str, Any]:
    """The 1.7.0-1.7.4 form of `istio-multicluster-ingressgateway`: the rewrite filter's settings under `config:`
    instead of `typed_config` (preconfigured.yaml at tag 1.7.3 vs 1.7.5; istio#27909). Pure; returns a copy.

    Istio 1.7.8's validation accepts it, as it accepted the charts of 1.7.0-1.7.4: the patch value is unmarshalled
    with AllowUnknownFields (pkg/config/xds/xds.go GogoStructToMessage), so `config` is dropped without an error."""
    out = copy.deepcopy(obj)
    for patch in out.get("spec", {}).get("configPatches", []):
        value = patch.get("patch", {}).get("value", {})
        if value.get("name") != TCP_CLUSTER_REWRITE:
            continue
        if "typed_config" in value:
            typed = dict(value.pop("typed_config"))
            typed.pop("@type", None)
            value["config"] = typed
    return out


def _inject_envoyfilter_broken(lab: FaultLab) -> None:
    k = lab.server
    live = k.get_object(ENVOY_FILTER, ISTIO_NS, ENVOYFILTER)
    lab.saved.setdefault("envoyfilter", clean(live))
    _put(k, legacy_envoyfilter(clean(live)))
    # The write-up's situation: cluster2 has no ServiceEntry of its own for the name.
    _inject_missing_local_serviceentry(lab)


def _restore_envoyfilter(lab: FaultLab) -> None:
    if "envoyfilter" in lab.saved:
        _put(lab.server, lab.saved.pop("envoyfilter"))
    _restore_server_serviceentries(lab)


# --- certificate faults ---------------------------------------------------------------------------------------------
# istiod reads the `cacerts` secret (mounted at /etc/cacerts) only when it starts, and falls back to a self-signed
# root kept in `istio-ca-secret` (pilot/pkg/bootstrap/istio_ca.go at 1.7.8, lines ~48-60 and ~316-330).
def _save_cacerts(lab: FaultLab) -> None:
    if "cacerts" not in lab.saved:
        k = lab.server
        live = k.secret(ISTIO_NS, "cacerts")
        if live is None:
            raise LabError(f"no secret cacerts in {ISTIO_NS} on {k.context}; run `make lab-up` first")
        lab.saved["cacerts"] = clean(k.json_of(live))


def _cacerts_from(k: ClusterHandle, cluster_dir: Path) -> None:
    """Create or replace secret `cacerts` from a cluster directory written by lab.certs.generate."""
    files = {key: path.read_bytes() for key, path in certs.cacerts_files(cluster_dir).items()}
    _put(k, certs.secret_object("cacerts", ISTIO_NS, files))


# istiod publishes its root into ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) of every namespace
# (pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go at 1.7.8), but only once it holds the leader
# lease `istio-namespace-controller-election` (pilot/pkg/bootstrap/server.go initNamespaceController;
# pilot/pkg/leaderelection/leaderelection.go: 30 s lease), which the old pod keeps until it has terminated, after
# `kubectl rollout status` has already returned. A sidecar reads that file ONCE, when it starts, to trust istiod
# (pkg/istio-agent/sds-agent.go newWorkloadSecretCache: ./var/run/secrets/istio/root-cert.pem), so a workload
# restarted before the new root is published can never get a certificate. Hence: wait for it, then restart.
ROOT_CONFIGMAP = "istio-ca-root-cert"
ROOT_KEY = "root-cert.pem"


def _wait_root_published(lab: FaultLab, k: ClusterHandle, namespaces: tuple[str, ...]) -> None:
    def published() -> None:
        want = k.istiod_root(ISTIO_NS)
        if want is None:
            raise NotYet("neither cacerts nor istio-ca-secret holds a root yet")
        for namespace in namespaces:
            cm = k.find_configmap(namespace, ROOT_CONFIGMAP)
            if (((cm.data if cm is not None else None) or {}).get(ROOT_KEY) or "").strip() != want.strip():
                raise NotYet(f"configmap {namespace}/{ROOT_CONFIGMAP} does not hold istiod's current root yet")

    poll(published, timeout=TIMEOUTS.rollout, what=f"istiod's root in {ROOT_CONFIGMAP} of {', '.join(namespaces)} "
         f"on {k.context}", sleep=lab.sleep)


# The pods of cluster2 that hold a certificate on the call's path: the apps in `bar` end the mutual TLS; the ingress
# gateway passes it through, but its Envoy trusts istiod with the root file it read at start
# (tools/packaging/common/envoy_bootstrap.json at 1.7.8, cluster xds-grpc: trusted_ca filename), so one left running
# across a change of root loses xDS and keeps stale endpoints for the restarted apps: the call would then fail there,
# not on the certificate the fault is about.
GATEWAY_DEPLOYMENT = "istio-ingressgateway"


def _restart_istiod(lab: FaultLab) -> None:
    """Restart cluster2's istiod and wait until the root it now uses is what new pods in `istio-system` (the gateway)
    and `bar` will mount."""
    k = lab.server
    k.restart_and_wait(ISTIO_NS, ["istiod"])
    _wait_root_published(lab, k, (ISTIO_NS, SERVER_NS))


def _restart_gateway(lab: FaultLab) -> None:
    lab.server.restart_and_wait(ISTIO_NS, [GATEWAY_DEPLOYMENT])


def _restart_server_workloads(lab: FaultLab) -> None:
    _restart_gateway(lab)
    lab.server.restart_and_wait(SERVER_NS)


def _inject_root_ca_mismatch(lab: FaultLab) -> None:
    k = lab.server
    _save_cacerts(lab)
    _cacerts_from(k, certs.untrusted_ca(lab.workdir, lab.profile.server.name))
    k.delete_secret(ISTIO_NS, "istio-ca-secret")
    _restart_istiod(lab)
    _restart_server_workloads(lab)


def _inject_cacerts_after_install(lab: FaultLab) -> None:
    k = lab.server
    _save_cacerts(lab)
    # As if Istio had been installed before `cacerts` existed: istiod starts without it and self-signs.
    k.delete_secret(ISTIO_NS, "cacerts")
    k.delete_secret(ISTIO_NS, "istio-ca-secret")
    _restart_istiod(lab)
    # Then `cacerts` is created, and the workloads restarted, but not istiod: it keeps its self-signed root.
    _put(k, lab.saved["cacerts"])
    _restart_server_workloads(lab)


def _reinstall_istio(lab: FaultLab, k: ClusterHandle) -> None:
    if lab.istioctl is None or lab.istio_dir is None:
        raise LabError("this fault reinstalls Istio and needs istioctl and the Istio release directory")
    # The same two files `lab up` installs with (lab/plan.py: the release's values file + the lab's overlay).
    overlay = lab.workdir / f"istio-overlay-{lab.profile.server.name}.yaml"
    atomic_write(overlay, istio.overlay_yaml(lab.profile))
    argv = istio.install_argv(lab.istioctl, k.kubeconfig, k.context, [istio.values_file(lab.istio_dir), overlay])
    lab.runner.run(argv, timeout=TIMEOUTS.istio_install, context=f"reinstall Istio on {k.context}")


def _inject_stale_workloads_after_reinstall(lab: FaultLab) -> None:
    k = lab.server
    # First the FAQ's wrong state: cluster2 on another root, workloads included.
    _inject_root_ca_mismatch(lab)
    # Then the reinstall that fixes the root (shared cacerts back, old istio-ca-secret gone, istiod restarted) ...
    _put(k, lab.saved["cacerts"])
    k.delete_secret(ISTIO_NS, "istio-ca-secret")
    _reinstall_istio(lab, k)
    _restart_istiod(lab)
    _restart_gateway(lab)  # part of the reinstalled Istio
    # ... but the pods in `bar` are kept: they still hold certificates and ROOTCA from the other root.


def _restore_certificates(lab: FaultLab) -> None:
    k = lab.server
    if "cacerts" in lab.saved:
        _put(k, lab.saved["cacerts"])
    k.delete_secret(ISTIO_NS, "istio-ca-secret")
    _restart_istiod(lab)
    _restart_server_workloads(lab)
    lab.saved.pop("cacerts", None)


# --- what cluster2's gateway shows once a change landed ------------------------------------------------------------
# Each check reads lab.configdump.analyze(<gateway /config_dump>, REMOTE_HOST, REMOTE_PORT) and returns what does not
# hold yet (empty: landed). `gateway_paths` says, per 0.0.0.0_15443 chain serving the SNI, which cluster the
# connection ends in and whether the gateway has that cluster (`cluster_present`).
GatewayCheck = Callable[[dict[str, Any], str], list[str]]


def _sni_clusters(summary: dict[str, Any]) -> set[str]:
    return {c["name"] for c in summary["clusters"]["matches"]}


def _ends_in(summary: dict[str, Any], cluster: str, *, present: bool) -> list[str]:
    paths = summary.get("gateway_paths") or []
    if not paths:
        return [f"no 0.0.0.0_15443 filter chain serves SNI {GLOBAL_SNI_CLUSTER}"]
    got = [(p["cluster"], p["cluster_present"]) for p in paths]
    if all(g == (cluster, present) for g in got):
        return []
    state = "an existing" if present else "a missing"
    return [f"SNI {GLOBAL_SNI_CLUSTER} should end in {state} cluster {cluster}; the gateway's paths: {got}"]


def _without_global_cluster(summary: dict[str, Any]) -> list[str]:
    if GLOBAL_SNI_CLUSTER in _sni_clusters(summary):
        return [f"the gateway still has cluster {GLOBAL_SNI_CLUSTER}"]
    return []


def gateway_without_local_serviceentry(summary: dict[str, Any], version: str) -> list[str]:
    """cluster2 knows no httpbin.bar.global: no SNI cluster of that name; from 1.7.5 on the EnvoyFilter rewrites the
    SNI to the local cluster, which exists; before, the connection ends in the missing `.global` cluster."""
    rewrites = version_key(version) >= version_key(ENVOYFILTER_FIXED_IN)
    target = LOCAL_SNI_CLUSTER if rewrites else GLOBAL_SNI_CLUSTER
    return _without_global_cluster(summary) + _ends_in(summary, target, present=rewrites)


def gateway_with_broken_rewrite(summary: dict[str, Any], version: str) -> list[str]:
    """The legacy EnvoyFilter does no rewrite and cluster2 knows no httpbin.bar.global: the connection ends in the
    missing `.global` cluster, whatever the version."""
    return _without_global_cluster(summary) + _ends_in(summary, GLOBAL_SNI_CLUSTER, present=False)


def gateway_with_global_cluster(summary: dict[str, Any], version: str) -> list[str]:
    """No rewrite, but cluster2's ServiceEntry is back: the gateway builds the `.global` SNI cluster itself."""
    return _ends_in(summary, GLOBAL_SNI_CLUSTER, present=True)


def gateway_summary(lab: FaultLab) -> dict[str, Any]:
    """cluster2's ingress gateway's /config_dump, analysed for httpbin.bar.global:8000."""
    return analyze(Prober(lab.server).config_dump(ISTIO_NS, GATEWAY_SELECTOR), REMOTE_HOST, REMOTE_PORT)


def await_gateway(lab: FaultLab, check: GatewayCheck, what: str) -> list[dict[str, Any]]:
    """Poll cluster2's gateway until `check` finds nothing missing; returns its paths for `httpbin.bar.global`."""
    version = lab.profile.istio_version

    def landed() -> list[dict[str, Any]]:
        summary = gateway_summary(lab)
        problems = check(summary, version)
        if problems:
            raise NotYet("; ".join(problems))
        paths: list[dict[str, Any]] = summary["gateway_paths"]
        return paths

    # A config dump can fail while istiod pushes or the gateway restarts (exec error, half-written JSON): poll again.
    return poll(landed, timeout=TIMEOUTS.gateway_config, what=f"cluster2's gateway config after {what}",
                retry_on=(NotYet, LabError, ValueError), sleep=lab.sleep)


def renew_client_connections(lab: FaultLab) -> None:
    """Restart cluster1's sleep: its sidecar, and with it every connection it pooled through cluster2's gateway.

    Why a change on the gateway alone does not reach the probe (Envoy 1.15, istio/envoy 4abbbc03 as pinned by
    istio/proxy d68172a3 for Istio 1.7.8): the sidecar's HTTP/1.1 pool keeps its mTLS connections to the gateway
    (Istio 1.7 sets an upstream idle timeout only from a DestinationRule: pilot cluster.go), the gateway's tcp_proxy
    keeps the other side for its 1 h default idle timeout (source/common/tcp_proxy/tcp_proxy.cc), and the 2 s
    probes never let them idle. A changed filter chain closes its connections only after --drain-time-s
    (drainDuration, 45 s: DrainingFilterChainsManager in source/server/listener_manager_impl.cc; in-place filter
    chain updates are on by default), and a removed cluster only drains its TCP pools, which closes idle pool
    connections, not one that tcp_proxy holds (cluster_manager_impl.cc ~ClusterEntry -> drainTcpConnPools;
    tcp/original_conn_pool.cc checkForDrained). tcp_proxy picks its cluster when a connection starts, so a new
    connection sees the change.

    Restarting the client rather than the gateway leaves the thing under test as the change made it (a new gateway
    would get its config in one fresh push, not as updates to a running one); a DestinationRule with
    maxRequestsPerConnection would add to every fault an object `lab up` does not create. The probe picks the newest
    running pod not being deleted (lab.probe.Prober.pod), so no call goes through the old sidecar. The restore needs
    no restart: a connection that failed is not pooled, so the first call after a restore is a new connection."""
    lab.client.restart_and_wait(CLIENT_NS, [CLIENT_DEPLOYMENT])


def reach_new_connections(lab: FaultLab, check: GatewayCheck | None, what: str) -> list[dict[str, Any]]:
    """For a change on cluster2's gateway: wait until its config dump shows the change, then renew cluster1's
    connections, so that the probes that follow judge the new configuration. Returns the gateway's paths."""
    if check is None:
        return []
    paths = await_gateway(lab, check, what)
    renew_client_connections(lab)
    return paths


# --- the catalogue --------------------------------------------------------------------------------------------------
ALL = "1.7.0-1.7.8"
_UCF = "upstream-connect-failure"

FAULTS: tuple[Fault, ...] = (
    Fault(
        id="missing-local-serviceentry",
        cluster="server",
        breaks="remove cluster2's httpbin.bar.global ServiceEntry",
        expectations=(
            Expectation("1.7.0-1.7.4", _UCF, 75,
                        "the gateway's EnvoyFilter uses the legacy `config:` key and does nothing (istio#27909), so "
                        "the SNI cluster outbound_.8000_._.httpbin.bar.global exists only if cluster2 knows the name: "
                        "503 UF,URX in cluster1, NR at the gateway"),
            Expectation("1.7.5-1.7.8", "ok", 75,
                        "the EnvoyFilter (typed_config since 1.7.5) rewrites .global to .svc.cluster.local, so the "
                        "gateway reaches httpbin.bar.svc.cluster.local without a local ServiceEntry; the write-up's "
                        "main claim does not hold"),
        ),
        inject=_inject_missing_local_serviceentry,
        restore=_restore_server_serviceentries,
        gateway_state=gateway_without_local_serviceentry,
    ),
    Fault(
        id="envoyfilter-broken",
        cluster="server",
        breaks="put EnvoyFilter istio-multicluster-ingressgateway in its 1.7.0-1.7.4 form (legacy `config:`) and "
               "remove cluster2's ServiceEntry (the write-up's situation)",
        expectations=(
            Expectation(ALL, _UCF, 70,
                        "without a working rewrite the gateway has no cluster for the SNI name "
                        "outbound_.8000_._.httpbin.bar.global"),
        ),
        inject=_inject_envoyfilter_broken,
        restore=_restore_envoyfilter,
        gateway_state=gateway_with_broken_rewrite,
        followup=Followup(
            title="add cluster2's ServiceEntry back (the write-up's fix) with the EnvoyFilter still broken",
            apply=_restore_server_serviceentries,
            gateway_state=gateway_with_global_cluster,
            expectations=(
                Expectation(ALL, "ok", 50,
                            "in sni-dnat mode the gateway builds outbound_.8000_._.httpbin.bar.global for every "
                            "MESH_INTERNAL service it knows; istio.io#8285 (the write-up's author) reports cluster1 "
                            "still failing"),
            ),
        ),
    ),
    Fault(
        id="dns-stub-missing",
        cluster="client",
        breaks="remove the `global` server block from kube-system CoreDNS in cluster1",
        expectations=(
            Expectation(ALL, "dns-failure", 90, "kube-dns forwards .global upstream, where nothing knows it (curl 6)"),
        ),
        inject=functools.partial(_set_global_block, present=False),
        restore=_set_global_block,
        settle=COREFILE_CHANGE,
    ),
    Fault(
        id="aaaa-guard-off",
        cluster="client",
        breaks="remove the AAAA guard from the `global` block in cluster1",
        expectations=(
            Expectation(ALL, "dns-failure", 70,
                        "istiocoredns answers NXDOMAIN to AAAA and musl 1.2.1+ (Alpine sleep image) then fails the "
                        "whole lookup (docs/sources.md#musl-paired-query)"),
        ),
        inject=functools.partial(_set_global_block, aaaa_guard=False),
        restore=_set_global_block,
        settle=COREFILE_CHANGE,
    ),
    Fault(
        id="serviceentry-without-addresses",
        cluster="client",
        breaks="drop `addresses` from cluster1's ServiceEntry",
        expectations=(
            Expectation(ALL, "dns-failure", 85,
                        "the istiocoredns plugin has no address to answer with (plugin.go on master, 051e2c68: no "
                        "addresses and no -default-address, which the 1.7 chart does not pass, means no record); it "
                        "re-reads ServiceEntries every 5 s and two 30 s caches sit in front of it. If the image was "
                        "built from the unmerged branch commit 2cfb581a instead, it answers 127.255.x.y and the call "
                        "is connect-refused"),
        ),
        inject=_inject_serviceentry_without_addresses,
        restore=_restore_client_serviceentries,
        settle=ADDRESS_CHANGE,
    ),
    Fault(
        id="root-ca-mismatch",
        cluster="server",
        breaks="cluster2's cacerts from another root, then restart istiod and the workloads in bar",
        expectations=(
            Expectation(ALL, _UCF, 65,
                        "no common root of trust (write-up FAQ): verification fails in cluster1's sidecar, 503 "
                        "UF,URX; Istio 1.7's Envoy puts no TLS reason in the body (ssl.fail_verify_error counts it)"),
        ),
        inject=_inject_root_ca_mismatch,
        restore=_restore_certificates,
        certificates=True,
        settle=15.0,
    ),
    Fault(
        id="cacerts-after-install",
        cluster="server",
        breaks="istiod started without cacerts (self-signed root), cacerts created afterwards, workloads restarted",
        expectations=(
            Expectation(ALL, _UCF, 80,
                        "istiod reads cacerts only at start (pilot/pkg/bootstrap/istio_ca.go), so cluster2 keeps its "
                        "self-signed root: as root-ca-mismatch (write-up FAQ cause 1)"),
        ),
        inject=_inject_cacerts_after_install,
        restore=_restore_certificates,
        certificates=True,
        settle=15.0,
    ),
    Fault(
        id="stale-workloads-after-reinstall",
        cluster="server",
        breaks="cluster2 on another root, then Istio reinstalled with the shared root but the pods in bar kept",
        expectations=(
            Expectation(ALL, _UCF, 60,
                        "the kept pods hold certificates and ROOTCA from the old root until they are recreated "
                        "(write-up FAQ causes 2-3)"),
        ),
        inject=_inject_stale_workloads_after_reinstall,
        restore=_restore_certificates,
        needs_reinstall=True,
        certificates=True,
        settle=15.0,
    ),
    Fault(
        id="vip-multicast",
        cluster="client",
        breaks=f"cluster1's ServiceEntry with VIP {MULTICAST_VIP} (224.0.0.0/4)",
        expectations=(
            Expectation(ALL, "unreachable", 85,
                        "the kernel refuses TCP to a multicast address before netfilter (curl 7, network unreachable, "
                        "at once)"),
        ),
        inject=_inject_vip_multicast,
        restore=_restore_client_serviceentries,
        settle=ADDRESS_CHANGE,
    ),
    Fault(
        id="vip-loopback",
        cluster="client",
        breaks=f"cluster1's ServiceEntry with VIP {LOOPBACK_VIP} (127.0.0.0/8)",
        expectations=(
            Expectation(ALL, "connect-refused", 85,
                        "since Istio 1.5 the app's loopback traffic bypasses Envoy, and nothing in the pod listens on "
                        "8000 (curl 7); the docs' 'inbound listener' note dates from 1.4"),
        ),
        inject=_inject_vip_loopback,
        restore=_restore_client_serviceentries,
        settle=ADDRESS_CHANGE,
    ),
    Fault(
        id="wrong-gateway-port",
        cluster="client",
        breaks="cluster1's ServiceEntry endpoint on the literal port 15443 instead of the gateway's nodePort",
        expectations=(
            Expectation(ALL, _UCF, 80, "nothing listens on the node's port 15443: 503 UF,URX"),
        ),
        inject=_inject_wrong_gateway_port,
        restore=_restore_client_serviceentries,
    ),
)

BY_ID: dict[str, Fault] = {f.id: f for f in FAULTS}


# --- observing ------------------------------------------------------------------------------------------------------
def restore_and_heal(lab: FaultLab, fault: Fault, observe: Callable[[], str], *,
                     on_failure: Callable[[str], None], history: list[str] | None = None) -> None:
    """Undo `fault`, then wait until `observe` says `ok` again (as long as the fault may take to show: the same
    caches hold the broken answers), lab.catalogue.heal. Any failure, a bug's KeyError or bad JSON as much as a
    LabError, leaves the lab in a state nobody checked: `on_failure` hears it (the e2e suite marks the lab
    unhealthy), then it propagates."""
    heal(fault.id, lambda: fault.restore(lab), observe, timeout=fault.settle + fault.timeout, sleep=lab.sleep,
         on_failure=on_failure, history=history)


def probe_class(lab: FaultLab) -> tuple[str, list[str]]:
    """One call from cluster1's sleep to httpbin.bar.global:8000, classified: (class, evidence)."""
    prober = Prober(lab.client)
    pod = prober.pod(CLIENT_NS, "app=sleep")
    result = prober.curl(CLIENT_NS, pod, PROBE_URL)
    verdict = classify(result.output, result.exit_code)
    return verdict.cls, list(verdict.evidence)


# --- the README's table -------------------------------------------------------------------------------------------
TABLE_BEGIN = ("<!-- fault table: generated from lab/scenarios/replicated_control_planes/faults.py (FAULTS) by "
               "`python -m lab faults table --write README.md`; edit the catalogue, not this table -->")
TABLE_END = "<!-- end of fault table -->"
TABLE_VERSIONS = ("1.7.8", "1.7.3")  # the default profile's Istio and the write-up's era


def _cell(exp: Expectation, *, confidence: bool) -> str:
    return f"`{exp.cls}`" + (f" ({exp.confidence}%)" if confidence else "")


def catalogue_table(versions: tuple[str, ...] = TABLE_VERSIONS) -> str:
    """The catalogue as a Markdown table: id, what it breaks, the expected class per version (with the confidence
    for the first), the follow-up's expectation where there is one, and the slow lane."""
    head = ["id", "how it breaks the lab", f"expected on {versions[0]}", *(f"on {v}" for v in versions[1:]),
            "slow lane"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fault in FAULTS:
        cells = [f"`{fault.id}`", fault.breaks]
        for i, version in enumerate(versions):
            cell = _cell(fault.expected_for(version), confidence=i == 0)
            if fault.followup is not None:
                cell += "; follow-up: " + _cell(fault.followup.expected_for(version),
                                                                  confidence=i == 0)
            cells.append(cell)
        cells.append("reinstall" if fault.needs_reinstall else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def with_catalogue_table(text: str) -> str:
    """`text` (the README) with the lines between its two table markers replaced by `catalogue_table()`."""
    return with_table(text, TABLE_BEGIN, TABLE_END, catalogue_table())
