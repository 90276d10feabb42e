"""Probe argv and parsing: the pure half of lab.probe."""

from __future__ import annotations

import shlex

import pytest

from lab.errors import CommandError, LabError
from lab.kube import Kubectl
from lab.probe import (
    EXIT_MARK,
    STATUS_MARK,
    Prober,
    curl_argv,
    envoy_admin,
    newest_running_pod,
    nslookup_argv,
    parse_curl,
    parse_nslookup,
)
from lab.shell import Result
from tests.support.pods import answer, pod, pod_list, rollout
from tests.support.recording import RecordingRunner

# The write-up's nslookup output from cluster1's sleep (busybox), through kube-dns.
WRITEUP_NSLOOKUP = """Server: 10.96.0.10
Address: 10.96.0.10:53

Name: httpbin.bar.global
Address: 240.0.0.2
"""


def test_curl_runs_under_sh_with_status_and_exit_trailers_and_no_ipv4_forcing():
    argv = curl_argv("httpbin.bar.global:8000/headers")
    assert argv[:2] == ["sh", "-c"]
    inner = shlex.split(argv[2].split(";")[0])
    assert inner[0] == "curl" and "-4" not in inner and inner[-1] == "httpbin.bar.global:8000/headers"
    assert inner[inner.index("-X"):inner.index("-X") + 2] == ["-X", "GET"]
    assert f'echo "{EXIT_MARK}$?"' in argv[2]


def test_head_request_uses_dash_I_like_the_writeup():
    inner = shlex.split(curl_argv("httpbin.bar.global:8000/headers", head=True)[2].split(";")[0])
    assert "-I" in inner and "-X" not in inner


def test_nslookup_argv_matches_the_writeup_command():
    assert nslookup_argv("httpbin.bar.global", "10.96.199.197") == [
        "nslookup", "-type=a", "httpbin.bar.global", "10.96.199.197"]


def test_parse_curl_splits_status_headers_body_and_exit():
    out = ("HTTP/1.1 200 OK\r\nserver: envoy\r\ncontent-type: application/json\r\n\r\n{\"headers\": {}}\n"
           f"{STATUS_MARK}200\n{EXIT_MARK}0\n")
    r = parse_curl(out)
    assert (r.status, r.exit_code, r.ok) == (200, 0, True)
    assert r.headers["server"] == "envoy"
    assert r.body.strip() == '{"headers": {}}'
    assert STATUS_MARK not in r.output and EXIT_MARK not in r.output


def test_parse_curl_no_response_has_no_status_and_keeps_curls_error():
    out = f"curl: (6) Could not resolve host: httpbin.bar.global\n\n{STATUS_MARK}000\n{EXIT_MARK}6\n"
    r = parse_curl(out, exit_code=0)
    assert (r.status, r.exit_code, r.ok) == (None, 6, False)
    assert "Could not resolve host" in r.output


def test_parse_curl_without_trailer_falls_back_to_process_exit_code():
    r = parse_curl("command terminated with exit code 137", exit_code=137)
    assert (r.status, r.exit_code) == (None, 137)


def test_parse_nslookup_reads_the_answer_not_the_server_address():
    assert parse_nslookup(WRITEUP_NSLOOKUP) == ["240.0.0.2"]
    nx = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n** server can't find httpbin.bar.global: NXDOMAIN\n"
    assert parse_nslookup(nx) == []


def test_prober_execs_in_the_sleep_container_with_explicit_context():
    runner = RecordingRunner(answers={
        ("kubectl", "--kubeconfig", "k", "--context", "kind-cluster1", "exec"):
            Result((), 0, f"HTTP/1.1 503 Service Unavailable\n\nno healthy upstream\n{STATUS_MARK}503\n{EXIT_MARK}0\n",
                   ""),
    })
    prober = Prober(Kubectl(runner, "k", "kind-cluster1"))
    r = prober.curl("foo", "sleep-1", "httpbin.bar.global:8000/headers")
    assert r.status == 503 and r.body.strip() == "no healthy upstream"
    call = runner.calls[-1]
    assert call[:8] == ("kubectl", "--kubeconfig", "k", "--context", "kind-cluster1", "exec", "-n", "foo")
    assert call[8:12] == ("sleep-1", "-c", "sleep", "--")


def test_newest_running_pod_skips_a_terminating_pod_that_is_still_running_and_a_pending_one():
    # after a rollout: the old pod (deletionTimestamp set, phase still Running, sidecar gone) is the newest Running
    # one by creation time once its replacement's replacement is still Pending
    lst = pod_list(pod("sleep-a", "2026-11-25T20:00:00Z"),
                   pod("sleep-b", "2026-11-25T20:10:00Z", deleting="2026-11-25T20:20:00Z"),
                   pod("sleep-c", "2026-11-25T20:15:00Z", phase="Pending"))
    assert newest_running_pod(lst) == "sleep-a"


def test_newest_running_pod_takes_the_latest_creation_time_not_the_list_order():
    lst = pod_list(pod("sleep-z", "2026-11-25T09:59:59Z"), pod("sleep-a", "2026-11-25T10:00:00Z"),
                   pod("sleep-m", "2026-11-24T23:00:00Z"))
    assert newest_running_pod(lst) == "sleep-a"


def test_newest_running_pod_orders_equal_creation_times_by_name_whatever_the_list_order():
    a, b = pod("sleep-a", "2026-11-25T10:00:00Z"), pod("sleep-b", "2026-11-25T10:00:00Z")
    assert newest_running_pod(pod_list(a, b)) == newest_running_pod(pod_list(b, a)) == "sleep-b"


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed", "Unknown"])
def test_newest_running_pod_is_none_when_no_pod_is_running(phase):
    assert newest_running_pod(pod_list(pod("sleep-a", "2026-11-25T10:00:00Z", phase=phase))) is None
    assert newest_running_pod(pod_list()) is None
    assert newest_running_pod({"items": None}) is None


def test_newest_running_pod_is_none_when_the_only_running_pod_is_being_deleted():
    lst = pod_list(pod("sleep-a", "2026-11-25T10:00:00Z", deleting="2026-11-25T10:05:00Z"))
    assert newest_running_pod(lst) is None


def test_prober_picks_the_newest_running_pod_not_one_being_replaced():
    base = ("kubectl", "--kubeconfig", "k", "--context", "kind-cluster1")
    runner = RecordingRunner(answers={base: answer(rollout("sleep-new"))})
    assert Prober(Kubectl(runner, "k", "kind-cluster1")).pod("foo", "app=sleep") == "sleep-new"
    assert runner.calls == [(*base, "get", "pods", "-n", "foo", "-l", "app=sleep", "-o", "json")]


def test_prober_pod_is_one_line_lab_error_when_only_a_terminating_pod_runs():
    lst = pod_list(pod("sleep-old", "2026-11-25T10:00:00Z", deleting="2026-11-25T10:05:00Z"))
    runner = RecordingRunner(answers={("kubectl",): answer(lst)})
    with pytest.raises(LabError) as err:
        Prober(Kubectl(runner, "k", "kind-cluster1")).pod("foo", "app=sleep")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("no running pod with app=sleep in foo on kind-cluster1; ")


def test_envoy_admin_gets_the_path_through_pilot_agent_in_the_istio_proxy_container():
    base = ("kubectl", "--kubeconfig", "k", "--context", "kind-cluster1")
    runner = RecordingRunner(answers={(*base, "exec"): Result((), 0, "cluster.x.ssl.fail_verify_error: 0\n", "")})
    out = envoy_admin(Kubectl(runner, "k", "kind-cluster1"), "foo", "sleep-1", "stats?filter=ssl.fail_verify_error")
    assert out == "cluster.x.ssl.fail_verify_error: 0\n"
    assert runner.calls == [(*base, "exec", "-n", "foo", "sleep-1", "-c", "istio-proxy", "--",
                             "pilot-agent", "request", "GET", "stats?filter=ssl.fail_verify_error")]


def test_envoy_admin_failure_is_a_command_error_not_an_empty_answer():
    runner = RecordingRunner(answers={("kubectl",): Result((), 1, "", "container istio-proxy not found")})
    with pytest.raises(CommandError):
        envoy_admin(Kubectl(runner, "k", "kind-cluster1"), "foo", "sleep-1", "config_dump")


def test_prober_config_dump_reads_the_newest_pods_dump_through_envoy_admin():
    base = ("kubectl", "--kubeconfig", "k", "--context", "kind-cluster2")
    runner = RecordingRunner(answers={(*base, "get", "pods"): answer(rollout("gw-1")),
                                      (*base, "exec"): Result((), 0, '{"configs": []}', "")})
    assert Prober(Kubectl(runner, "k", "kind-cluster2")).config_dump("istio-system", "istio=ingressgateway") == {
        "configs": []}
    assert runner.calls[-1][5:] == ("exec", "-n", "istio-system", "gw-1", "-c", "istio-proxy", "--",
                                    "pilot-agent", "request", "GET", "config_dump")


def test_parse_curl_reads_the_response_as_the_classifier_does_when_curls_verbose_lines_are_mixed_in():
    """stdout and stderr together (`kubectl exec` without a tty merges them): one parser, lab.probe.parse_http, keeps
    curl's own lines out of the body for the probe and for lab.classify alike."""
    from lab.classify import classify

    out = ("*   Trying 10.255.20.10:8000...\n> GET /headers HTTP/1.1\n> Host: httpbin.bar.global:8000\n>\n"
           "< HTTP/1.1 100 Continue\n<\n< HTTP/1.1 200 OK\n< server: envoy\n<\n"
           "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nserver: envoy\r\ncontent-type: application/json\r\n\r\n"
           '{"headers": {}}\n* Connection #0 to host httpbin.bar.global left intact\n'
           f"{STATUS_MARK}200\n{EXIT_MARK}0\n")
    r = parse_curl(out)
    assert (r.status, r.exit_code) == (200, 0)
    assert r.headers == {"server": "envoy", "content-type": "application/json"}
    assert r.body == '{"headers": {}}'
    assert classify(out).cls == "ok"
