"""The kubectl reader of the kube-system/coredns ConfigMap (lab.kube.read_coredns), which `lab up`'s CoreDNS patch
runs as the plan shows it; the faults, the doctor and `lab status` read the same ConfigMap (COREDNS_CONFIGMAP)
through lab.cluster.ClusterHandle.coredns (test_cluster.py)."""

from __future__ import annotations

import json

import pytest

from lab.errors import CommandError
from lab.kube import Kubectl, corefile_of, read_coredns
from lab.shell import Result
from tests.support.recording import RecordingRunner

BASE = ("kubectl", "--kubeconfig", "k", "--context", "kind-cluster1")
LIVE = {"metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": ".:53 {\n}\n", "x": "y"}}


def test_read_coredns_gets_the_kube_system_configmap_as_json_and_names_the_step_on_failure():
    runner = RecordingRunner(answers={BASE: Result((), 0, json.dumps(LIVE), "")})
    assert read_coredns(Kubectl(runner, "k", "kind-cluster1")) == LIVE
    assert runner.calls == [(*BASE, "get", "configmap", "coredns", "-n", "kube-system", "-o", "json")]

    missing = RecordingRunner(answers={BASE: Result((), 1, "", 'configmaps "coredns" not found')})
    with pytest.raises(CommandError) as err:
        read_coredns(Kubectl(missing, "k", "kind-cluster1"), context="cluster1/coredns-global")
    assert err.value.context == "cluster1/coredns-global"


def test_corefile_of_reads_data_corefile_and_is_empty_without_one():
    assert corefile_of(LIVE) == ".:53 {\n}\n"
    assert corefile_of({"metadata": {}}) == ""
    assert corefile_of({"data": None}) == ""
