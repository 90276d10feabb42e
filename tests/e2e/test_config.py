"""Configuration as the write-up reads it from the proxies' config dumps (and its FAQ's ROOTCA comparison), read
through lab.configdump.analyze."""

from __future__ import annotations

import pytest

from lab.cluster import ENVOY_FILTER
from lab.configdump import TCP_CLUSTER_REWRITE, analyze
from lab.profile import version_key
from lab.scenarios.replicated_control_planes.names import (
    ENVOYFILTER,
    ENVOYFILTER_FIXED_IN,
    GATEWAY_NODE_IP,
    GATEWAY_NODEPORT,
    ISTIO_NS,
    REMOTE_HOST,
    REMOTE_PORT,
)
from tests.e2e.session import CLIENT_NS, SERVER_NS

pytestmark = [pytest.mark.e2e, pytest.mark.replicated_control_planes]

OUTBOUND = f"outbound|{REMOTE_PORT}||{REMOTE_HOST}"
LOCAL_HOST = "httpbin.bar.svc.cluster.local"
# The 1.7.5 fix (commit 3990ddff, istio#27909): the EnvoyFilter's patch uses typed_config from this release on.


def _summary(lab, cluster, namespace: str, selector: str) -> dict:
    return analyze(lab.config_dump(cluster, namespace, selector), REMOTE_HOST, REMOTE_PORT)


def _cluster(summary: dict, name: str) -> dict:
    matches = summary["clusters"]["matches"]
    found = [c for c in matches if c["name"] == name]
    assert found, f"no cluster {name}; clusters for {REMOTE_HOST}: {[c['name'] for c in matches]}"
    return found[0]


@pytest.fixture()
def sleep1(lab) -> dict:
    return _summary(lab, lab.profile.client, CLIENT_NS, "app=sleep")


@pytest.fixture()
def gateway2(lab) -> dict:
    return _summary(lab, lab.profile.server, ISTIO_NS, "istio=ingressgateway")


def test_cluster1_sleep_sends_httpbin_bar_global_to_cluster2s_gateway_node_ip_and_nodeport(lab, sleep1):
    server = lab.kubectl[lab.profile.server.name]  # the write-up's own lookups, as a person types them
    node_ip = server.query(GATEWAY_NODE_IP)
    node_port = int(server.query(GATEWAY_NODEPORT))
    assert node_port == lab.profile.gateway_node_port
    cluster = _cluster(sleep1, OUTBOUND)
    assert [e["address"] for e in cluster["endpoints"]] == [f"{node_ip}:{node_port}"], cluster


def test_cluster1_sleep_route_domains_include_the_name_and_the_vip(lab, sleep1):
    vip = lab.profile.client.vip
    exact = [r for r in sleep1["routes"] if r["match"] == "exact" and r["virtual_host"] == f"{REMOTE_HOST}:8000"]
    assert exact, f"no virtual host {REMOTE_HOST}:8000 in cluster1's sleep routes: {sleep1['routes']}"
    assert {REMOTE_HOST, f"{REMOTE_HOST}:8000", vip, f"{vip}:8000"} <= set(exact[0]["domains"]), exact[0]
    assert exact[0]["clusters"] == [OUTBOUND]


def _global_chain(gateway: dict) -> dict:
    listeners = [ls for ls in gateway["listeners_15443"] if ls["name"] == "0.0.0.0_15443"]
    names = [ls["name"] for ls in gateway["listeners_15443"]]
    assert listeners, f"cluster2's gateway has no listener 0.0.0.0_15443: {names}"
    chains = [ch for ch in listeners[0]["chains"] if "*.global" in ch["server_names"]]
    assert chains, f"no *.global filter chain: {[ch['server_names'] for ch in listeners[0]['chains']]}"
    return chains[0]


def test_cluster2_gateway_routes_global_by_sni_without_a_route_config(gateway2):
    chain = _global_chain(gateway2)
    assert chain["sni_cluster"], chain["filters"]
    # AUTO_PASSTHROUGH: a tcp_proxy whose BlackHoleCluster is a placeholder that sni_cluster replaces; no HTTP
    # connection manager, so no route config (the write-up's listener dump).
    assert not (chain["forwards_to"] or "").startswith("http routes"), chain
    assert "envoy.filters.network.http_connection_manager" not in chain["filters"], chain["filters"]
    assert chain["blackhole"] is None or not chain["blackhole"]["failure"], chain["blackhole"]


def test_cluster2_envoyfilter_has_the_form_of_the_version_under_test(lab, gateway2):
    ef = lab.cluster(lab.profile.server).get_object(ENVOY_FILTER, ISTIO_NS, ENVOYFILTER)
    values = [p["patch"]["value"] for p in ef["spec"]["configPatches"]
              if p.get("patch", {}).get("value", {}).get("name") == TCP_CLUSTER_REWRITE]
    assert len(values) == 1, ef["spec"]
    rewrite = _global_chain(gateway2)["tcp_cluster_rewrite"]
    if version_key(lab.profile.istio_version) >= version_key(ENVOYFILTER_FIXED_IN):
        typed = values[0].get("typed_config", {})
        assert typed.get("@type", "").endswith("tcp_cluster_rewrite.v2alpha1.TcpClusterRewrite"), values[0]
        assert typed.get("cluster_pattern") == "\\.global$" and typed.get("cluster_replacement") == ".svc.cluster.local"
        # and the gateway's Envoy took it: the rewrite sits after sni_cluster in the *.global chain, usable
        assert rewrite and rewrite["usable"] and rewrite["after_sni_cluster"], rewrite
        paths = [p for p in gateway2["gateway_paths"] if p["listener"] == "0.0.0.0_15443"]
        # the rewrite lands on a cluster the gateway has, not merely on the right name
        assert paths and paths[0]["cluster"] == f"outbound_.{REMOTE_PORT}_._.{LOCAL_HOST}", paths
        assert paths[0]["cluster_present"], paths
    else:
        # 1.7.0-1.7.4 ship the legacy `config:` key (preconfigured.yaml at 1.7.3/1.7.4), which Envoy does not apply.
        assert "config" in values[0] and "typed_config" not in values[0], values[0]
        assert rewrite is None or not rewrite["usable"], rewrite
        # so the connection needs the SNI cluster itself, which cluster2's ServiceEntry makes the gateway build
        paths = [p for p in gateway2["gateway_paths"] if p["listener"] == "0.0.0.0_15443"]
        assert paths and paths[0]["cluster"] == f"outbound_.{REMOTE_PORT}_._.{REMOTE_HOST}", paths
        assert paths[0]["cluster_present"], paths


@pytest.mark.parametrize("app,selector", [("httpbin", "app=httpbin"), ("sleep", "app=sleep")],
                         ids=["httpbin", "sleep"])
def test_cluster2_sidecars_resolve_the_name_to_the_local_service_with_strict_dns(lab, app, selector):
    summary = _summary(lab, lab.profile.server, SERVER_NS, selector)
    cluster = _cluster(summary, OUTBOUND)
    assert cluster["type"] == "STRICT_DNS", cluster
    assert [e["address"] for e in cluster["endpoints"]] == [f"{LOCAL_HOST}:{REMOTE_PORT}"], cluster


def test_cluster1_sleep_and_cluster2_httpbin_share_one_rootca(lab, sleep1):
    httpbin2 = _summary(lab, lab.profile.server, SERVER_NS, "app=httpbin")
    a, b = sleep1["rootca"], httpbin2["rootca"]
    assert a, f"cluster1 sleep: {sleep1['rootca_statement']}"
    assert b, f"cluster2 httpbin: {httpbin2['rootca_statement']}"
    assert a["sha256"] == b["sha256"], (
        f"ROOTCA differs: cluster1 sleep {a['subject']} vs cluster2 httpbin {b['subject']}")
