"""Istio 1.30's own pilot on the multi-primary-multi-network scenario (issue 11): cluster1's istiod with a remote
registry for cluster2 (what a remote secret adds), each cluster on its own network (topology.istio.io/network on
istio-system), httpbin only in cluster2 behind its east-west gateway (LoadBalancer 172.18.255.200, port 15443).

upstream/pilot-1.30.x builds a Go test binary around pilot's own registries and generators (see its README.md);
these tests write the scenario's objects, run it and assert on what pilot generates for sleep's sidecar.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.upstream.conftest import built
from tests.upstream.gobuild import go_test_binary

NS = "sample"
HOST = f"httpbin.{NS}.svc.cluster.local"
CLUSTER = f"outbound|8000||{HOST}"
GATEWAY_IP = "172.18.255.200"
HTTPBIN_POD_IP = "10.20.0.9"
HTTPBIN_CLUSTER_IP = "10.21.0.50"


def _ns(network: str | None) -> dict:
    labels = {"topology.istio.io/network": network} if network else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system", "labels": labels}}


def _cluster1(network: str | None) -> list[dict]:
    return [_ns(network), {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "sleep-1", "namespace": NS, "labels": {"app": "sleep"}},
                           "status": {"podIP": "10.10.0.7", "phase": "Running"}}]


def _cluster2(network: str | None, gateway_address: bool = True) -> list[dict]:
    gw_status = {"loadBalancer": {"ingress": [{"ip": GATEWAY_IP}]}} if gateway_address else {}
    return [
        _ns(network),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpbin", "namespace": NS},
         "spec": {"clusterIP": HTTPBIN_CLUSTER_IP, "selector": {"app": "httpbin"},
                  "ports": [{"name": "http", "port": 8000, "targetPort": 80}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "httpbin-1", "namespace": NS, "labels": {
            "app": "httpbin", "security.istio.io/tlsMode": "istio"}},
         "status": {"podIP": HTTPBIN_POD_IP, "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "httpbin-abc", "namespace": NS, "labels": {"kubernetes.io/service-name": "httpbin"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [HTTPBIN_POD_IP], "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": "httpbin-1", "namespace": NS}}],
         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system",
                      "labels": {"topology.istio.io/network": "network2", "istio": "eastwestgateway"}},
         "spec": {"type": "LoadBalancer", "clusterIP": "10.21.0.60", "selector": {"istio": "eastwestgateway"},
                  "ports": [{"name": "tls", "port": 15443, "targetPort": 15443}]},
         "status": gw_status},
    ]


def _sleep(network: str | None) -> dict:
    md = {"NAMESPACE": NS, "CLUSTER_ID": "cluster1", "DNS_CAPTURE": "true", "LABELS": {"app": "sleep"}}
    if network:
        md["NETWORK"] = network
    return {"type": "sidecar", "id": f"sleep-1.{NS}", "ip": "10.10.0.7", "metadata": md}


VIEWS = {
    "base": ({"cluster1": _cluster1("network1"), "cluster2": _cluster2("network2")}, "network1"),
    "no-network-label": ({"cluster1": _cluster1(None), "cluster2": _cluster2(None)}, None),
    "gateway-pending": ({"cluster1": _cluster1("network1"), "cluster2": _cluster2("network2", False)}, "network1"),
    "no-remote-cluster": ({"cluster1": _cluster1("network1")}, "network1"),
}


@pytest.fixture(scope="module")
def dumps(require_go, tmp_path_factory) -> dict[str, dict[str, object]]:
    binary = built(go_test_binary, "pilot-1.30.x", ".", name="pilot-1.30.x.test")
    work = tmp_path_factory.mktemp("pilot130")
    for view, (clusters, network) in VIEWS.items():
        d = work / "in" / view
        d.mkdir(parents=True)
        (d / "view.json").write_text(json.dumps({"defaultCluster": "cluster1", "clusters": sorted(clusters),
                                                 "proxies": {"sleep": _sleep(network)}}))
        (d / "configs.yaml").write_text("")
        for name, objs in clusters.items():
            (d / f"kube-{name}.yaml").write_text("---\n".join(yaml.safe_dump(o) for o in objs))
    (work / "out").mkdir()
    proc = subprocess.run([str(binary), "-test.run", "^TestDump$", "-test.count=1"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PILOT_IN": str(work / "in"), "PILOT_OUT": str(work / "out")})
    if proc.returncode != 0:
        pytest.fail("\n".join((proc.stdout + proc.stderr).splitlines()[-40:]), pytrace=False)
    out: dict[str, dict[str, object]] = {}
    for view in VIEWS:
        result: Path = work / "out" / view
        out[view] = {f.name: json.loads(f.read_text()) for f in result.iterdir()}
    return out


def _eds(dump: dict, cluster: str) -> list[str] | None:
    for e in dump["configs"][3].get("dynamic_endpoint_configs", []):
        cla = e["endpoint_config"]
        if cla["cluster_name"] == cluster:
            return [f"{lb['endpoint']['address']['socket_address']['address']}:"
                    f"{lb['endpoint']['address']['socket_address']['port_value']}"
                    for loc in cla.get("endpoints", []) for lb in loc.get("lb_endpoints", [])]
    return None


def test_networks_from_the_istio_system_label(dumps):
    assert dumps["base"]["networks.json"] == {"cluster1": {f"{NS}/sleep-1": "network1"},
                                              "cluster2": {f"{NS}/httpbin-1": "network2"}}
    assert dumps["base"]["gateways.json"] == [{"network": "network2", "cluster": "cluster2", "addr": GATEWAY_IP,
                                              "port": 15443}]


def test_sidecar_endpoint_is_the_eastwest_gateway(dumps):
    assert _eds(dumps["base"]["sleep.json"], CLUSTER) == [f"{GATEWAY_IP}:15443"]


def test_name_table_has_the_remote_only_service(dumps):
    table = dumps["base"]["sleep.nds.json"]["table"]
    # one entry per FQDN; the agent expands the short forms from shortname + namespace (pkg/dns/server/name_table.go)
    assert {k: v for k, v in table.items() if "httpbin" in k} == {HOST: {
        "ips": [HTTPBIN_CLUSTER_IP], "registry": "Kubernetes", "shortname": "httpbin", "namespace": NS}}


def test_fault_no_network_label_gives_the_pod_ip(dumps):
    assert _eds(dumps["no-network-label"]["sleep.json"], CLUSTER) == [f"{HTTPBIN_POD_IP}:80"]


def test_fault_gateway_pending_gives_the_unreachable_pod_ip(dumps):
    """Not an empty EDS: with no network gateway at all pilot turns its network filter off
    (pilot/pkg/xds/endpoints/ep_filters.go: !IsMultiNetworkEnabled(), i.e. no gateway in any network) and sends the
    remote pod IP, which cluster1 cannot route to."""
    assert dumps["gateway-pending"]["gateways.json"] == []
    assert _eds(dumps["gateway-pending"]["sleep.json"], CLUSTER) == [f"{HTTPBIN_POD_IP}:80"]


def test_fault_no_remote_cluster_no_cluster_no_name(dumps):
    assert _eds(dumps["no-remote-cluster"]["sleep.json"], CLUSTER) is None
    assert not [k for k in dumps["no-remote-cluster"]["sleep.nds.json"].get("table", {}) if "httpbin" in k]
