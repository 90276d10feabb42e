"""The failure catalogue (lab.scenarios.replicated_control_planes.faults): its data, the README table generated from it,
the waits derived from the DNS
caches, the gateway checks, and its inject/restore code against a recording kubectl."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from lab import certs
from lab.errors import LabError, NotReadyError, ValidationError
from lab.kube import Kubectl
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, faults
from lab.scenarios.replicated_control_planes.faults import (
    FAULTS,
    ISTIO_VERSIONS,
    Expectation,
    LabHandle,
    legacy_envoyfilter,
    settled_class,
)
from lab.shell import Result
from tests.support.configdumps import synthetic_gateway
from tests.support.pods import answer, rollout
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
        faults._pick(both, "1.7.5", "x")


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


# --- inject / restore against a recording kubectl -----------------------------------------------------------------
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


def _lab(tmp_path: Path, runner: RecordingRunner) -> LabHandle:
    profile = load_profile()
    kubectl = {c.name: Kubectl(runner, f"/lab/kubeconfig/{c.name}", c.context) for c in profile.clusters}
    return LabHandle(profile=profile, kubectl=kubectl, workdir=tmp_path, sleep=lambda seconds: None)


def _json(obj: dict) -> Result:
    return Result((), 0, json.dumps(obj), "")


def _se_list(*items: dict) -> Result:
    return Result((), 0, json.dumps({"items": list(items)}), "")


def _verbs(runner: RecordingRunner, context: str) -> list[tuple[str, ...]]:
    out = []
    for call in runner.calls:
        if context in call:
            out.append(call[call.index(context) + 1:])
    return out


def test_serviceentry_without_addresses_replaces_only_the_remote_hosts_entry_and_restore_puts_it_back(tmp_path):
    runner = RecordingRunner(answers={
        ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster1", "--context", "kind-cluster1", "get",
         "serviceentries.networking.istio.io"): _se_list(SE_CLIENT, SE_OTHER)})
    lab = _lab(tmp_path, runner)
    fault = faults.BY_ID["serviceentry-without-addresses"]
    fault.inject(lab)
    replaced = [json.loads(i) for c, i in zip(runner.calls, runner.inputs, strict=True) if "replace" in c]
    assert len(replaced) == 1
    assert "addresses" not in replaced[0]["spec"] and replaced[0]["spec"]["hosts"] == ["httpbin.bar.global"]
    assert "resourceVersion" not in replaced[0]["metadata"] and "status" not in replaced[0]
    assert all("kind-cluster2" not in c for c in runner.calls)

    runner.calls.clear()
    runner.inputs.clear()
    fault.restore(lab)
    restored = [json.loads(i) for c, i in zip(runner.calls, runner.inputs, strict=True) if "replace" in c]
    assert restored[0]["spec"]["addresses"] == ["240.0.0.2"]
    assert lab.saved == {}


def test_missing_local_serviceentry_deletes_in_cluster2_and_restore_creates_it_again(tmp_path):
    se_server = json.loads(json.dumps(SE_CLIENT))
    se_server["metadata"].update(namespace="bar")
    ctx2 = ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster2", "--context", "kind-cluster2")
    runner = RecordingRunner(answers={
        (*ctx2, "get", "serviceentries.networking.istio.io"): _se_list(se_server),
        (*ctx2, "replace"): Result((), 1, "", 'Error from server (NotFound): serviceentries "httpbin-bar" not found'),
    })
    lab = _lab(tmp_path, runner)
    fault = faults.BY_ID["missing-local-serviceentry"]
    fault.inject(lab)
    assert ("delete", "serviceentries.networking.istio.io", "httpbin-bar", "-n", "bar", "--ignore-not-found",
            "--wait=true") in _verbs(runner, "kind-cluster2")
    fault.restore(lab)
    verbs = [v[0] for v in _verbs(runner, "kind-cluster2")]
    assert verbs[-2:] == ["replace", "create"]
    assert json.loads(runner.inputs[-1])["metadata"]["namespace"] == "bar"


def test_a_restore_that_kubectl_refuses_raises_instead_of_passing(tmp_path):
    ctx1 = ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster1", "--context", "kind-cluster1")
    runner = RecordingRunner(answers={
        (*ctx1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT),
        (*ctx1, "replace"): Result((), 1, "", "error: the server doesn't have a resource type"),
    })
    lab = _lab(tmp_path, runner)
    with pytest.raises(LabError, match="exited 1"):
        faults.BY_ID["serviceentry-without-addresses"].inject(lab)


def test_cacerts_after_install_restarts_istiod_without_cacerts_then_recreates_it_and_restarts_only_workloads(
        tmp_path):
    ctx2 = ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster2", "--context", "kind-cluster2")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system",
                                                                "resourceVersion": "7"},
              "data": {"ca-cert.pem": "Y2E="}}
    runner = RecordingRunner(answers={
        (*ctx2, "get", "secret", "cacerts"): Result((), 0, json.dumps(secret), ""),
        (*ctx2, "get", "deployments", "-n", "bar"): Result((), 0, "httpbin sleep", ""),
        # istiod self-signed (cacerts has no ca-key.pem) and published that root in bar
        (*ctx2, "get", "secret", "istio-ca-secret"): _json({"data": {"ca-cert.pem": "Y2E="}}),
        (*ctx2, "get", "configmap", "istio-ca-root-cert"): _json({"data": {"root-cert.pem": "ca\n"}}),
    })
    lab = _lab(tmp_path, runner)
    faults.BY_ID["cacerts-after-install"].inject(lab)
    steps = [v[:3] for v in _verbs(runner, "kind-cluster2") if v[0] in ("delete", "replace", "rollout")]
    assert steps == [
        ("delete", "secret", "cacerts"),
        ("delete", "secret", "istio-ca-secret"),
        ("rollout", "restart", "deployment/istiod"),
        ("rollout", "status", "deployment/istiod"),
        ("replace", "-f", "-"),
        ("rollout", "restart", "deployment/istio-ingressgateway"),
        ("rollout", "status", "deployment/istio-ingressgateway"),
        ("rollout", "restart", "deployment/httpbin"),
        ("rollout", "restart", "deployment/sleep"),
        ("rollout", "status", "deployment/httpbin"),
        ("rollout", "status", "deployment/sleep"),
    ]

    runner.calls.clear()
    faults.BY_ID["cacerts-after-install"].restore(lab)
    steps = [v[:3] for v in _verbs(runner, "kind-cluster2") if v[0] in ("delete", "replace", "rollout")]
    assert steps[:3] == [("replace", "-f", "-"), ("delete", "secret", "istio-ca-secret"),
                         ("rollout", "restart", "deployment/istiod")]
    assert ("rollout", "restart", "deployment/httpbin") in steps
    assert lab.saved == {}


# --- the faults built on the mesh modules -------------------------------------------------------------------------
CTX1 = ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster1", "--context", "kind-cluster1")
CTX2 = ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster2", "--context", "kind-cluster2")
GATEWAY_ANSWERS = {
    (*CTX2, "get", "-n", "istio-system", "pod", "-l", "istio=ingressgateway"): Result((), 0, "172.18.0.4", ""),
    (*CTX2, "get", "-n", "istio-system", "service", "istio-ingressgateway"): Result((), 0, "31443", ""),
}


def _replaced(runner: RecordingRunner) -> list[dict]:
    return [json.loads(i) for c, i in zip(runner.calls, runner.inputs, strict=True) if "replace" in c]


@pytest.mark.parametrize("fault_id,vip", [("vip-multicast", "224.0.0.2"), ("vip-loopback", "127.0.0.2")])
def test_vip_faults_write_the_refused_vip_into_the_plans_serviceentry(tmp_path, fault_id, vip):
    from lab.scenarios.replicated_control_planes.serviceentry import validate_vip

    with pytest.raises(ValidationError):
        validate_vip(vip)  # what the fault bypasses on purpose
    runner = RecordingRunner(answers={(*CTX1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT),
                                      **GATEWAY_ANSWERS})
    lab = _lab(tmp_path, runner)
    faults.BY_ID[fault_id].inject(lab)
    (se,) = _replaced(runner)
    assert se["metadata"] == {"name": "httpbin-bar", "namespace": "foo"}
    assert se["spec"]["addresses"] == [vip]
    assert se["spec"]["endpoints"] == [{"address": "172.18.0.4", "ports": {"http1": 31443}}]
    assert se["spec"]["hosts"] == ["httpbin.bar.global"] and se["spec"]["location"] == "MESH_INTERNAL"


def test_wrong_gateway_port_keeps_the_vip_and_points_at_the_literal_15443(tmp_path):
    runner = RecordingRunner(answers={(*CTX1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT),
                                      **GATEWAY_ANSWERS})
    lab = _lab(tmp_path, runner)
    faults.BY_ID["wrong-gateway-port"].inject(lab)
    (se,) = _replaced(runner)
    assert se["spec"]["addresses"] == [lab.profile.client.vip]
    assert se["spec"]["endpoints"] == [{"address": "172.18.0.4", "ports": {"http1": 15443}}]
    runner.calls.clear()
    runner.inputs.clear()
    faults.BY_ID["wrong-gateway-port"].restore(lab)
    (back,) = _replaced(runner)
    assert back["spec"]["endpoints"] == SE_CLIENT["spec"]["endpoints"]


KUBEADM_COREFILE = (Path(__file__).parent.parent / "data" / "corefile"
                    / "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile").read_text(encoding="utf-8")


def _coredns_runner(corefile_text: str) -> RecordingRunner:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system",
                                                               "resourceVersion": "9"},
          "data": {"Corefile": corefile_text}}
    return RecordingRunner(answers={
        (*CTX1, "get", "configmap", "coredns"): Result((), 0, json.dumps(cm), ""),
        (*CTX1, "get", "-n", "istio-system", "service", "istiocoredns"): Result((), 0, "10.255.10.53", ""),
    })


def test_dns_stub_missing_removes_the_global_block_restarts_coredns_and_restore_puts_the_guarded_block_back(
        tmp_path):
    from lab.scenarios.replicated_control_planes import corefile

    patched = corefile.patch(KUBEADM_COREFILE, "10.255.10.53")
    runner = _coredns_runner(patched)
    lab = _lab(tmp_path, runner)
    faults.BY_ID["dns-stub-missing"].inject(lab)
    (cm,) = _replaced(runner)
    assert cm["data"]["Corefile"] == KUBEADM_COREFILE
    assert ("rollout", "restart", "deployment/coredns", "-n", "kube-system") in _verbs(runner, "kind-cluster1")

    runner = _coredns_runner(KUBEADM_COREFILE)
    lab = _lab(tmp_path, runner)
    faults.BY_ID["dns-stub-missing"].restore(lab)
    (cm,) = _replaced(runner)
    assert cm["data"]["Corefile"] == patched and "template IN AAAA global" in cm["data"]["Corefile"]


def test_aaaa_guard_off_keeps_the_forward_and_drops_only_the_guard(tmp_path):
    from lab.scenarios.replicated_control_planes import corefile

    runner = _coredns_runner(corefile.patch(KUBEADM_COREFILE, "10.255.10.53"))
    lab = _lab(tmp_path, runner)
    faults.BY_ID["aaaa-guard-off"].inject(lab)
    (cm,) = _replaced(runner)
    block = corefile.global_block(cm["data"]["Corefile"])
    assert block and "forward . 10.255.10.53:53" in block and "AAAA" not in block


def test_envoyfilter_broken_writes_the_legacy_form_and_removes_cluster2s_serviceentry(tmp_path):
    se_server = json.loads(json.dumps(SE_CLIENT))
    se_server["metadata"].update(namespace="bar")
    runner = RecordingRunner(answers={
        (*CTX2, "get", "envoyfilter", "istio-multicluster-ingressgateway"):
            Result((), 0, json.dumps(ENVOYFILTER_1_7_8), ""),
        (*CTX2, "get", "serviceentries.networking.istio.io"): _se_list(se_server),
    })
    lab = _lab(tmp_path, runner)
    fault = faults.BY_ID["envoyfilter-broken"]
    fault.inject(lab)
    (ef,) = _replaced(runner)
    assert "config" in ef["spec"]["configPatches"][0]["patch"]["value"]
    assert any(v[0] == "delete" and "serviceentries.networking.istio.io" in v for v in _verbs(runner, "kind-cluster2"))
    fault.followup.apply(lab)  # the write-up's fix on top: cluster2's ServiceEntry is back
    fault.restore(lab)
    restored = _replaced(runner)
    assert [r["kind"] for r in restored] == ["EnvoyFilter", "ServiceEntry", "EnvoyFilter"]
    assert restored[-1] == ENVOYFILTER_1_7_8


SAMPLE_CERTS = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"


def _shared_cacerts_cluster2() -> tuple[dict, RecordingRunner]:
    """cluster2 holding the samples' `cacerts` (the shared root, and a signing key), istiod's root published in
    istio-ca-root-cert, httpbin and sleep in bar: (the Secret, the runner)."""
    root = (SAMPLE_CERTS / "root-cert.pem").read_bytes()
    shared = certs.secret_object("cacerts", "istio-system", {"root-cert.pem": root, "ca-key.pem": b"key"})
    return shared, RecordingRunner(answers={
        (*CTX2, "get", "secret", "cacerts"): Result((), 0, json.dumps(shared), ""),
        (*CTX2, "get", "deployments", "-n", "bar"): Result((), 0, "httpbin sleep", ""),
        (*CTX2, "get", "configmap", "istio-ca-root-cert"): _json({"data": {
            "root-cert.pem": (SAMPLE_CERTS / "root-cert.pem").read_text()}}),
    })


def test_root_ca_mismatch_plugs_another_root_into_cluster2_and_restarts_istiod_then_workloads(tmp_path):
    import base64

    from lab.certs import root_fingerprint

    shared, runner = _shared_cacerts_cluster2()
    lab = _lab(tmp_path, runner)
    faults.BY_ID["root-ca-mismatch"].inject(lab)
    (secret,) = _replaced(runner)
    assert set(secret["data"]) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    other = base64.b64decode(secret["data"]["root-cert.pem"])
    assert root_fingerprint(other) != root_fingerprint((SAMPLE_CERTS / "root-cert.pem").read_bytes())
    steps = [v[:3] for v in _verbs(runner, "kind-cluster2") if v[0] in ("delete", "rollout")]
    assert steps == [("delete", "secret", "istio-ca-secret"),
                     ("rollout", "restart", "deployment/istiod"), ("rollout", "status", "deployment/istiod"),
                     ("rollout", "restart", "deployment/istio-ingressgateway"),
                     ("rollout", "status", "deployment/istio-ingressgateway"),
                     ("rollout", "restart", "deployment/httpbin"), ("rollout", "restart", "deployment/sleep"),
                     ("rollout", "status", "deployment/httpbin"), ("rollout", "status", "deployment/sleep")]
    # the other root's keys stay in the fault's scratch directory
    assert (tmp_path / "other-root" / "root-key.pem").exists()

    runner.calls.clear()
    runner.inputs.clear()
    faults.BY_ID["root-ca-mismatch"].restore(lab)
    (back,) = _replaced(runner)
    assert back["data"] == shared["data"]
    assert ("delete", "secret", "istio-ca-secret") in [v[:3] for v in _verbs(runner, "kind-cluster2")]


def test_the_faults_write_the_same_cacerts_secret_the_plan_applies(tmp_path):
    """A fault's `cacerts` comes from lab.certs.secret_object, as `lab up`'s does, not from a second builder."""
    import base64

    import yaml

    from lab import certs
    from lab.perform import secret_manifest

    certs.generate(tmp_path / "certs", ["cluster2"])
    runner = RecordingRunner()
    lab = _lab(tmp_path, runner)
    faults._cacerts_from(lab.server, tmp_path / "certs" / "cluster2")
    (secret,) = _replaced(runner)
    files = {key: path.read_bytes() for key, path in certs.cacerts_files(tmp_path / "certs" / "cluster2").items()}
    assert secret == yaml.safe_load(secret_manifest("cacerts", "istio-system", files))
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == files
    assert [c for c in runner.calls if "create" in c] == []


def test_stale_workloads_reinstalls_with_the_plans_files_and_keeps_the_pods_in_bar(tmp_path):
    shared, runner = _shared_cacerts_cluster2()
    istio_dir = tmp_path / "istio-1.7.8"
    values = istio_dir / "manifests" / "examples" / "multicluster" / "values-istio-multicluster-gateways.yaml"
    values.parent.mkdir(parents=True)
    values.write_text("# the release's file\n", encoding="utf-8")
    lab = _lab(tmp_path, runner)
    lab.istioctl, lab.istio_dir = Path("/cache/istioctl"), istio_dir
    faults.BY_ID["stale-workloads-after-reinstall"].inject(lab)
    installs = [c for c in runner.calls if c[:2] == ("/cache/istioctl", "install")]
    assert len(installs) == 1
    overlay = tmp_path / "istio-overlay-cluster2.yaml"
    assert installs[0][2:6] == ("-f", str(values), "-f", str(overlay))
    assert "--context" in installs[0] and installs[0][installs[0].index("--context") + 1] == "kind-cluster2"
    assert "NodePort" in overlay.read_text()
    after_install = runner.calls[runner.calls.index(installs[0]):]
    restarts = [c[c.index("restart") + 1] for c in after_install if "restart" in c]
    # istiod and the gateway come back with the reinstalled Istio; the pods in bar are kept
    assert restarts == ["deployment/istiod", "deployment/istio-ingressgateway"]
    # the shared root is back in cacerts before the reinstall
    puts = _replaced(runner)
    assert puts[-1]["data"] == shared["data"]


def test_probe_class_runs_curl_in_cluster1s_sleep_and_classifies_what_it_printed(tmp_path):
    from lab.probe import EXIT_MARK, STATUS_MARK

    # Istio 1.7's Envoy local reply for a failed upstream connection (91 bytes; lab/classify.py)
    reply = ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 91\r\ncontent-type: text/plain\r\nserver: envoy\r\n"
             "\r\nupstream connect error or disconnect/reset before headers. reset reason: connection failure\n"
             f"{STATUS_MARK}503\n{EXIT_MARK}0\n")
    runner = RecordingRunner(answers={
        (*CTX1, "get", "pods", "-n", "foo", "-l", "app=sleep"): answer(rollout("sleep-5d8b")),
        (*CTX1, "exec", "-n", "foo", "sleep-5d8b", "-c", "sleep"): Result((), 0, reply, ""),
    })
    cls, evidence = faults.probe_class(_lab(tmp_path, runner))
    assert cls == "upstream-connect-failure"
    assert any("connection failure" in e for e in evidence)
    (call,) = [c for c in runner.calls if "exec" in c]
    assert call[-1].endswith("http://httpbin.bar.global:8000/headers; echo \"__LAB_CURL_EXIT__=$?\"")


@pytest.mark.parametrize("fault_id", ["vip-multicast", "vip-loopback", "wrong-gateway-port",
                                      "serviceentry-without-addresses"])
def test_serviceentry_faults_still_pass_istio_1_7_8s_crd_schema(tmp_path, fault_id):
    # Only the lab's own validation refuses these values; Istio's CRD schema (and its webhook, which checks
    # addresses with ValidateIPSubnet: pkg/config/validation/validation.go at 1.7.8) take them, so the fault
    # reaches the cluster.
    from tests.support.schemas import validate_istio

    runner = RecordingRunner(answers={(*CTX1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT),
                                      **GATEWAY_ANSWERS})
    faults.BY_ID[fault_id].inject(_lab(tmp_path, runner))
    (se,) = _replaced(runner)
    validate_istio(se)


def test_legacy_envoyfilter_passes_istio_1_7_8s_crd_schema():
    from tests.support.schemas import validate_istio

    validate_istio(ENVOYFILTER_1_7_8)
    validate_istio(legacy_envoyfilter(ENVOYFILTER_1_7_8))


@pytest.mark.parametrize("stage", ["inject", "restore"])
def test_root_ca_mismatch_restarts_gateway_and_apps_only_once_istiod_published_its_new_root(tmp_path, stage):
    # The new istiod writes istio-ca-root-cert only after the old pod released the leader lease, and a sidecar reads
    # that file once at start (pkg/istio-agent/sds-agent.go at 1.7.8): a pod started before would never get a cert.
    root = (SAMPLE_CERTS / "root-cert.pem").read_text()
    secret = certs.secret_object("cacerts", "istio-system", {"root-cert.pem": root.encode(), "ca-key.pem": b"key"})
    # the ConfigMaps: the previous root for the first two reads (old istiod still leader), then istiod's root
    reads = iter(["-----BEGIN CERTIFICATE-----\nprevious root\n-----END CERTIFICATE-----\n"] * 2 + [root] * 100)
    runner = RecordingRunner(answers={
        (*CTX2, "get", "secret", "cacerts"): _json(secret),
        (*CTX2, "get", "deployments", "-n", "bar"): Result((), 0, "httpbin sleep", ""),
        (*CTX2, "get", "configmap", "istio-ca-root-cert"):
            lambda argv: _json({"data": {"root-cert.pem": next(reads)}}),
    })
    lab = _lab(tmp_path, runner)
    fault = faults.BY_ID["root-ca-mismatch"]
    if stage == "restore":
        lab.saved["cacerts"] = secret
        fault.restore(lab)
    else:
        fault.inject(lab)
    verbs = _verbs(runner, "kind-cluster2")
    istiod_ready = verbs.index(("rollout", "status", "deployment/istiod", "-n", "istio-system", "--timeout=300s"))
    first_restart = verbs.index(("rollout", "restart", "deployment/istio-ingressgateway", "-n", "istio-system"))
    assert verbs.index(("rollout", "restart", "deployment/httpbin", "-n", "bar")) > first_restart
    # two misses (istio-system first), then istio-system and bar both hold istiod's root
    assert [v[4] for v in verbs if v[:3] == ("get", "configmap", "istio-ca-root-cert")] == [
        "istio-system", "istio-system", "istio-system", "bar"]
    last_read = max(i for i, v in enumerate(verbs) if v[:3] == ("get", "configmap", "istio-ca-root-cert"))
    first_read = min(i for i, v in enumerate(verbs) if v[:3] == ("get", "configmap", "istio-ca-root-cert"))
    assert istiod_ready < first_read and last_read < first_restart


def test_the_root_istiod_serves_is_cacerts_with_a_signing_key_else_its_self_signed_istio_ca_secret(tmp_path):
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    plugged = {"data": {"root-cert.pem": b64("shared root"), "ca-key.pem": b64("key")}}
    self_signed = {"data": {"ca-cert.pem": b64("self-signed"), "ca-key.pem": b64("key2")}}
    for cacerts, want in ((plugged, "shared root"), ({"data": {"root-cert.pem": b64("shared root")}}, "self-signed"),
                          (None, "self-signed")):
        runner = RecordingRunner(answers={
            (*CTX2, "get", "secret", "cacerts"): _json(cacerts) if cacerts else Result((), 0, "", ""),
            (*CTX2, "get", "secret", "istio-ca-secret"): _json(self_signed)})
        assert faults._root_in_use(_lab(tmp_path, runner).server) == want
    assert faults._root_in_use(_lab(tmp_path, RecordingRunner()).server) is None


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


def _client_fault_runner(tmp_path: Path) -> tuple[LabHandle, RecordingRunner]:
    """Answers for every fault on cluster1: its ServiceEntry, cluster2's gateway, and the lab's Corefile."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
          "data": {"Corefile": corefile.patch(KUBEADM_COREFILE, "10.255.10.53")}}
    runner = RecordingRunner(answers={
        (*CTX1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT),
        (*CTX1, "get", "configmap", "coredns"): _json(cm),
        (*CTX1, "get", "-n", "istio-system", "service", "istiocoredns"): Result((), 0, "10.255.10.53", ""),
        **GATEWAY_ANSWERS})
    return _lab(tmp_path, runner), runner


def _what_the_probe_resolves_through(fault_id: str, tmp_path: Path) -> set[str]:
    """What a fault's inject changes on the DNS path, read from what it wrote: "addresses" when cluster1's
    ServiceEntry answers another address (or none), "corefile" when kube-dns's Corefile was rewritten."""
    lab, runner = _client_fault_runner(tmp_path)
    faults.BY_ID[fault_id].inject(lab)
    changed = set()
    for obj in _replaced(runner):
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
def _restore_failures(tmp_path: Path, fault_id: str, runner: RecordingRunner, saved: dict | None = None):
    lab = _lab(tmp_path, runner)
    lab.saved.update(saved or {})
    reasons: list[str] = []
    return lab, reasons, lambda: faults.restore_and_heal(lab, faults.BY_ID[fault_id], lambda: "ok",
                                                         on_failure=reasons.append)


def test_a_restore_that_fails_with_a_key_error_marks_the_lab_unhealthy(tmp_path):
    # a ConfigMap without `data` (someone emptied it): the Corefile restore cannot read it
    runner = RecordingRunner(answers={(*CTX1, "get", "configmap", "coredns"): _json({"metadata": {}})})
    _, reasons, run = _restore_failures(tmp_path, "dns-stub-missing", runner)
    with pytest.raises(KeyError):
        run()
    assert len(reasons) == 1 and reasons[0].startswith("restore of dns-stub-missing failed: KeyError")


def test_a_restore_that_reads_bad_json_marks_the_lab_unhealthy(tmp_path):
    secret = certs.secret_object("cacerts", "istio-system", {"root-cert.pem": b"root", "ca-key.pem": b"key"})
    runner = RecordingRunner(answers={(*CTX2, "get", "secret", "cacerts"): Result((), 0, '{"data": {', "")})
    _, reasons, run = _restore_failures(tmp_path, "root-ca-mismatch", runner, {"cacerts": secret})
    with pytest.raises(json.JSONDecodeError):
        run()
    assert len(reasons) == 1 and "JSONDecodeError" in reasons[0]


def test_a_restore_whose_call_never_heals_marks_the_lab_unhealthy(tmp_path, monkeypatch):
    fault = dataclasses.replace(faults.BY_ID["wrong-gateway-port"], settle=0.0, timeout=0.0,
                                restore=lambda lab: None)
    reasons: list[str] = []
    with pytest.raises(NotReadyError):
        faults.restore_and_heal(_lab(tmp_path, RecordingRunner()), fault, lambda: "upstream-connect-failure",
                                on_failure=reasons.append)
    assert reasons and "NotReadyError" in reasons[0]


def test_a_restore_that_heals_reports_nothing(tmp_path):
    runner = RecordingRunner(answers={(*CTX1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT)})
    lab = _lab(tmp_path, runner)
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


GATEWAY_PODS = (*CTX2, "get", "pods", "-n", "istio-system", "-l", "istio=ingressgateway")
GATEWAY_DUMP = (*CTX2, "exec", "-n", "istio-system", "gw-1", "-c", "istio-proxy", "--", "pilot-agent", "request",
                "GET", "config_dump")


def test_gateway_side_change_is_judged_only_after_the_dump_shows_it_and_sleep_was_restarted(tmp_path):
    dumps = iter([_gateway_dump(TYPED, [LOCAL_CLUSTER, GLOBAL]), _gateway_dump(TYPED, [LOCAL_CLUSTER])])
    runner = RecordingRunner(answers={
        GATEWAY_PODS: answer(rollout("gw-1")),
        GATEWAY_DUMP: lambda argv: Result(argv, 0, json.dumps(next(dumps)), ""),
    })
    lab = _lab(tmp_path, runner)
    paths = faults.reach_new_connections(lab, faults.gateway_without_local_serviceentry, "test")
    assert [(p["cluster"], p["cluster_present"]) for p in paths] == [(LOCAL_CLUSTER, True)]
    dump_reads = [i for i, c in enumerate(runner.calls) if c[:len(GATEWAY_DUMP)] == GATEWAY_DUMP]
    restart = runner.calls.index((*CTX1, "rollout", "restart", "deployment/sleep", "-n", "foo"))
    status = [i for i, c in enumerate(runner.calls) if c[:7] == (*CTX1, "rollout", "status")]
    assert len(dump_reads) == 2 and dump_reads[-1] < restart < status[0]
    assert all("kind-cluster2" not in c for c in runner.calls[restart:])


def test_a_gateway_change_that_never_lands_fails_with_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(faults, "TIMEOUTS", dataclasses.replace(faults.TIMEOUTS, gateway_config=0.0))
    runner = RecordingRunner(answers={
        GATEWAY_PODS: answer(rollout("gw-1")),
        GATEWAY_DUMP: Result((), 0, json.dumps(_gateway_dump(TYPED, [LOCAL_CLUSTER, GLOBAL])), ""),
    })
    with pytest.raises(NotReadyError, match=f"the gateway still has cluster {GLOBAL}"):
        faults.reach_new_connections(_lab(tmp_path, runner), faults.gateway_without_local_serviceentry, "test")
    assert not any("restart" in c for c in runner.calls)


def test_a_fault_without_a_gateway_check_renews_nothing(tmp_path):
    runner = RecordingRunner()
    assert faults.reach_new_connections(_lab(tmp_path, runner), None, "test") == []
    assert runner.calls == []
