"""The probe-result classifier on real vectors (tests/data/http_failures) and on one case per class.

Inputs written here (not copied from a real source) are marked SYNTHETIC; their wording follows Envoy's
`Filter::onUpstreamReset` (envoy source/common/router/router.cc), `resetReasonToString`
(source/common/http/utility.cc) and Istio 1.7.8's access-log formats (pilot/pkg/networking/core/v1alpha3/listener.go).
The Istio 1.7 wording (`reset reason: connection failure`, no transport reason) is covered here and by the vectors;
today's Envoy wording is also proven against a real Envoy in tests/integration/test_classify_envoy.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import cli
from lab.classify import (
    CLASSES,
    FIXED_LENGTHS,
    NO_HEALTHY_UPSTREAM,
    UPSTREAM_ERROR,
    Verdict,
    classify,
    classify_many,
    parse_access_log,
    split_requests,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "http_failures"

# Istio 1.7.8's EnvoyTextLogFormat, filled in (SYNTHETIC values, real field order: code, flags, Mixer status,
# upstream transport failure reason, bytes, duration, upstream service time, XFF, UA, request id, authority, ...).
ISTIO17_UF_URX = ('[2020-10-20T08:01:02.345Z] "GET /headers HTTP/1.1" 503 UF,URX "-" "-" 0 91 30 - "-" "curl/7.64.0" '
                  '"a1b2" "httpbin.bar.global:8000" "172.18.0.5:30615" outbound|8000||httpbin.bar.global - '
                  '240.0.0.2:8000 10.244.0.7:43210 - default')


def read(name: str) -> str:
    return (DATA / name).read_text()


# --- the real vectors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "expected", "signal"), [
    ("kyma_curl6-could-not-resolve-host.curl.txt", "dns-failure", "Could not resolve host"),
    ("kyma_curl7-connection-refused.curl.txt", "connect-refused", "Connection refused"),
    ("handbook-envoy_curl-v-503-no-healthy-upstream.curl.txt", "no-healthy-upstream", "server: istio-envoy"),
    ("knative-net-contour-237_http-503-with-x-envoy-upstream-service-time.txt", "upstream-connect-failure",
     "reset reason: connection failure"),
    ("handbook-faq_curl-503-UC-connection-termination.curl.txt", "upstream-reset", "connection termination"),
])
def test_each_curl_vector_gets_its_documented_class(name, expected, signal):
    v = classify(read(name))
    assert v.cls == expected
    assert any(signal in line for line in v.evidence), v.evidence


def test_upstream_service_time_header_is_reported_but_not_taken_as_success():
    v = classify(read("knative-net-contour-237_http-503-with-x-envoy-upstream-service-time.txt"))
    assert v.cls == "upstream-connect-failure"
    assert any("not proof" in line for line in v.evidence)


def test_the_elided_not_json_access_log_with_key_typos_still_gives_uc():
    text = read("handbook-faq_accesslog-json-UC.accesslog.txt")
    (entry,) = parse_access_log(text)
    assert (entry.code, entry.flags) == (503, ("UC",))  # code read from the misspelt "response_codo"
    assert entry.cluster == "outbound|4000|vl|helloworld.default.svc.cluster.local"
    assert classify("", access_log=text).cls == "upstream-reset"


def test_mixed_output_gets_one_verdict_per_request():
    text = read("handbook-mtls_plaintext-to-STRICT-000-exit56.curl.txt")
    assert len(split_requests(text)) == 3
    assert [v.cls for v in classify_many(text)] == ["ok", "connection-reset", "ok"]


def test_classify_on_mixed_output_reports_the_first_failing_request():
    v = classify(read("handbook-mtls_plaintext-to-STRICT-000-exit56.curl.txt"))
    assert v.cls == "connection-reset"
    assert v.evidence[0] == "request 2 of 3 failed"


def test_all_ok_mixed_output_is_ok():
    text = "response code: 200\nresponse code: 204\n"  # SYNTHETIC
    assert classify(text).cls == "ok"


# --- one case per class ---------------------------------------------------------------------------------------
LAB_TRAILER_OK = ("HTTP/1.1 200 OK\r\nserver: envoy\r\ncontent-length: 2\r\n\r\nok\n"
                  "__LAB_HTTP_CODE__=200\n__LAB_CURL_EXIT__=0\n")


CURL_CASES = [
    (LAB_TRAILER_OK, 0, "ok"),
    ("", 6, "dns-failure"),
    ("  0     0    0     0    0     0      0      0 --:--:--  0:00:05 --:--:--     0curl: (6) Could not resolve "
     "host: httpbin.bar.global", None, "dns-failure"),
    ("curl: (7) Failed to connect to 127.0.0.1 port 8000 after 0 ms: Connection refused", None, "connect-refused"),
    ("curl: (7) Failed to connect to 224.0.0.1 port 8000: Network is unreachable", None, "unreachable"),
    ("curl: (7) Failed to connect to 10.1.2.3 port 8000 after 3 ms: No route to host", None, "unreachable"),
    ("curl: (28) Operation timed out after 10001 milliseconds with 0 bytes received", None, "timeout"),
    ("HTTP/1.1 504 Gateway Timeout\ncontent-length: 24\nserver: envoy\n\nupstream request timeout", 0, "timeout"),
    ("curl: (35) OpenSSL SSL_connect: Connection reset by peer in connection to httpbin:443", None,
     "tls-handshake-failure"),
    ("curl: (60) SSL certificate problem: self-signed certificate", None, "tls-handshake-failure"),
    ("curl: (56) Recv failure: Connection reset by peer", None, "connection-reset"),
    ("curl: (52) Empty reply from server", None, "connection-reset"),
    ("HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". reset reason: connection failure", 0,
     "upstream-connect-failure"),
    ("HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". reset reason: remote connection failure, "
     "transport failure reason: delayed connect error: Connection refused", 0, "upstream-connect-failure"),
    ("HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". retried and the latest reset reason: "
     "connection failure", 0, "upstream-connect-failure"),
    ("HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". reset reason: local reset", 0, "upstream-reset"),
    ("HTTP/1.1 502 Bad Gateway\n\n" + UPSTREAM_ERROR + ". reset reason: protocol error", 0, "upstream-reset"),
    ("HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". reset reason: remote connection failure, "
     "transport failure reason: TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:"
     "TLS_error_end", 0, "upstream-tls-failure"),
    ("HTTP/1.1 503 Service Unavailable\nserver: envoy\n\n" + NO_HEALTHY_UPSTREAM, 0, "no-healthy-upstream"),
    ("HTTP/1.1 403 Forbidden\ncontent-length: 19\n\nRBAC: access denied", 0, "denied"),
    ("HTTP/1.1 500 Internal Server Error\nserver: istio-envoy\nx-envoy-upstream-service-time: 3\n\noops", 0,
     "http-error"),
    ("", None, "unknown"),
    ("curl: (3) URL using bad/illegal format or missing URL", None, "unknown"),
]


@pytest.mark.parametrize(("output", "exit_code", "expected"), CURL_CASES)
def test_each_class_from_curl_output(output, exit_code, expected):  # all SYNTHETIC, wording from the sources above
    assert classify(output, exit_code).cls == expected


def test_verdict_refuses_a_class_outside_the_set():
    with pytest.raises(ValueError, match="unknown class"):
        Verdict("broken", [])


# --- access logs ----------------------------------------------------------------------------------------------
LOG_CASES = [
    (ISTIO17_UF_URX, "upstream-connect-failure"),
    (ISTIO17_UF_URX.replace("503 UF,URX", "503 UH").replace(' 91 ', ' 19 '), "no-healthy-upstream"),
    (ISTIO17_UF_URX.replace("503 UF,URX", "404 NR"), "no-route"),
    (ISTIO17_UF_URX.replace("503 UF,URX", "503 UC"), "upstream-reset"),
    (ISTIO17_UF_URX.replace("503 UF,URX", "504 UT"), "timeout"),
    (ISTIO17_UF_URX.replace("503 UF,URX", "200 -"), "ok"),
    (ISTIO17_UF_URX.replace("503 UF,URX", "500 -"), "http-error"),
    (ISTIO17_UF_URX.replace('"-" "-" 0 91', '"-" "TLS error: 268435581:SSL routines:OPENSSL_internal:'
                            'CERTIFICATE_VERIFY_FAILED" 0 91'), "upstream-tls-failure"),
    # the gateway's TCP line when no filter chain matched the SNI (docs/sources.md#gateway-envoyfilter)
    ('[2020-09-18T09:01:02.000Z] "- - -" 0 NR "-" "-" 0 0 0 - "-" "-" "-" "-" "-" - - 10.179.64.13:15443 '
     '10.0.0.1:5000 - -', "no-route"),
    ('{"response_code":"502","response_flags":"-","upstream_cluster":"BlackHoleCluster"}', "denied"),
    ('{"response_code":"503","response_flags":"UpstreamConnectionFailure,UpstreamRetryLimitExceeded"}',
     "upstream-connect-failure"),
    # later Istio text format: %RESPONSE_CODE_DETAILS% after the flags, TLS error in it
    ('[2022-01-01T00:00:00.000Z] "GET / HTTP/1.1" 503 UF upstream_reset_before_response_started{connection_failure,'
     'TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED} - "-" 0 0 1 - "-"',
     "upstream-tls-failure"),
    ('[2022-04-24T12:23:37.047Z] "GET /wrong HTTP/1.1" 502 UPE upstream_reset_before_response_started{protocol_error}'
     ' - "-" 0 87 1001 - "-" "curl/7.80.0"', "upstream-reset"),
    ("[out 2026-09-02T00:19:58Z] GET /api/data 503 upstream=10.0.0.141:9902 flags=UF duration=0ms",
     "upstream-connect-failure"),  # a custom key=value format
]


@pytest.mark.parametrize(("line", "expected"), LOG_CASES)
def test_each_access_log_shape_alone_gives_its_class(line, expected):  # SYNTHETIC lines in the real formats
    assert classify("", access_log=line).cls == expected


def test_the_cases_here_reach_every_one_of_the_15_classes():
    got = {classify(out, code).cls for out, code, _ in CURL_CASES}
    got |= {classify("", access_log=line).cls for line, _ in LOG_CASES}
    assert len(CLASSES) == 15
    assert got == set(CLASSES)


def test_uaex_line_that_mentions_no_healthy_upstream_is_denied():
    # SYNTHETIC: an ext-authz check whose own cluster is down; the text is about the authz call, the flag decides
    line = ('[2021-01-05T10:00:00.000Z] "GET /headers HTTP/1.1" 403 UAEX ext_authz_error "-" 0 0 1 - "-" "curl/7.64.0" '
            '"id" "httpbin:8000" "-" - - 10.0.0.5:8000 10.0.0.6:40000 - - no healthy upstream')
    assert classify("", access_log=line).cls == "denied"
    out = "HTTP/1.1 403 Forbidden\ncontent-length: 0\nserver: istio-envoy\n\n"
    assert classify(out, access_log=line).cls == "denied"


def test_json_line_access_log_is_read_with_istio_keys():
    line = ('{"response_code":"503","response_flags":"UF,URX","upstream_transport_failure_reason":"-",'
            '"upstream_cluster":"outbound|8000||httpbin.bar.global"}')  # SYNTHETIC, Istio 1.7 JSON keys
    (e,) = parse_access_log(line)
    assert (e.code, e.flags, e.cluster) == (503, ("UF", "URX"), "outbound|8000||httpbin.bar.global")


def test_lines_that_are_not_access_log_entries_are_skipped():
    assert parse_access_log("2020-10-20T08:01:02 info Envoy proxy is ready\n\n") == []
    assert parse_access_log('10.0.0.1 - - "GET / HTTP/1.1" 200 OK\n') == []  # "OK" is no Envoy flag


# --- evidence order ----------------------------------------------------------------------------------------
def test_curl_failure_without_a_response_wins_over_the_access_log():
    v = classify("curl: (28) Operation timed out after 10000 milliseconds", access_log=ISTIO17_UF_URX)
    assert v.cls == "timeout"
    assert any(line.startswith("access log: 503 UF,URX") for line in v.evidence)


def test_the_body_the_client_got_wins_over_a_disagreeing_access_log():
    out = "HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". reset reason: connection termination"
    v = classify(out, access_log=ISTIO17_UF_URX)
    assert v.cls == "upstream-reset"
    assert any("access log suggests upstream-connect-failure" in line for line in v.evidence)


def test_access_log_flags_decide_when_the_body_says_nothing():
    out = "HTTP/1.1 503 Service Unavailable\nserver: istio-envoy\n\n"
    assert classify(out, 0).cls == "http-error"
    assert classify(out, 0, access_log=ISTIO17_UF_URX).cls == "upstream-connect-failure"


def test_a_200_whose_body_quotes_envoy_is_ok():
    out = "HTTP/1.1 200 OK\n\n{\"data\": \"no healthy upstream\"}\n"
    assert classify(out, 0).cls == "ok"


def test_the_probe_trailer_exit_code_wins_over_the_shell_exit_code():
    # `sh -c 'curl ...; echo EXIT'` exits 0 whatever curl did: the trailer carries curl's own code
    out = "\n__LAB_HTTP_CODE__=000\n__LAB_CURL_EXIT__=28\n"
    v = classify(out, exit_code=0)
    assert v.cls == "timeout"
    assert any("exit trailer" in line for line in v.evidence)


def test_reset_in_the_middle_of_a_200_body_is_a_connection_reset():
    out = "HTTP/1.1 200 OK\ncontent-length: 5000\n\npartial\ncurl: (18) transfer closed with 4993 bytes remaining"
    assert classify(out).cls == "connection-reset"


# --- curl -I, fixed lengths, chunked bodies ----------------------------------------------------------------
def head(status: str, length: int, server: str = "envoy") -> str:
    return f"HTTP/1.1 {status}\r\ncontent-length: {length}\r\ncontent-type: text/plain\r\nserver: {server}\r\n\r\n"


@pytest.mark.parametrize(("status", "length", "expected"), [
    ("503 Service Unavailable", 19, "no-healthy-upstream"),
    ("503 Service Unavailable", 91, "upstream-connect-failure"),   # Istio 1.7: "... reset reason: connection failure"
    ("503 Service Unavailable", 114, "upstream-connect-failure"),  # the same after retries
    ("503 Service Unavailable", 57, "upstream-connect-failure"),   # Envoy before ~1.12: no reason
    ("503 Service Unavailable", 95, "upstream-reset"),             # connection termination
    ("503 Service Unavailable", 84, "upstream-reset"),             # local reset
    ("503 Service Unavailable", 103, "denied"),                    # Mixer UNAVAILABLE: + connection failure
    ("503 Service Unavailable", 98, "upstream-connect-failure"),   # today's "remote connection failure", no reason
    ("504 Gateway Timeout", 24, "timeout"),
    ("403 Forbidden", 19, "denied"),                               # RBAC: access denied (same length as UH)
])
def test_curl_head_falls_back_to_envoys_fixed_body_lengths(status, length, expected):
    v = classify(head(status, length, "istio-envoy"), 0)
    assert v.cls == expected
    assert "fallback" in v.evidence[0]


def test_fixed_length_fallback_is_not_used_for_other_servers_or_unknown_lengths():
    assert classify(head("503 Service Unavailable", 19, "nginx"), 0).cls == "http-error"
    # today's Envoy appends a transport failure reason: its length is not in the table
    assert classify(head("503 Service Unavailable", 145), 0).cls == "http-error"


def test_fixed_length_table_matches_the_documented_lengths():
    assert FIXED_LENGTHS[(19, 503)][0] == "no-healthy-upstream"
    assert FIXED_LENGTHS[(91, 503)][1].endswith("reset reason: connection failure") or \
        FIXED_LENGTHS[(91, 503)][1].endswith("reset reason: connection timeout")
    assert {k[0] for k in FIXED_LENGTHS} >= {19, 57, 84, 91, 95, 103}


def test_empty_403_made_by_envoy_is_a_weak_denial_but_one_from_the_app_is_an_http_error():
    envoy_403 = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nserver: istio-envoy\r\n\r\n"
    v = classify(envoy_403, 0)
    assert v.cls == "denied" and "weak" in v.evidence[0]
    app_403 = ("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nserver: istio-envoy\r\n"
               "x-envoy-upstream-service-time: 4\r\n\r\n")
    assert classify(app_403, 0).cls == "http-error"


def test_head_404_with_empty_body_from_envoy_is_a_no_route_guess_and_nr_proves_it():
    out = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nserver: envoy\r\n\r\n"
    assert classify(out, 0).cls == "no-route"
    app_404 = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nserver: envoy\r\nx-envoy-upstream-service-time: 2\r\n\r\n"
    assert classify(app_404, 0).cls == "http-error"


def test_chunked_body_split_mid_word_is_decoded():
    text = UPSTREAM_ERROR + ". reset reason: connection failure"
    raw = (f"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\nserver: envoy\r\n\r\n"
           f"{40:x}\r\n{text[:40]}\r\n{len(text) - 40:x}\r\n{text[40:]}\r\n0\r\n\r\n")
    assert classify(raw, 0).cls == "upstream-connect-failure"


def test_tls_transport_reason_wrapped_over_lines_is_an_upstream_tls_failure():
    out = ("HTTP/1.1 503 Service Unavailable\n\nupstream connect error or disconnect/reset before headers.\n"
           "transport failure reason: TLS error: Secret is not supplied by SDS")
    assert classify(out, 0).cls == "upstream-tls-failure"


def test_curl_verbose_output_is_one_request_and_keeps_its_body():
    out = ("*   Trying 127.0.0.1:8000...\n* Connected to 127.0.0.1\n> GET / HTTP/1.1\n> Host: x\n>\n"
           "< HTTP/1.1 503 Service Unavailable\n< content-length: 19\n< server: envoy\n<\n"
           "no healthy upstream\n__LAB_HTTP_CODE__=503\n__LAB_CURL_EXIT__=0\n* Connection #0 to host left intact\n")
    assert len(split_requests(out)) == 1
    assert classify(out).cls == "no-healthy-upstream"


@settings(max_examples=200, deadline=None)
@given(st.text(), st.none() | st.integers(min_value=0, max_value=100), st.none() | st.text())
def test_any_input_gives_exactly_one_known_class(output, exit_code, log):
    v = classify(output, exit_code, log)
    assert v.cls in CLASSES
    assert all(isinstance(line, str) for line in v.evidence)


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_prints_the_class_alone_on_the_first_line(capsys):
    rc = cli.main(["classify", str(DATA / "kyma_curl7-connection-refused.curl.txt")])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert lines[0] == "connect-refused"
    assert any("Connection refused" in line for line in lines[1:])


def test_cli_reads_stdin_and_an_access_log(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    rc = cli.main(["classify", "--access-log", str(DATA / "handbook-faq_accesslog-json-UC.accesslog.txt")])
    assert rc == 0
    assert capsys.readouterr().out.splitlines()[0] == "upstream-reset"


def test_cli_exit_code_option_is_used_when_the_output_has_none(capsys, tmp_path):
    f = tmp_path / "out.txt"
    f.write_text("")
    assert cli.main(["classify", str(f), "--exit-code", "6"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "dns-failure"


def test_cli_each_prints_one_verdict_per_request(capsys):
    cli.main(["classify", "--each", str(DATA / "handbook-mtls_plaintext-to-STRICT-000-exit56.curl.txt")])
    heads = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("request ")]
    assert heads == ["request 1: ok", "request 2: connection-reset", "request 3: ok"]


def test_cli_missing_file_is_one_line_and_exit_2(capsys, tmp_path):
    assert cli.main(["classify", str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lab: error: ") and "nope.txt" in err[0]


def test_access_log_tls_reason_refines_a_bodys_connection_failure():
    # SYNTHETIC, in the shape the real Envoy wrote in tests/integration (body without a reason, log with it)
    out = "HTTP/1.1 503 Service Unavailable\n\n" + UPSTREAM_ERROR + ". reset reason: connection failure"
    log = ISTIO17_UF_URX.replace('"-" "-" 0 91', '"-" "TLS_error:|268435581:SSL_routines:OPENSSL_internal:'
                                 'CERTIFICATE_VERIFY_FAILED:TLS_error_end" 0 91')
    assert classify(out, 0).cls == "upstream-connect-failure"
    v = classify(out, 0, access_log=log)
    assert v.cls == "upstream-tls-failure"
    assert "connection failure" in v.evidence[1]


def test_a_200_beside_a_failing_access_log_line_is_ok_and_says_the_log_disagrees():
    v = classify(LAB_TRAILER_OK, access_log=ISTIO17_UF_URX)
    assert v.cls == "ok"
    assert any("access log suggests upstream-connect-failure" in line for line in v.evidence)


@pytest.mark.parametrize(("verbose_line", "expected"), [
    ("* Immediate connect fail for 224.0.0.1: Network is unreachable", "unreachable"),
    ("* connect to 127.0.0.1 port 1 failed: Connection refused", "connect-refused"),
])
def test_curl_verbose_line_tells_refused_from_unreachable_where_the_exit_7_line_does_not(verbose_line, expected):
    # the wording of curl 7.88.1 -v on this machine; its `curl: (7)` line says only "Couldn't connect to server"
    out = (f"*   Trying 224.0.0.1:8000...\n{verbose_line}\n"
           "curl: (7) Failed to connect to 224.0.0.1 port 8000 after 0 ms: Couldn't connect to server\n")
    v = classify(out)
    assert v.cls == expected
    assert "assumed" not in v.evidence[0]
    bare = classify("curl: (7) Failed to connect to 224.0.0.1 port 8000 after 0 ms: Couldn't connect to server")
    assert bare.cls == "connect-refused" and "assumed" in bare.evidence[0]


def test_a_flagless_access_log_line_does_not_hide_the_rbac_length_under_curl_head():
    # Envoy 1.40 logs an RBAC denial as a flagless "403 -" in Istio 1.7's text format (tests/integration)
    out = head("403 Forbidden", 19)
    log = ISTIO17_UF_URX.replace("503 UF,URX", "403 -")
    assert classify(out, 0, access_log=log).cls == "denied"


def test_classify_many_pairs_access_log_entries_with_requests_only_when_counts_match():
    # SYNTHETIC: two runs of the lab's probe, the second a 503 without a body (curl -I), and their two log lines
    second = ("HTTP/1.1 503 Service Unavailable\r\nserver: istio-envoy\r\n\r\n\n"
              "__LAB_HTTP_CODE__=503\n__LAB_CURL_EXIT__=0\n")
    out = LAB_TRAILER_OK + second
    ok_line = ISTIO17_UF_URX.replace("503 UF,URX", "200 -")
    assert len(split_requests(out)) == 2
    paired = classify_many(out, access_log=ok_line + "\n" + ISTIO17_UF_URX)
    assert [v.cls for v in paired] == ["ok", "upstream-connect-failure"]
    unpaired = classify_many(out, access_log=ISTIO17_UF_URX)
    assert [v.cls for v in unpaired] == ["ok", "http-error"]
    assert all("access log not used: 1 entries for 2 requests" in v.evidence[-1] for v in unpaired)


def test_curl_fail_flag_exit_22_reads_the_status_from_its_message():
    out = "curl: (22) The requested URL returned error: 503"  # curl --fail, wording of curl 7.88
    v = classify(out)
    assert v.cls == "http-error" and "HTTP status 503 (curl --fail message)" in v.evidence
    assert classify(out, access_log=ISTIO17_UF_URX).cls == "upstream-connect-failure"


def test_verbose_copy_of_the_response_after_the_body_does_not_hide_the_body():
    # synthetic: the shape of `curl -i -v` through lab.probe: printed response first, then curl's stderr
    out = ("HTTP/1.1 503 Service Unavailable\ncontent-type: text/plain\nserver: envoy\n\n"
           "no healthy upstream\n"
           "*   Trying 240.0.0.2:8000...\n> GET /headers HTTP/1.1\n> Host: httpbin.bar.global:8000\n>\n"
           "< HTTP/1.1 503 Service Unavailable\n< server: envoy\n<\n"
           "* Connection #0 to host httpbin.bar.global left intact\n")
    assert classify(out, 0).cls == "no-healthy-upstream"


# --- what the server header says (Istio 1.7.8: istio-envoy only on inbound and gateway connection managers) --------
SIDECAR_UF = ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 91\r\ncontent-type: text/plain\r\n"
              "server: envoy\r\n\r\n"
              "upstream connect error or disconnect/reset before headers. reset reason: connection failure")


def test_a_local_reply_of_an_outbound_sidecar_says_envoy_and_is_not_taken_for_a_plain_envoy_only():
    # cluster1's sleep -> its sidecar's outbound listener, which sets no server_name (pilot listener.go at 1.7.8)
    v = classify(SIDECAR_UF, 0)
    assert v.cls == "upstream-connect-failure"
    notes = [e for e in v.evidence if "server: envoy" in e]
    assert len(notes) == 1 and "outbound listener" in notes[0]
    assert not any("Istio's proxies say istio-envoy" in e for e in v.evidence)


def test_istio_envoy_is_read_as_a_gateway_or_an_inbound_sidecar_without_an_outbound_sidecar_on_the_way():
    v = classify(SIDECAR_UF.replace("server: envoy", "server: istio-envoy"), 0)
    assert v.cls == "upstream-connect-failure"
    (note,) = [e for e in v.evidence if "istio-envoy" in e]
    assert "gateway or inbound sidecar" in note and "outbound sidecar" in note
