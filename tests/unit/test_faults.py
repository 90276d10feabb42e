"""The failure catalogue's data (lab.faults) against DESIGN.md's table, and its inject/restore code against a
recording kubectl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab import faults
from lab.errors import LabError, NotReadyError, ValidationError
from lab.faults import FAULTS, ISTIO_VERSIONS, Expectation, LabHandle, legacy_envoyfilter, settled_class
from lab.kube import Kubectl
from lab.profile import load_profile
from lab.shell import RecordingRunner, Result
from tests.support.pods import answer, rollout

TABLE = Path(__file__).parent.parent / "data" / "faults" / "design-failures-table.md"


def _design_rows() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("id", "---"):
            continue
        rows[cells[0]] = {"break": cells[1], "expected": cells[2], "why": cells[3]}
    return rows


def _classes_named(row_id: str, rows: dict[str, dict[str, str]]) -> set[str]:
    """Backticked class names in a row's expected cell; "as <other id>" refers to that row."""
    cell = rows[row_id]["expected"]
    names = set(re.findall(r"`([a-z-]+)`", cell))
    ref = re.match(r"as ([a-z-]+)", cell)
    if ref and ref.group(1) in rows:
        names |= _classes_named(ref.group(1), rows)
    return names


def test_catalogue_ids_are_exactly_the_design_tables_ids_in_its_order():
    assert [f.id for f in FAULTS] == list(_design_rows())


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


def test_expected_classes_and_confidences_are_the_ones_the_design_table_states():
    rows = _design_rows()
    for fault in FAULTS:
        named = _classes_named(fault.id, rows)
        stated = {int(p) for p in re.findall(r"\[(\d+)%\]", rows[fault.id]["expected"])}
        stages = [*fault.expectations, *(fault.followup.expectations if fault.followup else ())]
        for exp in stages:
            assert exp.cls in named, (fault.id, exp.cls, named)
            assert exp.confidence in stated, (fault.id, exp.confidence, stated)
            assert exp.why, fault.id


def test_version_split_follows_the_envoyfilter_fix_in_1_7_5():
    fault = faults.BY_ID["missing-local-serviceentry"]
    assert fault.expected_for("1.7.4").cls == "upstream-connect-failure"
    assert fault.expected_for("1.7.5").cls == "ok"
    assert fault.expected == {"1.7.0-1.7.4": "upstream-connect-failure", "1.7.5-1.7.8": "ok"}


def test_only_the_reinstall_fault_is_in_the_slow_lane_and_certificate_faults_are_flagged():
    assert {f.id for f in FAULTS if f.needs_reinstall} == {"stale-workloads-after-reinstall"}
    assert {f.id for f in FAULTS if f.certificates} == {
        "root-ca-mismatch", "cacerts-after-install", "stale-workloads-after-reinstall"}


def test_certificate_faults_restore_through_the_path_that_deletes_istio_ca_secret():
    for fault in FAULTS:
        if fault.certificates:
            assert fault.restore is faults._restore_certificates, fault.id


def test_dns_faults_wait_out_the_caches_before_judging():
    # two 30 s caches and the plugin's 5 s refresh (DESIGN.md, serviceentry-without-addresses)
    assert faults.BY_ID["serviceentry-without-addresses"].settle >= 65
    for fault in FAULTS:
        assert fault.settle + fault.timeout >= 65, fault.id


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
    from lab.serviceentry import validate_vip

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
    from lab import corefile

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
    from lab import corefile

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


def _secret_from_files(argv: tuple[str, ...]) -> Result:
    """What `kubectl create secret generic --dry-run=client -o json --from-file=k=path...` prints."""
    import base64

    data = {}
    for arg in argv:
        if arg.startswith("--from-file="):
            key, _, path = arg[len("--from-file="):].partition("=")
            data[key] = base64.b64encode(Path(path).read_bytes()).decode()
    return Result(argv, 0, json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                       "metadata": {"name": "cacerts", "namespace": "istio-system"},
                                       "data": data}), "")


def test_root_ca_mismatch_plugs_another_root_into_cluster2_and_restarts_istiod_then_workloads(tmp_path):
    import base64

    from lab.certs import root_fingerprint

    samples = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"
    shared = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"},
              "data": {"root-cert.pem": base64.b64encode((samples / "root-cert.pem").read_bytes()).decode(),
                       "ca-key.pem": base64.b64encode(b"key").decode()}}
    runner = RecordingRunner(answers={
        (*CTX2, "get", "secret", "cacerts"): Result((), 0, json.dumps(shared), ""),
        (*CTX2, "create", "secret", "generic", "cacerts"): _secret_from_files,
        (*CTX2, "get", "deployments", "-n", "bar"): Result((), 0, "httpbin sleep", ""),
        (*CTX2, "get", "configmap", "istio-ca-root-cert"): _json({"data": {
            "root-cert.pem": (samples / "root-cert.pem").read_text()}}),
    })
    lab = _lab(tmp_path, runner)
    faults.BY_ID["root-ca-mismatch"].inject(lab)
    (secret,) = _replaced(runner)
    assert set(secret["data"]) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    other = base64.b64decode(secret["data"]["root-cert.pem"])
    assert root_fingerprint(other) != root_fingerprint((samples / "root-cert.pem").read_bytes())
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


def test_stale_workloads_reinstalls_with_the_plans_files_and_keeps_the_pods_in_bar(tmp_path):
    import base64

    samples = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"
    shared = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"},
              "data": {"root-cert.pem": base64.b64encode((samples / "root-cert.pem").read_bytes()).decode(),
                       "ca-key.pem": base64.b64encode(b"key").decode()}}
    istio_dir = tmp_path / "istio-1.7.8"
    values = istio_dir / "manifests" / "examples" / "multicluster" / "values-istio-multicluster-gateways.yaml"
    values.parent.mkdir(parents=True)
    values.write_text("# the release's file\n", encoding="utf-8")
    runner = RecordingRunner(answers={
        (*CTX2, "get", "secret", "cacerts"): Result((), 0, json.dumps(shared), ""),
        (*CTX2, "create", "secret", "generic", "cacerts"): _secret_from_files,
        (*CTX2, "get", "deployments", "-n", "bar"): Result((), 0, "httpbin sleep", ""),
        (*CTX2, "get", "configmap", "istio-ca-root-cert"): _json({"data": {
            "root-cert.pem": (samples / "root-cert.pem").read_text()}}),
    })
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

    # Istio 1.7's Envoy local reply for a failed upstream connection (91 bytes; DESIGN.md, lab/classify.py)
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
    from lab.schemas import validate_istio

    runner = RecordingRunner(answers={(*CTX1, "get", "serviceentries.networking.istio.io"): _se_list(SE_CLIENT),
                                      **GATEWAY_ANSWERS})
    faults.BY_ID[fault_id].inject(_lab(tmp_path, runner))
    (se,) = _replaced(runner)
    validate_istio(se)


def test_legacy_envoyfilter_passes_istio_1_7_8s_crd_schema():
    from lab.schemas import validate_istio

    validate_istio(ENVOYFILTER_1_7_8)
    validate_istio(legacy_envoyfilter(ENVOYFILTER_1_7_8))


@pytest.mark.parametrize("stage", ["inject", "restore"])
def test_root_ca_mismatch_restarts_gateway_and_apps_only_once_istiod_published_its_new_root(tmp_path, stage):
    # The new istiod writes istio-ca-root-cert only after the old pod released the leader lease, and a sidecar reads
    # that file once at start (pkg/istio-agent/sds-agent.go at 1.7.8): a pod started before would never get a cert.
    import base64

    samples = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"
    root = (samples / "root-cert.pem").read_text()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"},
              "data": {"root-cert.pem": base64.b64encode(root.encode()).decode(),
                       "ca-key.pem": base64.b64encode(b"key").decode()}}
    # the ConfigMaps: the previous root for the first two reads (old istiod still leader), then istiod's root
    reads = iter(["-----BEGIN CERTIFICATE-----\nprevious root\n-----END CERTIFICATE-----\n"] * 2 + [root] * 100)
    runner = RecordingRunner(answers={
        (*CTX2, "get", "secret", "cacerts"): _json(secret),
        (*CTX2, "create", "secret", "generic", "cacerts"): _secret_from_files,
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
