"""Test-only: a lab of fake API servers (tests/support/fake_apiserver.py), one per cluster of a profile, behind the
one lab handle (lab.cluster.LabHandle) as lab.cluster.LabHandle.from_provider builds it, and builders of the objects
the 1.7 scenario's faults, doctor and probes read (in the shapes of tests/data/kubeapi/).

`RecordingHandle` is a ClusterHandle that also notes each operation the code under test asked for (what it wrote,
waited for, exec'd), so a test can check their order as the kubectl-based tests checked the commands' order.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cluster import ClusterHandle, LabHandle
from tests.support.fake_apiserver import FakeApiServer, running

DATA = Path(__file__).resolve().parents[1] / "data" / "kubeapi"
CORE, APPS, ISTIO = "/api/v1", "/apis/apps/v1", "/apis/networking.istio.io/v1alpha3"


def vector(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((DATA / name).read_text())
    return obj


# --- the handle ------------------------------------------------------------------------------------------------
RECORDED = ("rollout_restart", "wait_rollout", "delete_object", "delete_secret", "put_object", "put_secret",
            "replace_configmap", "find_configmap", "exec", "logs")


@dataclass
class RecordingHandle(ClusterHandle):
    """Notes (cluster name, operation, *arguments) in `ops`, which the clusters of one lab share: one order."""

    ops: list[tuple[Any, ...]] = field(default_factory=list, repr=False)


def _recorded(name: str) -> Any:
    original = getattr(ClusterHandle, name)

    def wrapper(self: RecordingHandle, *args: Any, **kwargs: Any) -> Any:
        self.ops.append((self.name, name, *copy.deepcopy(args)))
        return original(self, *args, **kwargs)

    wrapper.__name__ = name
    return wrapper


for _name in RECORDED:
    setattr(RecordingHandle, _name, _recorded(_name))


class Provider:
    """The two things lab.cluster.LabHandle.from_provider asks a provider (lab.kind's layout: kubeconfig/<cluster>
    under the lab's home, context kind-<cluster>)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def kubeconfig(self, cluster: Any) -> Path:
        return self.home / "kubeconfig" / cluster.name

    def context(self, cluster: Any) -> str:
        return f"kind-{cluster.name}"


@dataclass
class ApiLab:
    handle: LabHandle
    servers: dict[str, FakeApiServer]  # by cluster name
    log: list[tuple[Any, ...]]  # (cluster, operation, *arguments) of every RecordingHandle, in order

    def ops(self, cluster: str | None = None) -> list[tuple[Any, ...]]:
        """(operation, *arguments) asked of `cluster`'s handle, or (cluster, operation, *arguments) of all."""
        return [op[1:] for op in self.log if op[0] == cluster] if cluster else list(self.log)

    def clear(self) -> None:
        for server in self.servers.values():
            server.requests.clear()
        self.log.clear()


@contextmanager
def api_lab(profile: Any, home: Path, *, kubectl_binary: str = "kubectl") -> Iterator[ApiLab]:
    """One fake API server per cluster of `profile`, each with its kubeconfig where the provider says, and the lab
    handle on them (RecordingHandles, fast request timeouts)."""
    provider = Provider(home)
    (home / "kubeconfig").mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        servers = {c.name: stack.enter_context(running()) for c in profile.clusters}
        for c in profile.clusters:
            servers[c.name].kubeconfig(provider.kubeconfig(c), context=provider.context(c))
            servers[c.name].instant_rollouts = True
        built = LabHandle.from_provider(profile.clusters, provider, kubectl_binary)
        log: list[tuple[Any, ...]] = []
        handle = LabHandle({name: RecordingHandle(h.name, h.kubeconfig, h.context, h.kubectl_binary,
                                                  request_timeout=10, sleep=lambda s: None, ops=log)
                            for name, h in built.clusters.items()}, built.roles, built.kubectl_binary)
        try:
            yield ApiLab(handle, servers, log)
        finally:
            handle.close()


# --- objects ---------------------------------------------------------------------------------------------------
def pod(name: str, namespace: str, labels: dict[str, str], created: str = "2026-11-25T20:00:00Z", *,
        phase: str = "Running", deleting: str | None = None, ready: bool = True,
        host_ip: str = "172.18.0.3") -> dict[str, Any]:
    obj = vector("pod-sleep.json")
    meta = obj["metadata"]
    meta.update(name=name, namespace=namespace, labels=dict(labels), creationTimestamp=created)
    meta.pop("resourceVersion", None)
    if deleting:
        meta["deletionTimestamp"] = deleting
    obj["status"]["phase"] = phase
    obj["status"]["hostIP"] = host_ip
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready and phase == "Running" else "False"}]
    return obj


def rollout(server: FakeApiServer, running_name: str, namespace: str, labels: dict[str, str], *,
            at: str = "2026-11-25T20:00:00Z", host_ip: str = "172.18.0.3") -> None:
    """The pods seen right after a rollout: `running_name` (the one to
    pick), an older pod being deleted that is still Running, and a newer replacement still Pending."""
    server.put(CORE, "pods", pod(running_name, namespace, labels, at, host_ip=host_ip))
    server.put(CORE, "pods", pod(f"{running_name}-old", namespace, labels, "2026-11-25T19:00:00Z",
                                 deleting="2026-11-25T20:30:00Z", host_ip=host_ip))
    server.put(CORE, "pods", pod(f"{running_name}-next", namespace, labels, "2026-11-25T20:29:00Z",
                                 phase="Pending", host_ip=host_ip))


def deployment(namespace: str, name: str, *, ready: bool = True, image: str = "curlimages/curl") -> dict[str, Any]:
    obj = vector("deployment-ready.json" if ready else "deployment-rolling.json")
    obj["metadata"].update(name=name, namespace=namespace)
    obj["metadata"].pop("resourceVersion", None)
    obj["spec"]["selector"]["matchLabels"] = {"app": name}
    obj["spec"]["template"]["metadata"]["labels"] = {"app": name}
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return obj


def service(namespace: str, name: str, cluster_ip: str, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj = vector("service-gateway-nodeport.json")
    obj["metadata"].update(name=name, namespace=namespace)
    obj["metadata"].pop("resourceVersion", None)
    obj["spec"]["clusterIP"] = cluster_ip
    obj["spec"]["clusterIPs"] = [cluster_ip]
    if ports is not None:
        obj["spec"]["ports"] = ports
    return obj


def gateway_service(node_port: int, cluster_ip: str = "10.96.14.5") -> dict[str, Any]:
    """istio-ingressgateway with its 15443 port on `node_port`."""
    return service("istio-system", "istio-ingressgateway", cluster_ip,
                   [{"name": "status-port", "port": 15021, "targetPort": 15021, "nodePort": 31021,
                     "protocol": "TCP"},
                    {"name": "tls", "port": 15443, "targetPort": 15443, "nodePort": node_port, "protocol": "TCP"}])


def configmap(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": dict(data)}


def coredns(corefile: str) -> dict[str, Any]:
    obj = vector("configmap-coredns.json")
    obj["metadata"].pop("resourceVersion", None)
    obj["data"]["Corefile"] = corefile
    return obj


def stored(server: FakeApiServer, prefix: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return server.get(prefix, namespace, plural, name)


def writes(server: FakeApiServer) -> list[dict[str, Any]]:
    """The bodies of every create and replace the server received, in order (what `kubectl replace -f -` and
    `create -f -` were given in the kubectl-based tests)."""
    return [r.body for r in server.requests if r.method in ("PUT", "POST") and isinstance(r.body, dict)
            and not r.path.endswith("/exec")]


# --- istiod, as far as the certificate faults need it -----------------------------------------------------------
def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SELF_SIGNED_ROOT = "-----BEGIN CERTIFICATE-----\nself-signed by istiod\n-----END CERTIFICATE-----\n"


class Istiod:
    """What a restarted istiod does to the store (pilot/pkg/bootstrap/istio_ca.go at 1.7.8): it serves `cacerts`'
    root-cert.pem when that Secret has ca-key.pem, else the ca-cert.pem of `istio-ca-secret` (created self-signed
    when absent), and publishes that root into ConfigMap istio-ca-root-cert of `namespaces`; only after
    `misses` reads of istio-system's copy (the old pod holds the leader lease meanwhile)."""

    def __init__(self, server: FakeApiServer, namespaces: tuple[str, ...] = ("istio-system", "bar"), *,
                 misses: int = 0) -> None:
        self.server, self.namespaces, self.misses = server, namespaces, misses
        self.pending: str | None = None
        self.reads = 0
        server.before = self

    def root(self) -> str:
        cacerts = (self.server.get(CORE, "istio-system", "secrets", "cacerts") or {}).get("data") or {}
        if cacerts.get("ca-key.pem") and cacerts.get("root-cert.pem"):
            return base64.b64decode(cacerts["root-cert.pem"]).decode()
        own = self.server.get(CORE, "istio-system", "secrets", "istio-ca-secret")
        if own is None:
            own = self.server.put(CORE, "secrets", {
                "apiVersion": "v1", "kind": "Secret", "type": "istio.io/ca-root",
                "metadata": {"name": "istio-ca-secret", "namespace": "istio-system"},
                "data": {"ca-cert.pem": b64(SELF_SIGNED_ROOT), "ca-key.pem": b64("key")}})
        return base64.b64decode(own["data"]["ca-cert.pem"]).decode()

    def publish(self, root: str) -> None:
        for ns in self.namespaces:
            self.server.put(CORE, "configmaps", configmap(ns, "istio-ca-root-cert", {"root-cert.pem": root}))

    def __call__(self, request: Any) -> None:
        if request.method == "PATCH" and request.path == "/apis/apps/v1/namespaces/istio-system/deployments/istiod":
            self.pending, self.reads = self.root(), 0
        if (self.pending is not None and request.method == "GET"
                and request.path == "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert"):
            if self.reads >= self.misses:
                self.publish(self.pending)
                self.pending = None
            self.reads += 1


# --- a FakeLab (tests/support/fakelab.py, the kubectl simulator `lab up` runs against) also over the API ---------
@contextmanager
def fakelab_api(lab: Any) -> Iterator[dict[str, FakeApiServer]]:
    """Each existing cluster of `lab` on a fake API server, its store rebuilt from the FakeLab before every request
    (what `lab up` applied there: Deployments, all ready, with the images the FakeLab's kubectl reports; the coredns
    ConfigMap; the ServiceEntries), and its kubeconfig where the lab's provider says: for what reads through the
    lab handle (`lab status`)."""
    with ExitStack() as stack:
        servers: dict[str, FakeApiServer] = {}
        for spec in lab.profile.clusters:
            server = stack.enter_context(running())
            server.before = _mirror(lab, spec.name, server)
            server.kubeconfig(Path(lab.provider.kubeconfig(spec)), context=lab.provider.context(spec))
            servers[spec.name] = server
        yield servers


def _mirror(lab: Any, name: str, server: FakeApiServer) -> Any:
    def refresh(request: Any) -> None:
        with lab.lock:
            c = lab.clusters[name]
            server.objects.clear()
            if not c.exists:
                return
            server.put(CORE, "configmaps", coredns(c.corefile))
            server.put(APPS, "deployments", deployment("kube-system", "coredns", image="coredns:fake"))
            if c.istio:
                server.put(APPS, "deployments", deployment("istio-system", "istiod", image=c.istiod_image))
                server.put(APPS, "deployments", deployment("istio-system", "istiocoredns",
                                                           image="docker.io/istiocoredns:fake"))
            for (kind, ns, obj_name), obj in sorted(c.objects.items()):
                if kind == "Deployment":
                    server.put(APPS, "deployments", deployment(ns, obj_name, image=f"docker.io/{obj_name}:fake"))
                elif kind == "ServiceEntry":
                    se = copy.deepcopy(obj)
                    se["metadata"] = {**se.get("metadata", {}), "namespace": ns, "name": obj_name}
                    server.put(ISTIO, "serviceentries", se)
    return refresh
