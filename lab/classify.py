"""What a probe result means: one class from `CLASSES` and the evidence lines that decided it.

Pure code, no I/O. Input is what curl printed (stdout and stderr together, progress meter and all), optionally
curl's exit code, and optionally Envoy access-log lines (Istio's text format, Envoy's default text format,
JSON lines, or a pretty-printed and not-quite-valid JSON object). The classifier reads Envoy's own signals: the
local-reply body, the response flags in the access log, the `server` header, and, when `curl -I` left no body,
the fixed content-length of Envoy's local replies. docs/classify.md explains every class and the evidence order.

Upstream grounding (envoyproxy/envoy: router.cc@001b1c0c, utility.cc@2d3b5057, usage.rst@01625a89; istio/istio@1.7.8):
- The local-reply body is built in `Filter::onUpstreamReset` in envoy `source/common/router/router.cc`:
  "upstream connect error or disconnect/reset before headers. " [+ "retried and the latest "] + "reset reason: "
  + reason [+ ", transport failure reason: " + reason]. The reset reason strings are
  `Http::Utility::resetReasonToString` in `source/common/http/utility.cc`. The same function maps reset reasons
  to response flags (`streamResetReasonToResponseFlag`): connection failures and connection timeout -> UF,
  connection termination -> UC, local reset -> LR, remote reset -> UR, protocol error -> UPE (502), overflow -> UO.
- Response flags: envoy `docs/root/configuration/observability/access_log/usage.rst` (`%RESPONSE_FLAGS%`).
- Istio 1.7's access-log formats: `EnvoyTextLogFormat` and `EnvoyJSONLogFormat` in istio
  `pilot/pkg/networking/core/v1alpha3/listener.go@1.7.8` (response code then flags; JSON keys `response_code`,
  `response_flags`, `upstream_transport_failure_reason`, `upstream_cluster`). Its server name `istio-envoy` is set
  only on inbound sidecar and gateway connection managers; an outbound sidecar says `envoy` (the default).
- Istio 1.7's Envoy wrote `reset reason: connection failure` (the vectors: 91 bytes, 0x5b) and no transport
  reason; today's Envoy writes `local connection failure` / `remote connection failure` and the router may append
  `, transport failure reason: ...` (third-party reports show it), so a body with a reason has no fixed length.
  Envoy 1.40 on loopback (tests/integration/test_classify_envoy.py) did not append it for a refused or
  TLS-verify failure: the body was the 98-byte `... reset reason: remote connection failure` in both cases and only
  the access log's `%UPSTREAM_TRANSPORT_FAILURE_REASON%` (spaces written as `_`) told the TLS failure apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.probe import CURL_ERR_RE as _CURL_ERR_RE
from lab.probe import EXIT_RE as _LAB_EXIT_RE
from lab.probe import KUBECTL_EXIT_RE as _KUBECTL_EXIT_RE
from lab.probe import STATUS_RE as _LAB_STATUS_RE
from lab.probe import WRITEOUT_STATUS_RE as _WRITEOUT_STATUS_RE
from lab.probe import is_end_marker as _is_end_marker
from lab.probe import is_progress as _is_progress
from lab.probe import is_verbose as _is_verbose
from lab.probe import parse_http

CLASSES: tuple[str, ...] = (
    "ok",
    "dns-failure",
    "connect-refused",
    "unreachable",
    "timeout",
    "tls-handshake-failure",
    "connection-reset",
    "upstream-connect-failure",
    "upstream-reset",
    "upstream-tls-failure",
    "no-healthy-upstream",
    "no-route",
    "denied",
    "http-error",
    "unknown",
)


@dataclass(frozen=True)
class Verdict:
    """One class from CLASSES; `evidence` lists the deciding signal first, then supporting or conflicting ones."""

    cls: str
    evidence: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.cls not in CLASSES:
            raise ValueError(f"unknown class {self.cls!r}; expected one of {', '.join(CLASSES)}")


@dataclass(frozen=True)
class LogEntry:
    """One access-log entry as the classifier reads it (fields absent from the line are None or empty)."""

    raw: str
    code: int | None
    flags: tuple[str, ...]
    details: str = ""  # %RESPONSE_CODE_DETAILS% and any other free text worth searching (transport reason)
    transport_failure: str = ""
    cluster: str = ""


# --- Envoy's local replies ----------------------------------------------------------------------------
UPSTREAM_ERROR = "upstream connect error or disconnect/reset before headers"
NO_HEALTHY_UPSTREAM = "no healthy upstream"
UPSTREAM_TIMEOUT = "upstream request timeout"
_RETRIED = "retried and the latest "
_MIXER_PREFIX = "UNAVAILABLE:"  # Istio's Mixer filter, policy check failed closed (vectors README: 103 bytes)

# Reset reasons (envoy source/common/http/utility.cc resetReasonToString; "connection failure" is the older
# Envoy's single reason for both connect failures, as Istio 1.7 printed it).
_CONNECT_REASONS = ("connection failure", "local connection failure", "remote connection failure",
                    "connection timeout")
_RESET_REASONS = ("connection termination", "remote reset", "local reset", "protocol error",
                  "remote refused stream reset", "local refused stream reset", "remote error with connect request")
_OVERLOAD_REASONS = ("overflow", "overload manager reset")

_LOCAL_REPLY_RE = re.compile(
    r"(?P<mixer>UNAVAILABLE:\s*)?upstream\s+connect\s+error\s+or\s+disconnect/reset\s+before\s+headers\.?"
    r"(?:\s*(?P<retried>retried\s+and\s+the\s+latest\s+)?reset\s+reason:\s*(?P<reason>[^,\n]*))?"
    r"(?:,?\s*transport\s+failure\s+reason:\s*(?P<tfr>[^\n]*))?",
    re.IGNORECASE,
)
_TLS_MARKERS = re.compile(
    r"TLS[ _]error|SSL routines|CERTIFICATE_VERIFY_FAILED|SSLV3_ALERT|WRONG_VERSION_NUMBER|certificate|handshake"
    r"|Secret is not supplied by SDS",
    re.IGNORECASE,
)


def _body(reason: str | None, retried: bool = False) -> str:
    if reason is None:
        return UPSTREAM_ERROR
    return f"{UPSTREAM_ERROR}. {_RETRIED if retried else ''}reset reason: {reason}"


def _fixed_lengths() -> dict[tuple[int, int], tuple[str, str]]:
    """(content-length, status) -> (class, body) for Envoy's local replies whose length is fixed: only a fallback
    for `curl -I` (no body). Built from the strings above so the table says what each length means. A body with a
    transport failure reason has no fixed length; "overload manager reset" is left out because its length (95) is
    that of "connection termination"."""
    bodies: list[tuple[str, int, str]] = [
        (NO_HEALTHY_UPSTREAM, 503, "no-healthy-upstream"),
        (UPSTREAM_TIMEOUT, 504, "timeout"),
        (UPSTREAM_ERROR, 503, "upstream-connect-failure"),  # Envoy before ~1.12 gave no reason (57 bytes)
        (_MIXER_PREFIX + _body("connection failure"), 503, "denied"),
        ("RBAC: access denied", 403, "denied"),  # Envoy's RBAC filter (seen from Envoy 1.40 in the integration tests)
    ]
    for retried in (False, True):
        bodies += [(_body(r, retried), 503, "upstream-connect-failure") for r in _CONNECT_REASONS]
        bodies += [(_body(r, retried), 503, "upstream-reset")
                   for r in ("connection termination", "remote reset", "local reset")]
        bodies.append((_body("protocol error", retried), 502, "upstream-reset"))
    table: dict[tuple[int, int], tuple[str, str]] = {}
    for text, status, cls in bodies:
        key = (len(text), status)
        # equal lengths must mean the same class ("connection failure" and "connection timeout" are both 91)
        if table.get(key, (cls, ""))[0] != cls:
            raise RuntimeError(f"ambiguous local-reply length {key}: {text!r} vs {table[key][1]!r}")
        table.setdefault(key, (cls, text))
    return table


FIXED_LENGTHS = _fixed_lengths()

# --- response flags ------------------------------------------------------------------------------------
# Short names from usage.rst; long names (%RESPONSE_FLAGS_LONG%) mapped to them.
_LONG_FLAGS = {
    "NoHealthyUpstream": "UH", "UpstreamConnectionFailure": "UF", "UpstreamOverflow": "UO", "NoRouteFound": "NR",
    "UpstreamRetryLimitExceeded": "URX", "NoClusterFound": "NC", "DurationTimeout": "DT",
    "DownstreamConnectionTermination": "DC", "FailedLocalHealthCheck": "LH", "UpstreamRequestTimeout": "UT",
    "LocalReset": "LR", "UpstreamRemoteReset": "UR", "UpstreamConnectionTermination": "UC",
    "DelayInjected": "DI", "FaultInjected": "FI", "RateLimited": "RL", "UnauthorizedExternalService": "UAEX",
    "RateLimitServiceError": "RLSE", "StreamIdleTimeout": "SI", "DownstreamProtocolError": "DPE",
    "UpstreamProtocolError": "UPE", "UpstreamMaxStreamDurationReached": "UMSDR", "NoFilterConfigFound": "NFCF",
    "OverloadManagerTerminated": "OM", "DnsResolutionFailed": "DF", "InvalidEnvoyRequestHeaders": "IH",
}
_FLAG_MEANING = {
    "UH": "no healthy upstream hosts", "UF": "upstream connection failure", "UO": "upstream overflow",
    "NR": "no route configured", "URX": "upstream retry limit exceeded", "NC": "upstream cluster not found",
    "DT": "max duration exceeded", "DC": "downstream connection termination", "LH": "local health check failed",
    "UT": "upstream request timeout", "LR": "connection local reset", "UR": "upstream remote reset",
    "UC": "upstream connection termination", "DI": "delay injected", "FI": "fault injected (abort)",
    "RL": "rate limited", "UAEX": "denied by the external authorization service",
    "RLSE": "rate limit service error", "SI": "stream idle timeout", "DPE": "downstream protocol error",
    "UPE": "upstream protocol error", "UMSDR": "upstream max stream duration reached",
    "NFCF": "no filter config found", "OM": "overload manager", "DF": "DNS resolution failed",
    "IH": "invalid strictly-checked request header",
}
_FLAGS_RE = r"(?:[A-Z]{1,6}(?:,[A-Z]{1,6})*|-)"
# Istio's and Envoy's default text formats: a quoted request line, then %RESPONSE_CODE% %RESPONSE_FLAGS%.
_TEXT_LOG_RE = re.compile(r"\"[^\"\n]*\"\s+(?P<code>\d{1,3})\s+(?P<flags>" + _FLAGS_RE + r")(?=\s|$)")
_KV_FLAGS_RE = re.compile(r"\b(?:response_)?flags[=:]\s*\"?(?P<flags>" + _FLAGS_RE + r")")
_JSON_PAIR_RE = re.compile(r"\"(?P<key>[^\"\n]+)\"\s*:\s*(?P<value>\"(?:[^\"\\\n]|\\.)*\"|-?\d+(?:\.\d+)?|null)")


# --- curl ------------------------------------------------------------------------------------------------
# curl's error line, kubectl's exit line, the probe's trailers and the HTTP response itself are read by lab.probe
# (the one parser of what curl printed: parse_http).
_FAIL_STATUS_RE = re.compile(r"returned error:\s*(\d{3})")
# curl -v names the connect error that recent curl leaves out of its `curl: (7)` line
_CONNECT_DETAIL_RE = re.compile(r"(?:connect to \S+ port \d+ failed|Immediate connect fail for \S+):\s*([^\n]+)")

_TLS_EXITS = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91}
_RESET_EXITS = {16, 18, 52, 55, 56, 92}


@dataclass
class _Observed:
    exit_code: int | None = None
    exit_source: str = ""
    curl_message: str = ""
    status: int | None = None
    status_source: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    entries: list[LogEntry] = field(default_factory=list)


# --- public API ------------------------------------------------------------------------------------------
def classify(output: str, exit_code: int | None = None, access_log: str | None = None) -> Verdict:
    """Classify one probe. If `output` holds several requests (see `split_requests`), the first failing one
    decides (the probe failed if any request failed) and the evidence says which one; all ok gives ok."""
    parts = split_requests(output)
    if len(parts) <= 1:
        return _classify_one(output, exit_code, access_log)
    verdicts = classify_many(output, exit_code, access_log)
    for i, v in enumerate(verdicts, 1):
        if v.cls != "ok":
            return Verdict(v.cls, [f"request {i} of {len(verdicts)} failed", *v.evidence])
    return Verdict("ok", [f"all {len(verdicts)} requests succeeded", *(e for v in verdicts for e in v.evidence)])


def classify_many(output: str, exit_code: int | None = None, access_log: str | None = None) -> list[Verdict]:
    """One verdict per request in `output`, in order. `exit_code` belongs to the last request (it is the exit
    code of the whole command); access-log entries are paired with requests in order only when there is one
    entry per request, and otherwise left out (the evidence says so)."""
    parts = split_requests(output)
    if len(parts) <= 1:
        return [_classify_one(output, exit_code, access_log)]
    entries = parse_access_log(access_log or "")
    paired = len(entries) == len(parts)
    verdicts = []
    for i, part in enumerate(parts):
        log = entries[i].raw if paired else None
        v = _classify_one(part, exit_code if i == len(parts) - 1 else None, log)
        if entries and not paired:
            v = Verdict(v.cls, [*v.evidence, f"access log not used: {len(entries)} entries for {len(parts)} requests"])
        verdicts.append(v)
    return verdicts


def split_requests(output: str) -> list[str]:
    """Split output that holds several requests. A request ends at its end-of-request markers: a written-out
    status (`response code: NNN`, the lab's trailer), curl's exit (`curl: (N)`, the lab's exit trailer, kubectl's
    `command terminated with exit code N`). Consecutive markers (and blank lines between them) belong to the same
    request; the next other line starts a new one. Output with no marker, or one group of markers, is one request."""
    parts: list[list[str]] = [[]]
    closed = False
    for line in output.splitlines(keepends=True):
        marker = _is_end_marker(line)
        if closed and not marker and line.strip() and not _is_verbose(line) and not _is_progress(line):
            parts.append([])
            closed = False
        parts[-1].append(line)
        if marker:
            closed = True
    texts = ["".join(p) for p in parts if "".join(p).strip()]
    return texts or [output]


def parse_access_log(text: str) -> list[LogEntry]:
    """Access-log entries in `text`: one per text line or JSON line; a multi-line JSON object (even an invalid one,
    such as a copy with `......` in it) is one entry. Lines without a response code or flags are skipped."""
    entries: list[LogEntry] = []
    for chunk in _log_chunks(text):
        entry = _parse_entry(chunk)
        if entry is not None:
            entries.append(entry)
    return entries


# --- one request -----------------------------------------------------------------------------------------
def _classify_one(output: str, exit_code: int | None, access_log: str | None) -> Verdict:
    obs = _observe(output, exit_code, access_log)
    log_notes = [_describe_entry(e) for e in obs.entries]
    decided = _decide(obs)
    cls, evidence = decided
    for note in log_notes:
        if not any(line.startswith(note) for line in evidence):
            evidence.append(note)
    return Verdict(cls, evidence)


def _decide(obs: _Observed) -> tuple[str, list[str]]:
    curl_failed = obs.exit_code not in (None, 0, 22)
    curl_line = _curl_evidence(obs)

    # 1. curl got no HTTP response: what curl saw is the answer (Envoy's log, if any, explains it).
    if curl_failed and obs.status is None:
        cls, why = _curl_class(obs.exit_code, obs.curl_message)
        return cls, [why, curl_line]

    status = obs.status
    ev: list[str] = []
    if status is not None:
        ev.append(f"HTTP status {status} ({obs.status_source})")
    ev.extend(_header_notes(obs))

    # 2. Denials win over any other Envoy text: a denying filter runs before the router, and its reply or log line
    #    can quote the authorization call's own failure (e.g. "no healthy upstream" for a down ext-authz cluster).
    denial = _denial(obs)
    if denial:
        return "denied", [denial, *ev]

    # 3. Envoy's local-reply body (only with a 5xx status, or when the status is unknown: a 2xx body that quotes
    #    Envoy's words is the application's content, not a local reply).
    if status is None or status >= 500:
        reply = _local_reply(obs.body)
        if reply:
            cls, why = reply
            tls = _tls_refinement(obs) if cls == "upstream-connect-failure" else None
            if tls:
                return "upstream-tls-failure", [tls, why, *ev]
            return cls, [why, *ev, *_log_agreement(obs, cls)]

    # 4. Access-log response flags.
    logged = _log_class(obs.entries, status)
    if logged:
        cls, why = logged
        return cls, [why, *ev]

    # 5. Fixed local-reply lengths when `curl -I` left no body.
    fixed = _fixed_length(obs)
    if fixed:
        cls, why = fixed
        return cls, [why, *ev]

    # 6. curl failed after a response started (e.g. reset in the body).
    if curl_failed and status is not None and status < 400:
        cls, why = _curl_class(obs.exit_code, obs.curl_message)
        return cls, [why, curl_line, *ev]

    # 7. The status alone.
    return _status_alone(obs, status, ev)


def _status_alone(obs: _Observed, status: int | None, ev: list[str]) -> tuple[str, list[str]]:
    """_decide's last rule: no Envoy reason found, so the HTTP status (from curl, else the access log) decides."""
    if status is None and obs.entries:
        status = next((e.code for e in reversed(obs.entries) if e.code), None)
        if status:
            ev.append(f"HTTP status {status} (from the access log)")
    if status is not None and 200 <= status < 400:
        return "ok", [*ev, *_log_agreement(obs, "ok")]
    if status is not None and status >= 400:
        return "http-error", [f"HTTP {status} without an Envoy reason (body, flags or known local-reply length)",
                              *ev]
    if obs.exit_code == 0 and obs.body.strip():
        return "unknown", ["curl succeeded but printed no status line: run curl with -i (or the lab's probe)",
                           *ev]
    return "unknown", ["no curl error, HTTP status, Envoy reply or access-log flags found", *ev]


# --- observation ---------------------------------------------------------------------------------------
def _observe(output: str, exit_code: int | None, access_log: str | None) -> _Observed:
    obs = _Observed()
    text = output.replace("\r\n", "\n").replace("\r", "\n")
    # curl's exit code: its own error line wins, then the lab's trailer, then kubectl's line, then the caller's
    # value (which may be the exit code of `sh` or `kubectl exec`, not of curl).
    errs = list(_CURL_ERR_RE.finditer(text))
    lab_exit = list(_LAB_EXIT_RE.finditer(text))
    kube_exit = list(_KUBECTL_EXIT_RE.finditer(text))
    if errs:
        obs.exit_code, obs.exit_source = int(errs[-1].group("code")), "curl's error line"
        obs.curl_message = errs[-1].group("msg").strip()
    elif lab_exit:
        obs.exit_code, obs.exit_source = int(lab_exit[-1].group(1)), "the probe's exit trailer"
    elif kube_exit:
        obs.exit_code, obs.exit_source = int(kube_exit[-1].group(1)), "kubectl exec"
    elif exit_code is not None:
        obs.exit_code, obs.exit_source = exit_code, "the caller"
    detail = list(_CONNECT_DETAIL_RE.finditer(text))
    if detail and obs.exit_code == 7:
        obs.curl_message = f"{obs.curl_message} ({detail[-1].group(0).strip()})".strip()
    _observe_http(text, obs)
    obs.entries = parse_access_log(access_log or "")
    return obs


def _observe_http(text: str, obs: _Observed) -> None:
    http = parse_http(text)
    if http.status is not None:
        obs.status, obs.status_source = http.status, "status line"
    obs.headers.update(http.headers)
    obs.body = http.body
    if obs.status is None:
        for regex, source in ((_LAB_STATUS_RE, "the probe's status trailer"),
                              (_WRITEOUT_STATUS_RE, "curl -w http_code"),
                              (_FAIL_STATUS_RE, "curl --fail message")):
            found = list(regex.finditer(text))
            if found:
                code = int(found[-1].group(1))
                if code != 0:  # curl writes 000 when no response came back
                    obs.status, obs.status_source = code, source
                break


# --- signals -----------------------------------------------------------------------------------------------
def _curl_evidence(obs: _Observed) -> str:
    if obs.exit_code is None:
        return "curl exit code unknown"
    msg = f": {obs.curl_message}" if obs.curl_message else ""
    return f"curl exit {obs.exit_code} (from {obs.exit_source}){msg}"


def _curl_class(code: int | None, message: str) -> tuple[str, str]:
    msg = message.lower()
    if code in (5, 6) or "resolve host" in msg or "resolve proxy" in msg:
        return "dns-failure", "curl could not resolve the host name (exit 6)"
    if code == 7:
        if "refused" in msg:
            return "connect-refused", "the TCP connection was refused (nothing listens there)"
        if "unreachable" in msg or "no route to host" in msg:
            return "unreachable", "no route to the address (network or host unreachable)"
        return "connect-refused", ("curl exit 7 without the reason (recent curl prints only \"Couldn't connect to "
                                   "server\"): refused assumed; `curl -v` shows refused vs unreachable")
    if code == 28:
        return "timeout", "curl timed out (exit 28)"
    if code in _TLS_EXITS:
        return "tls-handshake-failure", f"curl's TLS handshake or certificate check failed (exit {code})"
    if code in _RESET_EXITS:
        return "connection-reset", (f"the connection was closed or reset without a (complete) HTTP response "
                                    f"(exit {code})")
    return "unknown", f"curl failed with exit {code}, which says nothing about the path"


# Istio 1.7.8 sets `server_name: istio-envoy` only on the inbound sidecar's and the gateway's HTTP connection managers
# (pilot/pkg/networking/core/v1alpha3/listener.go buildSidecarInboundHTTPListenerOptsForPortOrUDS, gateway.go
# buildGatewayListeners' HTTP and HTTPS servers); the outbound ones set none, so Envoy's default `envoy` applies
# (http_connection_manager/config.cc: DefaultServerString), and with the default server_header_transformation
# OVERWRITE every response that passes an outbound sidecar leaves it saying `envoy`, httpbin's included.
ISTIO_ENVOY_NOTE = ("an Istio gateway or inbound sidecar answered (server: istio-envoy); no outbound sidecar was on "
                    "the way back, it would have overwritten the header with envoy")
ENVOY_NOTE = ("an Envoy answered (server: envoy): a plain Envoy, or an Istio sidecar's outbound listener, which "
              "names itself envoy and writes that on every response it passes, the destination's included")


def _header_notes(obs: _Observed) -> list[str]:
    notes = []
    server = obs.headers.get("server")
    if server:
        who = {"istio-envoy": ISTIO_ENVOY_NOTE, "envoy": ENVOY_NOTE}.get(server.lower())
        notes.append(who or f"server: {server}")
    if "x-envoy-upstream-service-time" in obs.headers:
        notes.append("x-envoy-upstream-service-time is set: some upstream of that Envoy answered (possibly another "
                     "Envoy's local reply), not proof that the destination did")
    return notes


def _local_reply(text: str) -> tuple[str, str] | None:
    if not text:
        return None
    m = _LOCAL_REPLY_RE.search(text)
    if m:
        quoted = " ".join(m.group(0).split())
        if m.group("mixer"):
            return "denied", f"Istio's Mixer policy check failed closed (UNAVAILABLE: ...): {quoted}"
        reason = " ".join((m.group("reason") or "").replace("_", " ").lower().split()).rstrip(".")
        tfr = (m.group("tfr") or "").strip()
        retried = " after retries" if m.group("retried") else ""
        if tfr and _TLS_MARKERS.search(tfr):
            return "upstream-tls-failure", f"Envoy's TLS to the upstream failed{retried}: {quoted}"
        if not reason:
            return "upstream-connect-failure", (f"Envoy's local reply without a reset reason (Envoy before ~1.12; "
                                                f"a connect failure is the usual cause): {quoted}")
        if reason in _CONNECT_REASONS:
            return "upstream-connect-failure", f"Envoy could not connect to the upstream{retried}: {quoted}"
        if reason in _RESET_REASONS:
            return "upstream-reset", f"the upstream connection was reset or closed before headers{retried}: {quoted}"
        if reason in _OVERLOAD_REASONS:
            return "http-error", f"Envoy shed the request (circuit breaker or overload){retried}: {quoted}"
        return "upstream-reset", f"Envoy reset before headers, reason not recognised{retried}: {quoted}"
    low = text.lower()
    if re.search(r"(?m)^\s*no healthy upstream\s*$", low):
        return "no-healthy-upstream", "Envoy's local reply: no healthy upstream (the cluster has no usable endpoint)"
    if re.search(r"(?m)^\s*upstream request timeout\s*$", low):
        return "timeout", "Envoy's local reply: upstream request timeout (the route timeout expired)"
    return None


def _denial(obs: _Observed) -> str | None:
    if obs.status in (403, None) and re.search(r"RBAC: access denied", obs.body):
        return "Envoy's RBAC filter denied the request (RBAC: access denied)"
    if obs.status == 403 and any("UAEX" in e.flags for e in obs.entries):
        return "403 with access-log flag UAEX: denied by the external authorization service"
    for e in reversed(obs.entries):
        c = _entry_class(e)
        if c and c[0] == "denied" and (obs.status is None or e.code in (obs.status, None, 0)):
            return c[1]
    return None


def _entry_class(e: LogEntry) -> tuple[str, str] | None:
    f = set(e.flags)
    said = _describe_entry(e)
    # flags first: an entry's free text (details, authz messages) can mention other failures (the UAEX trap)
    if f & {"UAEX", "RL", "RLSE"} or "rbac_access_denied" in e.details.lower():
        return "denied", f"{said}: the request was denied by policy"
    if e.cluster == "BlackHoleCluster":
        return "denied", f"{said}: sent to BlackHoleCluster (outboundTrafficPolicy REGISTRY_ONLY or no listener)"
    tls = _TLS_MARKERS.search(e.transport_failure) or _TLS_MARKERS.search(e.details)
    if tls and (f & {"UF", "URX", "UC", "UR", "LR"} or e.code in (503, 0)):
        return "upstream-tls-failure", f"{said}: the upstream TLS handshake failed"
    if f & {"NR", "NC", "NFCF"}:
        return "no-route", f"{said}: Envoy had no route (or no cluster/filter chain) for the request"
    if f & {"UH", "LH"}:
        return "no-healthy-upstream", f"{said}: no healthy upstream host"
    if f & {"UF", "URX"}:
        return "upstream-connect-failure", f"{said}: Envoy could not connect to the upstream"
    if f & {"UC", "UR", "LR", "UPE"}:
        return "upstream-reset", f"{said}: the upstream connection was reset or closed before the response"
    if f & {"UT", "SI", "DT", "UMSDR"}:
        return "timeout", f"{said}: a timeout in Envoy"
    if f & {"UO", "OM", "FI", "DPE", "DF", "IH"}:
        return "http-error", f"{said}"
    if f - {"DC", "DI"}:
        return "http-error", f"{said}: flags not classified"
    if e.code is not None and 200 <= e.code < 400:
        return "ok", said
    if e.code is not None and e.code >= 400:
        return "http-error", f"{said}: no response flag (the upstream answered {e.code})"
    return None


def _log_class(entries: list[LogEntry], status: int | None) -> tuple[str, str] | None:
    """The decisive entry: the last one with an Envoy reason (flags, TLS reason, BlackHoleCluster, RBAC details)
    whose code matches the status (when known). Entries with only a code decide only when curl showed no status;
    otherwise the status itself (and the fixed-length fallback) are read first."""
    failing = []
    for e in entries:
        c = _entry_class(e)
        if c and c[0] != "ok" and _has_reason(e) and (status is None or e.code in (status, None, 0) or status >= 500):
            failing.append(c)
    if failing:
        return failing[-1]
    if status is None:
        plain = [c for e in entries if (c := _entry_class(e))]
        if plain:
            return plain[-1]
    return None


def _has_reason(e: LogEntry) -> bool:
    return (bool(set(e.flags) - {"DC", "DI"}) or e.cluster == "BlackHoleCluster"
            or bool(_TLS_MARKERS.search(e.transport_failure)) or "rbac_access_denied" in e.details.lower())


def _tls_refinement(obs: _Observed) -> str | None:
    """The body says only "connection failure" (Istio 1.7's Envoy, and Envoy 1.40 too, as the integration tests
    show); the access log's upstream transport failure reason says whether that failure was the TLS handshake."""
    for e in reversed(obs.entries):
        c = _entry_class(e)
        if c and c[0] == "upstream-tls-failure" and e.code in (obs.status, None):
            return f"{c[1]} (the access log names the TLS error behind the body's connection failure)"
    return None


def _log_agreement(obs: _Observed, cls: str) -> list[str]:
    other = {c[0] for e in obs.entries if (c := _entry_class(e)) and c[0] not in ("ok", cls)}
    return [f"the access log suggests {', '.join(sorted(other))}; what the client got wins (the log may be another "
            "request's or another proxy's)"] if other else []


def _fixed_length(obs: _Observed) -> tuple[str, str] | None:
    if obs.body or obs.status is None:
        return None
    length = obs.headers.get("content-length")
    server = obs.headers.get("server", "").lower()
    if server not in ("", "envoy", "istio-envoy"):
        return None
    hit = FIXED_LENGTHS.get((int(length), obs.status)) if length and length.isdigit() else None
    if hit:
        cls, text = hit
        return cls, (f"no body (curl -I?); content-length {length} with status {obs.status} is the length of "
                     f"Envoy's \"{text}\" (a fallback: the wording and lengths differ across Envoy versions)")
    envoy_made = bool(server) and "x-envoy-upstream-service-time" not in obs.headers
    if length == "0" and obs.status == 404 and envoy_made:
        return "no-route", ("404 from Envoy with an empty body and no x-envoy-upstream-service-time: Envoy's "
                            "no-route reply (weak: only the access log's NR flag proves it)")
    if obs.status == 403 and envoy_made:
        return "denied", ("403 made by Envoy itself (no x-envoy-upstream-service-time): a denying filter such as "
                          "ext-authz or RBAC (weak: the access log's UAEX flag or the RBAC body proves it)")
    return None


# --- access-log parsing ---------------------------------------------------------------------------------
def _log_chunks(text: str) -> Iterable[str]:
    buf: list[str] | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        s = line.strip()
        if buf is not None:
            buf.append(line)
            if s.startswith("}"):
                yield "\n".join(buf)
                buf = None
            continue
        if s.startswith("{") and not s.endswith("}"):
            buf = [line]
            continue
        if s:
            yield line
    if buf:
        yield "\n".join(buf)


def _parse_entry(chunk: str) -> LogEntry | None:
    s = chunk.strip()
    if s.startswith("{"):
        pairs: dict[str, str] = {}
        try:
            obj = json.loads(s)
            if isinstance(obj, dict):
                pairs = {str(k): "" if v is None else str(v) for k, v in obj.items()}
        except ValueError:
            # not valid JSON (elided with "......", typos in keys): read the "key": value pairs one by one
            for pair in _JSON_PAIR_RE.finditer(s):
                value = pair.group("value")
                pairs[pair.group("key")] = value[1:-1] if value.startswith('"') else value
        return _entry_from_pairs(chunk, pairs)
    # the first "<quoted> <code> <flags>" whose flags are Envoy's (so `"..." 200 OK` in other logs is no entry)
    m: re.Match[str] | None = next((x for x in _TEXT_LOG_RE.finditer(s) if _known_flags(x.group("flags"))), None)
    kv: re.Match[str] | None = next((x for x in _KV_FLAGS_RE.finditer(s) if _known_flags(x.group("flags"))), None)
    found = m or kv
    if found is None:
        return None
    code = int(m.group("code")) if m else None
    flags = _split_flags(found.group("flags"))
    # After the flags: %RESPONSE_CODE_DETAILS% in today's formats (Istio 1.7 has the Mixer status there).
    after = s[found.end():].split()
    details = after[0] if after and not after[0].startswith('"') else ""
    quoted = re.findall(r"\"([^\"\n]*)\"", s)
    tfr = next((q for q in quoted if _TLS_MARKERS.search(q)), "")
    cluster_m = re.search(r"\s(BlackHoleCluster|PassthroughCluster|outbound\|\S+|inbound\|\S+)\s", s + " ")
    return LogEntry(raw=chunk, code=code, flags=flags, details=details, transport_failure=tfr,
                    cluster=cluster_m.group(1) if cluster_m else "")


def _entry_from_pairs(raw: str, pairs: dict[str, str]) -> LogEntry | None:
    def find(pattern: str) -> str:
        for k, v in pairs.items():
            if re.fullmatch(pattern, k.strip().lower()):
                return str(v)
        return ""

    code_s = find(r"response_?cod[a-z]{0,2}|status|code")  # tolerates the vector's "response_codo"
    flags_s = find(r"response_?flags(_long)?|flags")
    if not code_s and not flags_s:
        return None
    code = int(code_s) if code_s.strip().isdigit() else None
    return LogEntry(raw=raw, code=code, flags=_split_flags(flags_s or "-"),
                    details=find(r"response_code_details") + " " + find(r"upstream_transport_failure_reason"),
                    transport_failure=find(r"upstream_transport_failure_reason"),
                    cluster=find(r"upstream_clust[a-z]*"))


def _known_flags(value: str) -> bool:
    return value == "-" or all(part in _FLAG_MEANING for part in value.split(","))


def _split_flags(value: str) -> tuple[str, ...]:
    out = []
    for part in value.split(","):
        part = part.strip()
        if part and part != "-":
            out.append(_LONG_FLAGS.get(part, part))
    return tuple(out)


def _describe_entry(e: LogEntry) -> str:
    flags = ",".join(e.flags) or "-"
    meaning = "; ".join(_FLAG_MEANING.get(f, f) for f in e.flags)
    code = e.code if e.code is not None else "?"
    extra = f" [{e.transport_failure}]" if e.transport_failure and e.transport_failure != "-" else ""
    return f"access log: {code} {flags}" + (f" ({meaning})" if meaning else "") + extra
