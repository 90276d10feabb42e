"""The lab's certificates on the real cross-cluster hop: two real Envoys doing Istio-style mutual TLS.

sleep's sidecar (cluster1) calls httpbin's sidecar (cluster2), each with a workload certificate issued under its own
cluster's intermediate the way istiod would. This is what happens between the two sidecars when the passthrough
gateway on 15443 forwards the TLS stream unopened; if these certificates do not work here, they cannot work in
the lab. The failing cases show the symptom of each way the material can be wrong.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from lab import certs
from lab.retry import NotYet, poll
from lab.scenario import load_profile
from tests.support import mtls_envoys
from tests.support.envoy import free_port, run_envoy
from tests.support.workload_certs import issue

pytestmark = pytest.mark.integration

SLEEP_ID = "spiffe://cluster.local/ns/foo/sa/sleep"
HTTPBIN_ID = "spiffe://cluster.local/ns/bar/sa/httpbin"
SAMPLES = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"
CLIENT_SSL = f"cluster.{mtls_envoys.OUTBOUND_CLUSTER}.ssl."
SERVER_SSL = f"listener.{mtls_envoys.INBOUND_STAT_PREFIX}.ssl."

PROFILE = load_profile()
CLIENT, SERVER = PROFILE.client.name, PROFILE.server.name


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """Both clusters' material from one `generate` run: one root, one intermediate each."""
    out = tmp_path_factory.mktemp("shared") / "certs"
    certs.generate(out, [CLIENT, SERVER])
    return out


@pytest.fixture(scope="module")
def other_root(tmp_path_factory) -> Path:
    """The server cluster's material from a separate run: another root with the very same names."""
    out = tmp_path_factory.mktemp("other") / "certs"
    certs.generate(out, [SERVER])
    return out


@dataclass
class Call:
    status: int
    body: str
    headers: dict[str, str]
    access_log: str  # the client sidecar's access log line for the call
    client_ssl: dict[str, int]
    server_ssl: dict[str, int]
    app_requests: int
    gateway: dict[str, int]  # the passthrough gateway's stats for the SNI-named cluster (empty without a gateway)


def call_through_sidecars(tmp: Path, client_dir: Path, server_dir: Path, *, client_trust: Path | None = None,
                          send_intermediate: bool = True, via_gateway: bool = False) -> Call:
    """sleep -> sleep's sidecar -(mTLS[, through the 15443 gateway])-> httpbin's sidecar -> httpbin, GET /headers."""
    sleep = issue(client_dir, SLEEP_ID, with_chain=send_intermediate)
    httpbin = issue(server_dir, HTTPBIN_ID)
    sleep_chain, sleep_key = sleep.write(tmp, "sleep")
    httpbin_chain, httpbin_key = httpbin.write(tmp, "httpbin")
    client_port, server_port, app_port, gateway_port = free_port(), free_port(), free_port(), free_port()
    server = mtls_envoys.server_sidecar(listen_port=server_port, app_port=app_port, chain=httpbin_chain,
                                        key=httpbin_key, root=server_dir / certs.ROOT_CERT)
    upstream_port = gateway_port if via_gateway else server_port
    client = mtls_envoys.client_sidecar(listen_port=client_port, server_port=upstream_port, chain=sleep_chain,
                                        key=sleep_key, root=client_trust or client_dir / certs.ROOT_CERT,
                                        server_identity=HTTPBIN_ID)
    gateway = mtls_envoys.passthrough_gateway(listen_port=gateway_port, server_port=server_port)
    with contextlib.ExitStack() as stack:
        app = stack.enter_context(mtls_envoys.headers_app(app_port))
        server_envoy = stack.enter_context(run_envoy(server, workdir=tmp))
        gateway_envoy = stack.enter_context(run_envoy(gateway, workdir=tmp)) if via_gateway else None
        client_envoy = stack.enter_context(run_envoy(client, workdir=tmp))
        r = requests.get(f"http://127.0.0.1:{client_port}/headers", timeout=10)

        def access_line() -> str:
            lines = [ln for ln in client_envoy.log().splitlines() if ln.startswith(mtls_envoys.ACCESS_LOG_PREFIX)]
            if not lines:
                raise NotYet("no access log line yet (Envoy flushes access logs about once a second)")
            return lines[-1]

        line = poll(access_line, timeout=10, interval=0.2, what="the client sidecar's access log line")
        return Call(
            status=r.status_code, body=r.text, headers=dict(r.headers), access_log=line,
            client_ssl={k.removeprefix(CLIENT_SSL): v for k, v in client_envoy.stats(CLIENT_SSL).items()},
            server_ssl={k.removeprefix(SERVER_SSL): v for k, v in server_envoy.stats(SERVER_SSL).items()},
            app_requests=app.requests_seen,  # type: ignore[attr-defined]
            gateway={} if gateway_envoy is None else gateway_envoy.stats(f"cluster.{mtls_envoys.OUTBOUND_SNI}."),
        )


def samples_material(tmp: Path) -> tuple[Path, Path]:
    """Both clusters on the release's samples/certs, found the way the lab finds them in an Istio release."""
    istio_dir = tmp / "istio-1.7.8"
    shutil.copytree(SAMPLES, istio_dir / "samples" / "certs")
    d = certs.samples_dir(istio_dir)
    return d, d


@pytest.mark.parametrize("source", certs.SOURCES)
def test_sleep_reaches_httpbin_over_mutual_tls_and_httpbin_sees_sleeps_identity_when_roots_are_shared(
    source, shared_root, tmp_path
):
    if source == "samples":
        client_dir, server_dir = samples_material(tmp_path)
    else:
        client_dir, server_dir = shared_root / CLIENT, shared_root / SERVER
    assert certs.check(client_dir, server_dir) == []

    call = call_through_sidecars(tmp_path, client_dir, server_dir)

    assert call.status == 200, call.body
    # httpbin's /headers shows the XFCC header its sidecar added from the verified client certificate.
    seen = {k.lower(): v for k, v in json.loads(call.body)["headers"].items()}
    xfcc = seen["x-forwarded-client-cert"]
    assert f"URI={SLEEP_ID}" in xfcc.split(";")
    assert f"By={HTTPBIN_ID}" in xfcc.split(";")
    assert call.headers["x-downstream-peer-uri"] == SLEEP_ID  # what the server sidecar verified
    assert call.headers["x-upstream-peer-uri"] == HTTPBIN_ID  # what the client sidecar verified
    assert call.client_ssl["handshake"] == 1 and call.server_ssl["handshake"] == 1
    assert call.client_ssl.get("fail_verify_error", 0) == 0
    assert call.access_log.split()[1:3] == ["200", "-"]
    assert call.app_requests == 1


def test_handshake_fails_with_certificate_verify_failed_when_cluster2_comes_from_another_root(
    shared_root, other_root, tmp_path
):
    client_dir, server_dir = shared_root / CLIENT, other_root / SERVER
    problems = certs.check(client_dir, server_dir)
    assert len(problems) == 1 and "do not share one root" in problems[0]

    call = call_through_sidecars(tmp_path, client_dir, server_dir)

    # The client sidecar cannot verify httpbin's chain (it ends at a root cluster1 does not trust).
    assert call.status == 503
    assert call.body.startswith("upstream connect error or disconnect/reset before headers")
    assert call.client_ssl["fail_verify_error"] == 1
    assert call.client_ssl.get("handshake", 0) == 0
    code, flags, reason = call.access_log.split()[1:4]
    assert (code, flags) == ("503", "UF")
    assert "CERTIFICATE_VERIFY_FAILED" in reason
    assert call.app_requests == 0


def test_server_sidecar_rejects_a_client_certificate_from_another_root(shared_root, other_root, tmp_path):
    # The client trusts both roots, so only the server's verification of the client can fail.
    both_roots = tmp_path / "both-roots.pem"
    both_roots.write_bytes((shared_root / certs.ROOT_CERT).read_bytes() + (other_root / certs.ROOT_CERT).read_bytes())

    call = call_through_sidecars(tmp_path, shared_root / CLIENT, other_root / SERVER, client_trust=both_roots)

    assert call.status == 503
    assert call.server_ssl["fail_verify_error"] == 1
    assert call.client_ssl.get("fail_verify_error", 0) == 0
    assert "TLSV1_ALERT_UNKNOWN_CA" in call.access_log  # the server's alert, as the client saw it
    assert call.app_requests == 0


def test_server_sidecar_rejects_a_workload_certificate_sent_without_its_intermediate(shared_root, tmp_path):
    # The server trusts only the root; the leaf was signed by cluster1's intermediate, so the path breaks unless
    # the client sends the intermediate too (as istiod's leaf + cert-chain.pem does).
    call = call_through_sidecars(tmp_path, shared_root / CLIENT, shared_root / SERVER, send_intermediate=False)

    assert call.status == 503
    assert call.server_ssl["fail_verify_error"] == 1
    assert call.app_requests == 0


def test_sleeps_identity_reaches_httpbin_through_the_passthrough_gateway_unchanged(shared_root, tmp_path):
    call = call_through_sidecars(tmp_path, shared_root / CLIENT, shared_root / SERVER, via_gateway=True)

    assert call.status == 200, call.body
    seen = {k.lower(): v for k, v in json.loads(call.body)["headers"].items()}
    assert f"URI={SLEEP_ID}" in seen["x-forwarded-client-cert"].split(";")
    assert call.headers["x-upstream-peer-uri"] == HTTPBIN_ID
    # The stream went through the gateway's SNI-named cluster, and the identities above are the two workloads'
    # own: the gateway passed the TLS session through instead of terminating it.
    assert call.gateway[f"cluster.{mtls_envoys.OUTBOUND_SNI}.upstream_cx_total"] == 1
    assert call.server_ssl["handshake"] == 1
