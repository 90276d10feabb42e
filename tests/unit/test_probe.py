"""Probe argv and parsing: the pure half of lab.probe."""

from __future__ import annotations

import shlex

import pytest

from lab.errors import LabError
from lab.probe import (
    EXIT_MARK,
    STATUS_MARK,
    Prober,
    curl_argv,
    envoy_admin,
    nslookup_argv,
    parse_curl,
    parse_nslookup,
)

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


# --- the same probes through the lab's one handle (lab.cluster.ClusterHandle) against a fake API server ------------
@pytest.fixture
def handle(tmp_path):
    from lab.cluster import ClusterHandle
    from tests.support.fake_apiserver import running

    with running() as server:
        h = ClusterHandle("cluster1", server.kubeconfig(tmp_path / "kubeconfig", context="kind-cluster1"),
                          "kind-cluster1", request_timeout=10)
        h.fake = server
        yield h
        h.close()


def _execs(server):
    return [r for r in server.requests if r.path.endswith("/exec")]


def test_prober_on_the_handle_execs_in_the_sleep_container_of_the_named_pod(handle):
    from tests.support.fake_apiserver import ExecScript

    handle.fake.exec_scripts.append(ExecScript(
        stdout=f"HTTP/1.1 503 Service Unavailable\n\nno healthy upstream\n{STATUS_MARK}503\n{EXIT_MARK}0\n",
        stderr="* Connected to httpbin.bar.global\n"))
    r = Prober(handle).curl("foo", "sleep-1", "httpbin.bar.global:8000/headers")
    assert r.status == 503 and r.body.strip() == "no healthy upstream"
    assert "* Connected to httpbin.bar.global" in r.output  # curl's -v lines (stderr) reach the classifier
    (req,) = _execs(handle.fake)
    assert req.path == "/api/v1/namespaces/foo/pods/sleep-1/exec" and req.query["container"] == ["sleep"]
    assert req.query["command"][:2] == ["sh", "-c"] and "httpbin.bar.global:8000/headers" in req.query["command"][2]


def test_prober_on_the_handle_picks_the_newest_running_pod_not_one_being_replaced(handle):
    from tests.support.apilab import rollout

    rollout(handle.fake, "sleep-new", "foo", {"app": "sleep"})
    assert Prober(handle).pod("foo", "app=sleep") == "sleep-new"
    (req,) = handle.fake.requests
    assert req.path == "/api/v1/namespaces/foo/pods" and req.query["labelSelector"] == ["app=sleep"]


def test_prober_on_the_handle_pod_is_one_line_lab_error_when_only_a_terminating_pod_runs(handle):
    from tests.support.apilab import CORE
    from tests.support.apilab import pod as api_pod

    handle.fake.put(CORE, "pods", api_pod("sleep-old", "foo", {"app": "sleep"}, deleting="2026-11-25T10:05:00Z"))
    with pytest.raises(LabError) as err:
        Prober(handle).pod("foo", "app=sleep")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("no running pod with app=sleep in foo on kind-cluster1; ")


def test_prober_on_the_handle_nslookup_reads_the_answer_and_the_exit_code(handle):
    from tests.support.fake_apiserver import ExecScript, exit_code_status

    handle.fake.exec_scripts.append(ExecScript(stdout=WRITEUP_NSLOOKUP))
    handle.fake.exec_scripts.append(ExecScript(stdout="Server: 10.96.0.10\n", stderr="** server can't find it\n",
                                               status=exit_code_status(1)))
    ok = Prober(handle).nslookup("foo", "sleep-1", "httpbin.bar.global", "10.96.0.10")
    assert ok.addresses == parse_nslookup(WRITEUP_NSLOOKUP) and ok.exit_code == 0
    failed = Prober(handle).nslookup("foo", "sleep-1", "httpbin.bar.global")
    assert failed.addresses == [] and failed.exit_code == 1 and "can't find" in failed.output
    assert [r.query["command"] for r in _execs(handle.fake)] == [
        nslookup_argv("httpbin.bar.global", "10.96.0.10"), nslookup_argv("httpbin.bar.global")]


def test_envoy_admin_on_the_handle_gets_the_path_through_pilot_agent_in_the_istio_proxy_container(handle):
    from tests.support.fake_apiserver import ExecScript

    handle.fake.exec_scripts.append(ExecScript(stdout="cluster.x.ssl.fail_verify_error: 0\n"))
    out = envoy_admin(handle, "foo", "sleep-1", "stats?filter=ssl.fail_verify_error")
    assert out == "cluster.x.ssl.fail_verify_error: 0\n"
    (req,) = _execs(handle.fake)
    assert req.path == "/api/v1/namespaces/foo/pods/sleep-1/exec" and req.query["container"] == ["istio-proxy"]
    assert req.query["command"] == ["pilot-agent", "request", "GET", "stats?filter=ssl.fail_verify_error"]


def test_envoy_admin_on_the_handle_failure_is_an_api_error_not_an_empty_answer(handle):
    from lab.errors import ApiError
    from tests.support.fake_apiserver import ExecScript, exit_code_status

    handle.fake.exec_scripts.append(ExecScript(stderr="container istio-proxy not ready\n",
                                               status=exit_code_status(1)))
    with pytest.raises(ApiError, match="pilot-agent exited 1"):
        envoy_admin(handle, "foo", "sleep-1", "config_dump")


def test_prober_on_the_handle_config_dump_reads_the_newest_pods_dump_through_envoy_admin(handle):
    from tests.support.apilab import rollout
    from tests.support.fake_apiserver import ExecScript

    rollout(handle.fake, "gw-1", "istio-system", {"istio": "ingressgateway"})
    handle.fake.exec_scripts.append(ExecScript(stdout='{"configs": []}'))
    assert Prober(handle).config_dump("istio-system", "istio=ingressgateway") == {"configs": []}
    (req,) = _execs(handle.fake)
    assert req.path == "/api/v1/namespaces/istio-system/pods/gw-1/exec"
    assert req.query["command"] == ["pilot-agent", "request", "GET", "config_dump"]
