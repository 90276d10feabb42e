"""What can be checked of the e2e suite without Docker: it collects every test the issue asks for (fault tests by
their catalogue ids, the reinstall lane selectable by marker), and without a Docker daemon `pytest tests/e2e`
exits 0 with every test skipped for one precise reason and nothing errored."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.scenarios.replicated_control_planes.faults import FAULTS
from lab.shell import Runner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAULT_TEST = "tests/e2e/test_faults.py::test_fault_shows_its_documented_symptom_then_heals"
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


def test_reinstall_lane_holds_exactly_the_faults_that_reinstall_istio_and_runs_last(collected):
    slow = {f"{FAULT_TEST}[{f.id}]" for f in FAULTS if f.needs_reinstall}
    assert set(_collected("-m", "reinstall")) == slow
    fast = _collected("-m", "e2e and not reinstall")
    assert not slow & set(fast) and len(fast) == len(collected) - len(slow)
    assert set(collected[-len(slow):]) == slow


def test_without_docker_the_whole_suite_is_skipped_for_one_precise_reason(tmp_path):
    junit = tmp_path / "junit.xml"
    res = _pytest(str(ROOT / "tests" / "e2e"), "-rs", f"--junitxml={junit}", f"--lab-artifacts={tmp_path / 'a'}",
                  env={"DOCKER_HOST": UNREACHABLE})
    assert res.returncode == 0, res.output
    cases = ET.parse(junit).getroot().iter("testcase")
    reasons = set()
    count = 0
    for case in cases:
        count += 1
        assert case.find("error") is None and case.find("failure") is None, ET.tostring(case, encoding="unicode")
        skipped = case.find("skipped")
        assert skipped is not None, ET.tostring(case, encoding="unicode")
        reasons.add(skipped.get("message"))
    assert count >= len(FAULTS) + 20
    assert len(reasons) == 1, reasons
    (reason,) = reasons
    assert reason.startswith("Docker is not reachable: `docker info` failed: "), reason
    # what failed, as Docker (or the runner, without a docker binary) said it
    assert UNREACHABLE.split("://")[1] in reason or "not installed or not on PATH" in reason, reason
    assert f"{count} skipped" in res.stdout and "error" not in res.stdout.lower().split("short test summary")[0]


def test_a_bad_lab_set_is_refused_in_one_line_before_docker_is_tried():
    res = _pytest(str(ROOT / "tests" / "e2e"), "-q", "--lab-set", "istio_version=1.8.0",
                  env={"DOCKER_HOST": UNREACHABLE})
    assert res.returncode == 4, res.output  # pytest's usage-error exit code
    assert "e2e: istio_version '1.8.0' is not a 1.7.x release" in res.output
    assert "Docker is not reachable" not in res.output
