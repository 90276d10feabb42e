"""Every template in manifests/multi-primary-multi-network/ (issue 11), rendered for both clusters, validates
strictly against Istio 1.30.3's CRD schemas and IstioOperator fields and Kubernetes 1.36's schemas
(tests/support/schemas.py with istio_version="1.30.3"); and a misspelt field in each is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from lab import manifests
from lab.errors import ValidationError
from tests.support import schemas
from tests.support.schemas import validate_manifest

SCENARIO = "multi-primary-multi-network"
ISTIO, K8S = "1.30.3", "1.36"
DATA = Path(__file__).resolve().parents[1] / "data" / f"istio-{ISTIO}"
CLUSTERS = [("mesh1", "cluster1", "network1"), ("mesh1", "cluster2", "network2")]


def values(name: str, mesh: str, cluster: str, network: str) -> dict[str, str]:
    given = {"MESH_ID": mesh, "CLUSTER_NAME": cluster, "NETWORK": network, "NAMESPACE": "sample"}
    return {k: v for k, v in given.items() if k in manifests.variables(name, SCENARIO)}


# Not Istio or Kubernetes objects: the kind config and the MetalLB pool are checked against kind's config schema and
# MetalLB v0.16.1's CRDs in tests/unit/test_mpmn_metallb.py.
ELSEWHERE = {"kind-cluster.yaml", "metallb-pool.yaml"}
ISTIO_TEMPLATES = [n for n in manifests.names(SCENARIO) if n not in ELSEWHERE]


def test_every_template_of_the_scenario_is_checked_here_or_in_the_metallb_tests():
    # the two left out exist (a rename would silently drop them from both tests) and the rest is checked here
    assert set(manifests.names(SCENARIO)) >= ELSEWHERE and len(ISTIO_TEMPLATES) >= 4


@pytest.mark.parametrize("cluster", CLUSTERS, ids=lambda c: c[1])
@pytest.mark.parametrize("name", ISTIO_TEMPLATES)
def test_every_template_rendered_for_each_cluster_validates_against_1_30_3(name, cluster):
    text = manifests.render(name, SCENARIO, **values(name, *cluster))
    validate_manifest(text, K8S, ISTIO)


def test_kubernetes_1_36_is_checked_against_its_own_schema():
    assert schemas.k8s_schema_version("1.36") == "1.36"
    assert schemas.k8s_schema_version("v1.36.1") == "1.36"


@pytest.mark.parametrize("name,old,new,needle", [
    ("istio-overlay.yaml", "proxyMetadata:", "proxyMetdata:", "meshConfig.defaultConfig: unknown field 'proxyMetdata'"),
    ("istio-overlay.yaml", "multiCluster:", "multicluster:", "spec.values.global: unknown field 'multicluster'"),
    ("istio-overlay.yaml", 'ISTIO_META_DNS_CAPTURE: "true"', "ISTIO_META_DNS_CAPTURE: true", "is not of type 'string'"),
    ("eastwest-gateway.yaml", "targetPort: 15443", "targetPrt: 15443", "ports.1: unknown field 'targetPrt'"),
    ("eastwest-gateway.yaml", "injectionTemplate:", "injectionTemplat:", "unknown field 'injectionTemplat'"),
    ("eastwest-gateway.yaml", "ingressGateways:", "ingresGateways:", "spec.components: unknown field 'ingresGateways'"),
    ("eastwest-gateway.yaml", "        env:", "        envs:", "k8s: unknown field 'envs'"),
    ("expose-services.yaml", "AUTO_PASSTHROUGH", "AUTO_PASSTHRU", "'AUTO_PASSTHRU' is not one of"),
    ("expose-services.yaml", "selector:", "selectr:", "spec: unknown field 'selectr'"),
    ("namespace-istio-system.yaml", "labels:", "lables:", "metadata: unknown field 'lables'"),
    ("namespace-sample.yaml", "  name:", "  nmae:", "metadata: unknown field 'nmae'"),
])
def test_a_misspelt_field_in_each_template_is_refused(name, old, new, needle):
    text = manifests.render(name, SCENARIO, **values(name, *CLUSTERS[0]))
    assert old in text
    with pytest.raises(ValidationError) as info:
        validate_manifest(text.replace(old, new, 1), K8S, ISTIO)
    assert needle in str(info.value)


@pytest.mark.parametrize("sample", ["curl/curl.yaml", "sleep/sleep.yaml", "httpbin/httpbin.yaml",
                                    "multicluster/expose-services.yaml"])
def test_the_1_30_3_samples_are_valid(sample):
    validate_manifest((DATA / "samples" / sample).read_text(), K8S, ISTIO)


def test_expose_services_is_the_upstream_gateway_plus_its_namespace():
    ours = yaml.safe_load(manifests.render("expose-services.yaml", SCENARIO))
    theirs = yaml.safe_load((DATA / "samples" / "multicluster" / "expose-services.yaml").read_text())
    assert ours["metadata"].pop("namespace") == "istio-system"
    assert ours == theirs


def test_the_1_7_8_default_still_refuses_1_30_only_kinds():
    gw = yaml.safe_load(manifests.render("expose-services.yaml", SCENARIO))  # networking.istio.io/v1: 1.7.8 has none
    with pytest.raises(ValidationError, match="Istio 1.7.8 serves no Gateway in networking.istio.io/v1"):
        schemas.validate_istio(gw)
    schemas.validate_istio(gw, ISTIO, K8S)


def test_an_istio_version_without_schemas_is_refused_by_name():
    gw = yaml.safe_load(manifests.render("expose-services.yaml", SCENARIO))
    with pytest.raises(ValidationError, match="no Istio schemas for 1.29.0"):
        schemas.validate_istio(gw, "1.29.0")


@pytest.mark.parametrize("network", ["network1", "network2"])
def test_the_eastwest_template_is_what_gen_eastwest_gateway_sh_prints(network):
    # samples/multicluster/gen-eastwest-gateway.sh@1.30.3 (data): the same objects, the network only quoted
    script = DATA / "samples" / "multicluster" / "gen-eastwest-gateway.sh"
    out = subprocess.run(["bash", str(script), "--network", network], capture_output=True, text=True, check=True)
    assert yaml.safe_load(out.stdout) == yaml.safe_load(manifests.render("eastwest-gateway.yaml", SCENARIO,
                                                                         NETWORK=network))
    # 1.30.3's script takes --mesh and --cluster but ignores them
    same = subprocess.run(["bash", str(script), "--mesh", "m", "--cluster", "c", "--network", network],
                          capture_output=True, text=True, check=True)
    assert same.stdout == out.stdout
