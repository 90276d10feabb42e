"""DNS as the write-up checks it: from sleep, `nslookup -type=a httpbin.bar.global` through istiocoredns and through
kube-dns both answer the cluster's VIP, and istiocoredns' plugin logs the mapping."""

from __future__ import annotations

import pytest

from lab.scenarios.replicated_control_planes.names import ISTIO_NS, ISTIOCOREDNS_IP, KUBE_DNS_IP, REMOTE_HOST
from tests.e2e.session import CLIENT_NS, SERVER_NS

pytestmark = [pytest.mark.e2e, pytest.mark.replicated_control_planes]

# Both clusters have a ServiceEntry for the name (cluster2's is the write-up's fix), each with its own VIP.
CLUSTERS = [pytest.param("client", CLIENT_NS, id="cluster1"), pytest.param("server", SERVER_NS, id="cluster2")]

# The write-up's two servers: istiocoredns' Service and kube-dns' Service (docs/sources.md#istio-recipes-lookups).
SERVERS = [pytest.param(ISTIOCOREDNS_IP, id="via-istiocoredns"), pytest.param(KUBE_DNS_IP, id="via-kube-dns")]


def _cluster(profile, role):
    return profile.client if role == "client" else profile.server


@pytest.mark.parametrize("role,namespace", CLUSTERS)
@pytest.mark.parametrize("query", SERVERS)
def test_nslookup_type_a_answers_the_clusters_vip(lab, role, namespace, query):
    cluster = _cluster(lab.profile, role)
    k = lab.kubectl[cluster.name]
    server = k.query(query)
    svc = query.what
    assert server, f"no {query.what} on {cluster.name}"
    res = lab.nslookup(cluster, namespace, lab.sleep_pod(cluster, namespace), REMOTE_HOST, server)
    assert res.addresses == [cluster.vip], (
        f"nslookup -type=a {REMOTE_HOST} {server} ({svc}) from {cluster.name}/{namespace}/sleep: expected "
        f"[{cluster.vip}], got {res.addresses}: {res.output[-400:]}")


@pytest.mark.parametrize("role", ["client", "server"], ids=["cluster1", "cluster2"])
def test_istiocoredns_plugin_logs_the_mapping(lab, role):
    cluster = _cluster(lab.profile, role)
    # Read as a person reads it, with `kubectl logs` (lab.kubectl). plugin.go (istio-ecosystem/istio-coredns-plugin)
    # re-reads ServiceEntries every 5 s and logs "adding DNS mapping: <host>.->[<ips>]" each time, so the last lines
    # hold the current mapping.
    log = lab.kubectl[cluster.name].run("logs", "-n", ISTIO_NS, "deployment/istiocoredns",
                                        "-c", "istio-coredns-plugin", "--tail=200").stdout
    wanted = f"adding DNS mapping: {REMOTE_HOST}.->[{cluster.vip}]"
    assert wanted in log, f"{cluster.name}: no {wanted!r} in the istio-coredns-plugin log (last lines: {log[-600:]})"
