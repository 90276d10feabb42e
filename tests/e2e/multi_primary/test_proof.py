"""Issue 11's proof on a multi-primary-multi-network lab (Istio 1.30): curl in cluster1's `sample` reaches httpbin,
which runs only in cluster2, with mutual TLS end to end, through cluster2's east-west gateway, by a name that only
the sidecar's DNS proxy knows in cluster1.

Each claim is read where it is decided:
- the call: curl's own status line (200) and httpbin's JSON answer;
- the identity: the X-Forwarded-Client-Cert header httpbin received. The sidecar's inbound HTTP connection manager
  forwards the client certificate's details with APPEND_FORWARD and sets Subject, URI and DNS
  (pilot/pkg/networking/core/listener_inbound.go@1.30.3:816-830; listener_test.go:1114-1117 checks APPEND_FORWARD),
  Envoy writes it as `By=<server URI>;Hash=...;Subject="";URI=<client URI>` (envoyproxy/envoy
  docs/root/configuration/http/http_conn_man/headers.rst, x-forwarded-client-cert), and the east-west gateway passes
  TLS through (AUTO_PASSTHROUGH), so httpbin's sidecar is the only proxy that adds an element;
- the path: the client sidecar's own cluster `outbound|8000||httpbin.sample.svc.cluster.local` in Envoy's admin
  (`/clusters?format=json`, through lab.cluster's envoy_admin): its endpoints are the east-west gateway Service's
  addresses on 15443 (istiod makes a network's gateway of the Service's LoadBalancer ingress and externalIPs,
  pilot/pkg/serviceregistry/kube/conversion.go@1.30.3:130-157, network.go:270-305), never a pod IP of httpbin;
- the name: nslookup from curl answers cluster2's ClusterIP of httpbin (the DNS proxy's table holds a remote
  service under the remote cluster's address, pilot/pkg/model/service.go@1.30.3:1934-1973), while the same lookup
  and the same curl from a pod of the same image without a sidecar (annotation sidecar.istio.io/inject "false",
  pkg/kube/inject/inject.go@1.30.3:223-231) find nothing: kube-dns in cluster1 has no such Service.
"""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from lab.cluster import ClusterHandle, api_error
from lab.errors import NotFoundError
from lab.retry import NotYet, poll
from lab.scenarios.multi_primary_multi_network.names import (
    APP_NS,
    CLIENT_APP,
    EASTWEST_GATEWAY,
    EASTWEST_TLS_PORT,
    ISTIO_NS,
    SERVER_APP,
    SERVER_HOST,
    SERVER_PORT,
)
from lab.settings import TIMEOUTS
from tests.e2e.helpers import (
    NO_SIDECAR_NAME,
    cluster_endpoints,
    cluster_names,
    gateway_addresses,
    header_values,
    parse_xfcc,
    pod_containers,
    sidecarless_pod,
    spiffe_id,
)

pytestmark = [pytest.mark.e2e, pytest.mark.multi_primary_multi_network]

BASE = f"http://{SERVER_HOST}:{SERVER_PORT}"
OUTBOUND = f"outbound|{SERVER_PORT}||{SERVER_HOST}"
# samples/curl/curl.yaml and samples/httpbin/httpbin.yaml@1.30.3: each Deployment runs as its own ServiceAccount
CLIENT_ID = spiffe_id(APP_NS, CLIENT_APP)  # spiffe://cluster.local/ns/sample/sa/curl
SERVER_ID = spiffe_id(APP_NS, SERVER_APP)  # spiffe://cluster.local/ns/sample/sa/httpbin
CURL_COULDNT_RESOLVE_HOST = 6  # curl's exit code (libcurl-errors: CURLE_COULDNT_RESOLVE_HOST)


def _headers(lab) -> tuple[object, dict]:
    res = lab.call(lab.profile.client, APP_NS, BASE + "/headers")
    assert res.status == 200 and res.exit_code == 0, (
        f"curl {BASE}/headers from {lab.profile.client.name}/{APP_NS}/{CLIENT_APP}: expected 200, got {res.status} "
        f"(curl exit {res.exit_code}): {res.output[-400:]}")
    return res, json.loads(res.body)["headers"]


def test_curl_in_cluster1_gets_200_from_httpbin_that_runs_only_in_cluster2(lab):
    client, server = lab.cluster(lab.profile.client), lab.cluster(lab.profile.server)
    assert client.pods(APP_NS, f"app={SERVER_APP}") == [], f"httpbin must run only in {lab.profile.server.name}"
    server.running_pod(APP_NS, f"app={SERVER_APP}", ready=True)
    res, headers = _headers(lab)
    assert res.headers.get("content-type", "").startswith("application/json"), res.headers
    assert any(v.startswith("curl/") for v in header_values(headers, "User-Agent")), headers


def test_httpbin_receives_curls_spiffe_identity_in_x_forwarded_client_cert(lab):
    _, headers = _headers(lab)
    values = header_values(headers, "X-Forwarded-Client-Cert")
    assert len(values) == 1, f"httpbin got {len(values)} X-Forwarded-Client-Cert headers: {headers}"
    elements = parse_xfcc(values[0])
    # one element: httpbin's sidecar's (curl sent none, the east-west gateway does not terminate TLS)
    assert len(elements) == 1, f"expected only httpbin's sidecar to add an element: {values[0]!r}"
    (xfcc,) = elements
    assert xfcc.get("URI") == [CLIENT_ID], f"httpbin did not see {CLIENT_ID} as the client: {values[0]!r}"
    assert xfcc.get("BY") == [SERVER_ID], f"the element is not httpbin's sidecar's ({SERVER_ID}): {values[0]!r}"
    assert xfcc.get("HASH") and len(xfcc["HASH"][0]) == 64, values[0]  # the client certificate's SHA-256, hex


def test_cluster1s_curl_sends_httpbin_to_cluster2s_eastwest_gateway_on_15443_not_to_a_pod_ip(lab):
    server = lab.cluster(lab.profile.server)
    gateways = gateway_addresses(server.service(ISTIO_NS, EASTWEST_GATEWAY))
    assert gateways, (f"{lab.profile.server.name}'s {EASTWEST_GATEWAY} Service has no address (EXTERNAL-IP "
                      "<pending>): is MetalLB running, or the externalIPs fallback set?")
    clusters = json.loads(lab.envoy_admin(lab.profile.client, APP_NS, f"app={CLIENT_APP}", "clusters?format=json"))
    endpoints = cluster_endpoints(clusters, OUTBOUND)
    assert endpoints is not None, (f"no cluster {OUTBOUND} in cluster1's curl sidecar: "
                                   f"{[n for n in cluster_names(clusters) if SERVER_APP in n]}")
    assert sorted(endpoints) == sorted((a, EASTWEST_TLS_PORT) for a in gateways), (
        f"{OUTBOUND}: endpoints {endpoints}, expected the east-west gateway {gateways} on {EASTWEST_TLS_PORT}")
    pod_ips = {p.status.pod_ip for p in server.pods(APP_NS, f"app={SERVER_APP}") if p.status and p.status.pod_ip}
    assert pod_ips and not pod_ips & {a for a, _ in endpoints}, (endpoints, pod_ips)


# --- the name, with and without the DNS proxy ----------------------------------------------------------------------
def _create_pod(h: ClusterHandle, body: dict) -> None:
    """Create the pod (over handle.core: ClusterHandle has no pod writes); one left by an earlier run is replaced."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    _delete_pod(h, ns, name)
    try:
        h.core.create_namespaced_pod(ns, body, _request_timeout=h.request_timeout)
    except ApiException as err:
        raise api_error(err, f"create pod {ns}/{name} on {h.context}") from None


def _delete_pod(h: ClusterHandle, namespace: str, name: str) -> None:
    """Delete the suite's own pod and wait until it is gone (it has no grace period)."""
    try:
        h.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, _request_timeout=h.request_timeout)
    except ApiException as err:
        if err.status == 404:
            return
        raise api_error(err, f"delete pod {namespace}/{name} on {h.context}") from None

    def gone() -> None:
        try:
            h.pod(namespace, name)
        except NotFoundError:
            return
        raise NotYet(f"pod {namespace}/{name} is still there")

    poll(gone, timeout=TIMEOUTS.rollout, what=f"pod {namespace}/{name} deleted on {h.context}")


@pytest.fixture()
def sidecarless(lab):
    """A pod of curl's image in cluster1's `sample` that the injector leaves alone; deleted afterwards."""
    h = lab.cluster(lab.profile.client)
    image = lab.profile.image_refs()["curl"]  # the profile's pin of samples/curl's image
    _create_pod(h, sidecarless_pod(APP_NS, image, CLIENT_APP))

    def running() -> str:
        pod = h.pod(APP_NS, NO_SIDECAR_NAME)
        phase = pod.status.phase if pod.status else None
        if phase != "Running":
            raise NotYet(f"pod {APP_NS}/{NO_SIDECAR_NAME} is {phase}")
        return str(pod.metadata.name)

    name = poll(running, timeout=TIMEOUTS.rollout, what=f"pod {APP_NS}/{NO_SIDECAR_NAME} running on {h.context}")
    try:
        assert pod_containers(h.pod(APP_NS, name)) == [CLIENT_APP], "the injector added a sidecar after all"
        yield name
    finally:
        _delete_pod(h, APP_NS, name)


def test_the_name_resolves_in_cluster1_only_through_the_sidecars_dns_proxy(lab, sidecarless):
    client = lab.profile.client
    remote_ip = lab.cluster(lab.profile.server).cluster_ip(APP_NS, SERVER_APP)
    assert remote_ip, f"httpbin has no ClusterIP in {lab.profile.server.name}"
    proxied = lab.nslookup(client, APP_NS, lab.sleep_pod(client, APP_NS), SERVER_HOST)
    assert proxied.addresses == [remote_ip], (
        f"nslookup {SERVER_HOST} from {client.name}/{APP_NS}/{CLIENT_APP} (DNS proxy): expected cluster2's ClusterIP "
        f"{remote_ip}, got {proxied.addresses}: {proxied.output[-400:]}")
    plain = lab.nslookup(client, APP_NS, sidecarless, SERVER_HOST)
    assert plain.addresses == [], (
        f"nslookup {SERVER_HOST} from a pod without a sidecar answered {plain.addresses}: cluster1's kube-dns should "
        f"not know the name: {plain.output[-400:]}")
    res = lab.call_in(client, APP_NS, sidecarless, CLIENT_APP, BASE + "/headers")
    assert res.exit_code == CURL_COULDNT_RESOLVE_HOST and res.status is None, (
        f"curl from a pod without a sidecar: expected exit {CURL_COULDNT_RESOLVE_HOST} (could not resolve host), "
        f"got exit {res.exit_code}, status {res.status}: {res.output[-400:]}")
