"""Istio 1.30's own pilot on the multi-primary-multi-network scenario (issue 11): each cluster's istiod with a remote
registry for the other (what a remote secret adds), each cluster on its own network (topology.istio.io/network on
istio-system), httpbin only in cluster2 behind its east-west gateway (LoadBalancer 172.18.255.200, port 15443).

upstream/pilot-1.30.x builds a Go test binary around pilot's own registries and generators (see its README.md);
these tests write the scenario's objects, run it and assert on what pilot generates for sleep's sidecar (cluster1's
istiod) and for cluster2's east-west gateway (cluster2's istiod, the lab's rendered `cross-network-gateway`).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import manifests
from lab.scenarios.multi_primary_multi_network.names import (
    CROSS_NETWORK_GATEWAY,
    EASTWEST_GATEWAY,
    EASTWEST_TLS_PORT,
    SCENARIO,
)
from tests.upstream.conftest import built
from tests.upstream.gobuild import go_test_binary

NS = "sample"
HOST = f"httpbin.{NS}.svc.cluster.local"
CLUSTER = f"outbound|8000||{HOST}"
SNI = f"outbound_.8000_._.{HOST}"  # model.BuildDNSSrvSubsetKey (pilot/pkg/model/service.go): cluster name = SNI
GATEWAY_IP = "172.18.255.200"  # cluster2's east-west gateway (MetalLB)
GATEWAY1_IP = "172.18.255.100"  # cluster1's own east-west gateway: the lab installs one per cluster
EASTWEST_POD_IP = "10.20.0.20"
HTTPBIN_POD_IP = "10.20.0.9"
HTTPBIN1_POD_IP = "10.10.0.9"  # only in the view that runs httpbin in cluster1 too
HTTPBIN_PORT = 8080  # samples/httpbin/httpbin.yaml@1.30.3: targetPort and containerPort 8080
HTTPBIN_CLUSTER_IP = "10.21.0.50"
HTTPBIN1_CLUSTER_IP = "10.11.0.50"
COLLIDER = f"lab-collider.{NS}.svc.cluster.local"  # docs/multi-primary-faults.md (h)
EXPOSE = manifests.render("expose-services.yaml", SCENARIO)  # the lab's `*.local` AUTO_PASSTHROUGH Gateway


def _ns(network: str | None) -> dict:
    labels = {"topology.istio.io/network": network} if network else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system", "labels": labels}}


def _httpbin(pod_ip: str, cluster_ip: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpbin", "namespace": NS},
         "spec": {"clusterIP": cluster_ip, "selector": {"app": "httpbin"},
                  "ports": [{"name": "http", "port": 8000, "targetPort": HTTPBIN_PORT}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "httpbin-1", "namespace": NS, "labels": {
            "app": "httpbin", "security.istio.io/tlsMode": "istio"}},
         "status": {"podIP": pod_ip, "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "httpbin-abc", "namespace": NS, "labels": {"kubernetes.io/service-name": "httpbin"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [pod_ip], "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": "httpbin-1", "namespace": NS}}],
         "ports": [{"name": "http", "port": HTTPBIN_PORT, "protocol": "TCP"}]},
    ]


def _eastwest_service(network: str, cluster_ip: str, address: str | None) -> dict:
    """The Service gen-eastwest-gateway's IstioOperator makes (labelled with its network, port 15443 `tls`)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": EASTWEST_GATEWAY, "namespace": "istio-system",
                         "labels": {"topology.istio.io/network": network, "istio": "eastwestgateway"}},
            "spec": {"type": "LoadBalancer", "clusterIP": cluster_ip, "selector": {"istio": "eastwestgateway"},
                     "ports": [{"name": "tls", "port": EASTWEST_TLS_PORT, "targetPort": EASTWEST_TLS_PORT}]},
            "status": {"loadBalancer": {"ingress": [{"ip": address}]}} if address else {}}


def _cluster1(network: str | None, *extra: dict) -> list[dict]:
    return [_ns(network), {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "sleep-1", "namespace": NS, "labels": {"app": "sleep"}},
                           "status": {"podIP": "10.10.0.7", "phase": "Running"}}, *extra]


def _cluster2(network: str | None, gateway_address: bool = True, *extra: dict) -> list[dict]:
    return [_ns(network), *_httpbin(HTTPBIN_POD_IP, HTTPBIN_CLUSTER_IP),
            _eastwest_service("network2", "10.21.0.60", GATEWAY_IP if gateway_address else None), *extra]


def _collider(port_name: str | None) -> dict:
    """docs/multi-primary-faults.md (h): a Service in cluster1 on httpbin's cluster2 ClusterIP, no selector; its one
    port named `port_name` (None: unnamed, so pilot sniffs the protocol)."""
    port = {"port": 8000, "protocol": "TCP"} | ({"name": port_name} if port_name else {})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lab-collider", "namespace": NS},
            "spec": {"clusterIP": HTTPBIN_CLUSTER_IP, "ports": [port]}}


# The east-west gateway's pod in cluster2, as the gateway injection template labels it.
EASTWEST_LABELS = {"istio": "eastwestgateway", "app": "istio-eastwestgateway", "topology.istio.io/network": "network2"}
EASTWEST_POD = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "istio-eastwestgateway-1", "namespace": "istio-system", "labels": EASTWEST_LABELS},
                "status": {"podIP": EASTWEST_POD_IP, "phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]}}


def _sleep(network: str | None) -> dict:
    md = {"NAMESPACE": NS, "CLUSTER_ID": "cluster1", "DNS_CAPTURE": "true", "LABELS": {"app": "sleep"}}
    if network:
        md["NETWORK"] = network
    return {"type": "sidecar", "id": f"sleep-1.{NS}", "ip": "10.10.0.7", "metadata": md}


def _eastwest(network_view: bool = True) -> dict:
    """cluster2's east-west gateway as its istio-agent announces itself: ISTIO_META_* env of the gateway's pod
    (eastwest-gateway.yaml: ISTIO_META_REQUESTED_NETWORK_VIEW=network2; the injector's NETWORK and CLUSTER_ID)."""
    md = {"NAMESPACE": "istio-system", "CLUSTER_ID": "cluster2", "NETWORK": "network2", "LABELS": EASTWEST_LABELS,
          "ISTIO_VERSION": "1.30.3"}
    if network_view:
        md["REQUESTED_NETWORK_VIEW"] = "network2"
    return {"type": "router", "id": "istio-eastwestgateway-1.istio-system", "ip": EASTWEST_POD_IP, "metadata": md}


@dataclass(frozen=True)
class View:
    """What one istiod holds: its own cluster (the config cluster, whose Istio configs it reads), the registries of
    every cluster it has a secret for, and the proxies asking it for config."""

    clusters: dict[str, list[dict]]
    proxies: dict[str, dict]
    default: str = "cluster1"
    configs: str = ""


# Both clusters as the lab leaves them: an east-west gateway with an address on each network.
LAB1 = _cluster1("network1", _eastwest_service("network1", "10.11.0.60", GATEWAY1_IP))
LAB2 = _cluster2("network2", True, EASTWEST_POD)

VIEWS = {
    "base": View({"cluster1": _cluster1("network1"), "cluster2": _cluster2("network2")},
                 {"sleep": _sleep("network1")}),
    "no-network-label": View({"cluster1": _cluster1(None), "cluster2": _cluster2(None)}, {"sleep": _sleep(None)}),
    "gateway-pending": View({"cluster1": _cluster1("network1"), "cluster2": _cluster2("network2", False)},
                            {"sleep": _sleep("network1")}),
    "no-remote-cluster": View({"cluster1": _cluster1("network1")}, {"sleep": _sleep("network1")}),
    # fault (c') as docs/multi-primary-faults.md injects it: cluster2's namespace label and httpbin's pod label gone
    # (the fixture's pods carry none), sleep still on network1, the gateway Service still labelled network2
    "network-unknown": View({"cluster1": LAB1, "cluster2": _cluster2(None, True, EASTWEST_POD)},
                            {"sleep": _sleep("network1")}, "cluster1", EXPOSE),
    # fault (d) as docs/multi-primary-faults.md reasons it: cluster1's own gateway keeps multi-network on
    "eastwest-no-address": View({"cluster1": LAB1, "cluster2": _cluster2("network2", False, EASTWEST_POD)},
                                {"sleep": _sleep("network1")}, "cluster1", EXPOSE),
    # cluster2's istiod, the Gateway applied in cluster2 (expose-services.yaml)
    "eastwest": View({"cluster1": LAB1, "cluster2": LAB2}, {"eastwest": _eastwest()}, "cluster2", EXPOSE),
    # the same with httpbin in cluster1 too: what REQUESTED_NETWORK_VIEW keeps out of the gateway's endpoints
    "eastwest-httpbin-both": View(
        {"cluster1": [*LAB1, *_httpbin(HTTPBIN1_POD_IP, HTTPBIN1_CLUSTER_IP)], "cluster2": LAB2},
        {"eastwest": _eastwest(), "eastwest-no-view": _eastwest(network_view=False)}, "cluster2", EXPOSE),
    # cluster1's istiod, with cluster1's own copy of the Gateway (the lab applies expose-services in both clusters)
    "client": View({"cluster1": LAB1, "cluster2": LAB2}, {"sleep": _sleep("network1")}, "cluster1", EXPOSE),
    # fault (e): the Gateway deleted (cluster2's istiod serves the east-west gateway; cluster1's sleep, from an
    # istiod that has no Gateway either: the worst case)
    "no-auto-passthrough-gateway": View({"cluster1": LAB1, "cluster2": LAB2}, {"eastwest": _eastwest()}, "cluster2"),
    "no-auto-passthrough-gateway-client": View({"cluster1": LAB1, "cluster2": LAB2}, {"sleep": _sleep("network1")}),
    # fault (h): cluster1 given cluster2's service range, a Service put on httpbin's cluster2 ClusterIP
    "shared-service-subnet": View({"cluster1": [*LAB1, _collider("tcp")], "cluster2": LAB2},
                                  {"sleep": _sleep("network1")}, "cluster1", EXPOSE),
    "shared-service-subnet-http": View({"cluster1": [*LAB1, _collider("http")], "cluster2": LAB2},
                                       {"sleep": _sleep("network1")}, "cluster1", EXPOSE),
    "shared-service-subnet-unnamed": View({"cluster1": [*LAB1, _collider(None)], "cluster2": LAB2},
                                          {"sleep": _sleep("network1")}, "cluster1", EXPOSE),
}


@pytest.fixture(scope="module")
def dumps(require_go, tmp_path_factory) -> dict[str, dict[str, object]]:
    binary = built(go_test_binary, "pilot-1.30.x", ".", name="pilot-1.30.x.test")
    work = tmp_path_factory.mktemp("pilot130")
    for name, view in VIEWS.items():
        d = work / "in" / name
        d.mkdir(parents=True)
        (d / "view.json").write_text(json.dumps({"defaultCluster": view.default, "clusters": sorted(view.clusters),
                                                 "proxies": view.proxies}))
        (d / "configs.yaml").write_text(view.configs)
        for cluster, objs in view.clusters.items():
            (d / f"kube-{cluster}.yaml").write_text("---\n".join(yaml.safe_dump(o) for o in objs))
    (work / "out").mkdir()
    proc = subprocess.run([str(binary), "-test.run", "^TestDump$", "-test.count=1"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PILOT_IN": str(work / "in"), "PILOT_OUT": str(work / "out")})
    if proc.returncode != 0:
        pytest.fail("\n".join((proc.stdout + proc.stderr).splitlines()[-40:]), pytrace=False)
    out: dict[str, dict[str, object]] = {}
    for name in VIEWS:
        result: Path = work / "out" / name
        out[name] = {f.name: json.loads(f.read_text()) for f in result.iterdir()}
    return out


def _eds(dump: dict, cluster: str) -> list[str] | None:
    for e in dump["configs"][3].get("dynamic_endpoint_configs", []):
        cla = e["endpoint_config"]
        if cla["cluster_name"] == cluster:
            return [f"{lb['endpoint']['address']['socket_address']['address']}:"
                    f"{lb['endpoint']['address']['socket_address']['port_value']}"
                    for loc in cla.get("endpoints", []) for lb in loc.get("lb_endpoints", [])]
    return None


def _listeners(dump: dict) -> dict[str, dict]:
    return {ls["name"]: ls["active_state"]["listener"] for ls in dump["configs"][1].get("dynamic_listeners", [])}


def _clusters(dump: dict) -> dict[str, dict]:
    return {c["cluster"]["name"]: c["cluster"] for c in dump["configs"][0].get("dynamic_active_clusters", [])}


def _routes(dump: dict) -> dict[str, dict]:
    return {r["route_config"]["name"]: r["route_config"] for r in dump["configs"][2].get("dynamic_route_configs", [])}


def _filters(chain: dict) -> list[tuple[str, dict]]:
    return [(f["name"], f.get("typed_config", {})) for f in chain.get("filters", [])]


def _lb_endpoints(dump: dict, cluster: str) -> list[dict]:
    for e in dump["configs"][3].get("dynamic_endpoint_configs", []):
        if e["endpoint_config"]["cluster_name"] == cluster:
            return [lb for loc in e["endpoint_config"].get("endpoints", []) for lb in loc.get("lb_endpoints", [])]
    raise AssertionError(f"no EDS for {cluster}")


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
    assert _eds(dumps["no-network-label"]["sleep.json"], CLUSTER) == [f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}"]


def test_fault_gateway_pending_gives_the_unreachable_pod_ip(dumps):
    """Not an empty EDS: with no network gateway at all pilot turns its network filter off
    (pilot/pkg/xds/endpoints/ep_filters.go: !IsMultiNetworkEnabled(), i.e. no gateway in any network) and sends the
    remote pod IP, which cluster1 cannot route to."""
    assert dumps["gateway-pending"]["gateways.json"] == []
    assert _eds(dumps["gateway-pending"]["sleep.json"], CLUSTER) == [f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}"]


def test_fault_network_unknown_gives_the_pod_ip_to_a_networked_client(dumps):
    """Fault (c'): httpbin's endpoint has network "" (no pod label, no namespace label: controller.go Network), which
    matches sleep's network1 (context.go InNetwork), so pilot sends the pod IP although both gateways exist."""
    view = dumps["network-unknown"]
    # the gateway's pod keeps its own label (F6: the pod label comes first)
    assert view["networks.json"]["cluster2"] == {f"{NS}/httpbin-1": "",
                                                 "istio-system/istio-eastwestgateway-1": "network2"}
    assert len(view["gateways.json"]) == 2
    assert _eds(view["sleep.json"], CLUSTER) == [f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}"]


def test_fault_eastwest_no_address_with_the_other_gateway_keeps_the_pod_ip(dumps):
    """Fault (d) on the path the docs name: network1's gateway exists (multi-network on, ep_filters.go@1.30.3:70),
    network2 has none (network.go: no address, no gateway), so the remote endpoint is kept as its pod IP
    (ep_filters.go@1.30.3:154-163), not dropped and not the gateway."""
    view = dumps["eastwest-no-address"]
    assert view["gateways.json"] == [
        {"network": "network1", "cluster": "cluster1", "addr": GATEWAY1_IP, "port": EASTWEST_TLS_PORT}]
    assert _eds(view["sleep.json"], CLUSTER) == [f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}"]


def test_fault_no_remote_cluster_no_cluster_no_name(dumps):
    assert _eds(dumps["no-remote-cluster"]["sleep.json"], CLUSTER) is None
    assert not [k for k in dumps["no-remote-cluster"]["sleep.nds.json"].get("table", {}) if "httpbin" in k]



# --- the east-west gateway (cluster2's istiod, expose-services.yaml applied) ------------------------------------
def _gateway_chain(dump: dict, sni: str = SNI) -> dict:
    chains = [ch for ch in _listeners(dump)["0.0.0.0_15443"]["filter_chains"]
              if ch.get("filter_chain_match", {}).get("server_names") == [sni]]
    assert len(chains) == 1, _listeners(dump)["0.0.0.0_15443"]["filter_chains"]
    return chains[0]


def test_lab_gateway_is_the_upstream_auto_passthrough_server():
    """The Gateway the views feed pilot is the lab's rendered file, and it is what gateway.go's AUTO_PASSTHROUGH path
    reads: one TLS server on 15443, hosts `*.local`, selecting the east-west gateway's pods."""
    (gw,) = [d for d in yaml.safe_load_all(EXPOSE) if d]
    assert gw["metadata"] == {"name": CROSS_NETWORK_GATEWAY, "namespace": "istio-system"}
    assert gw["spec"]["selector"] == {"istio": EASTWEST_LABELS["istio"]}
    assert gw["spec"]["servers"] == [{"port": {"number": EASTWEST_TLS_PORT, "name": "tls", "protocol": "TLS"},
                                      "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]


def test_eastwest_15443_listener_is_sni_passthrough(dumps):
    """gateway.go@1.30.3 buildGatewayListeners -> builtAutoPassthroughFilterChains (:979-1046): one listener on the
    wildcard bind and the server port, a TLS inspector (listener.go@1.30.3:598-619: SNI matches need it), one chain
    per mesh service port matched by SNI = model.BuildDNSSrvSubsetKey (outbound_.<port>_.<subset>_.<host>) and the
    Istio mTLS ALPNs, no TLS context (passthrough), a tcp_proxy straight to the cluster of that name. No
    sni_cluster filter: unlike 1.7's sni-dnat chain, the cluster is named in each chain."""
    dump = dumps["eastwest"]["eastwest.json"]
    assert list(_listeners(dump)) == ["0.0.0.0_15443"]
    listener = _listeners(dump)["0.0.0.0_15443"]
    assert listener["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": EASTWEST_TLS_PORT}}
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    assert "bind_to_port" not in listener  # a gateway binds its ports (a sidecar's outbound listeners do not)
    chain = _gateway_chain(dump)
    assert "transport_socket" not in chain  # no TLS termination: mTLS stays between the two sidecars
    assert {"istio", "istio-peer-exchange"} <= set(chain["filter_chain_match"]["application_protocols"])
    ((name, tcp),) = _filters(chain)
    assert name == "envoy.filters.network.tcp_proxy"
    assert tcp["cluster"] == SNI
    # every chain is such a passthrough chain, one per service port of the mesh (the gateway's own Service too)
    names = sorted(ch["filter_chain_match"]["server_names"][0] for ch in listener["filter_chains"])
    assert names == sorted([SNI, f"outbound_.{EASTWEST_TLS_PORT}_._.{EASTWEST_GATEWAY}.istio-system.svc.cluster.local"])


def test_eastwest_sni_cluster_has_cluster2s_pod_endpoint(dumps):
    """cluster.go@1.30.3 buildOutboundSniDnatClusters (:637-679, only for a router whose merged gateways contain an
    AUTO_PASSTHROUGH server, :372-373): an EDS cluster without a transport socket; its endpoints are httpbin's pod in
    cluster2 at the container port, the gateway being on network2 with REQUESTED_NETWORK_VIEW=network2
    (endpoint_builder.go@1.30.3:519-530, proxy_view.go@1.30.3:44-56)."""
    dump = dumps["eastwest"]["eastwest.json"]
    cluster = _clusters(dump)[SNI]
    assert cluster["type"] == "EDS" and "transport_socket" not in cluster and "transport_socket_matches" not in cluster
    assert _eds(dump, SNI) == [f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}"]
    assert [lb["metadata"]["filter_metadata"]["istio"]["workload"] for lb in _lb_endpoints(dump, SNI)] == [
        "httpbin-1;sample;httpbin;;cluster2"]


def test_client_sni_and_alpn_select_the_gateway_chain(dumps):
    """What cluster1's sleep sends through the gateway: mTLS (the tlsMode-istio match, EDS metadata tlsMode istio on the
    gateway endpoint) with SNI = the gateway chain's server name and ALPNs the chain accepts."""
    client = dumps["client"]["sleep.json"]
    (match,) = [m for m in _clusters(client)[CLUSTER]["transport_socket_matches"] if m["name"] == "tlsMode-istio"]
    tls = match["transport_socket"]["typed_config"]
    assert tls["sni"] == SNI
    chain = _gateway_chain(dumps["eastwest"]["eastwest.json"])
    assert set(tls["common_tls_context"]["alpn_protocols"]) <= set(chain["filter_chain_match"]["application_protocols"])
    (lb,) = _lb_endpoints(client, CLUSTER)
    assert lb["endpoint"]["address"]["socket_address"] == {"address": GATEWAY_IP, "port_value": EASTWEST_TLS_PORT}
    assert lb["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}


def test_requested_network_view_keeps_the_other_network_out(dumps):
    """With httpbin in both clusters: the gateway (network view network2) sends only to network2's pod; without
    ISTIO_META_REQUESTED_NETWORK_VIEW the same gateway would also get network1's gateway address (ep_filters.go's
    split horizon treats it as a remote network), i.e. forward cross-network traffic onward again."""
    view = dumps["eastwest-httpbin-both"]
    assert view["gateways.json"] == [
        {"network": "network1", "cluster": "cluster1", "addr": GATEWAY1_IP, "port": EASTWEST_TLS_PORT},
        {"network": "network2", "cluster": "cluster2", "addr": GATEWAY_IP, "port": EASTWEST_TLS_PORT}]
    assert _eds(view["eastwest.json"], SNI) == [f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}"]
    assert sorted(_eds(view["eastwest-no-view.json"], SNI) or []) == [
        f"{HTTPBIN_POD_IP}:{HTTPBIN_PORT}", f"{GATEWAY1_IP}:{EASTWEST_TLS_PORT}"]


# --- fault (e): the `*.local` AUTO_PASSTHROUGH Gateway missing ----------------------------------------------------
def test_fault_no_auto_passthrough_gateway_leaves_no_15443_listener(dumps):
    """gateway.go@1.30.3:118-121: no Gateway selects the router, so MergedGateway is nil and pilot sends the gateway
    no listener at all (LDS empty: nothing binds 15443 in the pod), and no SNI-DNAT cluster (cluster.go:372)."""
    dump = dumps["no-auto-passthrough-gateway"]["eastwest.json"]
    assert _listeners(dump) == {}
    assert not [name for name in _clusters(dump) if name.startswith("outbound_.")]
    # the network's gateway comes from the Service (network.go), not from the Gateway resource
    assert dumps["no-auto-passthrough-gateway"]["gateways.json"] == dumps["eastwest"]["gateways.json"]


def test_fault_no_auto_passthrough_gateway_client_still_sent_to_the_gateway(dumps):
    """No Gateway resource changes what the client gets: EDS still points at the gateway's address:15443 (with
    mTLS), so the client's sidecar connects there and is refused; the route retries connect failures twice
    (retry.go@1.30.3:36-56), hence the 121-byte `retried and the latest reset reason` body of docs F1/F2."""
    fault, healthy = dumps["no-auto-passthrough-gateway-client"]["sleep.json"], dumps["client"]["sleep.json"]
    assert _eds(fault, CLUSTER) == _eds(healthy, CLUSTER) == [f"{GATEWAY_IP}:{EASTWEST_TLS_PORT}"]
    assert _clusters(fault)[CLUSTER] == _clusters(healthy)[CLUSTER]
    (vhost,) = [vh for vh in _routes(fault)["8000"]["virtual_hosts"] if vh["name"] == f"{HOST}:8000"]
    (route,) = vhost["routes"]
    assert route["route"]["cluster"] == CLUSTER
    retry = route["route"]["retry_policy"]
    assert retry["num_retries"] == 2 and "connect-failure" in retry["retry_on"].split(",")


# --- fault (h): both clusters on one service subnet, a cluster1 Service on httpbin's cluster2 ClusterIP -----------
def test_fault_shared_subnet_name_table_gives_both_names_one_ip(dumps):
    """name_table.go@1.30.3:42-62 keys the table by hostname, each with its addresses for this proxy
    (service.go getAllAddressesForProxy: cluster1's VIP for lab-collider, cluster2's DefaultAddress for httpbin):
    nothing wins in NDS, both names answer the same IP."""
    table = dumps["shared-service-subnet"]["sleep.nds.json"]["table"]
    assert table[HOST]["ips"] == table[COLLIDER]["ips"] == [HTTPBIN_CLUSTER_IP]


def test_fault_shared_subnet_tcp_collider_takes_the_call(dumps):
    """listener.go@1.30.3:832-870: a TCP port gets its own listener on the service's VIP (bind_to_port false: handed
    the connection by the virtual outbound listener), so a connection to httpbin's answered IP:8000 lands in
    lab-collider's tcp_proxy, whose cluster has no endpoint; httpbin's own config is unchanged."""
    dump = dumps["shared-service-subnet"]["sleep.json"]
    listener = _listeners(dump)[f"{HTTPBIN_CLUSTER_IP}_8000"]
    assert listener["bind_to_port"] is False
    (chain,) = listener["filter_chains"]
    assert [(n, c["cluster"]) for n, c in _filters(chain)] == [
        ("envoy.filters.network.tcp_proxy", f"outbound|8000||{COLLIDER}")]
    assert _eds(dump, f"outbound|8000||{COLLIDER}") == []
    assert "0.0.0.0_8000" in _listeners(dump)
    assert _eds(dump, CLUSTER) == [f"{GATEWAY_IP}:{EASTWEST_TLS_PORT}"]


def test_fault_shared_subnet_http_collider_is_harmless(dumps):
    """An HTTP-named collider shares the wildcard 0.0.0.0_8000 listener (listener.go@1.30.3:872-878) and is routed by
    Host: no listener on the IP, and the IP as a Host stays httpbin's (a domain goes to the first virtual host
    that has it: dedupeDomains, httproute.go@1.30.3:433,504-520)."""
    dump = dumps["shared-service-subnet-http"]["sleep.json"]
    assert f"{HTTPBIN_CLUSTER_IP}_8000" not in _listeners(dump)
    domains = {vh["name"]: vh["domains"] for vh in _routes(dump)["8000"]["virtual_hosts"]}
    assert HTTPBIN_CLUSTER_IP in domains[f"{HOST}:8000"]
    assert HTTPBIN_CLUSTER_IP not in domains[f"{COLLIDER}:8000"]


def test_fault_shared_subnet_unnamed_collider_answers_from_its_own_route(dumps):
    """An unnamed (sniffed) port also gets a listener on the IP, with an HTTP chain (http_inspector) whose route
    config `<collider>:8000` has one virtual host for `*`: the call is taken by the collider whatever its Host, and
    ends in the collider's endpoint-less cluster (Envoy: 503 `no healthy upstream`, not a reset)."""
    dump = dumps["shared-service-subnet-unnamed"]["sleep.json"]
    listener = _listeners(dump)[f"{HTTPBIN_CLUSTER_IP}_8000"]
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.http_inspector"]
    (chain,) = listener["filter_chains"]
    ((name, hcm),) = _filters(chain)
    assert name == "envoy.filters.network.http_connection_manager"
    assert hcm["rds"]["route_config_name"] == f"{COLLIDER}:8000"
    (vhost,) = _routes(dump)[f"{COLLIDER}:8000"]["virtual_hosts"]
    assert vhost["domains"] == ["*"]
    assert [r["route"]["cluster"] for r in vhost["routes"]] == [f"outbound|8000||{COLLIDER}"]
    assert [(n, c["cluster"]) for n, c in _filters(listener["default_filter_chain"])] == [
        ("envoy.filters.network.tcp_proxy", f"outbound|8000||{COLLIDER}")]
    assert _eds(dump, f"outbound|8000||{COLLIDER}") == []
