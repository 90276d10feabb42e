"""The multi-primary-multi-network doctor's decide functions: every hop's failure, the first-failure rule, JSON,
and the fault catalogue (docs/multi-primary-faults.md) each named at the right hop."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lab import cli
from lab.scenarios.multi_primary_multi_network import doctor as d
from lab.scenarios.multi_primary_multi_network.profiles import PROFILES
from lab.state import State
from tests.support import apilab
from tests.support.apilab import api_lab
from tests.support.fake_apiserver import ExecScript, exit_code_status, status

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


# --- the parsers on real output -------------------------------------------------------------------------------------
ENVOY_ADMIN = Path(__file__).resolve().parents[1] / "data" / "envoy_admin"


def test_parse_clusters_reads_a_real_envoys_text_ipv6_included() -> None:
    # tests/data/envoy_admin/README.md: Envoy 1.40.0's own /clusters; `[::1]` holds the `::` separator
    text = (ENVOY_ADMIN / "envoy-1.40.0-clusters.txt").read_text()
    assert d.parse_clusters(text) == ["172.18.255.200:15443", "[::1]:15443"]
    assert d.parse_clusters(text, d.HTTPBIN_CLUSTER + ".other") == ["10.20.0.7:8080"]


def test_the_identity_is_the_clients_uri_not_any_spiffe_in_the_header() -> None:
    # httpbin's own identity in By= is no proof that curl was the client
    wrong = f'By={d.SPIFFE_CURL};Hash=ab;Subject="";URI=spiffe://cluster.local/ns/sample/sa/other'
    assert d.httpbin(replace(HEALTHY, xfcc=wrong)).status == d.FAIL
    assert d.httpbin(replace(HEALTHY, xfcc="")).status == d.FAIL
    assert d.httpbin(HEALTHY).status == d.OK


def test_pure_helpers_of_the_collector() -> None:
    assert d.vip_collision(["10.255.20.17"], {"10.96.0.1", "10.255.20.17"}) == "10.255.20.17"
    assert d.vip_collision(["10.255.20.17"], {"10.96.0.1"}) == "" and d.vip_collision([], {"10.96.0.1"}) == ""
    same = {"configmap": "R", "cacerts": "R\n"}
    assert d.roots_equal({"cluster1": same, "cluster2": {"configmap": "R", "cacerts": ""}})
    assert not d.roots_equal({"cluster1": same, "cluster2": {"configmap": "R", "cacerts": "S"}})
    assert not d.roots_equal({"cluster1": same, "cluster2": {"configmap": "", "cacerts": ""}})
    assert d.xfcc_of(json.dumps({"headers": {"X-Forwarded-Client-Cert": ["a", "b"]}})) == "a,b"
    assert d.xfcc_of(json.dumps({"headers": {}})) == ""


# --- the whole collector against two fake API servers ------------------------------------------------------------
CORE, APPS, ISTIO_NET = "/api/v1", "/apis/apps/v1", "/apis/networking.istio.io/v1alpha3"
PROFILE = PROFILES["multi-primary"]
ROOT = "-----BEGIN CERTIFICATE-----\nshared-root\n-----END CERTIFICATE-----\n"
OTHER_ROOT = "-----BEGIN CERTIFICATE-----\nanother-root\n-----END CERTIFICATE-----\n"
TOKEN = "remote-reader-token-never-printed"
REMOTE_IP = "10.255.20.17"  # httpbin's ClusterIP in cluster2
XFCC = (f'By=spiffe://cluster.local/ns/sample/sa/httpbin;Hash={"a" * 64};Subject="";URI={d.SPIFFE_CURL}')


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _pod(ns: str, name: str, app: str, containers: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-02T10:00:00Z",
                         "labels": {"app": app}},
            "spec": {"containers": containers},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def _proxy(capture: str = "true") -> dict:
    return {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.3",
            "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                    {"name": "ISTIO_META_DNS_CAPTURE", "value": capture}]}


def _ns(name: str, network: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "topology.istio.io/network": network}}}


def _svc(ns: str, name: str, ip: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"port": 8000}], **spec}}


def _remote_secret(server: str) -> dict:
    kc = yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "cluster2", "cluster": {
        "server": server}}], "users": [{"name": "cluster2", "user": {"token": TOKEN}}]})
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "istio-remote-secret-cluster2",
                                                               "namespace": "istio-system"},
            "data": {"cluster2": _b64(kc)}}


def _roots(server, root: str) -> None:
    server.put(CORE, "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "istio-ca-root-cert", "namespace": "sample"}, "data": {"root-cert.pem": root}})
    server.put(CORE, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "cacerts", "namespace": "istio-system"}, "data": {"root-cert.pem": _b64(root), "ca-key.pem": _b64(
            "KEY")}})


class World:
    """What the pods answer to the doctor's execs (the fake API server's exec stream)."""

    def __init__(self) -> None:
        self.answer: str | None = REMOTE_IP  # the DNS proxy's answer in curl; None: NXDOMAIN
        self.plain_found = False  # kube-dns (past the proxy) knows the name
        self.clusters = (ENVOY_ADMIN / "envoy-1.40.0-clusters.txt").read_text().replace(
            f"{d.HTTPBIN_CLUSTER}::[::1]:15443", f"{d.HTTPBIN_CLUSTER}.v6::[::1]:15443")  # gateway only
        self.curl: tuple[int | None, int] = (200, 0)  # (HTTP status, curl exit)
        self.xfcc: str | None = XFCC
        self.execs: list[tuple[str, list[str]]] = []

    def __call__(self, request) -> ExecScript:
        container, argv = request.query["container"][0], request.query["command"]
        self.execs.append((container, argv))
        if argv[:1] == ["nslookup"]:
            if self.answer is None:
                return ExecScript(stdout="Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n** server can't find "
                                  f"{d.names.SERVER_HOST}: NXDOMAIN\n", status=exit_code_status(1))
            return ExecScript(stdout=f"Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\t"
                                     f"{d.names.SERVER_HOST}\nAddress: {self.answer}\n")
        if argv[:2] == ["getent", "hosts"]:
            assert container == "istio-proxy"
            return ExecScript(stdout=f"10.96.7.7       {argv[2]}\n") if self.plain_found else \
                ExecScript(status=exit_code_status(2))
        if argv[:3] == ["pilot-agent", "request", "GET"] and argv[3] == "clusters":
            return ExecScript(stdout=self.clusters)
        if argv[:2] == ["sh", "-c"] and "curl" in argv[2]:
            status, code = self.curl
            if status is None:
                return ExecScript(stdout=f"\n__LAB_HTTP_CODE__=000\n__LAB_CURL_EXIT__={code}\n",
                                  stderr=f"curl: ({code}) Could not resolve host: {d.names.SERVER_HOST}\n")
            headers = {"Host": [f"{d.names.SERVER_HOST}:8000"], "User-Agent": ["curl/8.16.0"]}
            if self.xfcc is not None:
                headers["X-Forwarded-Client-Cert"] = [self.xfcc]
            body = json.dumps({"headers": headers}) if status == 200 else "upstream connect error"
            return ExecScript(stdout=f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\r\n{body}\n"
                                     f"__LAB_HTTP_CODE__={status}\n__LAB_CURL_EXIT__={code}\n")
        return ExecScript(stderr=f"unexpected exec {argv}", status=exit_code_status(127))


@pytest.fixture
def fake(tmp_path):
    home = tmp_path / "home"
    with api_lab(PROFILE, home) as lab:
        c1, c2 = lab.servers["cluster1"], lab.servers["cluster2"]
        c1.put(CORE, "namespaces", _ns("istio-system", "network1"))
        c1.put(APPS, "deployments", apilab.deployment("istio-system", "istiod"))
        c1.put(CORE, "pods", _pod("sample", "curl-1", "curl", [{"name": "curl", "image": "curl"}, _proxy()]))
        c1.put(CORE, "secrets", _remote_secret("https://172.18.0.3:6443"))
        c1.put(CORE, "services", _svc("default", "kubernetes", "10.96.0.1"))
        c1.put(CORE, "services", _svc("kube-system", "kube-dns", "10.96.0.10"))
        _roots(c1, ROOT)
        c2.put(CORE, "namespaces", _ns("istio-system", "network2"))
        c2.put(APPS, "deployments", apilab.deployment("sample", "httpbin"))
        c2.put(CORE, "services", _svc("sample", "httpbin", REMOTE_IP))
        c2.put(CORE, "services", {**_svc("istio-system", "istio-eastwestgateway", "10.255.20.9",
                                         type="LoadBalancer"),
                                  "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}})
        c2.put(ISTIO_NET, "gateways", {
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"},
            "spec": {"selector": {"istio": "eastwestgateway"},
                     "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                  "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]}})
        _roots(c2, ROOT)
        world = World()
        c1.exec_answer = world
        yield lab, world, home


def _status(hops) -> dict[str, str]:
    return {h.name: h.status for h in hops}


def test_a_healthy_lab_has_every_hop_ok_read_through_the_handle(fake) -> None:
    lab, world, _ = fake
    facts = d.collect(lab.handle)
    assert facts.errors == {}, facts.errors
    assert facts.nslookup_sidecar is True and facts.nslookup_plain is False and facts.vip_collision == ""
    assert facts.endpoints == ["172.18.255.200:15443"] and facts.roots_equal is True
    assert facts.curl_status == 200 and d.SPIFFE_CURL in facts.xfcc and facts.dns_capture is True
    hops = d.walk(facts)
    assert all(h.status == d.OK for h in hops), hops
    # the lookups: the DNS proxy's from curl, kube-dns's from the proxy's uid; nothing created in the cluster
    assert ("curl", ["nslookup", "-type=a", d.names.SERVER_HOST]) in world.execs
    assert ("istio-proxy", ["getent", "hosts", d.names.SERVER_HOST]) in world.execs
    assert not [r for s in lab.servers.values() for r in s.requests if r.method not in ("GET",)]


def _no_remote_secret(lab, world) -> None:
    del lab.servers["cluster1"].objects[(CORE, "istio-system", "secrets", "istio-remote-secret-cluster2")]
    world.answer, world.clusters, world.curl = None, "", (None, 6)


def _eastwest_no_address(lab, world) -> None:
    c2 = lab.servers["cluster2"]
    svc = c2.get(CORE, "istio-system", "services", "istio-eastwestgateway")
    c2.put(CORE, "services", {**svc, "status": {"loadBalancer": {}}})
    world.clusters, world.curl = f"{d.HTTPBIN_CLUSTER}::10.20.0.7:8080::cx_active::0\n", (None, 28)


def _root_ca_mismatch(lab, world) -> None:
    _roots(lab.servers["cluster2"], OTHER_ROOT)
    world.curl = (503, 0)


def _dns_capture_off(lab, world) -> None:
    c1 = lab.servers["cluster1"]
    c1.put(CORE, "pods", _pod("sample", "curl-1", "curl", [{"name": "curl", "image": "curl"}, _proxy("false")]))
    world.answer, world.curl = None, (None, 6)


def _shared_service_subnet(lab, world) -> None:
    lab.servers["cluster1"].put(CORE, "services", _svc("sample", "lab-collider", REMOTE_IP))
    world.curl = (None, 56)


def _no_auto_passthrough_gateway(lab, world) -> None:
    del lab.servers["cluster2"].objects[(ISTIO_NET, "istio-system", "gateways", "cross-network-gateway")]
    world.curl = (503, 0)


def _network_label_missing(lab, world) -> None:
    lab.servers["cluster2"].put(CORE, "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "istio-system"}})


# fault id (docs/multi-primary-faults.md) -> what it leaves in the fake lab -> the hop the doctor table names
LIVE_FAULTS = {
    "no-remote-secret": (_no_remote_secret, "remote-secret-endpoints"),
    "eastwest-no-address": (_eastwest_no_address, "eastwest-gateway"),
    "no-auto-passthrough-gateway": (_no_auto_passthrough_gateway, "eastwest-gateway"),
    "root-ca-mismatch": (_root_ca_mismatch, "root"),
    "dns-capture-off": (_dns_capture_off, "dns-proxy"),
    "shared-service-subnet": (_shared_service_subnet, "dns-proxy"),
    "network-label-missing": (_network_label_missing, "client-cluster"),
}


@pytest.mark.parametrize("fault", sorted(LIVE_FAULTS))
def test_a_fault_in_the_fake_lab_fails_its_hop_and_leaves_the_earlier_ones_ok(fake, fault) -> None:
    lab, world, _ = fake
    breaks, hop = LIVE_FAULTS[fault]
    breaks(lab, world)
    hops = d.walk(d.collect(lab.handle))
    first = d.cause(hops)
    assert first is not None and first.name == hop, hops
    before = list(d.HOPS)[:list(d.HOPS).index(hop)]
    assert all(_status(hops)[h] == d.OK for h in before), hops
    assert d.exit_code(hops) == 1


def test_a_read_that_fails_makes_its_hop_unknown_not_ok(fake) -> None:
    lab, _, _ = fake
    lab.servers["cluster2"].fail("GET", "/api/v1/namespaces/sample/configmaps/istio-ca-root-cert", 500,
                                 status(500, "InternalError", "etcd down"))
    facts = d.collect(lab.handle)
    assert facts.roots_equal is None and "500 InternalError" in facts.errors["roots_equal"]
    assert _status(d.walk(facts))["root"] == d.UNKNOWN


def test_no_secret_content_reaches_the_output(fake) -> None:
    lab, _, _ = fake
    out = d.render_json(d.walk(d.collect(lab.handle))) + d.render_text(d.walk(d.collect(lab.handle)))
    assert TOKEN not in out and "https://172.18.0.3:6443" in out


# --- `lab doctor` end to end on the fake servers ------------------------------------------------------------------
def _record(home: Path, name: str = "multi-primary") -> None:
    State(home).set_profile(name, {}, "fp")


def test_cli_doctor_on_a_healthy_fake_lab_exits_0(fake, capsys) -> None:
    _, _, home = fake
    _record(home)
    assert cli.main(["doctor", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "all hops ok" and len(out.splitlines()) == len(d.HOPS) + 1
    assert cli.main(["doctor", "--home", str(home), "--scenario", "multi-primary-multi-network", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert cli.main(["doctor", "--home", str(home), "--profile", "multi-primary", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cause"] is None


def test_cli_doctor_names_the_broken_hop_and_exits_1(fake, capsys) -> None:
    lab, world, home = fake
    _record(home)
    _root_ca_mismatch(lab, world)
    assert cli.main(["doctor", "--home", str(home), "--scenario", "multi-primary-multi-network"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("cause: root: ")


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["--scenario", "no-such-scenario"], 2, "unknown scenario 'no-such-scenario'"),
    (["--profile", "no-such-profile"], 2, "no-such-profile"),
    (["--scenario", "multi-primary-multi-network", "--profile", "default"], 2,
     "profile 'default' belongs to scenario replicated-control-planes"),
])
def test_cli_doctor_user_errors_are_one_line(fake, capsys, argv, code, says) -> None:
    _, _, home = fake
    _record(home)
    assert cli.main(["doctor", "--home", str(home), *argv]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lab: error: ") and says in err, err


def test_cli_doctor_without_a_lab_or_its_kubeconfig_is_one_line(fake, tmp_path, capsys) -> None:
    _, _, home = fake
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["doctor", "--home", str(empty), "--scenario", "multi-primary-multi-network"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no state.json there" in err
    _record(home)
    (home / "kubeconfig" / "cluster2").unlink()
    assert cli.main(["doctor", "--home", str(home)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{home / 'kubeconfig' / 'cluster2'} does not exist" in err, err


# --- API servers that do not answer ---------------------------------------------------------------------------------
def _closed_port_kubeconfig(home: Path, cluster: str) -> str:
    """Point `cluster`'s kubeconfig at a port nothing listens on (bound, then closed); returns that URL."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = home / "kubeconfig" / cluster
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["server"] = url
    path.write_text(yaml.safe_dump(doc))
    return url


def _both_down(lab, home: Path) -> str:
    """cluster1's server stopped, cluster2's kubeconfig at a closed port: neither API server answers."""
    lab.servers["cluster1"].stop()
    return _closed_port_kubeconfig(home, "cluster2")


def test_neither_api_server_answering_is_one_line_naming_both(fake) -> None:
    lab, _, home = fake
    closed = _both_down(lab, home)
    with pytest.raises(d.LabError) as err:
        d.collect(lab.handle)
    line = str(err.value)
    assert "\n" not in line and line.startswith("neither cluster's API server answers (cluster1 at http://")
    assert f"cluster2 at {closed} (" in line and line.count("Connection refused") == 2, line
    assert 'make lab-up LAB_ARGS="--scenario multi-primary-multi-network"' in line and "make lab-status" in line


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_doctor_with_neither_api_server_answering_is_one_line_and_exit_1(fake, capsys, caplog, as_json) -> None:
    # as the replicated-control-planes doctor: its one line on stderr, exit 1, no hops (and no JSON) on stdout
    lab, _, home = fake
    _record(home)
    _both_down(lab, home)
    argv = ["doctor", "--home", str(home), "--scenario", "multi-primary-multi-network"] + (["--json"] if as_json
                                                                                          else [])
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, (out, err)
    assert err.startswith("lab: error: neither cluster's API server answers (cluster1 at ") and \
        "make lab-up" in err, err
    # and nothing before it: the client's own retry warnings (urllib3 "Retrying ...") stay quiet without --verbose
    assert [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")] == []


# one cluster down: the walk goes on; the hops whose facts live there are unknown, with the reason
ONE_DOWN = {
    "cluster1": {"dns-proxy": d.UNKNOWN, "client-cluster": d.UNKNOWN, "eastwest-gateway": d.OK,
                 "remote-secret-endpoints": d.UNKNOWN, "root": d.UNKNOWN, "httpbin": d.UNKNOWN},
    "cluster2": {"dns-proxy": d.OK, "client-cluster": d.UNKNOWN, "eastwest-gateway": d.UNKNOWN,
                 "remote-secret-endpoints": d.OK, "root": d.UNKNOWN, "httpbin": d.UNKNOWN},
}


@pytest.mark.parametrize("down", sorted(ONE_DOWN))
@pytest.mark.parametrize("how", ["stopped", "closed-port"])
def test_one_api_server_down_keeps_the_hop_walk(fake, capsys, down, how) -> None:
    lab, _, home = fake
    if how == "stopped":
        lab.servers[down].stop()
    else:
        _closed_port_kubeconfig(home, down)
    hops = d.walk(d.collect(lab.handle))
    assert _status(hops) == ONE_DOWN[down], hops
    for h in hops:
        if h.status == d.UNKNOWN:
            assert "cannot reach the API server" in h.detail and "Connection refused" in h.detail, h
    _record(home)
    assert cli.main(["doctor", "--home", str(home), "--scenario", "multi-primary-multi-network"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(d.HOPS) + 1 and out[-1] == "no hop failed, but some could not be read", out
    assert cli.main(["doctor", "--home", str(home), "--json"]) == 1
    assert [h["status"] for h in json.loads(capsys.readouterr().out)["hops"]] == list(ONE_DOWN[down].values())


def test_only_a_server_that_does_not_answer_counts_as_unreachable() -> None:
    from lab.cluster import _unreachable  # what the handle raises when nothing answers (the CLI tests: real ports)
    from lab.errors import ApiError, NotFoundError

    refused = _unreachable(OSError("Connection refused"), "read namespace istio-system on kind-cluster1",
                           "https://127.0.0.1:35123")
    assert d.unreachable(refused) == "https://127.0.0.1:35123 (Connection refused)"
    assert d.unreachable(ApiError("read namespace istio-system on kind-cluster1: 500 InternalError; is the lab "
                                  "healthy?", status=500, reason="InternalError")) is None
    assert d.unreachable(NotFoundError("read namespace x: 404 NotFound", status=404)) is None
    assert d.unreachable(d.LabError("cluster1: kubeconfig k cannot be used with context c")) is None
    assert d.unreachable(ApiError("exec: the stream closed without a status on its error channel")) is None


# what `collect` asks of a healthy lab, in order (cluster, path, exec'd program): one read per fact, the curl last
READS = [
    ("cluster1", "/api/v1/namespaces/istio-system", ""), ("cluster2", "/api/v1/namespaces/istio-system", ""),
    ("cluster1", "/apis/apps/v1/namespaces/istio-system/deployments/istiod", ""),
    ("cluster1", "/api/v1/namespaces/sample/pods", ""),
    ("cluster1", "/api/v1/namespaces/sample/pods/curl-1/exec", "nslookup"),
    ("cluster1", "/api/v1/services", ""),
    ("cluster1", "/api/v1/namespaces/sample/pods/curl-1/exec", "getent"),
    ("cluster2", "/api/v1/namespaces/istio-system/services/istio-eastwestgateway", ""),
    ("cluster2", f"{ISTIO_NET}/namespaces/istio-system/gateways/cross-network-gateway", ""),
    ("cluster1", "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-cluster2", ""),
    ("cluster1", "/api/v1/namespaces/sample/pods/curl-1/exec", "pilot-agent"),
    ("cluster1", "/api/v1/namespaces/sample/configmaps/istio-ca-root-cert", ""),
    ("cluster1", "/api/v1/namespaces/istio-system/secrets/cacerts", ""),
    ("cluster2", "/api/v1/namespaces/sample/configmaps/istio-ca-root-cert", ""),
    ("cluster2", "/api/v1/namespaces/istio-system/secrets/cacerts", ""),
    ("cluster2", "/apis/apps/v1/namespaces/sample/deployments/httpbin", ""),
    ("cluster1", "/api/v1/namespaces/sample/pods/curl-1/exec", "sh"),
]


def test_collect_reads_each_fact_once_in_its_order(fake) -> None:
    lab, _, _ = fake
    seen: list[tuple[str, str, str]] = []
    for name, server in lab.servers.items():
        server.before = lambda req, name=name: seen.append(
            (name, req.path, (req.query.get("command") or [""])[0]))
    d.collect(lab.handle)
    assert seen == READS
