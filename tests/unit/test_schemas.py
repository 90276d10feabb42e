"""tests/support/schemas.py: strict validation of the manifests the lab applies (Istio 1.7.8 and Kubernetes schemas)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from lab import manifests
from lab.errors import ValidationError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, istio, kindconfig, serviceentry
from lab.scenarios.replicated_control_planes import steps as rcp_steps
from lab.scenarios.replicated_control_planes.corefile import patch
from lab.scenarios.replicated_control_planes.names import SCENARIO
from lab.scenarios.replicated_control_planes.serviceentry import RemoteService, render_client
from tests.support import schemas
from tests.support.schemas import k8s_schema_version, validate_istio, validate_k8s, validate_manifest

DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS = DATA / "schemas"


def client_se() -> dict:
    return render_client(RemoteService("httpbin", "bar"), "240.0.0.2", "172.18.0.4", 31443, namespace="foo")


# The write-up's Gateway and DestinationRule (seed, "另外需要注意的是..."), which it shows without metadata; the names
# are those of Istio 1.7's multicluster gateway chart.
WRITEUP_GATEWAY = {
    "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
    "metadata": {"name": "istio-multicluster-ingressgateway", "namespace": "istio-system"},
    "spec": {"selector": {"istio": "ingressgateway"},
             "servers": [{"hosts": ["*.global"], "port": {"name": "tls", "number": 15443, "protocol": "TLS"},
                          "tls": {"mode": "AUTO_PASSTHROUGH"}}]},
}
WRITEUP_DESTINATIONRULE = {
    "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
    "metadata": {"name": "istio-multicluster-destinationrule", "namespace": "istio-system"},
    "spec": {"host": "*.global", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
}
# The 1.7.5+ form of the gateway's EnvoyFilter (docs/sources.md#gateway-envoyfilter): `patch.value`, a protobuf Struct.
ENVOYFILTER = {
    "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
    "metadata": {"name": "istio-multicluster-ingressgateway", "namespace": "istio-system"},
    "spec": {
        "workloadSelector": {"labels": {"istio": "ingressgateway"}},
        "configPatches": [{
            "applyTo": "NETWORK_FILTER",
            "match": {"context": "GATEWAY", "listener": {"portNumber": 15443, "filterChain": {
                "filter": {"name": "envoy.filters.network.sni_cluster"}}}},
            "patch": {"operation": "INSERT_AFTER", "value": {
                "name": "envoy.filters.network.tcp_cluster_rewrite",
                "typed_config": {"@type": "type.googleapis.com/istio.envoy.config.filter.network."
                                          "tcp_cluster_rewrite.v2alpha1.TcpClusterRewrite",
                                 "cluster_pattern": "\\.global$", "cluster_replacement": ".svc.cluster.local"}}},
        }],
    },
}


# --- Istio CRD kinds ---------------------------------------------------------------------------------------

def test_every_served_istio_1_7_8_kind_is_known():
    kinds = schemas.istio_kinds()
    for expected in [("networking.istio.io/v1alpha3", "ServiceEntry"), ("networking.istio.io/v1beta1", "ServiceEntry"),
                     ("networking.istio.io/v1alpha3", "Gateway"), ("networking.istio.io/v1beta1", "Gateway"),
                     ("networking.istio.io/v1alpha3", "DestinationRule"), ("networking.istio.io/v1alpha3",
                                                                          "EnvoyFilter"),
                     ("security.istio.io/v1beta1", "PeerAuthentication"), ("install.istio.io/v1alpha1",
                                                                          "IstioOperator")]:
        assert expected in kinds
    assert ("networking.istio.io/v1beta1", "EnvoyFilter") not in kinds  # 1.7.8 serves EnvoyFilter as v1alpha3 only


@pytest.mark.parametrize("obj", [client_se(), WRITEUP_GATEWAY, WRITEUP_DESTINATIONRULE, ENVOYFILTER])
def test_the_lab_s_istio_objects_are_valid(obj):
    validate_istio(obj)


@pytest.mark.parametrize("path,value,needle", [
    (("spec", "adresses"), ["240.0.0.2"], "spec: unknown field 'adresses'"),
    (("spec", "endpoints", 0, "adress"), "1.2.3.4", "spec.endpoints.0: unknown field 'adress'"),
    (("spec", "ports", 0, "targetport"), 80, "spec.ports.0: unknown field 'targetport'"),
    (("spec", "location"), "MESH_INSIDE", "spec.location: 'MESH_INSIDE' is not one of"),
    (("spec", "resolution"), "dns", "spec.resolution: 'dns' is not one of"),
    (("spec", "endpoints", 0, "ports", "http1"), "31443", "'31443' is not of type 'integer'"),
    (("spec", "hosts"), "httpbin.bar.global", "spec.hosts: 'httpbin.bar.global' is not of type 'array'"),
    (("metadata", "lables"), {"a": "b"}, "metadata: unknown field 'lables'"),
    (("extra",), 1, "(top level): unknown field 'extra'"),
])
def test_unknown_fields_and_wrong_types_are_refused(path, value, needle):
    obj = client_se()
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        validate_istio(obj)
    assert needle in str(info.value)
    assert str(info.value).startswith("ServiceEntry foo/httpbin-bar: ")


def test_every_problem_is_reported_in_one_line():
    obj = client_se()
    obj["spec"]["adresses"] = obj["spec"].pop("addresses")
    obj["spec"]["location"] = "X"
    with pytest.raises(ValidationError) as info:
        validate_istio(obj)
    text = str(info.value)
    assert "unknown field 'adresses'" in text and "spec.location" in text
    assert "\n" not in text


def test_free_form_parts_stay_open_where_the_crd_says_so():
    obj = client_se()
    obj["status"] = {"anything": {"goes": [1, 2]}}
    validate_istio(obj)
    ef = copy.deepcopy(ENVOYFILTER)
    ef["spec"]["configPatches"][0]["patch"]["value"]["any_envoy_field"] = {"x": 1}
    validate_istio(ef)


def test_nullable_fields_accept_null_but_not_other_types():
    dr = copy.deepcopy(WRITEUP_DESTINATIONRULE)
    dr["spec"]["trafficPolicy"]["outlierDetection"] = {"consecutive5xxErrors": None}
    validate_istio(dr)
    dr["spec"]["trafficPolicy"]["outlierDetection"] = {"consecutive5xxErrors": "5"}
    with pytest.raises(ValidationError, match="consecutive5xxErrors"):
        validate_istio(dr)


def test_istio_objects_need_a_name():
    obj = client_se()
    del obj["metadata"]["name"]
    with pytest.raises(ValidationError, match="'name' is a required property"):
        validate_istio(obj)
    del obj["metadata"]
    with pytest.raises(ValidationError, match="'metadata' is a required property"):
        validate_istio(obj)


@pytest.mark.parametrize("api_version,kind,needle", [
    ("networking.istio.io/v1beta2", "ServiceEntry", "serves no ServiceEntry in networking.istio.io/v1beta2"),
    ("networking.istio.io/v1beta1", "EnvoyFilter", "serves no EnvoyFilter"),
    ("networking.istio.io/v1alpha3", "ServiceEntries", "serves no ServiceEntries"),
])
def test_unknown_istio_kinds_and_versions_are_refused(api_version, kind, needle):
    obj = client_se()
    obj["apiVersion"], obj["kind"] = api_version, kind
    with pytest.raises(ValidationError, match=needle):
        validate_istio(obj)


# --- IstioOperator -----------------------------------------------------------------------------------------

# The overlay shape issue 2 describes (lab.scenarios.replicated_control_planes.istio renders it): NodePort gateway
# repeating the four default ports
# with a fixed nodePort on 15443, imagePullPolicy IfNotPresent, access log on stdout.
OVERLAY = {
    "apiVersion": "install.istio.io/v1alpha1",
    "kind": "IstioOperator",
    "spec": {
        "meshConfig": {"accessLogFile": "/dev/stdout"},
        "components": {"ingressGateways": [{
            "name": "istio-ingressgateway", "enabled": True,
            "k8s": {"service": {"type": "NodePort", "ports": [
                {"name": "status-port", "port": 15021, "targetPort": 15021},
                {"name": "http2", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 443, "targetPort": 8443},
                {"name": "tls", "port": 15443, "targetPort": 15443, "nodePort": 31443},
            ]}},
        }]},
        "values": {"global": {"imagePullPolicy": "IfNotPresent"}},
    },
}


@pytest.mark.parametrize("version", ["1.7.8", "1.7.3"])
def test_the_release_values_file_for_multicluster_gateways_is_valid(version):
    validate_manifest((VECTORS / version / "values-istio-multicluster-gateways.yaml").read_text())


def test_the_overlay_shape_is_valid_without_metadata():
    validate_istio(OVERLAY)


def test_the_platform_overlay_validates_when_present():
    istio = pytest.importorskip("lab.scenarios.replicated_control_planes.istio")
    profile_mod = pytest.importorskip("lab.scenario")
    for name in ("default", "writeup"):
        validate_istio(istio.overlay(profile_mod.load_profile(name)))


@pytest.mark.parametrize("path,value,needle", [
    (("spec", "components", "ingressGateways", 0, "k8s", "service", "tpye"), "NodePort",
     "spec.components.ingressGateways.0.k8s.service: unknown field 'tpye'"),
    (("spec", "components", "ingressGateways", 0, "k8s", "service", "ports", 3, "appProtocol"), "tls",
     "ports.3: unknown field 'appProtocol'"),  # k8s has it, istioctl 1.7's ServicePort does not
    (("spec", "components", "ingressGateways", 0, "k8s", "service", "ports", 3, "nodePort"), "31443",
     "'31443' is not of type 'integer'"),
    (("spec", "components", "ingressGateways", 0, "k8s", "service", "type"), 1, "1 is not of type 'string'"),
    (("spec", "components", "ingressGateways", 0, "k8s", "servce"), {}, "k8s: unknown field 'servce'"),
    (("spec", "components", "ingresGateways"), [], "spec.components: unknown field 'ingresGateways'"),
    (("spec", "values", "global", "imagePullPolcy"), "IfNotPresent", "spec.values.global: unknown field"),
    (("spec", "values", "global", "imagePullPolicy"), True, "True is not of type 'string'"),
    (("spec", "values", "globl"), {}, "spec.values: unknown field 'globl'"),
    (("spec", "meshConfig", "accessLogFiles"), "/dev/stdout", "spec.meshConfig: unknown field 'accessLogFiles'"),
    (("spec", "meshConfig", "accessLogFile"), 1, "1 is not of type 'string'"),
    (("spec", "profil"), "default", "spec: unknown field 'profil'"),
])
def test_istiooperator_typos_on_the_lab_s_paths_are_refused(path, value, needle):
    obj = copy.deepcopy(OVERLAY)
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        validate_istio(obj)
    assert needle in str(info.value)


def test_istiooperator_accepts_proto_and_json_field_names_as_jsonpb_does():
    obj = copy.deepcopy(OVERLAY)
    obj["spec"]["installPackagePath"] = "/tmp/istio"
    obj["spec"]["mesh_config"] = obj["spec"].pop("meshConfig")
    obj["spec"]["mesh_config"]["access_log_encoding"] = "JSON"
    validate_istio(obj)


# --- Kubernetes kinds --------------------------------------------------------------------------------------

@pytest.mark.parametrize("asked,used", [("1.21", "1.21"), ("v1.21.14", "1.21"), ("1.19", "1.20"), ("1.20", "1.20"),
                                        ("1.28", "1.28"), ("1.30", "1.28")])
def test_kubernetes_schema_version_is_the_nearest_bundled(asked, used):
    assert k8s_schema_version(asked) == used


def test_bad_kubernetes_version_is_refused():
    with pytest.raises(ValidationError, match="not MAJOR.MINOR"):
        k8s_schema_version("latest")


@pytest.mark.parametrize("sample", ["sleep/sleep.yaml", "httpbin/httpbin.yaml"])
@pytest.mark.parametrize("k8s", ["1.21", "1.19"])
def test_the_istio_1_7_8_samples_are_valid(sample, k8s):
    validate_manifest((VECTORS / "1.7.8" / "samples" / sample).read_text(), k8s)


def test_the_coredns_configmap_with_the_patched_corefile_is_valid():
    corefile = (DATA / "corefile" / "k8s-website-docs_default-coredns1.6.x.Corefile").read_text()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
          "data": {"Corefile": patch(corefile, "10.96.0.20")}}
    validate_k8s(cm)


def test_kubernetes_unknown_fields_are_refused():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo", "lables": {"istio-injection": "x"}}}
    with pytest.raises(ValidationError, match="Namespace foo: metadata: unknown field 'lables'"):
        validate_k8s(ns)


def test_a_1_19_check_says_which_schema_it_used():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": 1}}
    with pytest.raises(ValidationError, match=r"checked against Kubernetes 1\.20 \(the bundled schema nearest 1\.19\)"):
        validate_k8s(cm, "1.19")


def test_kinds_removed_in_a_version_are_refused_for_it():
    pdb = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"},
           "spec": {"minAvailable": 1}}
    validate_k8s(pdb, "1.21")
    with pytest.raises(ValidationError, match="Kubernetes 1.25 has no kind PodDisruptionBudget in policy/v1beta1"):
        validate_k8s(pdb, "1.25")


@pytest.mark.parametrize("obj,needle", [
    ({"kind": "ConfigMap"}, "apiVersion is missing"),
    ({"apiVersion": "v1"}, "kind is missing"),
    ([1, 2], "not an object"),
])
def test_objects_without_type_meta_are_refused(obj, needle):
    with pytest.raises(ValidationError, match=needle):
        validate_k8s(obj)  # type: ignore[arg-type]


# --- manifests ---------------------------------------------------------------------------------------------

def test_manifest_dispatches_istio_and_kubernetes_documents():
    text = yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "foo", "labels": {"istio-injection": "enabled"}}},
        client_se(),
        None,
        {"apiVersion": "v1", "kind": "List", "items": [WRITEUP_GATEWAY, WRITEUP_DESTINATIONRULE]},
    ])
    validate_manifest(text)


def test_manifest_errors_name_every_invalid_object():
    bad_se = client_se()
    bad_se["spec"]["adresses"] = ["240.0.0.2"]
    bad_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bar", "nmae": "x"}}
    good = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ok"}}
    with pytest.raises(ValidationError) as info:
        validate_manifest(yaml.safe_dump_all([good, bad_se, {"apiVersion": "v1", "kind": "List",
                                                             "items": [bad_ns]}]))
    text = str(info.value)
    assert "ServiceEntry foo/httpbin-bar: spec: unknown field 'adresses'" in text
    assert "Namespace bar: metadata: unknown field 'nmae'" in text
    assert "Namespace ok" not in text
    assert "\n" not in text


@pytest.mark.parametrize("text,needle", [
    ("a: [1\n", "not YAML at line 2"),
    ("", "no objects"),
    ("---\n---\n", "no objects"),
    ("- 1\n- 2\n", "document 1: is a list"),
])
def test_bad_manifests_are_refused(text, needle):
    with pytest.raises(ValidationError, match=needle):
        validate_manifest(text)


def test_istio_1_7_8_s_own_default_profile_passes_the_strict_istiooperator_validation():
    # tests/data/istio/1.7.8/default-profile.yaml is manifests/profiles/default.yaml@1.7.8 byte for byte; it writes
    # `values.global.proxy_init` (the name fixup_structs gives the proto's proxyInit), which istioctl accepts.
    profile = yaml.safe_load((Path(__file__).resolve().parents[1] / "data/istio/1.7.8/default-profile.yaml")
                             .read_text())
    assert "proxy_init" in profile["spec"]["values"]["global"]
    validate_istio(profile)


def test_istiooperator_still_refuses_a_misspelt_proxy_init():
    obj = copy.deepcopy(OVERLAY)
    obj["spec"].setdefault("values", {}).setdefault("global", {})["proxy-init"] = {"image": "x/proxyv2:1"}
    with pytest.raises(ValidationError, match="proxy-init"):
        validate_istio(obj)


# --- every file in manifests/<scenario>/, rendered with the default profile's values ------------------------------

ISTIOCOREDNS_IP = "10.255.10.123"  # a ClusterIP in the default profile's cluster1 service subnet


def _kind_schema(kind_version: str) -> dict:
    return json.loads((DATA / "kind" / f"v1alpha4-{kind_version}.schema.json").read_text())


def _check_kind_cluster() -> None:
    profile = load_profile("default")
    for cluster in profile.clusters:
        jsonschema.validate(yaml.safe_load(kindconfig.config_yaml(profile, cluster)),
                            _kind_schema(profile.kind_version))


def _check_kubeadm_patch() -> None:
    # The default profile (Kubernetes 1.21) needs no patch; it is embedded for the writeup profile's 1.19 nodes.
    # No kubeadm schema is bundled: the kind config that carries it is checked against kind's types, and the patch
    # must be the v1beta2 ClusterConfiguration kind v0.17.0 renders for Kubernetes < 1.23, with string flags only.
    profile = load_profile("writeup")
    config = yaml.safe_load(kindconfig.config_yaml(profile, profile.clusters[0]))
    jsonschema.validate(config, _kind_schema(profile.kind_version))
    (text,) = config["kubeadmConfigPatches"]
    doc = yaml.safe_load(text)
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]) == (
        "kubeadm.k8s.io/v1beta2", "ClusterConfiguration", {"name": "config"})
    assert set(doc) == {"apiVersion", "kind", "metadata", "apiServer"} and set(doc["apiServer"]) == {"extraArgs"}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in doc["apiServer"]["extraArgs"].items())


def _check_overlay() -> None:
    validate_manifest(istio.overlay_yaml(load_profile("default")))


def _check_namespaces() -> None:
    # The ones the default plan applies (tests/data/golden/plan-default.sh).
    for name, labels in (("istio-system", None), (rcp_steps.CLIENT_NS, {"istio-injection": "enabled"}),
                         (rcp_steps.SERVER_NS, {"istio-injection": "enabled"})):
        validate_manifest(rcp_steps.namespace_manifest(name, labels), "1.21")


def _merge_patch(target: object, patch_: object) -> object:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` applies)."""
    if not isinstance(patch_, dict):
        return patch_
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch_.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _check_stats_patch() -> None:
    docs = list(yaml.safe_load_all((VECTORS / "1.7.8" / "samples" / "sleep" / "sleep.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    patched = _merge_patch(deployment, json.loads(istio.stats_annotation_patch()))
    validate_k8s(patched, "1.21")
    assert patched["spec"]["template"]["metadata"]["annotations"] == dict([rcp_steps.STATS_ANNOTATION])


def _check_serviceentries() -> None:
    profile = load_profile("default")
    svc = rcp_steps.REMOTE
    validate_istio(serviceentry.render_client(svc, profile.client.vip, "172.18.0.4", profile.gateway_node_port,
                                              namespace=rcp_steps.CLIENT_NS))
    validate_istio(serviceentry.render_server(svc, profile.server.vip, namespace=rcp_steps.SERVER_NS))


def _check_corefile(aaaa_guard: bool) -> Callable[[], None]:
    def check() -> None:
        live = (DATA / "corefile" / "k8s-website-docs_default-coredns1.6.x.Corefile").read_text()
        block = corefile.render_block(ISTIOCOREDNS_IP, aaaa_guard=aaaa_guard)
        parsed = corefile.parse(block)
        assert [b.serves_global for b in parsed.blocks] == [True]
        patched = patch(live, ISTIOCOREDNS_IP, aaaa_guard=aaaa_guard)
        assert corefile.global_block(patched) == block
        validate_k8s({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": patched}})
    return check


MANIFEST_CHECKS: dict[str, Callable[[], None]] = {
    "kind-cluster.yaml": _check_kind_cluster,
    "kubeadm-trustworthy-jwt.yaml": _check_kubeadm_patch,
    "istio-overlay.yaml": _check_overlay,
    "namespace.yaml": _check_namespaces,
    "sleep-stats-patch.yaml": _check_stats_patch,
    "serviceentry-client.yaml": _check_serviceentries,
    "serviceentry-server.yaml": _check_serviceentries,
    "coredns-global.Corefile": _check_corefile(aaaa_guard=True),
    "coredns-global-noguard.Corefile": _check_corefile(aaaa_guard=False),
}


@pytest.mark.parametrize("name", manifests.names(SCENARIO))
def test_every_manifest_rendered_with_the_default_profile_validates(name):
    assert name in MANIFEST_CHECKS, f"manifests/{SCENARIO}/{name} has no schema check here"
    MANIFEST_CHECKS[name]()


def test_a_misspelt_field_in_a_template_fails_its_schema_check(tmp_path, monkeypatch):
    copy_dir = tmp_path / SCENARIO
    copy_dir.mkdir()
    for name in manifests.names(SCENARIO):
        text = (manifests.folder(SCENARIO) / name).read_text(encoding="utf-8")
        copy_dir.joinpath(name).write_text(text.replace("  resolution: DNS", "  resolutoin: DNS"), encoding="utf-8")
    monkeypatch.setattr(manifests, "ROOT", tmp_path)
    with pytest.raises(ValidationError, match="unknown field 'resolutoin'"):
        MANIFEST_CHECKS["serviceentry-server.yaml"]()
