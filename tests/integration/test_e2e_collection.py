"""What can be checked of the e2e suite without Docker: it collects every test the issues ask for, of both scenarios
(fault tests by their catalogue ids, the reinstall lane and each scenario selectable by marker), and without a Docker
daemon `pytest tests/e2e` exits 0 with nothing errored: every test of the scenario under test skipped for one precise
reason (Docker's), every test of the other scenario for another (which scenario is under test)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.scenarios.replicated_control_planes.faults import FAULTS
from lab.shell import Runner
from tests.e2e.session import mpmn_faults

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAULT_TEST = "tests/e2e/test_faults.py::test_fault_shows_its_documented_symptom_then_heals"
MP_FAULT_TEST = "tests/e2e/multi_primary/test_faults.py::test_fault_shows_its_documented_symptom_then_heals"
MP_PROOF = "tests/e2e/multi_primary/test_proof.py"
MP_CATALOGUE = mpmn_faults()
UNREACHABLE = "unix:///nonexistent/istio-multicluster-lab-e2e.sock"


def _pytest(*args: str, env: dict[str, str] | None = None):
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return Runner(env=env or {}).run(argv, check=False, timeout=300, context="pytest tests/e2e")


def _collected(*args: str) -> list[str]:
    res = _pytest(str(ROOT / "tests" / "e2e"), "--collect-only", "-q", *args)
    assert res.returncode == 0, res.output
    return [line for line in res.stdout.splitlines() if line.startswith("tests/e2e/")]


@pytest.fixture(scope="module")
def collected() -> list[str]:
    return _collected()


def test_every_fault_is_collected_under_its_catalogue_id(collected):
    ids = {line.split("[", 1)[1].rstrip("]") for line in collected if line.startswith(FAULT_TEST + "[")}
    assert ids == {f.id for f in FAULTS}


def test_happy_path_dns_and_config_tests_are_collected(collected):
    text = "\n".join(collected)
    for method_path in ("GET-headers", "GET-get-with-args", "POST-post-json", "PUT-put-json", "DELETE-delete",
                        "GET-ip", "GET-user-agent"):
        for caller in ("from-cluster1-foo-sleep", "from-cluster2-bar-sleep"):
            assert (f"test_happy_path.py::test_call_returns_httpbins_own_answer_over_mutual_tls"
                    f"[{method_path}-{caller}]") in text
    assert "test_happy_path.py::test_status_418_is_httpbins_teapot_not_an_envoy_reply[from-cluster1-foo-sleep]" in text
    for server in ("via-istiocoredns", "via-kube-dns"):
        for cluster in ("cluster1", "cluster2"):
            assert f"test_dns.py::test_nslookup_type_a_answers_the_clusters_vip[{server}-{cluster}]" in text
    assert "test_dns.py::test_istiocoredns_plugin_logs_the_mapping[cluster1]" in text
    for name in ("test_cluster1_sleep_sends_httpbin_bar_global_to_cluster2s_gateway_node_ip_and_nodeport",
                 "test_cluster1_sleep_route_domains_include_the_name_and_the_vip",
                 "test_cluster2_gateway_routes_global_by_sni_without_a_route_config",
                 "test_cluster2_envoyfilter_has_the_form_of_the_version_under_test",
                 "test_cluster2_sidecars_resolve_the_name_to_the_local_service_with_strict_dns[httpbin]",
                 "test_cluster1_sleep_and_cluster2_httpbin_share_one_rootca"):
        assert f"test_config.py::{name}" in text


def test_the_1_7_scenarios_41_test_ids_stay_and_its_marker_selects_exactly_them(collected):
    rcp = _collected("-m", "replicated_control_planes")
    assert len(rcp) == 41 and all(line.startswith("tests/e2e/test_") for line in rcp), rcp
    assert set(rcp) == {line for line in collected if not line.startswith("tests/e2e/multi_primary/")}


def test_the_multi_primary_scenarios_tests_are_collected_under_their_marker(collected):
    mp = _collected("-m", "multi_primary_multi_network")
    for name in ("test_curl_in_cluster1_gets_200_from_httpbin_that_runs_only_in_cluster2",
                 "test_httpbin_receives_curls_spiffe_identity_in_x_forwarded_client_cert",
                 "test_cluster1s_curl_sends_httpbin_to_cluster2s_eastwest_gateway_on_15443_not_to_a_pod_ip",
                 "test_the_name_resolves_in_cluster1_only_through_the_sidecars_dns_proxy"):
        assert f"{MP_PROOF}::{name}" in mp
    ids = {line.split("[", 1)[1].rstrip("]") for line in mp if line.startswith(MP_FAULT_TEST + "[")}
    # one test per entry of the scenario's catalogue; a placeholder in a checkout without it
    assert ids == ({f.id for f in MP_CATALOGUE.FAULTS} if MP_CATALOGUE is not None else {"no-catalogue"})
    assert set(mp) == {line for line in collected if line.startswith("tests/e2e/multi_primary/")}
    assert not set(mp) & set(_collected("-m", "replicated_control_planes"))


def _slow() -> set[str]:
    slow = {f"{FAULT_TEST}[{f.id}]" for f in FAULTS if f.needs_reinstall}
    if MP_CATALOGUE is not None:
        slow |= {f"{MP_FAULT_TEST}[{f.id}]" for f in MP_CATALOGUE.FAULTS if f.needs_reinstall}
    return slow


def test_reinstall_lane_holds_exactly_the_faults_that_reinstall_istio_and_runs_last(collected):
    slow = _slow()
    assert set(_collected("-m", "reinstall")) == slow
    fast = _collected("-m", "e2e and not reinstall")
    assert not slow & set(fast) and len(fast) == len(collected) - len(slow)
    assert set(collected[-len(slow):]) == slow


def _skips(tmp_path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    """Run the suite without Docker: every test case's skip reason by test id, and pytest's output."""
    junit = tmp_path / "junit.xml"
    res = _pytest(str(ROOT / "tests" / "e2e"), "-rs", f"--junitxml={junit}", f"--lab-artifacts={tmp_path / 'a'}",
                  *args, env={"DOCKER_HOST": UNREACHABLE, **(env or {})})
    assert res.returncode == 0, res.output
    reasons: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        assert case.find("error") is None and case.find("failure") is None, ET.tostring(case, encoding="unicode")
        skipped = case.find("skipped")
        assert skipped is not None, ET.tostring(case, encoding="unicode")
        reasons[f"{case.get('classname')}::{case.get('name')}"] = skipped.get("message")
    assert f"{len(reasons)} skipped" in res.stdout and "error" not in res.stdout.lower().split("short test summary")[0]
    return reasons, res.stdout


def _is_docker_reason(reason: str) -> bool:
    # what failed, as Docker (or the runner, without a docker binary) said it
    return reason.startswith("Docker is not reachable: `docker info` failed: ") and (
        UNREACHABLE.split("://")[1] in reason or "not installed or not on PATH" in reason)


def test_without_docker_the_whole_suite_is_skipped_for_one_precise_reason(tmp_path):
    # the scenario under test's tests (the default profile's: replicated-control-planes)
    reasons, _ = _skips(tmp_path, "-m", "replicated_control_planes")
    assert len(reasons) >= len(FAULTS) + 20
    assert len(set(reasons.values())) == 1, set(reasons.values())
    (reason,) = set(reasons.values())
    assert _is_docker_reason(reason), reason


def test_without_docker_the_other_scenarios_tests_say_which_scenario_is_under_test(tmp_path):
    reasons, _ = _skips(tmp_path)
    mine = {k: v for k, v in reasons.items() if not k.startswith("tests.e2e.multi_primary.")}
    other = {k: v for k, v in reasons.items() if k.startswith("tests.e2e.multi_primary.")}
    assert len(mine) == 41 and len(other) >= 5, reasons
    assert len(set(mine.values())) == 1 and _is_docker_reason(next(iter(mine.values())))
    assert set(other.values()) == {
        "a multi-primary-multi-network test; the scenario under test is replicated-control-planes (profile "
        "default): run with --lab-scenario multi-primary-multi-network (or -m replicated_control_planes to leave "
        "these out)"}


def test_the_scenario_under_test_comes_from_the_profile_or_the_environment(tmp_path):
    # the 1.7 scenario's profile named explicitly, through the environment: the same split as the default
    reasons, _ = _skips(tmp_path, env={"LAB_E2E_PROFILE": "writeup"})
    other = {v for k, v in reasons.items() if k.startswith("tests.e2e.multi_primary.")}
    assert other == {"a multi-primary-multi-network test; the scenario under test is replicated-control-planes "
                     "(profile writeup): run with --lab-scenario multi-primary-multi-network (or -m "
                     "replicated_control_planes to leave these out)"}


@pytest.mark.parametrize("args,env", [(("--lab-scenario", "no-such-scenario"), {}),
                                      ((), {"LAB_E2E_SCENARIO": "no-such-scenario"})], ids=["option", "environment"])
def test_an_unknown_scenario_is_refused_in_one_line_before_docker_is_tried(args, env):
    res = _pytest(str(ROOT / "tests" / "e2e"), "-q", *args, env={"DOCKER_HOST": UNREACHABLE, **env})
    assert res.returncode == 4, res.output  # pytest's usage-error exit code
    assert "e2e: unknown scenario 'no-such-scenario'; choose one of: " in res.output
    assert "replicated-control-planes" in res.output and "Docker is not reachable" not in res.output


def test_a_bad_lab_set_is_refused_in_one_line_before_docker_is_tried():
    res = _pytest(str(ROOT / "tests" / "e2e"), "-q", "--lab-set", "istio_version=1.8.0",
                  env={"DOCKER_HOST": UNREACHABLE})
    assert res.returncode == 4, res.output  # pytest's usage-error exit code
    assert "e2e: istio_version '1.8.0' is not a 1.7.x release" in res.output
    assert "Docker is not reachable" not in res.output
