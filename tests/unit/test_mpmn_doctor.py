"""The multi-primary-multi-network doctor's decide functions: every hop's failure, the first-failure rule, JSON,
and the fault catalogue (docs/multi-primary-faults.md) each named at the right hop."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lab.scenarios.multi_primary_multi_network import doctor as d

GW = "172.18.255.200"
HEALTHY = d.Facts(dns_capture=True, nslookup_sidecar=True, nslookup_plain=False, istiod_ready=True,
                  curl_has_sidecar=True, vip_collision="", networks={"cluster1": "network1", "cluster2": "network2"},
                  gateway_address=GW, gateway_passthrough=True,
                  remote_secret_server="https://172.18.0.3:6443", endpoints=[f"{GW}:15443"], roots_equal=True,
                  httpbin_ready=True, curl_status=200,
                  xfcc='By=spiffe://cluster.local/ns/sample/sa/httpbin;Hash=ab;Subject="";'
                       'URI=spiffe://cluster.local/ns/sample/sa/curl')


def test_healthy_all_ok_and_exit_zero() -> None:
    hops = d.walk(HEALTHY)
    assert [h.name for h in hops] == list(d.HOPS)
    assert all(h.status == d.OK for h in hops), hops
    assert d.exit_code(hops) == 0 and d.cause(hops) is None


# fault (docs/multi-primary-faults.md ids) -> the facts it leaves -> the hop the doctor must name
FAULTS = {
    "no-remote-secret": ({"remote_secret_server": "", "nslookup_sidecar": False, "endpoints": []},
                         "remote-secret-endpoints"),
    "remote-secret-loopback": ({"remote_secret_server": "https://127.0.0.1:35123", "nslookup_sidecar": False,
                                "endpoints": []}, "remote-secret-endpoints"),
    "network-unknown": ({"networks": {"cluster1": "network1", "cluster2": ""},
                         "endpoints": ["10.20.0.7:8080"], "curl_status": 0}, "client-cluster"),
    "eastwest-no-address": ({"gateway_address": "", "endpoints": ["10.20.0.7:8080"], "curl_status": 0},
                            "eastwest-gateway"),
    "no-auto-passthrough-gateway": ({"gateway_passthrough": False, "curl_status": 503}, "eastwest-gateway"),
    "root-ca-mismatch": ({"roots_equal": False, "curl_status": 503}, "root"),
    "dns-capture-off": ({"dns_capture": False, "nslookup_sidecar": False}, "dns-proxy"),
    "shared-service-subnet": ({"vip_collision": "10.96.12.34", "curl_status": 0}, "dns-proxy"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_named_at_its_hop(fault: str) -> None:
    changes, hop = FAULTS[fault]
    hops = d.walk(replace(HEALTHY, **changes))
    first = d.cause(hops)
    assert first is not None and first.name == hop, (fault, hops)
    assert d.exit_code(hops) == 1


def test_loopback_secret_names_remote_hop_when_dns_fine() -> None:
    for server in ("https://127.0.0.1:6443", "https://localhost:6443", "https://[::1]:6443"):
        hop = d.remote_endpoints(replace(HEALTHY, remote_secret_server=server))
        assert hop.status == d.FAIL and "loopback" in hop.detail


def test_name_absent_with_capture_on_is_the_remote_hop() -> None:
    hops = d.walk(replace(HEALTHY, nslookup_sidecar=False))
    assert [h.name for h in hops if h.status == d.FAIL] == ["remote-secret-endpoints"]
    assert d.dns_proxy(replace(HEALTHY, nslookup_plain=True)).status == d.FAIL


def test_each_hop_fails_alone() -> None:
    cases = {
        "dns-proxy": {"dns_capture": False},
        "client-cluster": {"istiod_ready": False},
        "eastwest-gateway": {"gateway_address": ""},
        "remote-secret-endpoints": {"endpoints": ["10.20.0.7:8080"]},
        "root": {"roots_equal": False},
        "httpbin": {"xfcc": "By=spiffe://cluster.local/ns/sample/sa/httpbin"},
    }
    for hop, changes in cases.items():
        hops = d.walk(replace(HEALTHY, **changes))
        assert [h.name for h in hops if h.status == d.FAIL] == [hop]
    assert d.client_cluster(replace(HEALTHY, curl_has_sidecar=False)).status == d.FAIL
    assert d.httpbin(replace(HEALTHY, httpbin_ready=False)).status == d.FAIL
    assert d.httpbin(replace(HEALTHY, curl_status=503)).status == d.FAIL
    assert d.remote_endpoints(replace(HEALTHY, endpoints=[])).status == d.FAIL


def test_first_failure_is_the_cause() -> None:
    hops = d.walk(replace(HEALTHY, roots_equal=False, gateway_passthrough=False))
    first = d.cause(hops)
    assert first is not None and first.name == "eastwest-gateway"


def test_unobserved_is_unknown_not_ok() -> None:
    f = replace(HEALTHY, roots_equal=None, errors={"roots_equal": "secret cacerts not found"})
    hop = d.root(f)
    assert hop.status == d.UNKNOWN and "cacerts not found" in hop.detail
    assert d.exit_code(d.walk(f)) == 1 and d.cause(d.walk(f)) is None
    assert all(h.status == d.UNKNOWN for h in d.walk(d.Facts()))


def test_json_shape() -> None:
    out = json.loads(d.render_json(d.walk(replace(HEALTHY, dns_capture=False))))
    assert out["scenario"] == "multi-primary-multi-network" and out["ok"] is False
    assert out["cause"] == "dns-proxy"
    assert [h["name"] for h in out["hops"]] == list(d.HOPS)
    assert set(out["hops"][0]) == {"name", "status", "detail"}
    assert json.loads(d.render_json(d.walk(HEALTHY)))["cause"] is None


def test_text_names_cause() -> None:
    text = d.render_text(d.walk(replace(HEALTHY, roots_equal=False)))
    assert text.splitlines()[-1].startswith("cause: root:")


def test_parse_clusters_envoy_admin_text() -> None:
    text = "\n".join([
        f"{d.HTTPBIN_CLUSTER}::observability_name::{d.HTTPBIN_CLUSTER}",
        f"{d.HTTPBIN_CLUSTER}::default_priority::max_connections::4294967295",
        f"{d.HTTPBIN_CLUSTER}::{GW}:15443::cx_active::0",
        f"{d.HTTPBIN_CLUSTER}::{GW}:15443::health_flags::healthy",
        "outbound|80||other.svc.cluster.local::10.0.0.1:80::cx_active::0",
    ])
    assert d.parse_clusters(text) == [f"{GW}:15443"]
    assert d.parse_clusters("") == []


def test_gateway_passthrough_reads_expose_services_shape() -> None:
    good = {"spec": {"selector": {"istio": "eastwestgateway"}, "servers": [
        {"port": {"number": 15443, "name": "tls", "protocol": "TLS"}, "tls": {"mode": "AUTO_PASSTHROUGH"},
         "hosts": ["*.local"]}]}}
    assert d.gateway_passthrough(good)
    simple = {"spec": {"servers": [{"port": {"number": 15443}, "tls": {"mode": "SIMPLE"}, "hosts": ["*.local"]}]}}
    assert not d.gateway_passthrough(simple)
    assert not d.gateway_passthrough({"spec": {}})


def test_remote_secret_server_only() -> None:
    kc = ("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n"
          "    server: https://172.18.0.3:6443\n  name: cluster2\nusers:\n- name: cluster2\n  user:\n"
          "    token: SECRET\n")
    assert d._kubeconfig_server(kc) == "https://172.18.0.3:6443"
    assert d._kubeconfig_server("clusters: []\n") == ""
