"""`lab doctor`: the hop logic on recorded inputs, and `collect` through the lab handle on two fake API servers.

Real inputs come from tests/data/doctor and tests/data/envoy_config_dump (sources in their READMEs). Objects
that no public recording has for this scenario are built here and named `synthetic_*`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import cli, configdump
from lab.probe import NslookupResult, parse_nslookup
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, doctor, serviceentry
from lab.scenarios.replicated_control_planes.doctor import BROKEN, OK, UNKNOWN, Observations, PodState
from tests.support.apilab import CORE, ApiLab, api_lab, coredns, gateway_service, rollout, service
from tests.support.apilab import ISTIO as ISTIO_API
from tests.support.apilab import pod as api_pod
from tests.support.fake_apiserver import ExecScript, exit_code_status
from tests.support.recording import RecordingRunner

DATA = Path(__file__).resolve().parents[1] / "data"
DOC = DATA / "doctor"
DUMPS = DATA / "envoy_config_dump"
GW_IP, NODE_PORT = "172.18.0.5", 30615  # the write-up's gateway endpoint (seed, sidecar cluster excerpt)


def real_dump(name: str) -> dict:
    return json.loads((DUMPS / name).read_text())


ROOTCA_DUMP = real_dump("istio-secrets-only-ROOTCA.config_dump.json")


# --- synthetic inputs ------------------------------------------------------------------------------------------
def synthetic_pods(ready: bool = True, httpbin_ready: bool = True) -> dict[str, list[PodState]]:
    def pod(cluster, ns, name, labels, ok=ready):
        return PodState(cluster, ns, name, labels, ok, "Running" if ok else "Pending, istio-proxy: ImagePullBackOff")
    return {
        "cluster1": [pod("cluster1", "kube-system", "coredns-1", {"k8s-app": "kube-dns"}),
                     pod("cluster1", "istio-system", "istiod-1", {"app": "istiod"}),
                     pod("cluster1", "istio-system", "istiocoredns-1", {"app": "istiocoredns"}),
                     pod("cluster1", "foo", "sleep-1", {"app": "sleep"})],
        "cluster2": [pod("cluster2", "istio-system", "istiod-2", {"app": "istiod"}, True),
                     pod("cluster2", "istio-system", "istio-ingressgateway-1",
                         {"app": "istio-ingressgateway", "istio": "ingressgateway"}, True),
                     pod("cluster2", "bar", "httpbin-1", {"app": "httpbin"}, httpbin_ready)],
    }


HTTPBIN = serviceentry.RemoteService("httpbin", "bar")


def client_se(vip: str = "240.0.0.2", port: int = NODE_PORT) -> dict:
    """cluster1's ServiceEntry as the lab renders it (lab.scenarios.replicated_control_planes.serviceentry, branch
    meshcfg)."""
    return serviceentry.render_client(HTTPBIN, vip, GW_IP, port, namespace="foo")


def server_se(vip: str = "240.0.0.3") -> dict:
    """cluster2's ServiceEntry (the write-up's fix) as the lab renders it."""
    return serviceentry.render_server(HTTPBIN, vip, namespace="bar")


def synthetic_envoyfilter(form: str) -> dict:
    """EnvoyFilter istio-multicluster-ingressgateway as the chart renders it: 1.7.3 (`config:`) or 1.7.8 (typed)
    (manifests/charts/gateways/istio-ingress/templates/preconfigured.yaml at those tags)."""
    value: dict = {"name": "envoy.filters.network.tcp_cluster_rewrite"}
    fields = {"cluster_pattern": "\\.global$", "cluster_replacement": ".svc.cluster.local"}
    if form == "typed":
        value["typed_config"] = {"@type": "type.googleapis.com/" + configdump.REWRITE_TYPE, **fields}
    else:
        value["config"] = fields
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "istio-multicluster-ingressgateway", "namespace": "istio-system"},
            "spec": {"workloadSelector": {"labels": {"istio": "ingressgateway"}}, "configPatches": [{
                "applyTo": "NETWORK_FILTER",
                "match": {"context": "GATEWAY", "listener": {"portNumber": 15443, "filterChain": {
                    "filter": {"name": "envoy.filters.network.sni_cluster"}}}},
                "patch": {"operation": "INSERT_AFTER", "value": value}}]}}


def synthetic_sidecar_dump(endpoint: str = f"{GW_IP}:{NODE_PORT}") -> dict:
    """cluster1's sleep sidecar: the STRICT_DNS cluster shaped like the write-up's excerpt, plus real ROOTCA."""
    addr, port = endpoint.rsplit(":", 1)
    name = "outbound|8000||httpbin.bar.global"
    return {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [{"cluster": {
            "name": name, "type": "STRICT_DNS", "load_assignment": {"cluster_name": name, "endpoints": [{
                "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": addr, "port_value": int(port)}}}}]}]}}}]},
        *ROOTCA_DUMP["configs"]]}


def synthetic_gateway_dump(rewrite: str | None, clusters: list[str]) -> dict:
    """cluster2's gateway: the handbook's 0.0.0.0_15443 chain with the rewrite in the given form, and clusters."""
    filters = [{"name": configdump.SNI_CLUSTER}]
    if rewrite == "typed":
        filters.append(synthetic_envoyfilter("typed")["spec"]["configPatches"][0]["patch"]["value"])
    elif rewrite == "none":
        filters.append({"name": configdump.TCP_CLUSTER_REWRITE})
    filters.append({"name": "envoy.tcp_proxy", "typed_config": {"stat_prefix": "BlackHoleCluster",
                                                                 "cluster": "BlackHoleCluster"}})
    return {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
         "dynamic_active_clusters": [{"cluster": {"name": n, "type": "EDS"}} for n in clusters]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [{
            "name": "0.0.0.0_15443", "active_state": {"listener": {
                "name": "0.0.0.0_15443", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15443}},
                "filter_chains": [{"filter_chain_match": {"server_names": ["*.global"]}, "filters": filters}]}}}]},
        *ROOTCA_DUMP["configs"]]}


LOCAL_SNI = "outbound_.8000_._.httpbin.bar.svc.cluster.local"


def healthy(**changes) -> Observations:
    """Every hop observed and fine; the Corefile is a real default one patched by
    lab.scenarios.replicated_control_planes.corefile."""
    obs = Observations(
        pods=synthetic_pods(),
        corefile=corefile.patch((DOC / "k8s-website-docs_default-coredns1.6.x.Corefile").read_text(),
                                "10.96.199.197"),
        istiocoredns_ip="10.96.199.197",
        istiocoredns_log=(DOC / "istiocoredns-plugin.seed-mapping.log").read_text(),
        serviceentries={"cluster1": [client_se()], "cluster2": [server_se()]},
        sidecar_dump=synthetic_sidecar_dump(),
        gateway_dump=synthetic_gateway_dump("typed", [LOCAL_SNI]),
        server_sidecar_dump={"configs": ROOTCA_DUMP["configs"]},
        gateway_address=GW_IP, gateway_node_port=NODE_PORT, node_port_reachable=True,
        envoyfilter=synthetic_envoyfilter("typed"),
        client_stats="cluster.outbound|8000||httpbin.bar.global.ssl.fail_verify_error: 0\n",
        curl_output="HTTP/1.1 200 OK\nserver: envoy\n\n{}", curl_exit=0, curl_status=200)
    return dataclasses.replace(obs, **changes)


def names(hops):
    return [(h.name, h.status) for h in hops]


# --- the walk --------------------------------------------------------------------------------------------------
def test_a_healthy_lab_walks_every_hop_in_the_issue_order():
    hops = doctor.walk(healthy())
    assert [h.name for h in hops] == ["pods-ready", "kube-dns-global", "istiocoredns", "serviceentries",
                                      "sidecar-cluster", "gateway-reachable", "gateway-listener", "root-ca",
                                      "httpbin-ready", "call"]
    assert [h.status for h in hops] == [OK] * 10
    assert doctor.exit_code(hops) == 0


def test_the_walk_stops_at_the_first_broken_hop():
    hops = doctor.walk(healthy(node_port_reachable=False, node_port_detail="nc: timed out"))
    assert hops[-1].name == "gateway-reachable" and hops[-1].status == BROKEN
    assert "gateway-listener" not in [h.name for h in hops]
    assert doctor.exit_code(hops) == 1
    assert "nc: timed out" in hops[-1].evidence[0]
    assert hops[-1].fix


def test_unknown_hops_do_not_stop_the_walk_and_say_why():
    hops = doctor.walk(healthy(istiocoredns_log=None, errors={"istiocoredns_log": "deploy/istiocoredns not found"}))
    hop = dict((h.name, h) for h in hops)["istiocoredns"]
    assert hop.status == UNKNOWN and "deploy/istiocoredns not found" in hop.evidence[0]
    assert hops[-1].name == "call"


def test_every_hop_has_evidence_and_every_non_ok_hop_a_fix():
    for obs in (healthy(), Observations(), healthy(pods=synthetic_pods(ready=False))):
        for hop in doctor.walk(obs):
            assert hop.evidence, hop
            assert hop.status in (OK, BROKEN, UNKNOWN)
            if hop.status != OK:
                assert hop.fix, hop


def test_nothing_observed_is_all_unknown_not_broken():
    hops = doctor.walk(Observations())
    assert {h.status for h in hops} == {UNKNOWN}
    assert len(hops) == len(doctor.HOPS)


# --- hop 1: pods -------------------------------------------------------------------------------------------------
def test_a_pod_that_is_not_ready_breaks_the_first_hop_with_its_reason():
    hop = doctor.walk(healthy(pods=synthetic_pods(ready=False)))[-1]
    assert (hop.name, hop.status) == ("pods-ready", BROKEN)
    assert any("ImagePullBackOff" in e for e in hop.evidence)


def test_pods_parse_from_kubectl_json_with_ready_condition_and_waiting_reason():
    obj = {"items": [  # synthetic `kubectl get pods -A -o json` items (fields as the Pod API defines them)
        {"metadata": {"namespace": "foo", "name": "sleep-1", "labels": {"app": "sleep"}},
         "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"namespace": "foo", "name": "sleep-2", "labels": {"app": "sleep"}},
         "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [{"name": "istio-proxy", "state": {"waiting": {"reason": "ErrImagePull"}}}]}}]}
    a, b = doctor.pods_from_json("cluster1", obj)
    assert (a.ready, b.ready) == (True, False)
    assert b.detail == "Pending, istio-proxy: ErrImagePull"


# --- hop 2: kube-dns ---------------------------------------------------------------------------------------------
def test_default_corefile_without_global_block_breaks_kube_dns_hop():
    text = (DOC / "k8s-website-docs_default-coredns1.6.x.Corefile").read_text()
    hop = doctor.hop_kube_dns(healthy(corefile=text))
    assert hop.status == BROKEN and "no `global` server block" in hop.evidence[0]


def test_docs_global_block_with_unexpanded_kubectl_substitution_is_broken():
    text = (DOC / "istio-docs-multicluster-gateways_coredns-ge-1.4.0_with-global.Corefile").read_text()
    hop = doctor.hop_kube_dns(healthy(corefile=text))
    assert hop.status == BROKEN and any("is not an IP address" in e for e in hop.evidence)


def test_patched_corefile_passes_and_loses_its_guard_or_target_breaks():
    base = (DOC / "k8s-website-docs_default-coredns1.6.x.Corefile").read_text()
    good = corefile.patch(base, "10.96.199.197", aaaa_guard=True)
    assert doctor.hop_kube_dns(healthy(corefile=good)).status == OK
    unguarded = corefile.patch(base, "10.96.199.197", aaaa_guard=False)
    assert doctor.hop_kube_dns(healthy(corefile=unguarded)).status == BROKEN
    assert doctor.hop_kube_dns(healthy(corefile=unguarded, aaaa_guard=False)).status == OK
    elsewhere = corefile.patch(base, "10.96.0.99", aaaa_guard=True)
    hop = doctor.hop_kube_dns(healthy(corefile=elsewhere))
    assert hop.status == BROKEN and "istiocoredns is 10.96.199.197" in hop.evidence[-1]


# --- hop 3: istiocoredns -----------------------------------------------------------------------------------------
def test_seed_plugin_log_with_a_mapping_is_ok():
    hop = doctor.hop_istiocoredns(healthy())
    assert hop.status == OK
    assert "plugin: Have 1 service entries" in hop.evidence
    assert any("240.0.0.2" in e for e in hop.evidence)


def test_seed_plugin_log_that_could_not_find_the_service_is_broken():
    log = (DOC / "istiocoredns-plugin.seed-not-found.log").read_text()
    hop = doctor.hop_istiocoredns(healthy(istiocoredns_log=log))
    assert hop.status == BROKEN
    assert any("Could not find the service requested" in e for e in hop.evidence)


def test_plugin_log_facts_read_the_plugins_own_lines():
    facts = doctor.plugin_log_facts((DOC / "istiocoredns-plugin.seed-mapping.log").read_text(), "httpbin.bar.global")
    assert facts == {"entries": 1, "mapping": ["240.0.0.2"], "not_found": 0, "invalid": []}
    assert doctor.plugin_log_facts("Have 0 service entries\n", "httpbin.bar.global")["mapping"] is None


# --- hop 4: ServiceEntries ---------------------------------------------------------------------------------------
def test_missing_client_serviceentry_is_broken():
    hop = doctor.hop_serviceentries(healthy(serviceentries={"cluster1": [], "cluster2": []}))
    assert hop.status == BROKEN and "cluster1: no ServiceEntry for httpbin.bar.global" in hop.evidence


def test_missing_server_serviceentry_is_fine_on_1_7_8_with_the_typed_envoyfilter():
    obs = healthy(serviceentries={"cluster1": [client_se()], "cluster2": []})
    assert doctor.hop_serviceentries(obs).status == OK
    legacy = dataclasses.replace(obs, envoyfilter=synthetic_envoyfilter("legacy"))
    assert doctor.hop_serviceentries(legacy).status == BROKEN
    older = dataclasses.replace(obs, istio_version="1.7.3")
    assert doctor.hop_serviceentries(older).status == BROKEN


def test_client_serviceentry_endpoint_must_be_the_gateway_node_port():
    obs = healthy(serviceentries={"cluster1": [client_se(port=15443)], "cluster2": [server_se()]})
    hop = doctor.hop_serviceentries(obs)
    assert hop.status == BROKEN and any(f"{GW_IP}:{NODE_PORT}" in e for e in hop.evidence)


def test_serviceentry_without_addresses_is_broken():
    se = client_se()
    del se["spec"]["addresses"]
    hop = doctor.hop_serviceentries(healthy(serviceentries={"cluster1": [se], "cluster2": []}))
    assert hop.status == BROKEN and any("has no addresses" in e for e in hop.evidence)


def test_serviceentry_multicast_vip_is_refused_by_the_vip_rules():
    se = client_se()
    se["spec"]["addresses"] = ["224.0.0.2"]  # what the vip-multicast fault applies, bypassing validation
    obs = healthy(serviceentries={"cluster1": [se], "cluster2": []})
    hop = doctor.hop_serviceentries(obs)
    assert hop.status == BROKEN and any("224.0.0.2" in e for e in hop.evidence)


# --- hop 5: sidecar ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in DUMPS.glob("*.json")))
def test_real_dumps_without_the_global_cluster_break_the_sidecar_hop(name):
    hop = doctor.hop_sidecar(healthy(sidecar_dump=real_dump(name)))
    assert hop.status == BROKEN
    assert hop.evidence == ("outbound|8000||httpbin.bar.global not found in the sleep sidecar's config_dump",)


def test_sidecar_cluster_pointing_elsewhere_than_the_gateway_is_broken():
    hop = doctor.hop_sidecar(healthy(sidecar_dump=synthetic_sidecar_dump(f"{GW_IP}:15443")))
    assert hop.status == BROKEN and f"expected the gateway endpoint {GW_IP}:{NODE_PORT}" in hop.evidence[-1]


# --- hop 7: gateway ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["istio1.3.0-ingressgateway-sni-dnat.config_dump.json",
                                  "ossm2.6-istio1.20-ingressgateway.config_dump.json"])
def test_real_gateways_without_a_15443_listener_break_the_gateway_hop(name):
    hop = doctor.hop_gateway(healthy(gateway_dump=real_dump(name)))
    assert hop.status == BROKEN and "no 0.0.0.0_15443 listener" in hop.evidence[0]


def test_configless_rewrite_without_the_global_sni_cluster_is_the_writeups_503():
    obs = healthy(gateway_dump=synthetic_gateway_dump("none", [LOCAL_SNI]), envoyfilter=synthetic_envoyfilter("legacy"))
    hop = doctor.hop_gateway(obs)
    assert hop.status == BROKEN
    assert any("cluster outbound_.8000_._.httpbin.bar.global (absent)" in e for e in hop.evidence)
    assert "typed_config" in hop.fix


def test_on_1_7_3_the_fix_is_the_local_serviceentry_and_with_it_the_gateway_hop_passes():
    broken = doctor.hop_gateway(healthy(istio_version="1.7.3", envoyfilter=synthetic_envoyfilter("legacy"),
                                        gateway_dump=synthetic_gateway_dump("none", [LOCAL_SNI])))
    assert broken.status == BROKEN and "ServiceEntry" in broken.fix and "istio#27909" in broken.fix
    with_se = synthetic_gateway_dump("none", [LOCAL_SNI, "outbound_.8000_._.httpbin.bar.global"])
    ok = doctor.hop_gateway(healthy(istio_version="1.7.3", envoyfilter=synthetic_envoyfilter("legacy"),
                                    gateway_dump=with_se))
    assert ok.status == OK


def test_envoyfilter_forms_match_the_chart_at_1_7_3_and_1_7_8():
    assert doctor.envoyfilter_form(synthetic_envoyfilter("legacy")) == "legacy-config"
    assert doctor.envoyfilter_form(synthetic_envoyfilter("typed")) == "typed_config"
    assert doctor.envoyfilter_form({}) == "absent"


# --- hop 8: root CA ----------------------------------------------------------------------------------------------
def test_different_roots_on_the_two_sides_break_the_root_ca_hop():
    other = real_dump("istio1.9.1-sidecar-productpage.config_dump.json")
    hop = doctor.hop_root_ca(healthy(server_sidecar_dump=other))
    assert hop.status == BROKEN and "different roots" in hop.evidence[-1]


def test_the_root_ca_hop_compares_httpbins_sidecar_not_the_gateway_that_passes_tls_through():
    # root-ca-mismatch (lab.scenarios.replicated_control_planes.faults): cluster2's httpbin restarted under another
    # root, its gateway not restarted,
    # so the gateway still shows the shared root (the write-up's FAQ compares sleep with httpbin).
    other = real_dump("istio1.9.1-sidecar-productpage.config_dump.json")
    hop = doctor.hop_root_ca(healthy(server_sidecar_dump=other, gateway_dump=synthetic_gateway_dump("typed", [])))
    assert hop.status == BROKEN and "httpbin" in hop.evidence[1]
    assert doctor.hop_root_ca(healthy(gateway_dump=other)).status == OK


def test_fail_verify_error_counter_breaks_the_root_ca_hop_and_its_absence_is_stated():
    stats = "cluster.outbound|8000||httpbin.bar.global.ssl.fail_verify_error: 3\n"
    assert doctor.hop_root_ca(healthy(client_stats=stats)).status == BROKEN
    hop = doctor.hop_root_ca(healthy(client_stats=""))
    assert hop.status == OK and any("statsInclusionSuffixes" in e for e in hop.evidence)


def test_a_dump_without_rootca_makes_the_root_ca_hop_unknown():
    no_ca = real_dump("envoy1.12-v2alpha-gateway-proxy.config_dump.json")
    assert doctor.hop_root_ca(healthy(server_sidecar_dump=no_ca)).status == UNKNOWN


# --- hops 9-10 ---------------------------------------------------------------------------------------------------
def test_httpbin_not_ready_is_broken():
    hops = doctor.walk(healthy(pods=synthetic_pods(httpbin_ready=False)))
    assert names(hops)[-1] == ("httpbin-ready", BROKEN)


@pytest.mark.parametrize("name, exit_code", [("kyma_curl6-could-not-resolve-host.curl.txt", 6),
                                             ("handbook-faq_curl-503-UC-connection-termination.curl.txt", 0)])
def test_a_failed_call_is_broken_and_shows_what_curl_printed(name, exit_code):
    output = (DOC / name).read_text()
    status = 503 if "503" in output else None
    hop = doctor.hop_call(healthy(curl_output=output, curl_exit=exit_code, curl_status=status))
    assert hop.status == BROKEN
    assert hop.evidence[0].startswith(f"curl http://httpbin.bar.global:8000/headers: exit {exit_code}")


def test_a_failed_call_carries_the_classifiers_class():
    output = (DOC / "kyma_curl6-could-not-resolve-host.curl.txt").read_text()
    hop = doctor.hop_call(healthy(curl_output=output, curl_exit=6, curl_status=None))
    assert "class dns-failure" in hop.evidence[0]


# --- output and CLI ----------------------------------------------------------------------------------------------
def test_text_output_ends_with_one_verdict_line():
    text = doctor.render_text(doctor.walk(healthy(node_port_reachable=False)))
    assert text.splitlines()[-1] == "first broken hop: gateway-reachable"
    assert "fix:" in text
    assert json.loads(doctor.render_json(doctor.walk(healthy())))[0]["name"] == "pods-ready"


def test_cli_doctor_without_a_lab_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    assert cli.main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lab: error: no lab in {tmp_path} (no state.json there)")


# --- collect -----------------------------------------------------------------------------------------------------
@pytest.fixture
def fake(tmp_path):
    with api_lab(load_profile(), tmp_path / "home") as lab:
        yield lab


def _access(fake: ApiLab) -> doctor.LabAccess:
    return doctor.LabAccess(load_profile(), fake.handle, RecordingRunner())


def _answers(fake: ApiLab) -> None:
    """Both clusters as the doctor reads them: pods (a rollout's three for each pod it execs into), the Corefile,
    the DNS Services, the plugin log, the ServiceEntries, the gateway's address and EnvoyFilter, and what each exec
    prints (nslookup, Envoy admin, nc, curl)."""
    c1, c2 = fake.servers["cluster1"], fake.servers["cluster2"]
    corefile = (DOC / "k8s-website-docs_default-coredns1.6.x.Corefile").read_text()
    gw_dump = (DUMPS / "ossm2.6-istio1.20-ingressgateway.config_dump.json").read_text()
    sc_dump = (DUMPS / "ossm2.6-istio1.20-sidecar-hello-openshift.config_dump.json").read_text()
    rollout(c1, "sleep-1", "foo", {"app": "sleep"})
    c1.put(CORE, "pods", api_pod("istiocoredns-7f9c", "istio-system", {"app": "istiocoredns"}))
    c1.put(CORE, "configmaps", coredns(corefile))
    c1.put(CORE, "services", service("istio-system", "istiocoredns", "10.96.199.197"))
    c1.put(CORE, "services", service("kube-system", "kube-dns", "10.96.0.10"))
    c1.logs[("istio-system", "istiocoredns-7f9c", "istio-coredns-plugin")] = (
        DOC / "istiocoredns-plugin.seed-mapping.log").read_text()
    c1.put(ISTIO_API, "serviceentries", client_se())
    rollout(c2, "gw-1", "istio-system", {"istio": "ingressgateway"}, host_ip=GW_IP)
    rollout(c2, "httpbin-1", "bar", {"app": "httpbin"})
    c2.put(CORE, "services", gateway_service(NODE_PORT))
    c2.put(ISTIO_API, "envoyfilters", synthetic_envoyfilter("typed"))
    nslookup = {"10.96.199.197": (DOC / "nslookup-via-istiocoredns.seed.txt").read_text(),
                "10.96.0.10": (DOC / "nslookup-via-kube-dns.seed.txt").read_text()}

    def exec1(request) -> ExecScript:
        command, container = request.query["command"], request.query["container"][0]
        if container == "sleep" and command[0] == "nslookup":
            return ExecScript(stdout=nslookup[command[-1]])
        if container == "istio-proxy" and command[:3] == ["pilot-agent", "request", "GET"]:
            return ExecScript(stdout=sc_dump if command[3] == "config_dump" else "")
        if container == "istio-proxy" and command[0] == "nc":
            return ExecScript(stderr="nc: connect timed out", status=exit_code_status(1))
        if container == "sleep" and command[0] == "sh":
            return ExecScript(stdout="HTTP/1.1 200 OK\n\n{}\n__LAB_HTTP_CODE__=200\n__LAB_CURL_EXIT__=0\n")
        raise AssertionError(f"unexpected exec in cluster1: {request.path} {command}")

    def exec2(request) -> ExecScript:
        if request.path.endswith("/gw-1/exec"):
            return ExecScript(stdout=gw_dump)
        if request.path.endswith("/httpbin-1/exec") and request.query["command"][-1] == "config_dump":
            return ExecScript(stdout=sc_dump)
        raise AssertionError(f"unexpected exec in cluster2: {request.path} {request.query['command']}")

    c1.exec_answer, c2.exec_answer = exec1, exec2


def _execs(fake: ApiLab) -> list:
    return [(name, r) for name, s in fake.servers.items() for r in s.requests if r.path.endswith("/exec")]


def test_collect_reads_every_observation_through_the_lab_handle(fake):
    _answers(fake)
    obs = doctor.collect(_access(fake))
    assert obs.errors == {}
    assert obs.pods["cluster1"][0].name == "sleep-1" and obs.pods["cluster1"][0].ready
    # each cluster's pods from its own API server
    assert {p.name for p in obs.pods["cluster2"]} == {"gw-1", "gw-1-old", "gw-1-next", "httpbin-1", "httpbin-1-old",
                                                      "httpbin-1-next"}
    assert "istiocoredns-7f9c" in {p.name for p in obs.pods["cluster1"]}
    assert obs.corefile.startswith(".:53")
    assert obs.istiocoredns_ip == "10.96.199.197"
    assert "adding DNS mapping" in obs.istiocoredns_log
    assert obs.serviceentries["cluster1"][0]["spec"]["addresses"] == ["240.0.0.2"]
    assert obs.serviceentries["cluster2"] == []
    assert (obs.gateway_address, obs.gateway_node_port) == (GW_IP, NODE_PORT)
    assert doctor.envoyfilter_form(obs.envoyfilter) == "typed_config"
    assert configdump.node_info(obs.gateway_dump)["proxy_type"] == "router"
    assert configdump.node_info(obs.sidecar_dump)["proxy_type"] == "sidecar"
    assert (obs.node_port_reachable, obs.node_port_detail) == (False, "nc: connect timed out")
    assert (obs.curl_status, obs.curl_exit) == (200, 0)
    assert obs.kube_dns_ip == "10.96.0.10"
    assert obs.lookup_kube_dns.addresses == obs.lookup_istiocoredns.addresses == ["240.0.0.2"]
    assert configdump.node_info(obs.server_sidecar_dump)["proxy_type"] == "sidecar"
    config_dump_calls = [(n, r) for n, r in _execs(fake) if r.query["command"][-3:] == ["request", "GET",
                                                                                      "config_dump"]]
    assert len(config_dump_calls) == 3
    assert [r for n, r in config_dump_calls if r.path == "/api/v1/namespaces/bar/pods/httpbin-1/exec"
            and r.query["container"] == ["istio-proxy"]]
    assert any(r.query["command"][-1] == "stats?filter=ssl.fail_verify_error" for _, r in _execs(fake))
    (log,) = [r for r in fake.servers["cluster1"].requests if r.path.endswith("/log")]
    assert log.query["container"] == ["istio-coredns-plugin"] and log.query["tailLines"] == ["500"]


def test_collect_records_a_failing_read_and_leaves_that_observation_unknown(fake):
    _answers(fake)
    fake.servers["cluster1"].logs.clear()  # the plugin's log cannot be read: 404 NotFound
    obs = doctor.collect(_access(fake))
    assert obs.istiocoredns_log is None
    assert "NotFound" in obs.errors["istiocoredns_log"]
    with_lookup = doctor.hop_istiocoredns(obs)  # the seed's nslookup still shows the plugin answering
    assert with_lookup.status == OK and "istio-coredns-plugin log not observed" in with_lookup.evidence
    hop = doctor.hop_istiocoredns(dataclasses.replace(obs, lookup_istiocoredns=None))
    assert hop.status == UNKNOWN and "NotFound" in hop.evidence[0]


def test_lab_access_without_kubeconfig_is_one_clear_error(tmp_path):
    from lab.errors import LabError

    with pytest.raises(LabError, match="no lab here"):
        doctor.lab_access(load_profile(), tmp_path)


def test_collect_with_unreachable_api_servers_is_one_clear_error(fake):
    from lab.errors import LabError

    _answers(fake)
    fake.servers["cluster1"].stop()  # nothing listens on cluster1's API server address any more
    with pytest.raises(LabError) as err:
        doctor.collect(_access(fake))
    assert "\n" not in str(err.value) and "Connection refused" in str(err.value)
    assert "make lab-status" in str(err.value) and "on kind-cluster1" in str(err.value)


def test_collect_with_an_answer_that_is_no_pod_list_is_one_clear_error(fake):
    from lab.errors import LabError

    _answers(fake)
    fake.servers["cluster2"].fail("GET", "/api/v1/pods", 200, "garbage {")
    with pytest.raises(LabError, match=r"^the API server's pod list is not JSON of pods \(.*\); check the lab's "
                                       r"kubeconfig files \(make lab-status\)$"):
        doctor.collect(_access(fake))


OBSERVED = ("pods", "corefile", "istiocoredns_log", "serviceentries", "sidecar_dump", "gateway_dump",
            "server_sidecar_dump", "node_port_reachable", "envoyfilter", "client_stats", "curl_output")


@given(missing=st.sets(st.sampled_from(OBSERVED)))
def test_losing_observations_only_ever_turns_hops_unknown_never_broken(missing):
    hops = doctor.walk(healthy(**{key: None for key in missing}))
    assert len(hops) == len(doctor.HOPS)
    assert BROKEN not in {h.status for h in hops}


@given(broken=st.sets(st.sampled_from(["pods", "node_port", "gateway", "curl"]), min_size=1))
def test_the_reported_broken_hop_is_the_earliest_one_and_nothing_follows_it(broken):
    changes: dict = {}
    if "pods" in broken:
        changes["pods"] = synthetic_pods(ready=False)
    if "node_port" in broken:
        changes["node_port_reachable"] = False
    if "gateway" in broken:
        changes["gateway_dump"] = synthetic_gateway_dump("none", [])
    if "curl" in broken:
        changes.update(curl_output="curl: (6) Could not resolve host: httpbin.bar.global", curl_exit=6,
                       curl_status=None)
    hops = doctor.walk(healthy(**changes))
    order = ["pods", "node_port", "gateway", "curl"]
    first = min(broken, key=order.index)
    expected = {"pods": "pods-ready", "node_port": "gateway-reachable", "gateway": "gateway-listener",
                "curl": "call"}[first]
    assert [h.status for h in hops[:-1]] == [OK] * (len(hops) - 1)
    assert (hops[-1].name, hops[-1].status) == (expected, BROKEN)


def seed_lookup(name: str) -> NslookupResult:
    output = (DOC / name).read_text()
    return NslookupResult(parse_nslookup(output), 0, output)


# synthetic: busybox nslookup's NXDOMAIN answer (the form its source prints), for a lookup that failed
NXDOMAIN = NslookupResult([], 1, "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n"
                                 "** server can't find httpbin.bar.global: NXDOMAIN\n")


def test_seed_lookups_are_evidence_on_the_dns_hops():
    obs = healthy(lookup_kube_dns=seed_lookup("nslookup-via-kube-dns.seed.txt"), kube_dns_ip="10.96.0.10",
                  lookup_istiocoredns=seed_lookup("nslookup-via-istiocoredns.seed.txt"))
    kube, plugin = doctor.hop_kube_dns(obs), doctor.hop_istiocoredns(obs)
    assert kube.status == plugin.status == OK
    assert "nslookup -type=a httpbin.bar.global via kube-dns (10.96.0.10): 240.0.0.2" in kube.evidence
    assert "nslookup -type=a httpbin.bar.global via istiocoredns (10.96.199.197): 240.0.0.2" in plugin.evidence


def test_a_failed_lookup_breaks_the_dns_hop_even_with_a_good_corefile():
    hop = doctor.hop_kube_dns(healthy(lookup_kube_dns=NXDOMAIN))
    assert hop.status == BROKEN and hop.evidence[-1].endswith("NXDOMAIN)")
    hop = doctor.hop_istiocoredns(healthy(lookup_istiocoredns=NXDOMAIN))
    assert hop.status == BROKEN and "no address" in hop.evidence[0]


def test_lab_access_uses_the_lab_kubeconfigs_and_kind_contexts(tmp_path):
    profile = load_profile()
    for c in profile.clusters:
        (tmp_path / "kubeconfig").mkdir(exist_ok=True)
        (tmp_path / "kubeconfig" / c.name).write_text("apiVersion: v1\nkind: Config\n")
    access = doctor.lab_access(profile, tmp_path, RecordingRunner(), kubectl="/opt/kubectl")
    k1 = access.kubectl["cluster1"]
    assert k1.base() == ["/opt/kubectl", "--kubeconfig", str(tmp_path / "kubeconfig" / "cluster1"),
                         "--context", "kind-cluster1"]


def test_cli_doctor_prints_hops_and_exits_1_on_a_broken_hop(monkeypatch, capsys):
    hops = doctor.walk(healthy(node_port_reachable=False))
    monkeypatch.setattr(doctor, "run", lambda **kw: hops)
    assert cli.main(["doctor", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed[-1]["name"] == "gateway-reachable" and printed[-1]["status"] == BROKEN
    assert cli.main(["doctor"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("first broken hop: gateway-reachable")


def test_collect_reads_the_sidecar_of_the_newest_running_sleep_pod(fake):
    # after lab up's sleep-stats rollout the replaced pod (no stats annotation, sidecar gone) is still listed as
    # Running with a deletionTimestamp, and its replacement may still be Pending: only sleep-1 is exec'd into
    _answers(fake)
    doctor.collect(_access(fake))
    lookups = [r for r in fake.servers["cluster1"].requests
               if r.path == "/api/v1/namespaces/foo/pods" and r.query.get("labelSelector") == ["app=sleep"]]
    assert lookups and all(r.method == "GET" for r in lookups)
    execs = [r for n, r in _execs(fake) if r.path.startswith("/api/v1/namespaces/foo/")]
    assert execs and {r.path.split("/")[6] for r in execs} == {"sleep-1"}


def test_collect_reads_envoy_admin_of_running_pods_only(fake):
    # a pod that is still Pending after a restart cannot be exec'd into; the probe picks Running pods the same way
    _answers(fake)
    doctor.collect(_access(fake))
    lookups = [r for s in fake.servers.values() for r in s.requests
               if r.path.endswith("/pods") and r.query.get("labelSelector")]
    assert {r.path.split("/")[4] for r in lookups} == {"foo", "bar", "istio-system"}
    # each lookup answered with a terminating-but-Running pod and a Pending one besides the one to use
    assert {r.path.split("/")[6] for _, r in _execs(fake)} == {"sleep-1", "gw-1", "httpbin-1"}
