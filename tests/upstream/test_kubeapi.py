"""lab/cluster.py against a real kube-apiserver v1.36.1 and etcd 3.6.8 (upstream/kube-apiserver-1.36), run as
local processes by the session fixture `kube_plane` (tests/upstream/kubeapi.py): two API servers on one etcd
(`cluster1`, `cluster2`), client-certificate and token auth, RBAC.

What runs here is the API server itself: typed reads of pods, Services (ClusterIP, NodePort and LoadBalancer
allocation by the server, the status subresource), ConfigMaps and Secrets; Istio's and MetalLB's CRDs installed and
their objects created, replaced and deleted; Deployment readiness and `wait_rollout` through a real watch; the
`rollout restart` strategic merge patch; the API's own 401, 403, 404, 409 and 422 answers mapped to the lab's
errors; and every API object of the multi-primary-multi-network templates server-side applied with dryRun=All
(`kubectl apply --server-side --dry-run=server`, strict field validation) against the Istio 1.30.3 and MetalLB
v0.16.1 CRDs.

What does not run: there is no kubelet, scheduler or controller-manager. Pods never start (the tests write pod and
Deployment status through the status subresource, as those controllers would), and exec, port-forward, logs and the
Envoy admin (`ClusterHandle.exec`, `envoy_admin`, `logs`) need a kubelet: nothing here tests them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from lab import manifests
from lab.cluster import (
    GATEWAY,
    RESTARTED_AT,
    SERVICE_ENTRY,
    ClusterHandle,
    LabHandle,
    Resource,
    readiness,
    rollout_status,
)
from lab.errors import ApiError, LabError, NotFoundError, NotReadyError
from lab.scenarios.multi_primary_multi_network import metallb
from lab.scenarios.multi_primary_multi_network.names import SCENARIO
from lab.scenarios.multi_primary_multi_network.profiles import PROFILES

pytestmark = pytest.mark.kubeapi

DATA = Path(__file__).resolve().parents[1] / "data"
ISTIO_130_CRDS = DATA / "istio-1.30.3" / "crd-all.gen.yaml"
ISTIO_17_CRDS = DATA / "istio-1.7.8" / "crd-all.gen.yaml"
METALLB_CRDS = sorted((DATA / "metallb-v0.16.1").glob("metallb.io_*.yaml"))
PROFILE = PROFILES["multi-primary"]
NS = "lab-kapi"


class _Clusters:
    """Where the kubeconfig's contexts lead."""

    def __init__(self, plane):
        self.plane = plane

    def kubeconfig(self, cluster) -> Path:
        return self.plane.kubeconfig

    def context(self, cluster) -> str:
        return cluster.name


def handle(plane, context: str, **kw) -> ClusterHandle:
    return ClusterHandle(context, plane.kubeconfig, context, **kw)


def post_as_is(h: ClusterHandle, path: str, body: dict) -> None:
    """POST the document as it is in the file (not through the client's typed model, which could drop a field)."""
    api = h.api
    method, url, headers, data, post = api.param_serialize(
        "POST", path, body=body, header_params={"Content-Type": "application/json", "Accept": "application/json"},
        auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, data, post)
    resp.read()
    assert resp.status == 201, f"POST {path} {body['metadata']['name']}: {resp.status} {(resp.data or b'')[:500]!r}"


def install_crds(h: ClusterHandle, *paths: Path) -> list[str]:
    api = k8s.ApiextensionsV1Api(h.api)
    names = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            post_as_is(h, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
            names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            crd = api.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
            if conds.get("Established") == "True":
                break
            assert time.monotonic() < deadline, f"CRD {name} not established: {conds}"
            time.sleep(0.2)
    return names


def ensure_namespace(h: ClusterHandle, name: str) -> None:
    existing = {n.metadata.name for n in h.core.list_namespace().items if n.metadata}
    if name not in existing:
        h.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        # what the controller-manager's serviceaccount controller would add: the ServiceAccount admission plugin
        # refuses a pod whose account does not exist ("error looking up service account NS/default")
        h.core.create_namespaced_service_account(name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default")))


@pytest.fixture(scope="module")
def lab(kube_plane) -> Iterator[LabHandle]:
    handles = LabHandle.from_provider(PROFILE.clusters, _Clusters(kube_plane))
    c1, c2 = handles["cluster1"], handles["cluster2"]
    install_crds(c1, ISTIO_130_CRDS, *METALLB_CRDS)
    install_crds(c2, ISTIO_17_CRDS)
    for h in (c1, c2):
        ensure_namespace(h, NS)
    yield handles
    handles.close()


def test_the_server_is_the_kube_apiserver_built_from_the_module(lab):
    info = k8s.VersionApi(lab["cluster1"].api).get_code()
    assert info.git_version == "v1.36.1" and (info.major, info.minor) == ("1", "36")


def test_the_handles_reach_two_separate_clusters_by_role(lab, kube_plane):
    assert lab.by_role("client").name == "cluster1" and lab.by_role("server").name == "cluster2"
    assert lab["cluster1"].server == kube_plane.servers["cluster1"] != kube_plane.servers["cluster2"]
    # each API server allocated its `kubernetes` Service from its own range (the profile's distinct subnets)
    assert lab["cluster1"].cluster_ip("default", "kubernetes") == "10.255.10.1"
    assert lab["cluster2"].cluster_ip("default", "kubernetes") == "10.255.20.1"


# --- typed reads ----------------------------------------------------------------------------------------------------
def test_pods_are_listed_by_selector_and_the_newest_running_one_is_picked(lab):
    h = lab["cluster1"]
    for name in ("curl-old", "curl-new", "curl-pending"):
        h.core.create_namespaced_pod(NS, {"metadata": {"name": name, "labels": {"app": "curl"}},
                                          "spec": {"containers": [{"name": "curl", "image": "curl:test"}]}})
        time.sleep(1.1)  # creationTimestamp has one-second resolution
    for name in ("curl-old", "curl-new"):
        pod = h.pod(NS, name)
        pod.status = k8s.V1PodStatus(phase="Running", host_ip="172.18.0.3",
                                     conditions=[k8s.V1PodCondition(type="Ready", status="True")])
        h.core.replace_namespaced_pod_status(name, NS, pod)
    assert sorted(p.metadata.name for p in h.pods(NS, "app=curl")) == ["curl-new", "curl-old", "curl-pending"]
    assert h.pods(NS, "app=nothing") == []
    assert h.running_pod(NS, "app=curl", ready=True).metadata.name == "curl-new"
    assert h.pod_host_ip(NS, "app=curl") == "172.18.0.3"  # the list is in name order: curl-new first
    with pytest.raises(NotReadyError, match="no running pod with app=nothing"):
        h.running_pod(NS, "app=nothing")


def test_services_give_cluster_ip_node_port_and_load_balancer_address(lab):
    h = lab["cluster1"]
    ports = [{"name": "tls", "port": 15443, "targetPort": 15443}]
    h.core.create_namespaced_service(NS, {"metadata": {"name": "eastwest"},
                                          "spec": {"type": "LoadBalancer", "selector": {"app": "gw"},
                                                   "ports": ports}})
    svc = h.service(NS, "eastwest")
    ip = h.cluster_ip(NS, "eastwest")
    assert ip is not None and ip.startswith("10.255.10.")  # allocated by the server from cluster1's range
    port = h.node_port(NS, "eastwest", 15443)
    assert port is not None and 30000 <= port <= 32767  # allocated from the default node port range
    assert h.node_port(NS, "eastwest", 15021) is None
    assert h.load_balancer(NS, "eastwest") is None  # no MetalLB here: no address yet
    svc.status = k8s.V1ServiceStatus(load_balancer=k8s.V1LoadBalancerStatus(
        ingress=[k8s.V1LoadBalancerIngress(ip="172.18.255.254")]))
    h.core.replace_namespaced_service_status("eastwest", NS, svc)
    assert h.load_balancer(NS, "eastwest") == "172.18.255.254"
    h.core.create_namespaced_service(NS, {"metadata": {"name": "headless"},
                                          "spec": {"clusterIP": "None", "selector": {"app": "x"},
                                                   "ports": [{"port": 80}]}})
    assert h.cluster_ip(NS, "headless") is None


def test_the_coredns_configmap_is_read_replaced_and_a_stale_replace_is_a_409(lab):
    h = lab["cluster1"]
    corefile = ".:53 {\n    errors\n    forward . /etc/resolv.conf\n}\n"
    h.core.create_namespaced_config_map("kube-system", {"metadata": {"name": "coredns"},
                                                         "data": {"Corefile": corefile}})
    assert h.corefile() == corefile
    cm = h.coredns()
    stale = h.coredns()
    cm.data["Corefile"] = corefile + "global:53 {\n    errors\n}\n"
    out = h.replace_configmap(cm)
    assert out.metadata.resource_version != stale.metadata.resource_version
    assert h.corefile().endswith("global:53 {\n    errors\n}\n")
    stale.data["Corefile"] = "lost update"
    with pytest.raises(ApiError) as info:
        h.replace_configmap(stale)
    assert info.value.status == 409 and info.value.reason == "Conflict"
    assert "replace configmap kube-system/coredns on cluster1: 409 Conflict" in str(info.value)
    assert "run the command again" in str(info.value)
    assert h.find_configmap("kube-system", "no-such") is None


def test_secrets_are_read_and_a_missing_one_is_none_and_their_data_never_reach_a_message(lab, kube_plane):
    h = lab["cluster1"]
    h.core.create_namespaced_secret(NS, {"metadata": {"name": "cacerts"},
                                         "data": {"ca-key.pem": "c2VjcmV0LWNhLWtleS1ieXRlcw=="}})
    assert h.secret(NS, "cacerts").data == {"ca-key.pem": "c2VjcmV0LWNhLWtleS1ieXRlcw=="}
    assert h.secret(NS, "no-such") is None
    nobody = handle(kube_plane, "cluster1-nobody")
    with pytest.raises(ApiError) as info:
        nobody.secret(NS, "cacerts")
    assert info.value.status == 403 and "not allowed" in str(info.value)
    assert "c2VjcmV0" not in str(info.value) and "lab-nobody" not in str(info.value)  # no API message for Secrets


# --- custom objects ------------------------------------------------------------------------------------------------
def service_entry(name: str, host: str, resolution: str = "DNS") -> dict:
    return {"apiVersion": f"{SERVICE_ENTRY.group}/{SERVICE_ENTRY.version}", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"hosts": [host], "location": "MESH_INTERNAL", "resolution": resolution,
                     "ports": [{"number": 8000, "name": "http1", "protocol": "http"}],
                     "endpoints": [{"address": "172.18.0.3", "ports": {"http1": 31443}}]}}


@pytest.mark.parametrize("cluster,crds", [("cluster1", "Istio 1.30.3"), ("cluster2", "Istio 1.7.8")])
def test_service_entries_are_put_got_found_listed_replaced_and_deleted(lab, cluster, crds):
    h = lab[cluster]
    created = h.put_object(SERVICE_ENTRY, service_entry("httpbin-bar", "httpbin.bar.global"))
    assert created["metadata"]["resourceVersion"]
    assert h.get_object(SERVICE_ENTRY, NS, "httpbin-bar")["spec"]["hosts"] == ["httpbin.bar.global"]
    changed = service_entry("httpbin-bar", "httpbin.bar.global")
    del changed["spec"]["endpoints"]  # a whole replace: the removed field stays removed
    h.put_object(SERVICE_ENTRY, changed)
    assert "endpoints" not in h.get_object(SERVICE_ENTRY, NS, "httpbin-bar")["spec"]
    assert [o["metadata"]["name"] for o in h.list_objects(SERVICE_ENTRY, NS)] == ["httpbin-bar"]
    assert "httpbin-bar" in [o["metadata"]["name"] for o in h.list_objects(SERVICE_ENTRY)]
    assert h.delete_object(SERVICE_ENTRY, NS, "httpbin-bar") is True
    assert h.find_object(SERVICE_ENTRY, NS, "httpbin-bar") is None
    assert h.delete_object(SERVICE_ENTRY, NS, "httpbin-bar") is False
    with pytest.raises(NotFoundError, match="read ServiceEntry lab-kapi/httpbin-bar on " + cluster + ": 404"):
        h.get_object(SERVICE_ENTRY, NS, "httpbin-bar")


@pytest.mark.parametrize("cluster", ["cluster1", "cluster2"])
def test_an_object_its_crd_schema_refuses_is_a_422_with_the_api_reason(lab, cluster):
    with pytest.raises(ApiError) as info:
        lab[cluster].put_object(SERVICE_ENTRY, service_entry("bad", "bad.global", resolution="SOMETIMES"))
    assert info.value.status == 422 and info.value.reason == "Invalid"
    assert "spec.resolution" in str(info.value) and "check it against its schema" in str(info.value)


def test_the_objects_of_one_cluster_are_not_seen_in_the_other(lab):
    lab["cluster1"].put_object(SERVICE_ENTRY, service_entry("only-here", "only.here.global"))
    assert lab["cluster2"].find_object(SERVICE_ENTRY, NS, "only-here") is None
    assert lab["cluster1"].delete_object(SERVICE_ENTRY, NS, "only-here")


def test_a_kind_whose_crd_is_not_installed_is_a_not_found_error(lab):
    ghost = Resource("example.com", "v1", "ghosts", "Ghost")
    with pytest.raises(NotFoundError, match="list Ghost objects in lab-kapi on cluster1: 404"):
        lab["cluster1"].list_objects(ghost, NS)


# --- deployments ----------------------------------------------------------------------------------------------------
def deployment(name: str, replicas: int = 2, paused: bool = False) -> dict:
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "paused": paused, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}}}


def write_status(h: ClusterHandle, name: str, **status) -> None:
    """What the Deployment controller would write: the status subresource, at the current generation."""
    dep = h.apps.read_namespaced_deployment(name, NS)
    assert dep.metadata is not None
    dep.status = k8s.V1DeploymentStatus(observed_generation=dep.metadata.generation, **status)
    h.apps.replace_namespaced_deployment_status(name, NS, dep)


def test_readiness_reads_ready_replicas_and_a_missing_deployment_is_none(lab):
    h = lab["cluster1"]
    h.apps.create_namespaced_deployment(NS, deployment("httpbin"))
    assert str(h.readiness(NS, "httpbin")) == "0/2 ready (httpbin:1)"
    write_status(h, "httpbin", replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=2)
    assert h.readiness(NS, "httpbin").ok
    assert h.readiness(NS, "no-such") is None
    assert "httpbin" in h.deployment_names(NS)


def test_wait_rollout_sees_the_status_the_controller_writes_through_its_watch(lab):
    h = lab["cluster1"]
    h.apps.create_namespaced_deployment(NS, deployment("curl"))
    assert rollout_status(h.deployment(NS, "curl")) == (False, "waiting for deployment spec update to be observed")
    result: dict = {}

    def wait() -> None:
        try:
            result["line"] = h.wait_rollout(NS, "curl", timeout=60)
        except Exception as err:  # reported below
            result["error"] = err

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.5)
    assert waiter.is_alive()  # it waits: nothing has rolled out
    # the server validates status too: availableReplicas may not exceed readyReplicas
    write_status(h, "curl", replicas=2, updated_replicas=1, ready_replicas=1, available_replicas=1)
    time.sleep(1.0)
    assert waiter.is_alive()  # 1 of 2 updated: still waiting
    write_status(h, "curl", replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=2)
    waiter.join(30)
    assert not waiter.is_alive() and "error" not in result, result
    assert result["line"] == "deployment curl successfully rolled out"


def test_wait_rollout_ends_at_its_deadline_with_the_last_state_seen(lab):
    h = lab["cluster1"]
    h.apps.create_namespaced_deployment(NS, deployment("stuck"))
    started = time.monotonic()
    with pytest.raises(NotReadyError, match=r"not rolled out within 3s \(waiting for deployment spec update"):
        h.wait_rollout(NS, "stuck", timeout=3)
    assert time.monotonic() - started < 20


def test_wait_rollout_raises_on_a_progress_deadline_and_on_deletion_seen_by_the_watch(lab):
    h = lab["cluster1"]
    h.apps.create_namespaced_deployment(NS, deployment("late"))
    threading.Timer(1.0, lambda: write_status(h, "late", replicas=2, updated_replicas=1, conditions=[
        k8s.V1DeploymentCondition(type="Progressing", status="False", reason="ProgressDeadlineExceeded")])).start()
    with pytest.raises(NotReadyError, match="exceeded its progress deadline"):
        h.wait_rollout(NS, "late", timeout=30)
    h.apps.create_namespaced_deployment(NS, deployment("gone"))
    threading.Timer(1.0, lambda: h.apps.delete_namespaced_deployment("gone", NS)).start()
    with pytest.raises(NotFoundError, match="it was deleted"):
        h.wait_rollout(NS, "gone", timeout=30)


def test_rollout_restart_patches_the_template_so_the_server_bumps_the_generation(lab):
    h = lab["cluster1"]
    h.apps.create_namespaced_deployment(NS, deployment("istiod"))
    write_status(h, "istiod", replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=2)
    before = h.deployment(NS, "istiod")
    assert rollout_status(before)[0]
    h.rollout_restart(NS, "istiod", now=datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=timezone.utc))
    after = h.deployment(NS, "istiod")
    assert after.spec.template.metadata.annotations == {RESTARTED_AT: "2026-12-02T12:00:00Z"}
    assert after.spec.template.metadata.labels == {"app": "istiod"}  # a merge: the labels stay
    assert after.metadata.generation == before.metadata.generation + 1
    assert rollout_status(after) == (False, "waiting for deployment spec update to be observed")
    assert readiness(after).image == "istiod:1"
    h.apps.create_namespaced_deployment(NS, deployment("paused", paused=True))
    with pytest.raises(LabError, match="is paused; resume it first"):
        h.rollout_restart(NS, "paused")
    with pytest.raises(NotFoundError, match="read deployment lab-kapi/no-such on cluster1: 404 NotFound"):
        h.rollout_restart(NS, "no-such")


# --- authentication and reachability ---------------------------------------------------------------------------------
def test_a_token_the_server_knows_works_and_an_unknown_one_is_a_401(kube_plane, lab):
    assert handle(kube_plane, "cluster1-token").cluster_ip("default", "kubernetes") == "10.255.10.1"
    with pytest.raises(ApiError) as info:
        handle(kube_plane, "cluster1-badtoken").coredns()
    assert info.value.status == 401 and info.value.reason == "Unauthorized"
    assert "read configmap kube-system/coredns on cluster1-badtoken: 401 Unauthorized" in str(info.value)
    assert "kubeconfig is not allowed" in str(info.value)


def test_rbac_refusing_a_user_is_a_403_that_names_the_call(kube_plane, lab):
    with pytest.raises(ApiError) as info:
        handle(kube_plane, "cluster1-nobody").deployment_names(NS)
    assert info.value.status == 403 and info.value.reason == "Forbidden"
    assert str(info.value).startswith("list deployments in lab-kapi on cluster1-nobody: 403 Forbidden")


def test_a_server_that_is_not_listening_is_one_line_saying_so(kube_plane):
    with pytest.raises(ApiError, match=r"cannot reach the API server https://127\.0\.0\.1:\d+ .*is the lab up"):
        handle(kube_plane, "unreachable", request_timeout=5).coredns()


def test_a_context_the_kubeconfig_lacks_is_one_line(kube_plane):
    with pytest.raises(LabError, match="cannot be used with context no-such"):
        handle(kube_plane, "no-such").coredns()


# --- the scenario's templates, server-side -------------------------------------------------------------------------
# Not API objects: istioctl reads IstioOperator files itself (1.30 ships no IstioOperator CRD) and kind reads its
# cluster config; the test below checks the server serves neither group.
NOT_API = {"install.istio.io", "kind.x-k8s.io"}


def rendered(cluster) -> dict[str, list[dict]]:
    """Every template of the scenario rendered for `cluster` with the default profile's values."""
    net = metallb.parse_inspect((DATA / "docker-network" / "kuadrant-operator-pr418.json").read_text())
    pool = {s.cluster: s for s in metallb.slices(net, [c.name for c in PROFILE.clusters])}
    given = {"MESH_ID": PROFILE.mesh_id, "CLUSTER_NAME": cluster.name, "NETWORK": cluster.network,
             "NODE_IMAGE": PROFILE.node_image, "POD_SUBNET": cluster.pod_subnet,
             "SERVICE_SUBNET": cluster.service_subnet, "NAME": f"lab-{cluster.name}",
             "ADDRESSES": pool[cluster.name].range, "NAMESPACE": "sample"}
    out = {}
    for name in manifests.names(SCENARIO):
        wanted = manifests.variables(name, SCENARIO)
        assert wanted <= given.keys(), f"{name} uses {sorted(wanted - given.keys())}: give them here"
        text = manifests.render(name, SCENARIO, **{k: v for k, v in given.items() if k in wanted})
        out[name] = [d for d in yaml.safe_load_all(text) if d]
    return out


APPLY = "application/apply-patch+yaml"
DRY_RUN = [("dryRun", "All"), ("fieldManager", "lab"), ("force", "true"), ("fieldValidation", "Strict")]


def dry_run_apply(h: ClusterHandle, obj: dict) -> dict:
    """`kubectl apply --server-side --dry-run=server` of one object: a server-side apply (PATCH, apply content type)
    with dryRun=All and strict field validation (kubectl's default --validate=strict). The server creates or patches
    it, validates it (schema, admission) and persists nothing; an object it refuses is an ApiException."""
    group, _, version = obj["apiVersion"].rpartition("/")
    meta = obj["metadata"]
    if not group:
        path = f"/api/{version}/namespaces/{meta['name']}"
        assert obj["kind"] == "Namespace", obj["kind"]
    else:
        plural = next(r.name for r in h.custom.get_api_resources(group, version).resources
                      if r.kind == obj["kind"] and "/" not in r.name)
        path = f"/apis/{group}/{version}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
    api = h.api
    method, url, headers, data, post = api.param_serialize(
        "PATCH", path, query_params=DRY_RUN, body=obj, header_params={"Content-Type": APPLY,
                                                                     "Accept": "application/json"},
        auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, data, post)
    resp.read()
    if resp.status >= 300:
        raise k8s.exceptions.ApiException(status=resp.status, reason=resp.reason,
                                          body=(resp.data or b"").decode("utf-8", "replace"))
    out: dict = json.loads(resp.data or b"{}")
    return out


def served_groups(h: ClusterHandle) -> set[str]:
    return {g.name for g in k8s.ApisApi(h.api).get_api_versions().groups}


@pytest.mark.parametrize("cluster", PROFILE.clusters, ids=lambda c: c.name)
def test_every_api_object_of_the_scenario_is_accepted_by_the_server_in_a_dry_run(lab, cluster):
    h = lab["cluster1"]  # the cluster with Istio 1.30.3's and MetalLB v0.16.1's CRDs
    ensure_namespace(h, "metallb-system")  # metallb-native.yaml makes it before the pool is applied
    groups = served_groups(h)
    assert not NOT_API & groups
    tried = []
    ordered = sorted(((n, d) for n, docs in rendered(cluster).items() for d in docs),
                     key=lambda nd: nd[1]["kind"] != "Namespace")  # namespaces first, as the lab applies them
    for name, doc in ordered:
        if True:
            group = doc["apiVersion"].rpartition("/")[0]
            if group in NOT_API:
                continue
            out = dry_run_apply(h, doc)
            assert out and out["metadata"], (name, out)
            assert out["metadata"]["name"] == doc["metadata"]["name"]
            if name == "namespace-istio-system.yaml":
                assert out["metadata"]["labels"]["topology.istio.io/network"] == cluster.network
            if name == "namespace-sample.yaml":
                assert out["metadata"]["labels"]["istio-injection"] == "enabled"
            if doc["kind"] == "Namespace":
                ensure_namespace(h, doc["metadata"]["name"])  # the lab creates it before what goes into it
            tried.append((name, doc["kind"]))
    assert sorted(tried) == [("expose-services.yaml", "Gateway"), ("metallb-pool.yaml", "IPAddressPool"),
                             ("metallb-pool.yaml", "L2Advertisement"), ("namespace-istio-system.yaml", "Namespace"),
                             ("namespace-sample.yaml", "Namespace")]
    # a dry run persists nothing
    assert h.find_object(GATEWAY, "istio-system", "cross-network-gateway") is None


def test_the_non_api_templates_are_exactly_the_istio_operator_and_kind_files():
    kinds = {name: {(d["apiVersion"].rpartition("/")[0], d["kind"]) for d in docs}
             for name, docs in rendered(PROFILE.clusters[0]).items()}
    assert {n for n, k in kinds.items() if k & {(g, kd) for g, kd in k if g in NOT_API}} == {
        "eastwest-gateway.yaml", "istio-overlay.yaml", "kind-cluster.yaml"}


@pytest.mark.parametrize("old,new,status,needle", [
    ("AUTO_PASSTHROUGH", "AUTO_PASSTHRU", 422, "spec.servers[0].tls.mode"),
    # server-side apply refuses a field its schema lacks while building the typed patch, with a 500, not the 400
    # "strict decoding error" a create gives
    ("selector", "selectr", 500, ".spec.selectr: field not declared in schema"),
])
def test_the_server_refuses_a_broken_gateway_in_a_dry_run(lab, old, new, status, needle):
    h = lab["cluster1"]
    ensure_namespace(h, "istio-system")
    (gw,) = rendered(PROFILE.clusters[0])["expose-services.yaml"]
    dry_run_apply(h, gw)
    broken = yaml.safe_load(yaml.safe_dump(gw).replace(old, new, 1))
    with pytest.raises(k8s.exceptions.ApiException) as info:
        dry_run_apply(h, broken)
    assert info.value.status == status, info.value.body
    assert needle in json.loads(info.value.body or "{}")["message"]
