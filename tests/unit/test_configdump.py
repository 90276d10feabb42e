"""The config-dump analyzer on real dumps (tests/data/envoy_config_dump, sources in its README).

Each test states a conclusion that the dump's source supports (tests/data/envoy_config_dump/README.md). Inputs
written for a test are marked synthetic where they appear.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import cli, configdump
from lab.errors import ValidationError
from lab.scenarios.replicated_control_planes import SCENARIO as REPLICATED
from tests.support.configdumps import synthetic_gateway

DATA = Path(__file__).resolve().parents[1] / "data" / "envoy_config_dump"
DUMPS = sorted(p.name for p in DATA.glob("*.json"))
ELIDED = DATA / "fragments" / "istio-handbook-gateway-0.0.0.0_15443-listener.ELIDED.json.txt"
HOST, PORT = "httpbin.bar.global", 8000
EVERY_GLOBAL = REPLICATED.config_hosts  # the 1.7 scenario's default query (`lab configdump` without --host)


def dump(name: str) -> dict:
    return configdump.load((DATA / name).read_text(), source=name)


def listeners(d: dict) -> dict[str, dict]:
    return {ls["name"]: ls for ls in (configdump.summarize_listener(lis, st) for st, lis in configdump._listeners(d))}


def test_all_eight_vector_dumps_are_present():
    assert len(DUMPS) == 8


@pytest.mark.parametrize("name", DUMPS)
def test_no_vector_dump_has_the_lab_cluster_or_a_wildcard_15443_listener(name):
    summary = configdump.analyze(dump(name), HOST, PORT)
    assert summary["clusters"]["found"] is False
    assert summary["clusters"]["matches"] == []
    assert not any(ls["wildcard"] for ls in summary["listeners_15443"])
    assert summary["gateway_paths"] == []
    if "ClustersConfigDump" in summary["sections"]:
        assert f"no cluster for {HOST}:{PORT}: not found" in summary["findings"]
        assert "no 0.0.0.0_15443 listener (not an AUTO_PASSTHROUGH gateway)" in summary["findings"]
    json.dumps(summary)  # JSON-able


@pytest.mark.parametrize("name", DUMPS)
def test_no_vector_dump_has_a_blackhole_chain_that_is_a_failure(name):
    summary = configdump.analyze(dump(name), EVERY_GLOBAL)
    assert [b for b in summary["blackhole_chains"] if b["failure"]] == []
    assert not any("drops connections" in f for f in summary["findings"])


@pytest.mark.parametrize("name", DUMPS)
def test_default_query_matches_no_cluster_in_vectors_since_none_is_dot_global(name):
    assert configdump.analyze(dump(name), EVERY_GLOBAL)["clusters"]["matches"] == []


@pytest.mark.parametrize("name", DUMPS)
def test_eds_clusters_say_their_endpoints_are_not_in_the_dump(name):
    d = dump(name)
    eds = [configdump.summarize_cluster(c, s, None) for s, c in configdump._clusters(d)
           if configdump._cluster_type(c) == "EDS"]
    for c in eds:
        assert c["endpoints"] is None
        assert c["endpoints_statement"] == "endpoints not present in dump (EDS)"


def test_ossm_sidecar_has_24_clusters_rootca_and_only_loop_guard_blackholes():
    d = dump("ossm2.6-istio1.20-sidecar-hello-openshift.config_dump.json")
    s = configdump.analyze(d, EVERY_GLOBAL)
    assert (s["format"], s["node"]["proxy_type"], s["node"]["istio_version"]) == ("v3", "sidecar", "1.20.8")
    assert s["clusters"]["total"] == 24
    assert not [n for n in configdump.cluster_names(d) if "15443" in n]
    assert s["listeners_15443"] == []
    assert s["rootca"]["subject"] == s["rootca"]["issuer"] == "O=cluster.local"
    assert s["rootca"]["not_after"].startswith("2035-06-02")
    assert s["rootca"]["certificates"] == 1
    assert sorted((b["listener"], b["chain"], b["kind"]) for b in s["blackhole_chains"]) == [
        ("virtualInbound", "virtualInbound-blackhole", "loop-guard"),
        ("virtualOutbound", "virtualOutbound-blackhole", "loop-guard")]
    chains = {c["name"]: c for c in listeners(d)["virtualOutbound"]["chains"]}
    assert chains["virtualOutbound-blackhole"]["match"]["destination_port"] == 15001
    assert chains["virtualOutbound-catchall-tcp"]["forwards_to"] == "PassthroughCluster"


def test_ossm_sidecar_default_secret_private_key_is_never_taken_for_rootca():
    d = dump("ossm2.6-istio1.20-sidecar-hello-openshift.config_dump.json")
    secrets = dict((s["name"], s) for _, s in configdump._secrets(d))
    key = secrets["default"]["tls_certificate"]["private_key"]["inline_bytes"]
    assert base64.b64decode(key) == b"[redacted]"
    assert configdump.rootca(d)["pem"].count("BEGIN CERTIFICATE") == 1


def test_ossm_gateway_has_one_listener_8080_with_a_catch_all_virtual_host():
    d = dump("ossm2.6-istio1.20-ingressgateway.config_dump.json")
    s = configdump.analyze(d, "hello-openshift.vanilla-playground.svc.cluster.local", 8080)
    assert s["node"]["proxy_type"] == "router"
    dynamic = [n for n, ls in listeners(d).items() if ls["state"] != "static"]
    assert dynamic == ["0.0.0.0_8080"]
    assert [(r["route_config"], r["virtual_host"], r["domains"], r["match"]) for r in s["routes"]] == [
        ("http.8080", "*:8080", ["*"], "catch-all")]
    assert s["listeners_15443"] == []
    assert s["rootca"]["subject"] == "O=cluster.local"


def test_istio191_sidecar_15443_near_misses_are_service_listeners_not_the_gateway():
    d = dump("istio1.9.1-sidecar-productpage.config_dump.json")
    s = configdump.analyze(d, HOST, PORT)
    near = {ls["name"]: ls for ls in s["listeners_15443"]}
    assert set(near) == {"10.104.193.173_15443", "10.104.255.22_15443"}
    assert not any(ls["wildcard"] for ls in near.values())
    assert [c["forwards_to"] for c in near["10.104.193.173_15443"]["chains"]] == [
        "outbound|15443||istio-ingressgateway.istio-system.svc.cluster.local"]
    assert [c["forwards_to"] for c in near["10.104.255.22_15443"]["chains"]] == [
        "outbound|15443||istio-egressgateway.istio-system.svc.cluster.local"]
    names = configdump.cluster_names(d)
    assert {"outbound|15443||istio-ingressgateway.istio-system.svc.cluster.local",
            "outbound|15443||istio-egressgateway.istio-system.svc.cluster.local"} <= names
    assert s["rootca"]["not_after"].startswith("2031-03-20")
    assert {b["kind"] for b in s["blackhole_chains"]} == {"loop-guard"}


def test_global_sidecar_host_is_not_a_dot_global_host():
    d = dump("istio1.9.1-sidecar-productpage.config_dump.json")
    assert "outbound|9080||global-sidecar.default.svc.cluster.local" in configdump.cluster_names(d)
    assert configdump.find_clusters(d, EVERY_GLOBAL) == []
    assert configdump.find_clusters(d, "*.global") == []
    assert configdump.find_routes(d, EVERY_GLOBAL) == []
    assert not configdump.in_domain("global-sidecar.default.svc.cluster.local", "global")
    found = configdump.find_clusters(d, "global-sidecar.default.svc.cluster.local", 9080)
    assert [c["name"] for c in found] == ["outbound|9080||global-sidecar.default.svc.cluster.local"]


def test_istio191_subset_cluster_names_split_into_their_parts():
    parsed = configdump.parse_cluster_name("outbound|9080|v1|details.default.svc.cluster.local")
    assert parsed == configdump.ClusterName("outbound", 9080, "v1", "details.default.svc.cluster.local", "istio")
    d = dump("istio1.9.1-sidecar-productpage.config_dump.json")
    subsets = {c["subset"] for c in configdump.find_clusters(d, "details.default.svc.cluster.local", 9080)}
    assert subsets == {"", "v1", "v2"}


def test_v2alpha_gateway_strict_dns_clusters_carry_their_inline_endpoint():
    d = dump("envoy1.12-v2alpha-gateway-proxy.config_dump.json")
    s = configdump.analyze(d, "com.netease.static-3718", 80)
    assert s["format"] == "v2alpha"
    found = {c["name"]: c for c in s["clusters"]["matches"]}
    assert set(found) == {"outbound|80||com.netease.static-3718",
                          "outbound|80|static-3718-prod-gateway|com.netease.static-3718"}
    for c in found.values():
        assert (c["type"], c["host"], c["port"]) == ("STRICT_DNS", "com.netease.static-3718", 80)
        assert c["endpoints"] == [{"address": "10.100.0.5:18090"}]
    assert s["rootca"] is None and s["rootca_statement"] == "no ROOTCA secret in the dump"


def test_v2alpha_gateway_route_http_80_virtual_hosts():
    d = dump("envoy1.12-v2alpha-gateway-proxy.config_dump.json")
    vhosts = {vh["name"] for _, rc in configdump._route_configs(d) if rc.get("name") == "http.80"
              for vh in rc["virtual_hosts"]}
    assert vhosts == {"59.111.246.217:80", "gateway-proxy.qa-ci.service.163.org:80", "istio.com:80"}
    [r] = configdump.find_routes(d, "istio.com", 80)
    assert (r["route_config"], r["virtual_host"], r["match"]) == ("http.80", "istio.com:80", "exact")
    assert configdump.find_routes(d, "istio.com", 81) == []


def test_v2alpha_listener_layout_is_read_directly_from_dynamic_active_listeners():
    d = dump("envoy1.12-v2alpha-gateway-proxy.config_dump.json")
    sec = configdump.sections(d)["ListenersConfigDump"]
    assert "dynamic_listeners" not in sec and sec["dynamic_active_listeners"]
    assert "0.0.0.0_80" in listeners(d)


def test_istio13_gateway_has_sni_dnat_and_istio_form_clusters_but_no_15443_listener():
    d = dump("istio1.3.0-ingressgateway-sni-dnat.config_dump.json")
    s = configdump.analyze(d, "istio-ingressgateway.istio-system.svc.cluster.local", 15443)
    assert s["node"]["router_mode"] == "sni-dnat"
    forms = {c["name"]: c["form"] for c in s["clusters"]["matches"]}
    assert forms == {"outbound_.15443_._.istio-ingressgateway.istio-system.svc.cluster.local": "sni-dnat",
                     "outbound|15443||istio-ingressgateway.istio-system.svc.cluster.local": "istio"}
    assert s["clusters"]["total"] == 125
    assert sum(configdump._cluster_type(c) == "EDS" for _, c in configdump._clusters(d)) == 120
    assert sorted(listeners(d)) == ["0.0.0.0_15090", "0.0.0.0_31400", "0.0.0.0_80"]
    assert listeners(d)["0.0.0.0_15090"]["named"] is False  # static listeners have no name
    assert s["listeners_15443"] == []
    assert s["rootca"] is None


def test_istio13_sidecar_blackhole_chains_match_only_the_pods_own_ip():
    d = dump("istio1.3.0-rc.2-sidecar-productpage-allow-any.config_dump.json")
    s = configdump.analyze(d, EVERY_GLOBAL)
    assert s["node"]["ip"] == "172.30.150.216"
    assert len({b["listener"] for b in s["blackhole_chains"]}) == 18
    assert {"0.0.0.0_80", "0.0.0.0_6379"} <= {b["listener"] for b in s["blackhole_chains"]}
    assert {(b["kind"], b["failure"]) for b in s["blackhole_chains"]} == {("self-loop-guard", False)}
    assert all("172.30.150.216" in b["why"] for b in s["blackhole_chains"])
    outbound = listeners(d)["virtualOutbound"]["chains"]
    assert [c["forwards_to"] for c in outbound if not c["match"]] == ["PassthroughCluster"]


def test_istio13_sidecar_is_allow_any_and_its_15443_listeners_go_to_gateway_services():
    d = dump("istio1.3.0-rc.2-sidecar-productpage-allow-any.config_dump.json")
    [r] = configdump.find_routes(d, "example.org", 80)
    assert (r["virtual_host"], r["match"], r["clusters"]) == ("allow_any", "catch-all", ["PassthroughCluster"])
    near = {ls["name"]: ls for ls in configdump.analyze(d, EVERY_GLOBAL)["listeners_15443"]}
    assert near["172.21.119.174_15443"]["chains"][0]["forwards_to"] == \
        "outbound|15443||istio-ingressgateway.istio-system.svc.cluster.local"
    assert near["172.21.146.60_15443"]["chains"][0]["forwards_to"] == \
        "outbound|15443||c2-example-com.istio-private-gateways.svc.cluster.local"


def test_trimmed_istio15_dump_has_only_blackhole_cluster_and_no_rootca():
    d = dump("istio1.5.0-beta.5-sidecar-details-trimmed.config_dump.json")
    s = configdump.analyze(d, "foo.default.svc.cluster.local", 8080)
    assert configdump.cluster_names(d) == {"BlackHoleCluster"}
    assert [n for n, ls in listeners(d).items() if ls["state"] != "static"] == ["172.30.150.195_9080"]
    assert {(r["virtual_host"], r["match"]) for r in s["routes"]} == {
        ("foo.default.svc.cluster.local:8080", "exact"), ("allow_any", "catch-all")}
    vhosts = {vh["name"] for _, rc in configdump._route_configs(d) if rc.get("name") == "8080"
              for vh in rc["virtual_hosts"]}
    assert {"allow_any", "foo.default.svc.cluster.local:8080"} <= vhosts
    assert any(vh.startswith("istio-pilot") for vh in vhosts)
    assert any(rc.get("name", "").startswith("kubernetes-dashboard") for _, rc in configdump._route_configs(d))
    assert s["rootca"] is None and s["rootca_statement"] == "no ROOTCA secret in the dump"


def test_secrets_only_dump_reports_missing_sections_and_reads_rootca():
    d = dump("istio-secrets-only-ROOTCA.config_dump.json")
    s = configdump.analyze(d, HOST, PORT)
    assert s["sections"] == ["SecretsConfigDump"]
    assert s["node"] is None
    assert {"no ClustersConfigDump in the dump", "no ListenersConfigDump in the dump"} <= set(s["findings"])
    ca = configdump.rootca(d)
    assert ca["subject"] == "O=cluster.local" and ca["not_after"].startswith("2033-05-02")
    # the fingerprint computed another way: sha256 of the base64 body between the PEM markers
    body = "".join(line for line in ca["pem"].splitlines() if line and not line.startswith("-----"))
    assert ca["sha256"] == hashlib.sha256(base64.b64decode(body)).hexdigest()
    warming = [s for state, s in configdump._secrets(d) if state == "warming"]
    assert [w["name"] for w in warming] == ["configmap://some/thing"]


def test_elided_fragment_is_rejected_with_one_line():
    with pytest.raises(ValidationError) as err:
        configdump.load(ELIDED.read_text(), source=ELIDED.name)
    assert "\n" not in str(err.value) and "is not JSON" in str(err.value)


def test_cli_configdump_refuses_the_elided_fragment_with_exit_2(capsys):
    assert cli.main(["configdump", str(ELIDED)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lab: error:")


def _elided_listener() -> dict:
    """The handbook's listener with the `......` lines dropped and the commas they leave dangling removed."""
    lines = [ln for ln in ELIDED.read_text().splitlines() if ln.strip() != "......"]
    text = re.sub(r",(\s*[}\]])", r"\1", "\n".join(lines))
    return json.loads(text)


def test_elided_fragment_chain_blackhole_is_a_placeholder_and_its_legacy_rewrite_is_unusable():
    entry = _elided_listener()
    # synthetic envelope: the fragment is one dynamic_listeners entry; wrap it as a v3 ListenersConfigDump
    d = {"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                      "dynamic_listeners": [entry]}]}
    s = configdump.analyze(d, HOST, PORT)
    [gw] = s["listeners_15443"]
    assert gw["name"] == "0.0.0.0_15443" and gw["wildcard"]
    [chain] = gw["chains"]
    assert chain["server_names"] == ["*.global"]
    assert chain["filters"] == [configdump.SNI_CLUSTER, configdump.TCP_CLUSTER_REWRITE, "envoy.tcp_proxy"]
    assert chain["blackhole"] == {"kind": "placeholder", "failure": False, "why": chain["blackhole"]["why"]}
    rw = chain["tcp_cluster_rewrite"]
    assert (rw["form"], rw["usable"], rw["after_sni_cluster"]) == ("legacy-config", False, True)
    assert rw["cluster_pattern"] == "\\.global$"
    assert "istio#27909" in rw["why"]
    # the legacy rewrite does nothing, so the connection needs the .global SNI cluster itself, absent here
    assert s["gateway_paths"] == [{"listener": "0.0.0.0_15443", "chain": chain["name"],
                                   "sni": "outbound_.8000_._.httpbin.bar.global",
                                   "cluster": "outbound_.8000_._.httpbin.bar.global", "cluster_present": False}]


# --- synthetic inputs: shapes no public dump has, written from Istio 1.7.8's chart and pilot code ----------
_synthetic_gateway = synthetic_gateway  # tests/support/configdumps.py (the faults' tests use it too)


SNI_FILTER = {"name": "envoy.filters.network.sni_cluster"}
TCP_BLACKHOLE = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "stat_prefix": "BlackHoleCluster", "cluster": "BlackHoleCluster"}}
# the 1.7.5+ form, values as rendered from manifests/charts/gateways/istio-ingress/templates/preconfigured.yaml@1.7.8
TYPED_REWRITE = {"name": "envoy.filters.network.tcp_cluster_rewrite", "typed_config": {
    "@type": "type.googleapis.com/" + configdump.REWRITE_TYPE,
    "cluster_pattern": "\\.global$", "cluster_replacement": ".svc.cluster.local"}}
LOCAL = "outbound_.8000_._.httpbin.bar.svc.cluster.local"


def test_synthetic_typed_rewrite_is_usable_and_leads_to_the_local_sni_cluster():
    s = configdump.analyze(_synthetic_gateway([SNI_FILTER, TYPED_REWRITE, TCP_BLACKHOLE], [LOCAL]), HOST, PORT)
    rw = s["listeners_15443"][0]["chains"][0]["tcp_cluster_rewrite"]
    assert (rw["form"], rw["usable"]) == ("typed_config", True)
    assert [(p["cluster"], p["cluster_present"]) for p in s["gateway_paths"]] == [(LOCAL, True)]
    assert not any("tcp_cluster_rewrite" in f for f in s["findings"])


def test_synthetic_configless_rewrite_as_istio_170_pushed_it_is_unusable():
    s = configdump.analyze(_synthetic_gateway(
        [SNI_FILTER, {"name": "envoy.filters.network.tcp_cluster_rewrite"}, TCP_BLACKHOLE], [LOCAL]), HOST, PORT)
    rw = s["listeners_15443"][0]["chains"][0]["tcp_cluster_rewrite"]
    assert (rw["form"], rw["usable"]) == ("none", False)
    assert [(p["cluster"], p["cluster_present"]) for p in s["gateway_paths"]] == [
        ("outbound_.8000_._.httpbin.bar.global", False)]
    assert any("tcp_cluster_rewrite unusable" in f for f in s["findings"])


def test_synthetic_blackhole_without_sni_cluster_on_15443_is_a_failure():
    s = configdump.analyze(_synthetic_gateway([TCP_BLACKHOLE], []), HOST, PORT)
    [b] = s["blackhole_chains"]
    assert (b["kind"], b["failure"]) == ("drop", True)
    assert any("drops connections" in f for f in s["findings"])


def test_synthetic_eds_endpoints_come_from_the_endpoints_section_when_included():
    d = _synthetic_gateway([SNI_FILTER, TCP_BLACKHOLE], [LOCAL, "outbound_.9000_._.other.bar.svc.cluster.local"])
    d["configs"].append({"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                         "dynamic_endpoint_configs": [{"endpoint_config": {
                             "cluster_name": LOCAL, "endpoints": [{"lb_endpoints": [{
                                 "endpoint": {"address": {"socket_address": {"address": "10.20.0.7",
                                                                             "port_value": 80}}},
                                 "health_status": "HEALTHY"}]}]}}]})
    found = {c["name"]: c for c in configdump.find_clusters(d, "*.svc.cluster.local")}
    assert found[LOCAL]["endpoints"] == [{"address": "10.20.0.7:80", "health": "HEALTHY"}]
    assert found["outbound_.9000_._.other.bar.svc.cluster.local"]["endpoints"] == []


def test_cluster_without_type_is_static_as_proto3_json_omits_the_zero_enum():
    assert configdump._cluster_type({"name": "x"}) == "STATIC"


def test_not_a_config_dump_is_rejected_with_one_line():
    with pytest.raises(ValidationError, match="not an Envoy config dump"):
        configdump.load('{"clusters": []}')


def test_cli_configdump_prints_the_summary_as_json(capsys):
    name = "envoy1.12-v2alpha-gateway-proxy.config_dump.json"
    assert cli.main(["configdump", str(DATA / name), "--host", "com.netease.static-3718", "--port", "80"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == {"host": "com.netease.static-3718", "port": 80}
    assert len(out["clusters"]["matches"]) == 2


# --- names --------------------------------------------------------------------------------------------------
label = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@given(name=label, ns=label, port=st.integers(1, 65535))
def test_sni_dnat_names_parse_back_to_host_and_port(name, ns, port):
    host = f"{name}.{ns}.global"
    parsed = configdump.parse_cluster_name(configdump.sni_dnat_name(host, port))
    assert (parsed.form, parsed.host, parsed.port, parsed.subset) == ("sni-dnat", host, port, "")
    assert configdump.in_domain(host, "global")


@given(name=label, suffix=st.sampled_from(["", "-sidecar", "x", "s"]))
def test_global_is_matched_only_as_a_whole_last_label(name, suffix):
    assert not configdump.in_domain(f"global{suffix}.{name}.svc.cluster.local", "global")
    assert configdump.in_domain(f"{name}.global", "global") is True
    assert configdump.in_domain(f"{name}.global{suffix}", "global") is (suffix == "")


def test_unrelated_names_parse_as_other():
    assert configdump.parse_cluster_name("BlackHoleCluster").form == "other"
    assert configdump.parse_cluster_name("inbound|9080||").host == ""


# --- the default query is the scenario's, not the engine's ---------------------------------------------------------
GLOBAL_SNI = "outbound_.8000_._.httpbin.bar.global"


def test_a_gateway_without_tcp_cluster_rewrite_needs_the_very_sni_cluster_the_query_names():
    d = _synthetic_gateway([SNI_FILTER, TCP_BLACKHOLE], [LOCAL])  # its one chain has no name
    need = "0.0.0.0_15443 chain : no tcp_cluster_rewrite, so the SNI cluster ({}) must exist on the gateway itself"
    assert need.format(GLOBAL_SNI) in configdump.analyze(d, HOST, PORT)["findings"]
    assert need.format("outbound_.PORT_._.HOST") in configdump.analyze(d, EVERY_GLOBAL, PORT)["findings"]
    assert need.format("outbound_.PORT_._.HOST") in configdump.analyze(d, HOST)["findings"]


def test_each_scenario_has_its_own_default_query_for_its_own_service_names():
    from lab.scenarios.multi_primary_multi_network import SCENARIO as MPMN
    from lab.scenarios.multi_primary_multi_network import names as mpmn_names
    from lab.scenarios.replicated_control_planes import names as rcp_names

    assert REPLICATED.config_hosts == "*.global"
    assert MPMN.config_hosts == "*.svc.cluster.local"
    assert configdump.host_matches(rcp_names.REMOTE_HOST, REPLICATED.config_hosts)
    assert not configdump.host_matches(mpmn_names.SERVER_HOST, REPLICATED.config_hosts)
    assert configdump.host_matches(mpmn_names.SERVER_HOST, MPMN.config_hosts)
    assert not configdump.host_matches(rcp_names.REMOTE_HOST, MPMN.config_hosts)


@pytest.mark.parametrize("args, host, clusters", [
    ((), "*.global", [GLOBAL_SNI]),  # the default profile's scenario: replicated-control-planes
    (("--scenario", "replicated-control-planes"), "*.global", [GLOBAL_SNI]),
    (("--scenario", "multi-primary-multi-network"), "*.svc.cluster.local", [LOCAL]),
    (("--scenario", "multi-primary-multi-network", "--host", HOST), HOST, [GLOBAL_SNI]),  # --host wins
])
def test_cli_configdump_without_host_asks_for_every_name_of_the_scenarios_services(tmp_path, capsys, args, host,
                                                                                    clusters):
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(_synthetic_gateway([SNI_FILTER, TCP_BLACKHOLE], [GLOBAL_SNI, LOCAL])))
    assert cli.main(["configdump", str(path), *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"] == {"host": host, "port": None}
    assert [c["name"] for c in out["clusters"]["matches"]] == clusters


def test_cli_configdump_with_an_unknown_scenario_is_one_line(tmp_path, capsys):
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(_synthetic_gateway([], [])))
    assert cli.main(["configdump", str(path), "--scenario", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'nope'" in err and err.count("\n") == 1
