"""istioctl 1.30 (upstream/istioctl-1.30.x) on the multi-primary-multi-network templates: `istioctl manifest
generate` of the rendered overlay for each cluster and of the east-west gateway, asserting what 1.30 renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab import manifests
from tests.upstream import istioctl as ic
from tests.upstream.conftest import built

SCENARIO = "multi-primary-multi-network"
R = ic.RELEASE_130
CLUSTERS = [("mesh1", "cluster1", "network1"), ("mesh1", "cluster2", "network2")]


@pytest.fixture(scope="module")
def istioctl(require_go) -> Path:
    return built(ic.build, R)


@pytest.fixture(scope="module")
def istio_dir(require_go) -> Path:
    return built(ic.release_dir, R)


def generate(istioctl: Path, istio_dir: Path, text: str, tmp: Path) -> tuple[list[dict], str]:
    f = tmp / "in.yaml"
    f.write_text(text, encoding="utf-8")
    res = ic.run(istioctl, "manifest", "generate", "--manifests", istio_dir / "manifests", "-f", f)
    assert res.returncode == 0, res.stderr[-3000:]
    return ic.objects(res.stdout), res.stderr


def test_istioctl_reports_its_stamp(istioctl):
    out = ic.run(istioctl, "version", "--remote=false", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["clientVersion"]["version"] == "1.30.3"


@pytest.mark.parametrize("mesh,cluster,network", CLUSTERS)
def test_the_overlay_sets_cluster_mesh_network_and_dns_capture(istioctl, istio_dir, tmp_path, mesh, cluster, network):
    text = manifests.render("istio-overlay.yaml", SCENARIO, MESH_ID=mesh, CLUSTER_NAME=cluster, NETWORK=network)
    objs, stderr = generate(istioctl, istio_dir, text, tmp_path)
    assert "unknown field" not in stderr.lower(), stderr
    (proxy,) = ic.find(objs, "Deployment", "istiod", "istio-system")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["CLUSTER_ID"] == cluster  # istiod's own env carries the cluster id only (read from the render)
    mesh_cfg = yaml.safe_load(ic.find(objs, "ConfigMap", "istio", "istio-system")["data"]["mesh"])
    assert mesh_cfg["defaultConfig"]["meshId"] == mesh
    assert mesh_cfg["defaultConfig"]["proxyMetadata"] == {"ISTIO_META_DNS_CAPTURE": "true"}
    assert mesh_cfg["accessLogFile"] == "/dev/stdout"  # the fault probe reads the client sidecar's access log
    values = json.loads(ic.find(objs, "ConfigMap", "istio-sidecar-injector", "istio-system")["data"]["values"])
    assert (values["global"]["meshID"], values["global"]["network"]) == (mesh, network)
    assert values["global"]["multiCluster"]["clusterName"] == cluster


@pytest.mark.parametrize("network", ["network1", "network2"])
def test_the_eastwest_gateway_renders_15443_the_network_label_and_view(istioctl, istio_dir, tmp_path, network):
    objs, stderr = generate(istioctl, istio_dir, manifests.render("eastwest-gateway.yaml", SCENARIO,
                                                                  NETWORK=network), tmp_path)
    assert "unknown field" not in stderr.lower(), stderr
    svc = ic.find(objs, "Service", "istio-eastwestgateway", "istio-system")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [
        ("status-port", 15021), ("tls", 15443), ("tls-istiod", 15012), ("tls-webhook", 15017)]
    assert svc["metadata"]["labels"]["topology.istio.io/network"] == network
    deploy = ic.find(objs, "Deployment", "istio-eastwestgateway", "istio-system")
    assert deploy["spec"]["template"]["metadata"]["labels"]["topology.istio.io/network"] == network
    env = {e["name"]: e.get("value") for c in ic.containers(deploy) for e in c.get("env") or []}
    assert env["ISTIO_META_REQUESTED_NETWORK_VIEW"] == network


def test_a_misspelt_values_field_is_refused_but_a_misspelt_mesh_config_field_is_not(istioctl, istio_dir, tmp_path):
    # why the offline check is strict on meshConfig: istioctl 1.30 drops unknown meshConfig fields
    # (protomarshal.ApplyYAML retries with AllowUnknownFields) but decodes values with jsonpb, strictly
    text = manifests.render("istio-overlay.yaml", SCENARIO, MESH_ID="m", CLUSTER_NAME="c", NETWORK="n")
    f = tmp_path / "bad-values.yaml"
    f.write_text(text.replace("multiCluster:", "multiClustr:"), encoding="utf-8")
    res = ic.run(istioctl, "manifest", "generate", "--manifests", istio_dir / "manifests", "-f", f)
    assert res.returncode != 0 and "multiClustr" in res.stderr, res.stderr[-2000:]
    objs, _ = generate(istioctl, istio_dir, text.replace("proxyMetadata:", "proxyMetdata:"), tmp_path)
    mesh_cfg = yaml.safe_load(ic.find(objs, "ConfigMap", "istio", "istio-system")["data"]["mesh"])
    assert "proxyMetadata" not in mesh_cfg["defaultConfig"]
