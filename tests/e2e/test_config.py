"""Configuration as the write-up reads it from the proxies' config dumps (and its FAQ's ROOTCA comparison)."""

from __future__ import annotations

import json

import pytest

from lab.faults import ENVOYFILTER, ISTIO_NS, REMOTE_HOST, TCP_CLUSTER_REWRITE, version_key
from tests.e2e import dumps
from tests.e2e.session import CLIENT_NS, SERVER_NS

pytestmark = pytest.mark.e2e

OUTBOUND = f"outbound|8000||{REMOTE_HOST}"
LOCAL_HOST = "httpbin.bar.svc.cluster.local"
# The 1.7.5 fix (commit 3990ddff, istio#27909): the EnvoyFilter's patch uses typed_config from this release on.
TYPED_CONFIG_SINCE = "1.7.5"


@pytest.fixture()
def sleep1_dump(lab):
    return lab.config_dump(lab.profile.client, CLIENT_NS, "app=sleep")


@pytest.fixture()
def gateway2_dump(lab):
    return lab.config_dump(lab.profile.server, ISTIO_NS, "istio=ingressgateway")


def test_cluster1_sleep_sends_httpbin_bar_global_to_cluster2s_gateway_node_ip_and_nodeport(lab, sleep1_dump):
    server = lab.kubectl[lab.profile.server.name]
    node_ip = server.jsonpath("pods", "-n", ISTIO_NS, "-l", "istio=ingressgateway", path="{.items[0].status.hostIP}")
    node_port = int(server.jsonpath("service", "istio-ingressgateway", "-n", ISTIO_NS,
                                    path="{.spec.ports[?(@.port==15443)].nodePort}"))
    assert node_port == lab.profile.gateway_node_port
    cluster = dumps.clusters(sleep1_dump).get(OUTBOUND)
    assert cluster, f"cluster1's sleep sidecar has no cluster {OUTBOUND}"
    assert dumps.endpoints(cluster) == [(node_ip, node_port)]


def test_cluster1_sleep_route_domains_include_the_name_and_the_vip(lab, sleep1_dump):
    vip = lab.profile.client.vip
    hosts = [vh for vh in dumps.virtual_hosts(sleep1_dump) if vh.get("name") == f"{REMOTE_HOST}:8000"]
    assert hosts, f"no virtual host {REMOTE_HOST}:8000 in cluster1's sleep routes"
    domains = set(hosts[0]["domains"])
    assert {REMOTE_HOST, f"{REMOTE_HOST}:8000", vip, f"{vip}:8000"} <= domains, domains
    assert hosts[0]["routes"][0]["route"]["cluster"] == OUTBOUND


def test_cluster2_gateway_routes_global_by_sni_without_a_route_config(gateway2_dump):
    listener = dumps.listeners(gateway2_dump).get("0.0.0.0_15443")
    assert listener, "cluster2's gateway has no listener 0.0.0.0_15443"
    chains = dumps.chains_for_sni(listener, "*.global")
    assert chains, f"no filter chain for *.global: {[fc.get('filter_chain_match') for fc in listener['filter_chains']]}"
    names = dumps.filter_names(chains[0])
    assert "envoy.filters.network.sni_cluster" in names and "envoy.filters.network.tcp_proxy" in names, names
    text = json.dumps(chains[0])
    assert "route_config" not in text and '"rds"' not in text and "http_connection_manager" not in text


def test_cluster2_envoyfilter_has_the_form_of_the_version_under_test(lab, gateway2_dump):
    ef = lab.kubectl[lab.profile.server.name].get_json("envoyfilter", ENVOYFILTER, "-n", ISTIO_NS)
    values = [p["patch"]["value"] for p in ef["spec"]["configPatches"]
              if p.get("patch", {}).get("value", {}).get("name") == TCP_CLUSTER_REWRITE]
    assert len(values) == 1, ef["spec"]
    if version_key(lab.profile.istio_version) >= version_key(TYPED_CONFIG_SINCE):
        typed = values[0].get("typed_config", {})
        assert typed.get("@type", "").endswith("tcp_cluster_rewrite.v2alpha1.TcpClusterRewrite"), values[0]
        assert typed.get("cluster_pattern") == "\\.global$" and typed.get("cluster_replacement") == ".svc.cluster.local"
        # and the gateway's Envoy took it: the rewrite filter sits in the *.global chain with its pattern
        chain = dumps.chains_for_sni(dumps.listeners(gateway2_dump)["0.0.0.0_15443"], "*.global")[0]
        rewrite = [f for f in chain["filters"] if f.get("name") == TCP_CLUSTER_REWRITE]
        assert rewrite and "\\\\.global$" in json.dumps(rewrite[0]), chain["filters"]
    else:
        # 1.7.0-1.7.4 ship the legacy `config:` key (preconfigured.yaml at 1.7.3/1.7.4), which Envoy ignores.
        assert "config" in values[0] and "typed_config" not in values[0], values[0]


@pytest.mark.parametrize("app,selector", [("httpbin", "app=httpbin"), ("sleep", "app=sleep")],
                         ids=["httpbin", "sleep"])
def test_cluster2_sidecars_resolve_the_name_to_the_local_service_with_strict_dns(lab, app, selector):
    dump = lab.config_dump(lab.profile.server, SERVER_NS, selector)
    cluster = dumps.clusters(dump).get(OUTBOUND)
    assert cluster, f"cluster2's {app} sidecar has no cluster {OUTBOUND}"
    assert cluster.get("type") == "STRICT_DNS", cluster.get("type")
    assert dumps.endpoints(cluster) == [(LOCAL_HOST, 8000)]


def test_cluster1_sleep_and_cluster2_httpbin_share_one_rootca(lab, sleep1_dump):
    from lab.configdump import rootca

    httpbin2 = lab.config_dump(lab.profile.server, SERVER_NS, "app=httpbin")
    a, b = rootca(sleep1_dump), rootca(httpbin2)
    assert a and b, "a sidecar's config dump has no ROOTCA secret"
    assert a["sha256"] == b["sha256"], (
        f"ROOTCA differs: cluster1 sleep {a['subject']} vs cluster2 httpbin {b['subject']}")
