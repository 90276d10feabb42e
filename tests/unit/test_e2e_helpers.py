"""The e2e suite's own helpers, offline: the Docker gate's reason, the health check that decides between reusing
and rebuilding the lab, the rebuild after a failed restore, and the artifacts written on failure."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest
import yaml

import lab
from lab.errors import LabError
from lab.probe import EXIT_MARK, STATUS_MARK
from lab.scenario import load_profile
from lab.scenarios.multi_primary_multi_network import istio as mp_istio
from lab.scenarios.multi_primary_multi_network import names as mp
from lab.scenarios.multi_primary_multi_network import profiles as mp_profiles
from lab.shell import Result
from tests.e2e import artifacts, helpers
from tests.e2e.session import LabSession, docker_problem, mpmn_faults
from tests.support.fake_apiserver import ExecScript, running
from tests.support.recording import RecordingRunner

OK_CALL = f"HTTP/1.1 200 OK\r\nserver: envoy\r\n\r\n{{}}\n{STATUS_MARK}200\n{EXIT_MARK}0\n"
FAILED_CALL = f"HTTP/1.1 503 Service Unavailable\r\n\r\nno healthy upstream\n{STATUS_MARK}503\n{EXIT_MARK}0\n"


def test_docker_gate_names_the_command_and_dockers_own_words():
    runner = RecordingRunner(answers={("docker", "info"): Result((), 1, "Client:\n Version: 27.0\n",
                                                                   "Cannot connect to the Docker daemon at "
                                                                   "unix:///var/run/docker.sock. Is the docker "
                                                                   "daemon running?\n")})
    assert docker_problem(runner) == ("Docker is not reachable: `docker info` failed: Cannot connect to the Docker "
                                      "daemon at unix:///var/run/docker.sock. Is the docker daemon running?")


def test_docker_gate_passes_when_the_daemon_reports_a_version():
    runner = RecordingRunner(answers={("docker", "info"): Result((), 0, "27.3.1\n", "")})
    assert docker_problem(runner) is None


def test_docker_gate_without_a_docker_binary_says_so(monkeypatch):
    from lab.shell import Runner

    monkeypatch.setenv("PATH", "/nonexistent")
    assert docker_problem(Runner()) == ("Docker is not reachable: `docker info` failed: docker is not installed or "
                                        "not on PATH (e2e preflight)")


# --- the session against two fake API servers (one per cluster) -----------------------------------------------------
DATA = Path(__file__).resolve().parents[1] / "data" / "kubeapi"


def _vector(name: str) -> dict:
    return json.loads((DATA / name).read_text())


class _Provider:
    """What the executor's provider tells the session: each cluster's kubeconfig file and context."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def kubeconfig(self, cluster) -> Path:
        return self.paths[cluster.name]

    def context(self, cluster) -> str:
        return f"kind-{cluster.name}"


def _istiod(image: str, namespace: str = "istio-system") -> dict:
    dep = _vector("deployment-ready.json")
    dep["metadata"] = {**dep["metadata"], "name": "istiod", "namespace": namespace}
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return dep


def _client_pod(name: str, namespace: str, app: str) -> dict:
    pod = _vector("pod-sleep.json")
    pod["metadata"] = {**pod["metadata"], "name": name, "namespace": namespace, "labels": {"app": app}}
    return pod


@pytest.fixture
def apis():
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(running()) for name in ("cluster1", "cluster2")}


def _session(tmp_path: Path, apis, profile=None, *, image: str = "docker.io/istio/pilot:1.7.8",
             client: tuple[str, str, str] = ("sleep-1234", "foo", "sleep"), call: str = OK_CALL) -> LabSession:
    profile = profile or load_profile()
    paths = {}
    for name, api in apis.items():
        paths[name] = api.kubeconfig(tmp_path / f"kubeconfig-{name}", context=f"kind-{name}")
        api.put("/apis/apps/v1", "deployments", _istiod(image))
    apis["cluster1"].put("/api/v1", "pods", _client_pod(*client))
    apis["cluster1"].exec_scripts.append(ExecScript(stdout=call))
    s = LabSession(profile=profile, runner=RecordingRunner(), artifacts=tmp_path / "artifacts", keep=False,
                   workdir=tmp_path / "work", home=tmp_path / "home", provider=_Provider(paths))
    s._connect()
    return s


def _execs(api) -> list:
    return [r for r in api.requests if r.path.endswith("/exec")]


def test_session_envoy_admin_gets_the_path_from_the_selected_pods_istio_proxy(tmp_path, apis):
    s = _session(tmp_path, apis, call="{}")
    apis["cluster1"].exec_scripts[:] = [ExecScript(stdout="cluster.x.ssl.fail_verify_error: 0\n")]
    out = s.envoy_admin(s.profile.client, "foo", "app=sleep", "stats?filter=ssl.fail_verify_error")
    assert out == "cluster.x.ssl.fail_verify_error: 0\n"
    (req,) = _execs(apis["cluster1"])
    assert req.path == "/api/v1/namespaces/foo/pods/sleep-1234/exec"
    assert req.query["container"] == ["istio-proxy"]
    assert req.query["command"] == ["pilot-agent", "request", "GET", "stats?filter=ssl.fail_verify_error"]
    assert _execs(apis["cluster2"]) == []


def test_the_session_takes_kubeconfig_and_context_from_the_provider_only(tmp_path, apis):
    s = _session(tmp_path, apis)
    for c in s.profile.clusters:
        h = s.handle[c.name]
        assert (h.kubeconfig, h.context) == (tmp_path / f"kubeconfig-{c.name}", f"kind-{c.name}")
        # kubectl, for the commands a person types, names the same file and context
        assert (s.kubectl[c.name].kubeconfig, s.kubectl[c.name].context) == (str(h.kubeconfig), h.context)
    # the faults act on the same handle (one API client per cluster, closed with the session), not a second one
    assert s.fault_lab.lab is s.handle
    assert not (tmp_path / "home").exists()


def test_a_lab_on_the_profiles_istio_that_answers_200_is_healthy(tmp_path, apis):
    s = _session(tmp_path, apis)
    assert s.check() and s.healthy and s.why_unhealthy == ""
    (req,) = _execs(apis["cluster1"])
    assert req.query["container"] == ["sleep"] and "http://httpbin.bar.global:8000/headers" in req.query["command"][2]


def test_a_lab_on_another_istio_version_is_not_reused(tmp_path, apis):
    s = _session(tmp_path, apis, image="docker.io/istio/pilot:1.7.3")
    assert not s.check()
    assert s.why_unhealthy == "cluster1 runs istiod docker.io/istio/pilot:1.7.3, not 1.7.8"


def test_a_lab_without_istiod_is_not_healthy(tmp_path, apis):
    s = _session(tmp_path, apis)
    del apis["cluster2"].objects[("/apis/apps/v1", "istio-system", "deployments", "istiod")]
    assert not s.check()
    assert s.why_unhealthy == "cluster2 runs istiod (none), not 1.7.8"


def test_a_lab_whose_call_fails_is_not_healthy(tmp_path, apis):
    s = _session(tmp_path, apis, call=FAILED_CALL)
    assert not s.check()
    assert "gave 503" in s.why_unhealthy


def test_a_lab_whose_api_server_is_gone_is_not_healthy_and_says_why(tmp_path, apis):
    s = _session(tmp_path, apis)
    apis["cluster1"].stop()
    assert not s.check()
    assert "cannot reach the API server" in s.why_unhealthy and "\n" not in s.why_unhealthy


def test_without_kubeconfigs_there_is_no_lab(tmp_path, apis):
    s = _session(tmp_path, apis)
    (tmp_path / "kubeconfig-cluster2").unlink()
    assert not s.check() and "no kubeconfigs" in s.why_unhealthy


def test_a_multi_primary_lab_is_checked_with_its_own_proof(tmp_path, apis):
    from lab.scenarios.multi_primary_multi_network.profiles import PROFILES

    s = _session(tmp_path, apis, PROFILES["multi-primary"], image="docker.io/istio/pilot:1.30.3",
                 client=("curl-5678", "sample", "curl"))
    assert s.target.client_ns == "sample" and s.check(), s.why_unhealthy
    (req,) = _execs(apis["cluster1"])
    assert req.path == "/api/v1/namespaces/sample/pods/curl-5678/exec" and req.query["container"] == ["curl"]
    assert "http://httpbin.sample.svc.cluster.local:8000/headers" in req.query["command"][2]
    catalogue = mpmn_faults()
    if catalogue is None:  # a checkout without the scenario's fault catalogue: nothing to act on
        assert s.fault_lab is None
    else:
        assert isinstance(s.fault_lab, catalogue.FaultLab) and s.fault_lab.profile is s.profile
        assert s.fault_lab.lab[s.profile.client.name].kubeconfig == tmp_path / "kubeconfig-cluster1"


def test_a_failed_restore_makes_the_next_test_run_lab_up_first(tmp_path, monkeypatch, apis):
    calls: list[str] = []
    fake = type("Executor", (), {"up": staticmethod(lambda profile, **kw: calls.append(("up", kw))),
                                 "down": staticmethod(lambda **kw: calls.append(("down", kw)))})
    monkeypatch.setitem(sys.modules, "lab.executor", fake)
    monkeypatch.setattr(lab, "executor", fake, raising=False)
    s = _session(tmp_path, apis)
    apis["cluster1"].exec_scripts.append(ExecScript(stdout=OK_CALL))  # the check after `lab up`
    assert s.check()
    s.ensure_healthy()
    assert calls == []
    s.mark_unhealthy("restore of dns-stub-missing failed: ...")
    s.ensure_healthy()
    assert calls == [("up", {"home": s.home, "overrides": {}, "runner": s.runner})] and s.healthy
    # the 1.7 faults act on a lab rebuilt from the same provider, with the session's scratch directory
    assert s.fault_lab.workdir == tmp_path / "work" and s.fault_lab.profile is s.profile


def test_artifacts_cover_both_istiocoredns_containers_sidecars_dumps_stats_and_the_corefile():
    server = {name for name, _, _ in artifacts.plan("server")}
    client = {name for name, _, _ in artifacts.plan("client")}
    for expected in ("pods.txt", "events.txt", "istiod.log", "istiocoredns-coredns.log", "istiocoredns-plugin.log",
                     "gateway.log", "coredns-configmap.yaml"):
        assert expected in server and expected in client
    assert {"sleep-foo-istio-proxy.log", "sleep-config_dump.json", "sleep-stats.txt"} <= client
    assert {"httpbin-istio-proxy.log", "httpbin-config_dump.json", "gateway-config_dump.json",
            "gateway-stats.txt"} <= server


def test_artifacts_write_each_item_and_an_error_file_for_what_failed(tmp_path):
    from lab.errors import CommandError
    from lab.kube import Kubectl

    runner = RecordingRunner(answers={("kubectl", "--kubeconfig", "k", "--context", "c", "get", "pods"):
                                      Result((), 0, "NAME READY\n", "")})
    kubectl = Kubectl(runner, "k", "c")

    def admin(ns: str, selector: str, path: str) -> str:
        if selector == "istio=ingressgateway":
            raise CommandError(["kubectl", "exec"], 1, "pod not found")
        return "{}" if path == "config_dump" else "cluster.x.upstream_cx_total: 1"

    written = artifacts.collect(tmp_path / "t" / "cluster2", kubectl, "server", admin)
    names = {p.name for p in written}
    assert "gateway-config_dump.json.error" in names and "httpbin-config_dump.json" in names
    assert (tmp_path / "t" / "cluster2" / "pods.txt").read_text() == "NAME READY\n"
    assert "pod not found" in (tmp_path / "t" / "cluster2" / "gateway-stats.txt.error").read_text()


@pytest.mark.parametrize("nodeid,name", [
    ("tests/e2e/test_faults.py::test_fault_shows_its_documented_symptom_then_heals[vip-loopback]",
     "test_faults.test_fault_shows_its_documented_symptom_then_heals-vip-loopback"),
    ("tests/e2e/test_dns.py::test_nslookup_type_a_answers_the_clusters_vip[via-kube-dns-cluster1]",
     "test_dns.test_nslookup_type_a_answers_the_clusters_vip-via-kube-dns-cluster1"),
])
def test_artifact_directories_are_named_by_test(nodeid, name):
    assert artifacts.safe_name(nodeid) == name


# --- the fault test's flow, with a fake lab and a scripted probe ---------------------------------------------------
class _FakeLab:
    def __init__(self, tmp_path: Path) -> None:
        self.profile = load_profile()
        self.artifacts = tmp_path
        # what lab.scenarios.replicated_control_planes.faults reads from its lab in this flow: the polls' sleep
        # (instant here)
        self.fault_lab = type("FaultLab", (), {"sleep": staticmethod(lambda seconds: None)})()
        self.unhealthy: list[str] = []
        self.kubectl: dict = {}

    def mark_unhealthy(self, why: str) -> None:
        self.unhealthy.append(why)


def _run_fault_test(monkeypatch, tmp_path, classes: list[str], restore=lambda lab: None, expected="dns-failure"):
    from lab.scenarios.replicated_control_planes import faults
    from tests.e2e import test_faults as suite

    answers = iter(classes)
    monkeypatch.setattr(suite, "probe_class", lambda handle: (next(answers), ["evidence line"]))
    monkeypatch.setattr(suite.artifacts, "dump_lab", lambda lab, base: base)
    fault = faults.Fault(id="demo", cluster="client", breaks="demo", inject=lambda lab: None, restore=restore,
                         expectations=(faults.Expectation(faults.ALL, expected, 90, "because"),), settle=0.0,
                         timeout=5.0)
    lab = _FakeLab(tmp_path)
    props: list[tuple[str, object]] = []
    request = type("Request", (), {"node": type("Node", (), {"nodeid": "tests/e2e/test_faults.py::t[demo]"})()})()
    monkeypatch.setattr(suite, "settled_class", _fast(suite.settled_class))
    return lab, props, lambda: suite.test_fault_shows_its_documented_symptom_then_heals(
        lab, fault, lambda k, v: props.append((k, v)), request)


def _fast(settled):
    def call(observe, **kw):
        return settled(observe, interval=0.0, **kw)
    return call


def test_fault_flow_records_the_observation_heals_and_passes(monkeypatch, tmp_path):
    import json

    lab, props, run = _run_fault_test(monkeypatch, tmp_path, ["dns-failure"] * 3 + ["ok"] * 3)
    run()
    line = json.loads((tmp_path / "observed.jsonl").read_text())
    assert line["fault"] == "demo" and line["observed"] == "dns-failure" and line["history"] == ["dns-failure"] * 3
    assert ("injected: observed", "dns-failure") in props and lab.unhealthy == []


def test_fault_flow_fails_with_what_was_seen_when_the_symptom_differs(monkeypatch, tmp_path):
    lab, props, run = _run_fault_test(monkeypatch, tmp_path, ["ok"] * 6)
    with pytest.raises(AssertionError, match=r"demo \(injected\).*expected class dns-failure \[90%: because\], "
                                             r"got ok; sequence \['ok', 'ok', 'ok'\]"):
        run()
    assert lab.unhealthy == []


def test_fault_flow_marks_the_lab_unhealthy_when_restore_fails(monkeypatch, tmp_path):
    from lab.errors import CommandError

    def broken_restore(lab):
        raise CommandError(["kubectl", "replace"], 1, "the server is currently unable to handle the request")

    lab, props, run = _run_fault_test(monkeypatch, tmp_path, ["dns-failure"] * 3, restore=broken_restore)
    with pytest.raises(CommandError):
        run()
    assert lab.unhealthy and lab.unhealthy[0].startswith("restore of demo failed: ")


@pytest.mark.parametrize("error", [KeyError("data"), ValueError("Expecting value: line 1 column 1 (char 0)")],
                         ids=["key-error", "bad-json"])
def test_fault_flow_marks_the_lab_unhealthy_when_restore_fails_with_a_bug_not_a_lab_error(monkeypatch, tmp_path,
                                                                                           error):
    def broken_restore(lab):
        raise error

    lab, props, run = _run_fault_test(monkeypatch, tmp_path, ["dns-failure"] * 3, restore=broken_restore)
    with pytest.raises(type(error)):
        run()
    assert lab.unhealthy and lab.unhealthy[0].startswith(f"restore of demo failed: {type(error).__name__}")


@pytest.mark.parametrize("when,failed,dumped", [("setup", True, True), ("call", True, True),
                                                ("call", False, False), ("teardown", True, False)])
def test_artifacts_are_saved_when_a_test_fails_in_setup_or_call_and_only_then(monkeypatch, tmp_path, when, failed,
                                                                             dumped):
    from tests.e2e import conftest as e2e_conftest

    saved: list[Path] = []
    monkeypatch.setattr(e2e_conftest.artifacts, "dump_lab", lambda session, base: saved.append(base) or base)
    config = type("Config", (), {"stash": pytest.Stash()})()
    session = type("Session", (), {"kubectl": {"cluster1": object()}, "artifacts": tmp_path})()
    config.stash[e2e_conftest._SESSION_KEY] = session
    nodeid = "tests/e2e/test_dns.py::test_istiocoredns_plugin_logs_the_mapping[cluster1]"
    item = type("Item", (), {"path": e2e_conftest.E2E_DIR / "test_dns.py", "config": config, "nodeid": nodeid})()
    report = type("Report", (), {"when": when, "failed": failed, "skipped": False, "duration": 1.5,
                                 "sections": []})()
    hook = e2e_conftest.pytest_runtest_makereport(item, None)
    next(hook)
    with pytest.raises(StopIteration) as done:
        hook.send(report)
    assert done.value.value is report
    assert saved == ([tmp_path / "test_dns.test_istiocoredns_plugin_logs_the_mapping-cluster1"] if dumped else [])


def test_a_setup_failure_saves_artifacts_once_not_for_every_test_that_then_fails_the_same_way(monkeypatch,
                                                                                             tmp_path):
    from tests.e2e import conftest as e2e_conftest

    saved: list[Path] = []
    monkeypatch.setattr(e2e_conftest.artifacts, "dump_lab", lambda session, base: saved.append(base) or base)
    config = type("Config", (), {"stash": pytest.Stash()})()
    config.stash[e2e_conftest._SESSION_KEY] = type("Session", (), {"kubectl": {"c": 1}, "artifacts": tmp_path})()
    for n, when in enumerate(["setup", "setup", "call"]):
        item = type("Item", (), {"path": e2e_conftest.E2E_DIR / "test_dns.py", "config": config,
                                 "nodeid": f"tests/e2e/test_dns.py::t{n}"})()
        hook = e2e_conftest.pytest_runtest_makereport(item, None)
        next(hook)
        with pytest.raises(StopIteration):
            hook.send(type("Report", (), {"when": when, "failed": True, "skipped": False, "duration": 0.1,
                                          "sections": []})())
    assert [p.name for p in saved] == ["test_dns.t0", "test_dns.t2"]


# --- the pure helpers (tests/e2e/helpers.py) -------------------------------------------------------------------------
def test_each_scenario_has_a_target_and_a_marker_registered_in_pyproject():
    import tomllib

    markers = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["markers"]
    registered = {m.split(":", 1)[0].strip() for m in markers}
    assert set(helpers.MARKERS) == {"replicated_control_planes", "multi_primary_multi_network"} <= registered
    assert helpers.target_of("multi-primary-multi-network").probe_url == (
        "http://httpbin.sample.svc.cluster.local:8000/headers")
    assert helpers.target_of("replicated-control-planes").probe_url == "http://httpbin.bar.global:8000/headers"
    assert helpers.target_of("multi-primary-multi-network").marker == "multi_primary_multi_network"
    with pytest.raises(KeyError, match="no tests for scenario 'other'"):
        helpers.target_of("other")


def test_every_installed_scenario_has_e2e_tests():
    from lab.scenario import scenarios

    assert set(scenarios()) <= set(helpers.TARGETS)


def test_a_test_of_the_scenario_under_test_runs_and_one_of_the_other_says_how_to_select_it():
    assert helpers.skip_reason("multi-primary-multi-network", "multi-primary-multi-network", "multi-primary") is None
    assert helpers.skip_reason("multi-primary-multi-network", "replicated-control-planes", "default") == (
        "a multi-primary-multi-network test; the scenario under test is replicated-control-planes (profile default): "
        "run with --lab-scenario multi-primary-multi-network (or -m replicated_control_planes to leave these out)")


# An XFCC value as Envoy writes it for one hop (the format of envoyproxy/envoy's headers.rst, x-forwarded-client-cert).
HASH = "a" * 64
ONE_HOP = (f'By=spiffe://cluster.local/ns/sample/sa/httpbin;Hash={HASH};Subject="";'
           "URI=spiffe://cluster.local/ns/sample/sa/curl")


def test_xfcc_of_one_hop_gives_the_clients_uri_and_the_servers_by():
    assert helpers.parse_xfcc(ONE_HOP) == [{"BY": ["spiffe://cluster.local/ns/sample/sa/httpbin"], "HASH": [HASH],
                                            "SUBJECT": [""], "URI": ["spiffe://cluster.local/ns/sample/sa/curl"]}]


def test_xfcc_keeps_quoted_commas_and_semicolons_inside_a_value_and_splits_hops():
    value = ('By=spiffe://a;URI=spiffe://x;Subject="CN=x, O=a;b";DNS=one;DNS=two,'
             'by=spiffe://b;uri=spiffe://a')
    first, second = helpers.parse_xfcc(value)
    assert first["SUBJECT"] == ["CN=x, O=a;b"] and first["DNS"] == ["one", "two"] and first["URI"] == ["spiffe://x"]
    assert second == {"BY": ["spiffe://b"], "URI": ["spiffe://a"]}
    assert helpers.parse_xfcc("") == [] and helpers.parse_xfcc('Subject="a\\"b"') == [{"SUBJECT": ['a"b']}]


def test_header_values_read_both_httpbins_shapes_case_insensitively():
    assert helpers.header_values({"X-Forwarded-Client-Cert": ONE_HOP}, "x-forwarded-client-cert") == [ONE_HOP]
    assert helpers.header_values({"X-Forwarded-Client-Cert": [ONE_HOP, "b"]}, "X-Forwarded-Client-Cert") == [
        ONE_HOP, "b"]
    assert helpers.header_values({"Accept": ["*/*"]}, "X-Forwarded-Client-Cert") == []


def test_spiffe_ids_are_istios_form():
    assert helpers.spiffe_id("sample", "curl") == "spiffe://cluster.local/ns/sample/sa/curl"
    assert helpers.spiffe_id("a", "b", "td") == "spiffe://td/ns/a/sa/b"


SAMPLES_130 = Path(__file__).parent.parent / "data" / "istio-1.30.3" / "samples"


def _sample_objects(rel: str) -> dict[str, dict]:
    return {o["kind"]: o for o in yaml.safe_load_all((SAMPLES_130 / rel).read_text()) if o}


def test_the_proofs_identities_are_the_samples_service_accounts_in_the_trust_domain_the_lab_installs():
    # samples/curl/curl.yaml and samples/httpbin/httpbin.yaml@1.30.3 (the files the lab applies) run as their own
    # ServiceAccounts; the lab's overlay sets no trustDomain and no proxy headers, so istiod's default trust domain
    # (istio-discovery templates/configmap.yaml@1.30.3:4, cluster.local) and the inbound APPEND_FORWARD
    # (pilot/pkg/networking/util/proxy_headers.go@1.30.3:52) are what test_proof.py's CLIENT_ID and SERVER_ID assume
    for app, rel in ((mp.CLIENT_APP, "curl/curl.yaml"), (mp.SERVER_APP, "httpbin/httpbin.yaml")):
        objs = _sample_objects(rel)
        assert objs["ServiceAccount"]["metadata"]["name"] == app
        assert objs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == app
    profile = mp_profiles.load_profile()
    for c in profile.clusters:
        spec = mp_istio.overlay(profile, c)["spec"]
        for mesh in (spec.get("meshConfig") or {}, (spec.get("values") or {}).get("meshConfig") or {}):
            assert "trustDomain" not in mesh and "proxyHeaders" not in (mesh.get("defaultConfig") or {}), mesh
    assert helpers.spiffe_id(mp.APP_NS, mp.CLIENT_APP) == "spiffe://cluster.local/ns/sample/sa/curl"


def test_httpbins_sample_sends_to_the_port_go_httpbin_listens_on():
    # go-httpbin v2.15.0 listens on 8080 unless -port or PORT say otherwise (httpbin/cmd/cmd.go: defaultListenPort,
    # the PORT env); the sample sets neither, and its Service maps 8000 to 8080
    objs = _sample_objects("httpbin/httpbin.yaml")
    (port,) = objs["Service"]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (mp.SERVER_PORT, 8080)
    (container,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == mp_profiles.Images().httpbin == "docker.io/mccutchen/go-httpbin:v2.15.0"
    assert container["ports"] == [{"containerPort": 8080}] and "args" not in container and "env" not in container
    (curl,) = _sample_objects("curl/curl.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"]
    # the Alpine-based curl image's ENTRYPOINT (/entrypoint.sh) is replaced by the sample's command: busybox sleep
    assert curl["image"] == mp_profiles.Images().curl and curl["command"] == ["/bin/sleep", "infinity"]
    assert helpers.sidecarless_pod("sample", curl["image"], "curl")["spec"]["containers"][0]["command"] == \
        curl["command"]


# envoy.admin.v3.Clusters as /clusters?format=json prints it (trimmed to the fields read)
CLUSTERS = {"cluster_statuses": [
    {"name": "outbound|8000||httpbin.sample.svc.cluster.local",
     "host_statuses": [{"address": {"socket_address": {"address": "172.18.255.200", "port_value": 15443}},
                        "stats": [], "health_status": {"eds_health_status": "HEALTHY"}, "weight": 1}]},
    {"name": "outbound|80||curl.sample.svc.cluster.local",
     "host_statuses": [{"address": {"socket_address": {"address": "10.10.0.7", "port_value": 80}}}]},
    {"name": "BlackHoleCluster"},
]}


def test_cluster_endpoints_of_envoys_admin_json():
    name = "outbound|8000||httpbin.sample.svc.cluster.local"
    assert helpers.cluster_endpoints(CLUSTERS, name) == [("172.18.255.200", 15443)]
    assert helpers.cluster_endpoints(CLUSTERS, "BlackHoleCluster") == []
    assert helpers.cluster_endpoints(CLUSTERS, "outbound|8000||other") is None
    assert helpers.cluster_names(CLUSTERS)[0] == name and helpers.cluster_endpoints({}, name) is None


def _service(kind: str = "LoadBalancer", ingress=(), external=()) -> object:
    from kubernetes import client as k8s

    spec: dict = {"type": kind, **({"externalIPs": list(external)} if external else {})}
    return k8s.V1Service.from_dict({"spec": spec, "status": {"loadBalancer": {"ingress": list(ingress)}}})


def test_gateway_addresses_are_the_load_balancer_ingress_then_the_external_ips():
    assert helpers.gateway_addresses(_service(ingress=[{"ip": "172.18.255.200"}])) == ["172.18.255.200"]
    assert helpers.gateway_addresses(_service(ingress=[{"hostname": "gw.example"}])) == ["gw.example"]
    both = _service(ingress=[{"ip": "172.18.255.200"}], external=["172.18.0.3", "172.18.255.200"])
    assert helpers.gateway_addresses(both) == ["172.18.255.200", "172.18.0.3"]
    # a pending LoadBalancer (EXTERNAL-IP <pending>) and no fallback: no gateway
    assert helpers.gateway_addresses(_service()) == []
    # a NodePort Service's status is not read (istiod maps node ports only with the node addresses it knows)
    assert helpers.gateway_addresses(_service("NodePort", ingress=[{"ip": "1.2.3.4"}])) == []
    assert helpers.gateway_addresses(_service("NodePort", external=["172.18.0.3"])) == ["172.18.0.3"]


def test_the_sidecarless_pod_is_the_clients_image_with_injection_off_and_validates():
    from tests.support import schemas

    pod = helpers.sidecarless_pod("sample", "docker.io/curlimages/curl:8.16.0", "curl")
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["metadata"]["namespace"] == "sample" and pod["metadata"]["name"] == helpers.NO_SIDECAR_NAME
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "curl" and container["image"] == "docker.io/curlimages/curl:8.16.0"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0 and pod["spec"]["automountServiceAccountToken"] is False
    schemas.validate_k8s(pod, "1.36")  # the scenario's Kubernetes (kind v0.32.0 node v1.36.1)


def test_settled_class_counts_only_probes_after_the_settling_time_and_needs_three_in_a_row():
    now = [0.0]
    answers = iter(["ok", "ok", "ok", "timeout", "dns-failure", "dns-failure", "dns-failure"])

    def observe() -> str:
        cls = next(answers)
        now[0] += 1.0
        return cls

    history: list[str] = []
    got = helpers.settled_class(observe, settle=3.0, timeout=60.0, interval=0.0, clock=lambda: now[0],
                                sleep=lambda s: None, history=history)
    assert got == "dns-failure" and history == ["ok", "ok", "ok", "timeout", "dns-failure", "dns-failure",
                                                "dns-failure"]


def test_settled_class_gives_up_after_settle_plus_timeout():
    from lab.errors import NotReadyError

    now = [0.0]

    def flapping() -> str:
        now[0] += 1.0
        return "ok" if int(now[0]) % 2 else "timeout"

    with pytest.raises(NotReadyError, match="a stable probe class"):
        # lab.retry.poll's deadline is real time: a short one
        helpers.settled_class(flapping, settle=0.0, timeout=0.3, interval=0.0, clock=lambda: now[0],
                              sleep=lambda s: None)


def test_an_observation_line_names_the_scenario_and_version():
    from datetime import date

    from lab.scenarios.multi_primary_multi_network.profiles import PROFILES

    line = helpers.observation(PROFILES["multi-primary"], "no-remote-secret", "injected", "dns-failure", None,
                               ["ok", "dns-failure"], ["curl exit 6"], date(2026, 12, 2))
    assert line == {"scenario": "multi-primary-multi-network", "fault": "no-remote-secret", "stage": "injected",
                    "istio_version": "1.30.3", "expected": "dns-failure", "observed": None,
                    "history": ["ok", "dns-failure"], "evidence": ["curl exit 6"], "date": "2026-12-02"}


def test_multi_primary_artifacts_cover_the_hops_and_never_a_secrets_data():
    from lab.scenarios.multi_primary_multi_network.names import SCENARIO

    client = {name: args for name, args, _ in artifacts.plan("client", SCENARIO)}
    server = {name: args for name, args, _ in artifacts.plan("server", SCENARIO)}
    for expected in ("pods.txt", "events.txt", "namespaces.txt", "services.yaml", "gateways.yaml",
                     "remote-secrets.txt", "istiod.log", "eastwestgateway.log", "metallb-controller.log",
                     "eastwestgateway-config_dump.json", "eastwestgateway-clusters.json"):
        assert expected in client and expected in server
    assert {"curl-istio-proxy.log", "curl-config_dump.json", "curl-clusters.json", "curl-stats.txt"} <= set(client)
    assert {"httpbin-istio-proxy.log", "httpbin-config_dump.json"} <= set(server)
    assert server["eastwestgateway-clusters.json"] == ["istio-system", "istio=eastwestgateway"]
    # Secrets are listed by name only (the default table: NAME TYPE DATA AGE), never as YAML or JSON
    for args in [*client.values(), *server.values()]:
        if "secrets" in args:
            assert "-o" not in args, args
    # the 1.7 scenario's plan is the default, unchanged
    assert artifacts.plan("server") == artifacts.plan("server", "replicated-control-planes")


def test_dump_lab_writes_the_plan_of_the_sessions_scenario(tmp_path, monkeypatch):
    from lab.scenarios.multi_primary_multi_network.profiles import PROFILES

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(artifacts, "collect", lambda out, kubectl, role, admin, scenario: seen.append(
        (out.name, scenario)))
    session = type("Session", (), {"profile": PROFILES["multi-primary"], "kubectl": {"cluster1": 1, "cluster2": 2},
                                   "envoy_admin": lambda *a: ""})()
    assert artifacts.dump_lab(session, tmp_path) == tmp_path
    assert seen == [("cluster1", "multi-primary-multi-network"), ("cluster2", "multi-primary-multi-network")]


# --- the multi-primary fault test's flow, with a fake catalogue ---------------------------------------------------
def _run_mp_fault_test(monkeypatch, tmp_path, classes: list[str], restore_fails: BaseException | None = None):
    from lab.scenarios.multi_primary_multi_network.profiles import PROFILES
    from tests.e2e.multi_primary import test_faults as suite

    answers = iter(classes)
    calls: list[str] = []
    exp = type("Expectation", (), {"cls": "dns-failure", "confidence": 85, "why": "because"})()
    fault = type("Fault", (), {"id": "demo", "settle": 0.0, "timeout": 5.0, "needs_reinstall": False,
                               "inject": staticmethod(lambda fl: calls.append("inject"))})()

    def restore_and_heal(fl, f):
        calls.append("restore")
        if restore_fails is not None:
            raise restore_fails

    catalogue = type("Catalogue", (), {
        "expectation": staticmethod(lambda f, v: calls.append(f"expectation {v}") or exp),
        "probe_class": staticmethod(lambda fl: (next(answers), ["evidence line"])),
        "restore_and_heal": staticmethod(restore_and_heal)})
    monkeypatch.setattr(suite, "catalogue", catalogue)
    monkeypatch.setattr(suite, "settled_class", lambda observe, **kw: helpers.settled_class(
        observe, interval=0.0, **kw))
    dumped: list[Path] = []
    monkeypatch.setattr(suite.artifacts, "dump_lab", lambda lab, base: dumped.append(base) or base)
    lab = _FakeLab(tmp_path)
    lab.profile = PROFILES["multi-primary"]
    props: list[tuple[str, object]] = []
    request = type("Request", (), {"node": type("Node", (), {
        "nodeid": "tests/e2e/multi_primary/test_faults.py::t[demo]"})()})()
    return lab, props, calls, dumped, lambda: suite.test_fault_shows_its_documented_symptom_then_heals(
        lab, fault, lambda k, v: props.append((k, v)), request)


def test_mp_fault_flow_records_the_observation_restores_and_passes(monkeypatch, tmp_path):
    lab, props, calls, dumped, run = _run_mp_fault_test(monkeypatch, tmp_path, ["dns-failure"] * 3)
    run()
    line = json.loads((tmp_path / "observed.jsonl").read_text())
    assert line["scenario"] == "multi-primary-multi-network" and line["observed"] == "dns-failure"
    assert calls == ["expectation 1.30.3", "inject", "restore"] and dumped == [] and lab.unhealthy == []
    assert ("injected: observed", "dns-failure") in props


def test_mp_fault_flow_fails_with_what_was_seen_and_saves_the_broken_lab(monkeypatch, tmp_path):
    lab, props, calls, dumped, run = _run_mp_fault_test(monkeypatch, tmp_path, ["ok"] * 3)
    with pytest.raises(AssertionError, match=r"demo: from cluster1/sample/curl .* expected class dns-failure "
                                             r"\[85%: because\], got ok; sequence \['ok', 'ok', 'ok'\]"):
        run()
    assert calls[-1] == "restore" and [p.name for p in dumped] == ["injected"] and lab.unhealthy == []


@pytest.mark.parametrize("error", [LabError("the API server is gone"), KeyError("data")], ids=["lab-error", "bug"])
def test_mp_fault_flow_marks_the_lab_unhealthy_when_restore_fails(monkeypatch, tmp_path, error):
    lab, props, calls, dumped, run = _run_mp_fault_test(monkeypatch, tmp_path, ["dns-failure"] * 3,
                                                        restore_fails=error)
    with pytest.raises(type(error)):
        run()
    assert lab.unhealthy == [f"restore of demo failed: {type(error).__name__}: {error}"]


def test_a_test_without_exactly_one_scenario_marker_is_a_usage_error():
    from tests.e2e import conftest as e2e_conftest

    def item(*names):
        marks = [getattr(pytest.mark, n).mark for n in names]
        return type("Item", (), {"nodeid": "tests/e2e/test_x.py::t", "iter_markers": lambda self: iter(marks)})()

    assert e2e_conftest.scenario_of(item("e2e", "multi_primary_multi_network")) == "multi-primary-multi-network"
    with pytest.raises(pytest.UsageError, match="carries no scenario marker"):
        e2e_conftest.scenario_of(item("e2e"))
    with pytest.raises(pytest.UsageError, match="carries multi_primary_multi_network, replicated_control_planes"):
        e2e_conftest.scenario_of(item("replicated_control_planes", "multi_primary_multi_network"))


def test_the_suite_and_the_doctor_read_xfcc_with_one_parser():
    from lab import xfcc

    assert helpers.parse_xfcc is xfcc.parse_xfcc and helpers.header_values is xfcc.header_values
    assert helpers.spiffe_id is xfcc.spiffe_id
    # the client is the last element's URI (the proxy nearest the server added it), never its By
    assert xfcc.client_uris(ONE_HOP) == ["spiffe://cluster.local/ns/sample/sa/curl"]
    assert xfcc.client_uris("By=spiffe://cluster.local/ns/sample/sa/curl") == [] and xfcc.client_uris("") == []
