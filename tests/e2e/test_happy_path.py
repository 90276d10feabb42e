"""The write-up's proof, widened: sleep calls httpbin.bar.global:8000 and gets httpbin's real answer, over mutual
TLS end to end, from cluster1 (through cluster2's gateway on 15443) and from cluster2 itself (the write-up's
second check, through cluster2's own ServiceEntry)."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

import pytest

from tests.e2e.session import CLIENT_NS, SERVER_NS

pytestmark = [pytest.mark.e2e, pytest.mark.replicated_control_planes]

BASE = "http://httpbin.bar.global:8000"
JSON_BODY = '{"lab": "e2e"}'

# (method, path, curl extras, the key httpbin echoes back and what it must hold)
CALLS = [
    pytest.param("GET", "/headers", (), id="GET-headers"),
    pytest.param("GET", "/get?lab=e2e", (), id="GET-get-with-args"),
    pytest.param("POST", "/post", ("-H", "Content-Type: application/json", "--data", JSON_BODY), id="POST-post-json"),
    pytest.param("PUT", "/put", ("-H", "Content-Type: application/json", "--data", JSON_BODY), id="PUT-put-json"),
    pytest.param("DELETE", "/delete", (), id="DELETE-delete"),
    pytest.param("GET", "/ip", (), id="GET-ip"),
    pytest.param("GET", "/user-agent", (), id="GET-user-agent"),
]

# Sidecar inbound connection manager: ForwardClientCertDetails APPEND_FORWARD with Subject, Uri, Dns
# (docs/sources.md#client-identity-xfcc).
CALLERS = [
    pytest.param("client", CLIENT_NS, "spiffe://cluster.local/ns/foo/sa/sleep", id="from-cluster1-foo-sleep"),
    pytest.param("server", SERVER_NS, "spiffe://cluster.local/ns/bar/sa/sleep", id="from-cluster2-bar-sleep"),
]


def _cluster(profile, role: str):
    return profile.client if role == "client" else profile.server


def _describe(role, ns, method, path, res) -> str:
    return (f"call from {role}/{ns}/sleep to {BASE}{path} ({method}): expected 200, got {res.status} "
            f"(curl exit {res.exit_code}): {res.output[-400:]}")


def _xfcc(headers: dict) -> str:
    return next((v for k, v in headers.items() if k.lower() == "x-forwarded-client-cert"), "")


@pytest.mark.parametrize("role,namespace,identity", CALLERS)
@pytest.mark.parametrize("method,path,extra", CALLS)
def test_call_returns_httpbins_own_answer_over_mutual_tls(lab, role, namespace, identity, method, path, extra):
    res = lab.call(_cluster(lab.profile, role), namespace, BASE + path, method=method, extra=extra)
    assert res.status == 200 and res.exit_code == 0, _describe(role, namespace, method, path, res)
    assert res.headers.get("content-type", "").startswith("application/json"), res.headers
    body = json.loads(res.body)
    endpoint = path.split("?")[0]
    if endpoint == "/ip":
        for origin in body["origin"].split(","):
            ipaddress.ip_address(origin.strip())
        return
    if endpoint == "/user-agent":
        assert body["user-agent"].startswith("curl/"), body
        return
    headers = body["headers"]
    assert headers["Host"] == "httpbin.bar.global:8000", headers
    xfcc = _xfcc(headers)
    assert f"URI={identity}" in xfcc, f"httpbin did not see {identity} as the client: {xfcc!r}"
    assert "By=spiffe://cluster.local/ns/bar/sa/httpbin" in xfcc, xfcc
    if endpoint == "/get":
        assert body["args"] == {"lab": "e2e"}
    if method in ("POST", "PUT"):
        assert body["json"] == json.loads(JSON_BODY)
    if endpoint != "/headers":
        # httpbin's get_url: the request URL (its scheme may follow X-Forwarded-Proto): path and query are ours
        url = urlsplit(body["url"])
        assert (url.path, url.query) == (endpoint, path.partition("?")[2]), body["url"]


@pytest.mark.parametrize("role,namespace,identity", CALLERS)
def test_status_418_is_httpbins_teapot_not_an_envoy_reply(lab, role, namespace, identity):
    res = lab.call(_cluster(lab.profile, role), namespace, BASE + "/status/418")
    # httpbin's helpers.ASCII_ART; Envoy never produces a 418 of its own.
    assert res.status == 418 and "-=[ teapot ]=-" in res.body, res.output[-400:]


def test_response_comes_through_envoy_like_the_writeups(lab):
    res = lab.call(lab.profile.client, CLIENT_NS, BASE + "/headers")
    assert res.status == 200
    # The write-up's `curl -I` output: `server: envoy` and `x-envoy-upstream-service-time`.
    assert res.headers.get("server") == "envoy" and "x-envoy-upstream-service-time" in res.headers, res.headers
