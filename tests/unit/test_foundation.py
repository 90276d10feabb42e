"""The plumbing: one runner, one error family, deadline polling."""

from __future__ import annotations

import sys

import pytest

from lab.errors import CommandError, NotReadyError
from lab.retry import NotYet, poll
from lab.shell import Result, Runner
from tests.support.recording import RecordingRunner


def test_failed_command_error_carries_command_exit_code_and_output_tail():
    with pytest.raises(CommandError) as info:
        Runner().run([sys.executable, "-c", "import sys; print('a\\nb\\nc\\nd'); sys.exit(3)"], context="probe")
    err = info.value
    assert err.returncode == 3
    assert "probe:" in str(err) and "exited 3" in str(err) and "b | c | d" in str(err)
    assert "a |" not in str(err)


def test_runner_redacts_secrets_from_errors():
    with pytest.raises(CommandError) as info:
        Runner(redact=["s3cr3t"]).run([sys.executable, "-c", "print('key=s3cr3t'); raise SystemExit(1)"])
    assert "s3cr3t" not in str(info.value) and "[redacted]" in str(info.value)


def test_missing_binary_is_one_clear_line():
    with pytest.raises(Exception) as info:
        Runner().run(["definitely-not-a-tool-xyz"], context="preflight")
    assert "definitely-not-a-tool-xyz is not installed" in str(info.value)


def test_recording_runner_answers_longest_prefix():
    r = RecordingRunner(answers={("kubectl",): Result((), 0, "short", ""),
                                 ("kubectl", "get"): Result((), 0, "long", "")})
    assert r.run(["kubectl", "get", "pods"]).stdout == "long"
    assert r.run(["kubectl", "apply"]).stdout == "short"
    assert r.calls == [("kubectl", "get", "pods"), ("kubectl", "apply")]


def test_poll_returns_once_condition_holds():
    seen = iter([NotYet("no"), NotYet("still no"), 42])

    def fn():
        v = next(seen)
        if isinstance(v, Exception):
            raise v
        return v

    assert poll(fn, timeout=5, interval=0, what="x", sleep=lambda s: None) == 42


def test_poll_deadline_names_what_and_last_reason():
    def fn():
        raise NotYet("dns answers NXDOMAIN")

    with pytest.raises(NotReadyError, match=r"httpbin resolves: not reached within 0s .*NXDOMAIN"):
        poll(fn, timeout=0, interval=0, what="httpbin resolves", sleep=lambda s: None)


def test_poll_stable_needs_same_answer_in_a_row():
    answers = iter(["a", "b", "b", "b"])
    assert poll(lambda: next(answers), timeout=5, interval=0, what="x", stable=3, sleep=lambda s: None) == "b"



def test_poll_stable_row_is_broken_by_an_attempt_that_says_not_yet():
    # "b", "b", not yet, "b", "b": no three in a row until the fifth "b"
    def answers():
        yield from ("b", "b")
        yield NotYet("in between")
        yield from ("b", "b", "b")

    it = answers()
    calls: list[object] = []

    def fn():
        value = next(it)
        calls.append(value)
        if isinstance(value, NotYet):
            raise value
        return value

    assert poll(fn, timeout=5, interval=0, what="x", stable=3, sleep=lambda s: None) == "b"
    assert len(calls) == 6


def test_the_write_ups_lookups_run_its_jsonpaths_on_the_named_cluster():
    # docs/sources.md#istio-recipes-lookups: the same objects and jsonpaths, on an explicit context.
    from lab.kube import Kubectl
    from lab.scenarios.replicated_control_planes import names

    runner = RecordingRunner()
    k = Kubectl(runner, "/lab/kubeconfig/cluster2", "kind-cluster2")
    for q in (names.ISTIOCOREDNS_IP, names.GATEWAY_NODE_IP, names.GATEWAY_NODEPORT):
        k.query(q)
    base = ("kubectl", "--kubeconfig", "/lab/kubeconfig/cluster2", "--context", "kind-cluster2", "get")
    assert runner.calls == [
        (*base, "-n", "istio-system", "service", "istiocoredns", "-o", "jsonpath={.spec.clusterIP}"),
        (*base, "-n", "istio-system", "pod", "-l", "istio=ingressgateway", "-o", "jsonpath={.items[0].status.hostIP}"),
        (*base, "-n", "istio-system", "service", "istio-ingressgateway", "-o",
         "jsonpath={.spec.ports[?(@.port==15443)].nodePort}"),
    ]
