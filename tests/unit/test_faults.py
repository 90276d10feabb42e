"""The failure catalogue (lab.scenarios.replicated_control_planes.faults): its data, the README table generated from it,
the waits derived from the DNS caches, the gateway checks, and its inject/restore code against the lab's one handle
on two fake API servers (tests/support/apilab.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client as k8s

from lab import catalogue, certs
from lab.errors import LabError, NotReadyError, ValidationError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, faults
from lab.scenarios.replicated_control_planes.faults import (
    FAULTS,
    ISTIO_VERSIONS,
    Expectation,
    FaultLab,
    legacy_envoyfilter,
    settled_class,
)
from tests.support.apilab import (
    APPS,
    CORE,
    ApiLab,
    Istiod,
    api_lab,
    configmap,
    coredns,
    deployment,
    gateway_service,
    rollout,
    service,
    stored,
)
from tests.support.apilab import ISTIO as ISTIO_API
from tests.support.configdumps import synthetic_gateway
from tests.support.fake_apiserver import ExecScript
from tests.support.fake_apiserver import status as fake_status
from tests.support.recording import RecordingRunner

README = Path(__file__).resolve().parents[2] / "README.md"
COREFILES = Path(__file__).resolve().parents[1] / "data" / "corefile"


def test_every_fault_has_inject_restore_and_a_description():
    for fault in FAULTS:
        assert callable(fault.inject) and callable(fault.restore), fault.id
        assert fault.inject is not fault.restore, fault.id
        assert fault.breaks and fault.cluster in ("client", "server"), fault.id


@pytest.mark.parametrize("version", ISTIO_VERSIONS)
def test_every_fault_expects_exactly_one_class_for_every_1_7_release(version):
    for fault in FAULTS:
        exp = fault.expected_for(version)
        assert exp.covers(version)
        if fault.followup:
            assert fault.followup.expected_for(version).covers(version)


def test_versions_cover_1_7_0_through_1_7_8():
    assert ISTIO_VERSIONS[0] == "1.7.0" and ISTIO_VERSIONS[-1] == "1.7.8" and len(ISTIO_VERSIONS) == 9


def test_expected_classes_are_classifier_classes():
    from lab.classify import CLASSES

    for fault in FAULTS:
        stages = [*fault.expectations, *(fault.followup.expectations if fault.followup else ())]
        for exp in stages:
            assert exp.cls in CLASSES, (fault.id, exp.cls)


def test_missing_local_serviceentry_splits_where_the_envoyfilter_was_fixed():
    from lab.profile import version_key
    from lab.scenarios.replicated_control_planes.names import ENVOYFILTER_FIXED_IN

    fault = faults.BY_ID["missing-local-serviceentry"]
    for version in ISTIO_VERSIONS:
        fixed = version_key(version) >= version_key(ENVOYFILTER_FIXED_IN)
        assert fault.expected_for(version).cls == ("ok" if fixed else "upstream-connect-failure"), version


def test_only_the_reinstall_fault_is_in_the_slow_lane_and_certificate_faults_are_flagged():
    assert {f.id for f in FAULTS if f.needs_reinstall} == {"stale-workloads-after-reinstall"}
    assert {f.id for f in FAULTS if f.certificates} == {
        "root-ca-mismatch", "cacerts-after-install", "stale-workloads-after-reinstall"}


def test_certificate_faults_restore_through_the_path_that_deletes_istio_ca_secret():
    for fault in FAULTS:
        if fault.certificates:
            assert fault.restore is faults._restore_certificates, fault.id


def test_a_version_outside_every_range_is_refused_with_the_fault_named():
    with pytest.raises(LabError, match="missing-local-serviceentry: 0 expectations cover Istio 1.8.0"):
        faults.BY_ID["missing-local-serviceentry"].expected_for("1.8.0")


def test_overlapping_ranges_are_refused():
    both = (Expectation("1.7.0-1.7.5", "ok", 50, "a"), Expectation("1.7.5-1.7.8", "ok", 50, "b"))
    with pytest.raises(LabError, match="2 expectations cover Istio 1.7.5"):
        catalogue.pick(both, "1.7.5", "x")


def test_single_version_expectation_covers_only_itself():
    exp = Expectation("1.7.3", "ok", 50, "why")
    assert exp.covers("1.7.3") and not exp.covers("1.7.4") and not exp.covers("1.7.2")


# --- the EnvoyFilter's legacy form --------------------------------------------------------------------------------
# The EnvoyFilter as Istio 1.7.8's chart renders it (manifests/charts/gateways/istio-ingress/templates/
# preconfigured.yaml at tag 1.7.8 with globalDomainSuffix=global, clusterDomain=cluster.local); spec only.
ENVOYFILTER_1_7_8 = {
    "apiVersion": "networking.istio.io/v1alpha3",
    "kind": "EnvoyFilter",
    "metadata": {"name": "istio-multicluster-ingressgateway", "namespace": "istio-system"},
    "spec": {
        "workloadSelector": {"labels": {"istio": "ingressgateway"}},
        "configPatches": [{
            "applyTo": "NETWORK_FILTER",
            "match": {"context": "GATEWAY", "listener": {
                "portNumber": 15443, "filterChain": {"filter": {"name": "envoy.filters.network.sni_cluster"}}}},
            "patch": {"operation": "INSERT_AFTER", "value": {
                "name": "envoy.filters.network.tcp_cluster_rewrite",
                "typed_config": {
                    "@type": "type.googleapis.com/istio.envoy.config.filter.network.tcp_cluster_rewrite.v2alpha1"
                             ".TcpClusterRewrite",
                    "cluster_pattern": "\\.global$",
                    "cluster_replacement": ".svc.cluster.local"}}},
        }],
    },
}


def test_legacy_envoyfilter_is_the_1_7_3_form_and_leaves_its_input_alone():
    before = json.dumps(ENVOYFILTER_1_7_8, sort_keys=True)
    legacy = legacy_envoyfilter(ENVOYFILTER_1_7_8)
    assert json.dumps(ENVOYFILTER_1_7_8, sort_keys=True) == before
    value = legacy["spec"]["configPatches"][0]["patch"]["value"]
    # preconfigured.yaml at tag 1.7.3: `config: {cluster_pattern: "\\.global$", cluster_replacement: ...}`
    assert value == {"name": "envoy.filters.network.tcp_cluster_rewrite",
                     "config": {"cluster_pattern": "\\.global$", "cluster_replacement": ".svc.cluster.local"}}
    assert legacy["spec"]["configPatches"][0]["match"] == ENVOYFILTER_1_7_8["spec"]["configPatches"][0]["match"]


def test_legacy_envoyfilter_of_a_legacy_filter_is_unchanged():
    legacy = legacy_envoyfilter(ENVOYFILTER_1_7_8)
    assert legacy_envoyfilter(legacy) == legacy


# --- settling -----------------------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_settled_class_ignores_a_stable_answer_before_the_caches_expire():
    clock = _Clock()
    answers = iter(["ok"] * 10 + ["dns-failure"] * 50)
    history: list[str] = []
    cls = settled_class(lambda: next(answers), settle=30, timeout=60, stable=3, interval=2,
                        clock=clock, sleep=clock.sleep, history=history)
    assert cls == "dns-failure"
    assert history[:10] == ["ok"] * 10 and history[-3:] == ["dns-failure"] * 3


def test_settled_class_needs_the_same_class_n_times_in_a_row():
    clock = _Clock()
    answers = iter(["unknown", "ok", "unknown", "ok", "ok", "ok"])
    history: list[str] = []
    assert settled_class(lambda: next(answers), settle=0, timeout=60, stable=3, interval=1,
                         clock=clock, sleep=clock.sleep, history=history) == "ok"
    assert history == ["unknown", "ok", "unknown", "ok", "ok", "ok"]


def test_settled_class_gives_up_with_the_last_reason_when_nothing_settles():
    flip = iter(["ok", "dns-failure"] * 1000)
    with pytest.raises(NotReadyError, match="a stable probe class: not reached within 0s"):
        settled_class(lambda: next(flip), settle=0, timeout=0.0, stable=3, interval=0.0)


# --- inject / restore against the lab handle on two fake API servers ---------------------------------------------
SE_CLIENT = {
    "apiVersion": "networking.istio.io/v1alpha3", "kind": "ServiceEntry",
    "metadata": {"name": "httpbin-bar", "namespace": "foo", "resourceVersion": "42", "uid": "u-1",
                 "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1},
    "spec": {"hosts": ["httpbin.bar.global"], "location": "MESH_INTERNAL",
             "ports": [{"name": "http1", "number": 8000, "protocol": "http"}], "resolution": "DNS",
             "addresses": ["240.0.0.2"], "endpoints": [{"address": "172.18.0.4", "ports": {"http1": 31443}}]},
    "status": {},
}
SE_OTHER = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "ServiceEntry",
            "metadata": {"name": "other", "namespace": "foo"}, "spec": {"hosts": ["other.baz.global"]}}
SE_PATH = "/apis/networking.istio.io/v1alpha3/namespaces/{ns}/serviceentries/{name}"


class _OpsRunner(RecordingRunner):
    """The faults' runner (istioctl), noting each command in the lab's operation log too."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def run(self, argv, **kwargs):
        self.log.append(("host", "run", tuple(str(a) for a in argv)))
        return super().run(argv, **kwargs)


@pytest.fixture
def fake(tmp_path):
    with api_lab(load_profile(), tmp_path / "home") as lab:
        yield lab


def _lab(tmp_path: Path, fake: ApiLab) -> FaultLab:
    return FaultLab(profile=load_profile(), lab=fake.handle, workdir=tmp_path, sleep=lambda seconds: None,
                    runner=_OpsRunner(fake.log))


def _c1(fake: ApiLab):
    return fake.servers["cluster1"]


def _c2(fake: ApiLab):
    return fake.servers["cluster2"]


def _put_se(server, obj: dict) -> None:
    server.put(ISTIO_API, "serviceentries", obj)


def _written(op: tuple) -> dict | None:
    """The object an operation wrote, as the fault gave it (a ConfigMap as the API's JSON)."""
    if op[0] == "put_object":
        return op[2]
    if op[0] == "put_secret":
        return op[1]
    if op[0] == "replace_configmap":
        return k8s.ApiClient().sanitize_for_serialization(op[1])
    return None


def _replaced(fake: ApiLab, cluster: str | None = None) -> list[dict]:
    """What the faults wrote whole (replace, or create when absent), in order: the objects `kubectl replace -f -`
    was given in the kubectl-based tests."""
    ops = fake.ops(cluster) if cluster else [op[1:] for op in fake.ops()]
    return [w for w in map(_written, ops) if w is not None]


def _steps(fake: ApiLab, cluster: str) -> list[tuple[str, ...]]:
    """The deletes, whole writes and rollouts asked of `cluster`, as (verb, kind, name) in the words of the
    kubectl commands they replace (`rollout restart`, `rollout status`)."""
    out: list[tuple[str, ...]] = []
    for op in fake.ops(cluster):
        if op[0] == "delete_secret":
            out.append(("delete", "secret", op[2]))
        elif op[0] == "delete_object":
            out.append(("delete", op[1].kind, op[3]))
        elif op[0] in ("put_object", "put_secret", "replace_configmap"):
            obj = _written(op)
            out.append(("replace", obj["kind"], obj["metadata"]["name"]))
        elif op[0] == "rollout_restart":
            out.append(("rollout", "restart", f"deployment/{op[2]}"))
        elif op[0] == "wait_rollout":
            out.append(("rollout", "status", f"deployment/{op[2]}"))
    return out


def _deployments(server, namespace: str, *names: str) -> None:
    for name in names:
        server.put(APPS, "deployments", deployment(namespace, name))


def test_serviceentry_without_addresses_replaces_only_the_remote_hosts_entry_and_restore_puts_it_back(
        tmp_path, fake):
    _put_se(_c1(fake), SE_CLIENT)
    _put_se(_c1(fake), SE_OTHER)
    lab = _lab(tmp_path, fake)
    fault = faults.BY_ID["serviceentry-without-addresses"]
    fault.inject(lab)
    replaced = _replaced(fake)
    assert len(replaced) == 1
    assert "addresses" not in replaced[0]["spec"] and replaced[0]["spec"]["hosts"] == ["httpbin.bar.global"]
    assert "resourceVersion" not in replaced[0]["metadata"] and "status" not in replaced[0]
    live = stored(_c1(fake), ISTIO_API, "serviceentries", "foo", "httpbin-bar")
    assert "addresses" not in live["spec"] and stored(_c1(fake), ISTIO_API, "serviceentries", "foo", "other")
    assert _c2(fake).requests == [] and fake.ops("cluster2") == []

    fake.clear()
    fault.restore(lab)
    restored = _replaced(fake)
    assert restored[0]["spec"]["addresses"] == ["240.0.0.2"]
    assert stored(_c1(fake), ISTIO_API, "serviceentries", "foo", "httpbin-bar")["spec"]["addresses"] == ["240.0.0.2"]
    assert lab.saved == {}


def test_missing_local_serviceentry_deletes_in_cluster2_and_restore_creates_it_again(tmp_path, fake):
    se_server = json.loads(json.dumps(SE_CLIENT))
    se_server["metadata"].update(namespace="bar")
    _put_se(_c2(fake), se_server)
    lab = _lab(tmp_path, fake)
    fault = faults.BY_ID["missing-local-serviceentry"]
    fault.inject(lab)
    assert ("delete", "ServiceEntry", "httpbin-bar") in _steps(fake, "cluster2")
    assert stored(_c2(fake), ISTIO_API, "serviceentries", "bar", "httpbin-bar") is None
    fault.restore(lab)
    path = SE_PATH.format(ns="bar", name="httpbin-bar")
    # the replace finds nothing to replace (404), so it creates
    assert [(r.method, r.path) for r in _c2(fake).requests[-2:]] == [
        ("GET", path), ("POST", "/apis/networking.istio.io/v1alpha3/namespaces/bar/serviceentries")]
    assert _c2(fake).requests[-1].body["metadata"]["namespace"] == "bar"
    assert stored(_c2(fake), ISTIO_API, "serviceentries", "bar", "httpbin-bar")["spec"] == se_server["spec"]


def test_a_restore_that_kubectl_refuses_raises_instead_of_passing(tmp_path, fake):
    _put_se(_c1(fake), SE_CLIENT)
    _c1(fake).fail("PUT", SE_PATH.format(ns="foo", name="httpbin-bar"), 422,
                   fake_status(422, "Invalid", "ServiceEntry.networking.istio.io \"httpbin-bar\" is invalid"))
    lab = _lab(tmp_path, fake)
    with pytest.raises(LabError, match="replace ServiceEntry foo/httpbin-bar on kind-cluster1: 422 Invalid"):
        faults.BY_ID["serviceentry-without-addresses"].inject(lab)


def _secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "istio-system"}, "data": data}


def _root_configmaps(server, root: str) -> None:
    for ns in ("istio-system", "bar"):
        server.put(CORE, "configmaps", configmap(ns, "istio-ca-root-cert", {"root-cert.pem": root}))


def test_cacerts_after_install_restarts_istiod_without_cacerts_then_recreates_it_and_restarts_only_workloads(
        tmp_path, fake):
    c2 = _c2(fake)
    c2.put(CORE, "secrets", _secret("cacerts", {"ca-cert.pem": "Y2E="}))
    # istiod self-signed (cacerts has no ca-key.pem) and published that root in bar
    c2.put(CORE, "secrets", _secret("istio-ca-secret", {"ca-cert.pem": "Y2E="}))
    _root_configmaps(c2, "ca\n")
    _deployments(c2, "bar", "httpbin", "sleep")
    _deployments(c2, "istio-system", "istiod", "istio-ingressgateway")
    Istiod(c2)
    lab = _lab(tmp_path, fake)
    faults.BY_ID["cacerts-after-install"].inject(lab)
    steps = _steps(fake, "cluster2")
    assert steps == [
        ("delete", "secret", "cacerts"),
        ("delete", "secret", "istio-ca-secret"),
        ("rollout", "restart", "deployment/istiod"),
        ("rollout", "status", "deployment/istiod"),
        ("replace", "Secret", "cacerts"),
        ("rollout", "restart", "deployment/istio-ingressgateway"),
        ("rollout", "status", "deployment/istio-ingressgateway"),
        ("rollout", "restart", "deployment/httpbin"),
        ("rollout", "restart", "deployment/sleep"),
        ("rollout", "status", "deployment/httpbin"),
        ("rollout", "status", "deployment/sleep"),
    ]

    fake.clear()
    faults.BY_ID["cacerts-after-install"].restore(lab)
    steps = _steps(fake, "cluster2")
    assert steps[:3] == [("replace", "Secret", "cacerts"), ("delete", "secret", "istio-ca-secret"),
                         ("rollout", "restart", "deployment/istiod")]
    assert ("rollout", "restart", "deployment/httpbin") in steps
    assert lab.saved == {}


# --- the faults built on the mesh modules -------------------------------------------------------------------------
def _gateway(fake: ApiLab) -> None:
    """cluster2's gateway as the write-up looks it up: its pod's hostIP and its Service's 15443 nodePort."""
    rollout(_c2(fake), "gw-1", "istio-system", {"istio": "ingressgateway"}, host_ip="172.18.0.4")
    _c2(fake).put(CORE, "services", gateway_service(31443))


@pytest.mark.parametrize("fault_id,vip", [("vip-multicast", "224.0.0.2"), ("vip-loopback", "127.0.0.2")])
def test_vip_faults_write_the_refused_vip_into_the_plans_serviceentry(tmp_path, fake, fault_id, vip):
    from lab.scenarios.replicated_control_planes.serviceentry import validate_vip

    with pytest.raises(ValidationError):
        validate_vip(vip)  # what the fault bypasses on purpose
    _put_se(_c1(fake), SE_CLIENT)
    _gateway(fake)
    lab = _lab(tmp_path, fake)
    faults.BY_ID[fault_id].inject(lab)
    (se,) = _replaced(fake)
    assert se["metadata"] == {"name": "httpbin-bar", "namespace": "foo"}
    assert se["spec"]["addresses"] == [vip]
    assert se["spec"]["endpoints"] == [{"address": "172.18.0.4", "ports": {"http1": 31443}}]
    assert se["spec"]["hosts"] == ["httpbin.bar.global"] and se["spec"]["location"] == "MESH_INTERNAL"


def test_wrong_gateway_port_keeps_the_vip_and_points_at_the_literal_15443(tmp_path, fake):
    _put_se(_c1(fake), SE_CLIENT)
    _gateway(fake)
    lab = _lab(tmp_path, fake)
    faults.BY_ID["wrong-gateway-port"].inject(lab)
    (se,) = _replaced(fake)
    assert se["spec"]["addresses"] == [lab.profile.client.vip]
    assert se["spec"]["endpoints"] == [{"address": "172.18.0.4", "ports": {"http1": 15443}}]
    fake.clear()
    faults.BY_ID["wrong-gateway-port"].restore(lab)
    (back,) = _replaced(fake)
    assert back["spec"]["endpoints"] == SE_CLIENT["spec"]["endpoints"]


KUBEADM_COREFILE = (Path(__file__).parent.parent / "data" / "corefile"
                    / "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile").read_text(encoding="utf-8")


def _coredns_cluster1(fake: ApiLab, corefile_text: str) -> None:
    """cluster1's kube-system/coredns ConfigMap holding `corefile_text`, its Deployment, and istiocoredns."""
    c1 = _c1(fake)
    c1.put(CORE, "configmaps", coredns(corefile_text))
    c1.put(APPS, "deployments", deployment("kube-system", "coredns"))
    c1.put(CORE, "services", service("istio-system", "istiocoredns", "10.255.10.53"))


def test_dns_stub_missing_removes_the_global_block_restarts_coredns_and_restore_puts_the_guarded_block_back(
        tmp_path):
    from lab.scenarios.replicated_control_planes import corefile

    patched = corefile.patch(KUBEADM_COREFILE, "10.255.10.53")
    with api_lab(load_profile(), tmp_path / "a") as fake:
        _coredns_cluster1(fake, patched)
        lab = _lab(tmp_path, fake)
        faults.BY_ID["dns-stub-missing"].inject(lab)
        (cm,) = _replaced(fake)
        assert cm["data"]["Corefile"] == KUBEADM_COREFILE
        assert ("rollout_restart", "kube-system", "coredns") in fake.ops("cluster1")
        assert ("rollout", "status", "deployment/coredns") in _steps(fake, "cluster1")
        assert stored(_c1(fake), CORE, "configmaps", "kube-system", "coredns")["data"]["Corefile"] == KUBEADM_COREFILE

    with api_lab(load_profile(), tmp_path / "b") as fake:
        _coredns_cluster1(fake, KUBEADM_COREFILE)
        lab = _lab(tmp_path, fake)
        faults.BY_ID["dns-stub-missing"].restore(lab)
        (cm,) = _replaced(fake)
        assert cm["data"]["Corefile"] == patched and "template IN AAAA global" in cm["data"]["Corefile"]


def test_aaaa_guard_off_keeps_the_forward_and_drops_only_the_guard(tmp_path, fake):
    from lab.scenarios.replicated_control_planes import corefile

    _coredns_cluster1(fake, corefile.patch(KUBEADM_COREFILE, "10.255.10.53"))
    lab = _lab(tmp_path, fake)
    faults.BY_ID["aaaa-guard-off"].inject(lab)
    (cm,) = _replaced(fake)
    block = corefile.global_block(cm["data"]["Corefile"])
    assert block and "forward . 10.255.10.53:53" in block and "AAAA" not in block


def test_a_corefile_changed_meanwhile_is_a_conflict_not_lost(tmp_path, fake):
    """The Corefile is replaced with the version it was read at: a change made in between (by a person, by `lab
    up`) is a 409, not silently overwritten."""
    from lab.scenarios.replicated_control_planes import corefile

    _coredns_cluster1(fake, corefile.patch(KUBEADM_COREFILE, "10.255.10.53"))
    c1 = _c1(fake)

    def someone_else(request) -> None:
        if request.method == "PUT" and request.path.endswith("/configmaps/coredns"):
            c1.put(CORE, "configmaps", coredns(KUBEADM_COREFILE + "# edited\n"))
    c1.before = someone_else
    with pytest.raises(LabError, match="409 Conflict"):
        faults.BY_ID["dns-stub-missing"].inject(_lab(tmp_path, fake))
    assert not [op for op in fake.ops("cluster1") if op[0] == "rollout_restart"]


def test_envoyfilter_broken_writes_the_legacy_form_and_removes_cluster2s_serviceentry(tmp_path, fake):
    se_server = json.loads(json.dumps(SE_CLIENT))
    se_server["metadata"].update(namespace="bar")
    _c2(fake).put(ISTIO_API, "envoyfilters", ENVOYFILTER_1_7_8)
    _put_se(_c2(fake), se_server)
    lab = _lab(tmp_path, fake)
    fault = faults.BY_ID["envoyfilter-broken"]
    fault.inject(lab)
    (ef,) = _replaced(fake)
    assert "config" in ef["spec"]["configPatches"][0]["patch"]["value"]
    assert any(v[0] == "delete" and "ServiceEntry" in v for v in _steps(fake, "cluster2"))
    fault.followup.apply(lab)  # the write-up's fix on top: cluster2's ServiceEntry is back
    fault.restore(lab)
    restored = _replaced(fake)
    assert [r["kind"] for r in restored] == ["EnvoyFilter", "ServiceEntry", "EnvoyFilter"]
    assert restored[-1] == ENVOYFILTER_1_7_8
    live = stored(_c2(fake), ISTIO_API, "envoyfilters", "istio-system", "istio-multicluster-ingressgateway")
    assert live["spec"] == ENVOYFILTER_1_7_8["spec"]


SAMPLE_CERTS = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"


def _shared_cacerts_cluster2(fake: ApiLab, *, misses: int = 0) -> dict:
    """cluster2 holding the samples' `cacerts` (the shared root, and a signing key), istiod's root published in
    istio-ca-root-cert, httpbin and sleep in bar, istiod and the gateway, and istiod acting on a restart: the
    Secret."""
    root = (SAMPLE_CERTS / "root-cert.pem").read_bytes()
    shared = certs.secret_object("cacerts", "istio-system", {"root-cert.pem": root, "ca-key.pem": b"key"})
    c2 = _c2(fake)
    c2.put(CORE, "secrets", shared)
    _root_configmaps(c2, root.decode())
    _deployments(c2, "bar", "httpbin", "sleep")
    _deployments(c2, "istio-system", "istiod", "istio-ingressgateway")
    Istiod(c2, misses=misses)
    return shared


def test_root_ca_mismatch_plugs_another_root_into_cluster2_and_restarts_istiod_then_workloads(tmp_path, fake):
    import base64

    from lab.certs import root_fingerprint

    shared = _shared_cacerts_cluster2(fake)
    lab = _lab(tmp_path, fake)
    faults.BY_ID["root-ca-mismatch"].inject(lab)
    (secret,) = _replaced(fake)
    assert set(secret["data"]) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    other = base64.b64decode(secret["data"]["root-cert.pem"])
    assert root_fingerprint(other) != root_fingerprint((SAMPLE_CERTS / "root-cert.pem").read_bytes())
    steps = [v for v in _steps(fake, "cluster2") if v[0] in ("delete", "rollout")]
    assert steps == [("delete", "secret", "istio-ca-secret"),
                     ("rollout", "restart", "deployment/istiod"), ("rollout", "status", "deployment/istiod"),
                     ("rollout", "restart", "deployment/istio-ingressgateway"),
                     ("rollout", "status", "deployment/istio-ingressgateway"),
                     ("rollout", "restart", "deployment/httpbin"), ("rollout", "restart", "deployment/sleep"),
                     ("rollout", "status", "deployment/httpbin"), ("rollout", "status", "deployment/sleep")]
    # the other root's keys stay in the fault's scratch directory
    assert (tmp_path / "other-root" / "root-key.pem").exists()

    fake.clear()
    faults.BY_ID["root-ca-mismatch"].restore(lab)
    (back,) = _replaced(fake)
    assert back["data"] == shared["data"]
    assert stored(_c2(fake), CORE, "secrets", "istio-system", "cacerts")["data"] == shared["data"]
    assert ("delete", "secret", "istio-ca-secret") in _steps(fake, "cluster2")


def test_the_faults_write_the_same_cacerts_secret_the_plan_applies(tmp_path, fake):
    """A fault's `cacerts` comes from lab.certs.secret_object, as `lab up`'s does, not from a second builder."""
    import base64

    import yaml

    from lab import certs
    from lab.perform import secret_manifest

    certs.generate(tmp_path / "certs", ["cluster2"])
    lab = _lab(tmp_path, fake)
    faults._cacerts_from(lab.server, tmp_path / "certs" / "cluster2")
    (secret,) = _replaced(fake)
    files = {key: path.read_bytes() for key, path in certs.cacerts_files(tmp_path / "certs" / "cluster2").items()}
    assert secret == yaml.safe_load(secret_manifest("cacerts", "istio-system", files))
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == files
    # one write, of that object (created: the fake cluster has no cacerts yet)
    (write,) = [r for r in _c2(fake).requests if r.method in ("PUT", "POST")]
    assert write.method == "POST" and write.body["data"] == secret["data"]


def test_stale_workloads_reinstalls_with_the_plans_files_and_keeps_the_pods_in_bar(tmp_path, fake):
    shared = _shared_cacerts_cluster2(fake)
    istio_dir = tmp_path / "istio-1.7.8"
    values = istio_dir / "manifests" / "examples" / "multicluster" / "values-istio-multicluster-gateways.yaml"
    values.parent.mkdir(parents=True)
    values.write_text("# the release's file\n", encoding="utf-8")
    lab = _lab(tmp_path, fake)
    lab.istioctl, lab.istio_dir = Path("/cache/istioctl"), istio_dir
    faults.BY_ID["stale-workloads-after-reinstall"].inject(lab)
    installs = [c for c in lab.runner.calls if c[:2] == ("/cache/istioctl", "install")]
    assert len(installs) == 1
    overlay = tmp_path / "istio-overlay-cluster2.yaml"
    assert installs[0][2:6] == ("-f", str(values), "-f", str(overlay))
    assert "--context" in installs[0] and installs[0][installs[0].index("--context") + 1] == "kind-cluster2"
    assert installs[0][installs[0].index("--kubeconfig") + 1] == str(tmp_path / "home" / "kubeconfig" / "cluster2")
    assert "NodePort" in overlay.read_text()
    log = fake.ops()
    after_install = log[log.index(("host", "run", installs[0])):]
    restarts = [f"deployment/{op[3]}" for op in after_install if op[1] == "rollout_restart"]
    # istiod and the gateway come back with the reinstalled Istio; the pods in bar are kept
    assert restarts == ["deployment/istiod", "deployment/istio-ingressgateway"]
    # the shared root is back in cacerts before the reinstall
    puts = _replaced(fake)
    assert puts[-1]["data"] == shared["data"]


def test_probe_class_runs_curl_in_cluster1s_sleep_and_classifies_what_it_printed(tmp_path, fake):
    from lab.probe import EXIT_MARK, STATUS_MARK

    # Istio 1.7's Envoy local reply for a failed upstream connection (91 bytes; lab/classify.py)
    reply = ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 91\r\ncontent-type: text/plain\r\nserver: envoy\r\n"
             "\r\nupstream connect error or disconnect/reset before headers. reset reason: connection failure\n"
             f"{STATUS_MARK}503\n{EXIT_MARK}0\n")
    rollout(_c1(fake), "sleep-5d8b", "foo", {"app": "sleep"})
    _c1(fake).exec_scripts.append(ExecScript(stdout=reply))
    cls, evidence = faults.probe_class(_lab(tmp_path, fake))
    assert cls == "upstream-connect-failure"
    assert any("connection failure" in e for e in evidence)
    (call,) = [r for r in _c1(fake).requests if r.path.endswith("/exec")]
    assert call.path == "/api/v1/namespaces/foo/pods/sleep-5d8b/exec" and call.query["container"] == ["sleep"]
    assert call.query["command"][-1].endswith("http://httpbin.bar.global:8000/headers; echo \"__LAB_CURL_EXIT__=$?\"")


@pytest.mark.parametrize("fault_id", ["vip-multicast", "vip-loopback", "wrong-gateway-port",
                                      "serviceentry-without-addresses"])
def test_serviceentry_faults_still_pass_istio_1_7_8s_crd_schema(tmp_path, fake, fault_id):
    # Only the lab's own validation refuses these values; Istio's CRD schema (and its webhook, which checks
    # addresses with ValidateIPSubnet: pkg/config/validation/validation.go at 1.7.8) take them, so the fault
    # reaches the cluster.
    from tests.support.schemas import validate_istio

    _put_se(_c1(fake), SE_CLIENT)
    _gateway(fake)
    faults.BY_ID[fault_id].inject(_lab(tmp_path, fake))
    (se,) = _replaced(fake)
    validate_istio(se)


def test_legacy_envoyfilter_passes_istio_1_7_8s_crd_schema():
    from tests.support.schemas import validate_istio

    validate_istio(ENVOYFILTER_1_7_8)
    validate_istio(legacy_envoyfilter(ENVOYFILTER_1_7_8))


@pytest.mark.parametrize("stage", ["inject", "restore"])
def test_root_ca_mismatch_restarts_gateway_and_apps_only_once_istiod_published_its_new_root(tmp_path, fake, stage):
    # The new istiod writes istio-ca-root-cert only after the old pod released the leader lease, and a sidecar reads
    # that file once at start (pkg/istio-agent/sds-agent.go at 1.7.8): a pod started before would never get a cert.
    root = (SAMPLE_CERTS / "root-cert.pem").read_text()
    secret = _shared_cacerts_cluster2(fake, misses=2)
    # the ConfigMaps: the previous root for the first two reads (old istiod still leader), then istiod's root
    _root_configmaps(_c2(fake), "-----BEGIN CERTIFICATE-----\nprevious root\n-----END CERTIFICATE-----\n")
    lab = _lab(tmp_path, fake)
    fault = faults.BY_ID["root-ca-mismatch"]
    if stage == "restore":
        lab.saved["cacerts"] = secret
        fault.restore(lab)
        assert stored(_c2(fake), CORE, "configmaps", "bar", "istio-ca-root-cert")["data"]["root-cert.pem"] == root
    else:
        fault.inject(lab)
    ops = fake.ops("cluster2")
    istiod_ready = ops.index(("wait_rollout", "istio-system", "istiod"))
    first_restart = ops.index(("rollout_restart", "istio-system", "istio-ingressgateway"))
    assert ops.index(("rollout_restart", "bar", "httpbin")) > first_restart
    # two misses (istio-system first), then istio-system and bar both hold istiod's root
    reads = [i for i, op in enumerate(ops) if op[0] == "find_configmap" and op[2] == "istio-ca-root-cert"]
    assert [ops[i][1] for i in reads] == ["istio-system", "istio-system", "istio-system", "bar"]
    assert istiod_ready < reads[0] and reads[-1] < first_restart


def test_the_root_istiod_serves_is_cacerts_with_a_signing_key_else_its_self_signed_istio_ca_secret(tmp_path, fake):
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    plugged = {"data": {"root-cert.pem": b64("shared root"), "ca-key.pem": b64("key")}}
    self_signed = {"data": {"ca-cert.pem": b64("self-signed"), "ca-key.pem": b64("key2")}}
    c2 = _c2(fake)
    for cacerts, want in ((plugged, "shared root"), ({"data": {"root-cert.pem": b64("shared root")}}, "self-signed"),
                          (None, "self-signed")):
        c2.objects.clear()
        if cacerts:
            c2.put(CORE, "secrets", _secret("cacerts", cacerts["data"]))
        c2.put(CORE, "secrets", _secret("istio-ca-secret", self_signed["data"]))
        assert _lab(tmp_path, fake).server.istiod_root("istio-system") == want
    c2.objects.clear()
    assert _lab(tmp_path, fake).server.istiod_root("istio-system") is None


# --- the README's table is generated from the catalogue -------------------------------------------------------------
def test_readme_fault_table_is_the_one_the_catalogue_generates():
    text = README.read_text(encoding="utf-8")
    assert faults.with_catalogue_table(text) == text, (
        "README.md's fault table is stale: run `python -m lab faults table --write README.md`")


def test_generated_table_has_one_row_per_fault_with_its_expected_classes():
    rows = [line for line in faults.catalogue_table().splitlines() if line.startswith("| `")]
    assert [r.split("|")[1].strip().strip("`") for r in rows] == [f.id for f in FAULTS]
    for fault, row in zip(FAULTS, rows, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        for version, cell in zip(faults.TABLE_VERSIONS, cells[2:-1], strict=True):
            assert cell.startswith(f"`{fault.expected_for(version).cls}`"), (fault.id, version, cell)
            if fault.followup:
                assert f"follow-up: `{fault.followup.expected_for(version).cls}`" in cell
        assert f"({fault.expected_for(faults.TABLE_VERSIONS[0]).confidence}%)" in cells[2]
        assert cells[-1] == ("reinstall" if fault.needs_reinstall else "")


def test_table_replacement_keeps_everything_outside_the_markers():
    text = f"intro\n{faults.TABLE_BEGIN}\n| old | table |\n{faults.TABLE_END}\noutro\n"
    out = faults.with_catalogue_table(text)
    assert out.startswith(f"intro\n{faults.TABLE_BEGIN}\n| id |") and out.endswith(f"{faults.TABLE_END}\noutro\n")
    assert "| old | table |" not in out
    assert faults.with_catalogue_table(out) == out


@pytest.mark.parametrize("text", ["no markers\n", f"{faults.TABLE_END}\n{faults.TABLE_BEGIN}\n",
                                  f"{faults.TABLE_BEGIN}\n{faults.TABLE_BEGIN}\n{faults.TABLE_END}\n"])
def test_table_replacement_refuses_a_file_without_one_pair_of_markers(text):
    with pytest.raises(LabError, match="the fault table needs exactly one line"):
        faults.with_catalogue_table(text)


def test_cli_writes_the_table_into_the_file_and_prints_it_without_write(tmp_path, capsys):
    from lab import cli

    target = tmp_path / "README.md"
    target.write_text(f"a\n{faults.TABLE_BEGIN}\n{faults.TABLE_END}\nb\n", encoding="utf-8")
    assert cli.main(["faults", "table", "--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == faults.with_catalogue_table(target.read_text(encoding="utf-8"))
    assert faults.catalogue_table() in target.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("*.tmp"))
    capsys.readouterr()
    assert cli.main(["faults", "table"]) == 0
    assert capsys.readouterr().out == faults.catalogue_table()


# --- how long the faults wait, derived from the caches on the DNS path ---------------------------------------------
def _kube_dns_cache() -> int:
    """`cache N` of the block `lab up` writes into kube-dns's Corefile."""
    ttl = corefile.cache_ttl(corefile.render_block("10.96.0.53"))
    assert ttl is not None
    return ttl


def _istiocoredns_cache() -> int:
    """`cache N` of istiocoredns's own Corefile (the Istio 1.7.8 chart, rendered: tests/data/corefile)."""
    ttl = corefile.cache_ttl((COREFILES / "istio-1.7.8-istiocoredns-chart_coreDNSTag-1.6.2.Corefile").read_text())
    assert ttl is not None
    return ttl


def _lameduck() -> int:
    """kubeadm's `health { lameduck Ns }`: how long a replaced CoreDNS pod keeps answering."""
    text = (COREFILES / "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile").read_text()
    return int(re.search(r"lameduck (\d+)s", text).group(1))


# docs/sources.md#istiocoredns-plugin: the istiocoredns plugin re-reads every ServiceEntry on a 5 s ticker.
PLUGIN_REFRESH_FACT = 5


def test_the_waits_are_the_refresh_plus_the_caches_on_the_dns_path():
    assert _kube_dns_cache() == faults.KUBE_DNS_CACHE
    assert _istiocoredns_cache() == faults.ISTIOCOREDNS_CACHE
    assert faults.PLUGIN_REFRESH == PLUGIN_REFRESH_FACT
    assert PLUGIN_REFRESH_FACT + _istiocoredns_cache() + _kube_dns_cache() == faults.ADDRESS_CHANGE
    assert _kube_dns_cache() + _lameduck() == faults.COREFILE_CHANGE


@contextmanager
def _client_fault_lab(tmp_path: Path):
    """A lab for every fault on cluster1: its ServiceEntry, cluster2's gateway, and the lab's Corefile."""
    with api_lab(load_profile(), tmp_path) as fake:
        _put_se(_c1(fake), SE_CLIENT)
        _coredns_cluster1(fake, corefile.patch(KUBEADM_COREFILE, "10.255.10.53"))
        _gateway(fake)
        yield fake


def _what_the_probe_resolves_through(fault_id: str, tmp_path: Path) -> set[str]:
    """What a fault's inject changes on the DNS path, read from what it wrote: "addresses" when cluster1's
    ServiceEntry answers another address (or none), "corefile" when kube-dns's Corefile was rewritten."""
    with _client_fault_lab(tmp_path / fault_id) as fake:
        faults.BY_ID[fault_id].inject(_lab(tmp_path, fake))
        changed = set()
        for obj in _replaced(fake):
            if obj["kind"] == "ServiceEntry" and obj["spec"].get("addresses") != SE_CLIENT["spec"]["addresses"]:
                changed.add("addresses")
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "coredns":
                changed.add("corefile")
        return changed


CLIENT_FAULTS = [f.id for f in FAULTS if f.cluster == "client"]


@pytest.mark.parametrize("fault_id", CLIENT_FAULTS)
def test_a_fault_on_the_dns_path_settles_until_every_cache_let_go_of_the_old_answer(tmp_path, fault_id):
    fault = faults.BY_ID[fault_id]
    changed = _what_the_probe_resolves_through(fault_id, tmp_path)
    if "addresses" in changed:
        assert fault.settle >= PLUGIN_REFRESH_FACT + _istiocoredns_cache() + _kube_dns_cache(), fault_id
    if "corefile" in changed:
        assert fault.settle >= _kube_dns_cache() + _lameduck(), fault_id
    # the restore brings the old answer back through the same caches: the heal waits settle + timeout
    if changed:
        assert fault.settle + fault.timeout >= 2 * fault.settle, fault_id


def test_the_address_and_corefile_faults_are_told_apart_by_what_they_write(tmp_path):
    # a check of the check above: it must see both kinds of change, and none for a port-only change
    seen = {fid: _what_the_probe_resolves_through(fid, tmp_path) for fid in CLIENT_FAULTS}
    assert seen["serviceentry-without-addresses"] == seen["vip-multicast"] == {"addresses"}
    assert seen["dns-stub-missing"] == seen["aaaa-guard-off"] == {"corefile"}
    assert seen["wrong-gateway-port"] == set()


def test_every_fault_gets_a_full_dns_cycle_after_settling_to_reach_a_stable_class():
    bound = PLUGIN_REFRESH_FACT + _istiocoredns_cache() + _kube_dns_cache()
    for fault in FAULTS:
        assert fault.timeout >= bound, fault.id


# --- settling: only probes begun after the settling time count ----------------------------------------------------
def test_settled_class_sees_a_symptom_that_arrives_just_after_the_settling_time():
    clock = _Clock()
    history: list[str] = []

    def observe() -> str:  # still ok when the settling time ends, broken from 32 s on
        return "ok" if clock.now < 32 else "dns-failure"

    cls = settled_class(observe, settle=30, timeout=60, stable=3, interval=2, clock=clock, sleep=clock.sleep,
                        history=history)
    assert cls == "dns-failure"
    assert history[:16] == ["ok"] * 16 and history[16:] == ["dns-failure"] * 3


def test_settled_class_does_not_count_a_probe_begun_during_the_settling_time():
    clock = _Clock()
    history: list[str] = []

    def observe() -> str:  # a slow probe: begun at 28 s, it returns after the settling time ended
        clock.now += 3
        return "ok"

    settled_class(observe, settle=30, timeout=60, stable=3, interval=0, clock=clock, sleep=clock.sleep,
                  history=history)
    # begun at 0, 3, ..., 27 (10 probes) do not count; those begun at 30, 33, 36 do
    assert len(history) == 13


def test_settled_class_waiting_for_ok_restarts_the_row_after_a_failure():
    clock = _Clock()
    answers = iter(["ok", "ok", "upstream-connect-failure", "ok", "ok", "ok"])
    history: list[str] = []
    assert settled_class(lambda: next(answers), settle=0, timeout=60, stable=3, interval=1, clock=clock,
                         sleep=clock.sleep, history=history, want="ok") == "ok"
    assert len(history) == 6


# --- restore: any failure marks the lab unhealthy -----------------------------------------------------------------
def _restore_failures(tmp_path: Path, fake: ApiLab, fault_id: str, saved: dict | None = None):
    lab = _lab(tmp_path, fake)
    lab.saved.update(saved or {})
    reasons: list[str] = []
    return lab, reasons, lambda: faults.restore_and_heal(lab, faults.BY_ID[fault_id], lambda: "ok",
                                                         on_failure=reasons.append)


def test_a_restore_that_fails_with_a_key_error_marks_the_lab_unhealthy(tmp_path, fake):
    # a ConfigMap without `data` (someone emptied it): the Corefile restore cannot read it
    _c1(fake).put(CORE, "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "coredns", "namespace": "kube-system"}})
    _c1(fake).put(CORE, "services", service("istio-system", "istiocoredns", "10.255.10.53"))
    _, reasons, run = _restore_failures(tmp_path, fake, "dns-stub-missing")
    with pytest.raises(KeyError):
        run()
    assert len(reasons) == 1 and reasons[0].startswith("restore of dns-stub-missing failed: KeyError")


def test_a_restore_that_reads_bad_json_marks_the_lab_unhealthy(tmp_path, fake):
    secret = certs.secret_object("cacerts", "istio-system", {"root-cert.pem": b"root", "ca-key.pem": b"key"})
    _c2(fake).fail("GET", "/api/v1/namespaces/istio-system/secrets/cacerts", 200, '{"data": {')
    _, reasons, run = _restore_failures(tmp_path, fake, "root-ca-mismatch", {"cacerts": secret})
    with pytest.raises(json.JSONDecodeError):
        run()
    assert len(reasons) == 1 and "JSONDecodeError" in reasons[0]


def test_a_restore_whose_call_never_heals_marks_the_lab_unhealthy(tmp_path, fake, monkeypatch):
    fault = dataclasses.replace(faults.BY_ID["wrong-gateway-port"], settle=0.0, timeout=0.0,
                                restore=lambda lab: None)
    reasons: list[str] = []
    with pytest.raises(NotReadyError):
        faults.restore_and_heal(_lab(tmp_path, fake), fault, lambda: "upstream-connect-failure",
                                on_failure=reasons.append)
    assert reasons and "NotReadyError" in reasons[0]


def test_a_restore_that_heals_reports_nothing(tmp_path, fake):
    _put_se(_c1(fake), SE_CLIENT)
    lab = _lab(tmp_path, fake)
    fault = faults.BY_ID["serviceentry-without-addresses"]
    fault.inject(lab)
    reasons: list[str] = []
    faults.restore_and_heal(lab, fault, lambda: "ok", on_failure=reasons.append)
    assert reasons == [] and lab.saved == {}


# --- gateway-side faults: the change in the gateway's config dump, then new connections ---------------------------
GLOBAL = "outbound_.8000_._.httpbin.bar.global"
LOCAL_CLUSTER = "outbound_.8000_._.httpbin.bar.svc.cluster.local"
SNI = {"name": "envoy.filters.network.sni_cluster"}
TCP = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "stat_prefix": "BlackHoleCluster", "cluster": "BlackHoleCluster"}}
TYPED = ENVOYFILTER_1_7_8["spec"]["configPatches"][0]["patch"]["value"]  # what 1.7.5+ pushes into the chain
CONFIGLESS = {"name": "envoy.filters.network.tcp_cluster_rewrite"}  # the legacy `config:` dropped by pilot


def _gateway_dump(rewrite: dict | None, clusters: list[str]) -> dict:
    """Synthetic: a v3 dump with one `0.0.0.0_15443` *.global chain (sni_cluster, the rewrite, tcp_proxy) and the
    named clusters, in the shape lab.configdump reads (tests/unit/test_configdump.py's synthetic gateway)."""
    return synthetic_gateway([SNI, *([rewrite] if rewrite else []), TCP], clusters)


def _summary(rewrite: dict | None, clusters: list[str]) -> dict:
    from lab.configdump import analyze

    return analyze(_gateway_dump(rewrite, clusters), "httpbin.bar.global", 8000)


def test_missing_local_serviceentry_on_1_7_8_has_landed_when_the_global_cluster_is_gone_and_the_rewrite_hits():
    check = faults.gateway_without_local_serviceentry
    assert check(_summary(TYPED, [LOCAL_CLUSTER]), "1.7.8") == []
    # not yet: the gateway still has the .global cluster (the ServiceEntry's removal has not been pushed)
    assert any(GLOBAL in p for p in check(_summary(TYPED, [LOCAL_CLUSTER, GLOBAL]), "1.7.8"))
    # wrong: the rewrite lands on a cluster the gateway does not have
    assert any("existing cluster " + LOCAL_CLUSTER in p for p in check(_summary(TYPED, []), "1.7.8"))
    # wrong: no rewrite at all (the 1.7.0-1.7.4 filter on a 1.7.8 lab)
    assert check(_summary(CONFIGLESS, [LOCAL_CLUSTER]), "1.7.8")


def test_missing_local_serviceentry_before_1_7_5_ends_in_the_missing_global_cluster():
    check = faults.gateway_without_local_serviceentry
    assert check(_summary(CONFIGLESS, [LOCAL_CLUSTER]), "1.7.3") == []
    assert check(_summary(CONFIGLESS, [LOCAL_CLUSTER, GLOBAL]), "1.7.3")


def test_envoyfilter_broken_has_landed_when_the_rewrite_is_gone_and_then_the_fix_brings_the_global_cluster():
    assert faults.gateway_with_broken_rewrite(_summary(CONFIGLESS, [LOCAL_CLUSTER]), "1.7.8") == []
    assert faults.gateway_with_broken_rewrite(_summary(TYPED, [LOCAL_CLUSTER]), "1.7.8")  # still the working filter
    follow = faults.BY_ID["envoyfilter-broken"].followup.gateway_state
    assert follow(_summary(CONFIGLESS, [LOCAL_CLUSTER, GLOBAL]), "1.7.8") == []
    assert follow(_summary(CONFIGLESS, [LOCAL_CLUSTER]), "1.7.8")


def test_no_gateway_check_passes_a_gateway_without_the_15443_chain():
    empty = _summary(None, [LOCAL_CLUSTER])
    empty["gateway_paths"] = []
    for check in (faults.gateway_without_local_serviceentry, faults.gateway_with_broken_rewrite,
                  faults.gateway_with_global_cluster):
        assert check(empty, "1.7.8"), check.__name__


def test_exactly_the_faults_that_change_cluster2s_gateway_wait_for_it():
    # which faults change what the gateway knows: those whose inject writes to cluster2 but restarts no gateway
    # (the certificate faults restart it, which closes every connection through it)
    assert {f.id for f in FAULTS if f.gateway_state} == {
        f.id for f in FAULTS if f.cluster == "server" and not f.certificates}


def _gateway_dumps(fake: ApiLab, dumps) -> None:
    """cluster2's gateway pods (after a rollout: gw-1 is the one to read), its /config_dump the next of `dumps`."""
    rollout(_c2(fake), "gw-1", "istio-system", {"istio": "ingressgateway"})

    def answer(request) -> ExecScript:
        assert request.path == "/api/v1/namespaces/istio-system/pods/gw-1/exec"
        assert request.query["container"] == ["istio-proxy"]
        assert request.query["command"] == ["pilot-agent", "request", "GET", "config_dump"]
        return ExecScript(stdout=json.dumps(next(dumps)))
    _c2(fake).exec_answer = answer


def test_gateway_side_change_is_judged_only_after_the_dump_shows_it_and_sleep_was_restarted(tmp_path, fake):
    _gateway_dumps(fake, iter([_gateway_dump(TYPED, [LOCAL_CLUSTER, GLOBAL]), _gateway_dump(TYPED, [LOCAL_CLUSTER])]))
    _deployments(_c1(fake), "foo", "sleep")
    lab = _lab(tmp_path, fake)
    paths = faults.reach_new_connections(lab, faults.gateway_without_local_serviceentry, "test")
    assert [(p["cluster"], p["cluster_present"]) for p in paths] == [(LOCAL_CLUSTER, True)]
    log = fake.ops()
    dump_reads = [i for i, op in enumerate(log) if op[:2] == ("cluster2", "exec")]
    restart = log.index(("cluster1", "rollout_restart", "foo", "sleep"))
    status = [i for i, op in enumerate(log) if op[:2] == ("cluster1", "wait_rollout")]
    assert len(dump_reads) == 2 and dump_reads[-1] < restart < status[0]
    assert all(op[0] != "cluster2" for op in log[restart:])
    restarted = stored(_c1(fake), APPS, "deployments", "foo", "sleep")
    assert "kubectl.kubernetes.io/restartedAt" in restarted["spec"]["template"]["metadata"]["annotations"]


def test_a_gateway_change_that_never_lands_fails_with_what_is_missing(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(faults, "TIMEOUTS", dataclasses.replace(faults.TIMEOUTS, gateway_config=0.0))
    _gateway_dumps(fake, itertools.repeat(_gateway_dump(TYPED, [LOCAL_CLUSTER, GLOBAL])))
    with pytest.raises(NotReadyError, match=f"the gateway still has cluster {GLOBAL}"):
        faults.reach_new_connections(_lab(tmp_path, fake), faults.gateway_without_local_serviceentry, "test")
    assert not any(op[1] == "rollout_restart" for op in fake.ops())


def test_a_fault_without_a_gateway_check_renews_nothing(tmp_path, fake):
    lab = _lab(tmp_path, fake)
    assert faults.reach_new_connections(lab, None, "test") == []
    assert fake.ops() == [] and _c1(fake).requests == [] and _c2(fake).requests == [] and lab.runner.calls == []


def test_the_faults_lab_takes_kubeconfig_and_context_only_from_the_provider(tmp_path):
    from tests.support.apilab import Provider

    profile = load_profile()
    lab = FaultLab.connect(profile, Provider(tmp_path), tmp_path / "work", kubectl_binary="/cache/kubectl")
    assert lab.server.name == profile.server.name and lab.server.context == f"kind-{profile.server.name}"
    assert lab.client.kubeconfig == tmp_path / "kubeconfig" / profile.client.name
    assert lab.client.kubectl(RecordingRunner()).base()[0] == "/cache/kubectl" and lab.workdir == tmp_path / "work"
