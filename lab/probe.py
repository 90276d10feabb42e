"""Probes run inside the sleep pods: curl to the remote service and nslookup through a chosen DNS server.

Pure part: the argv to run and the parsing of what came back (`parse_http` is the one reader of an HTTP response
in curl's output; lab.classify reads it too). Thin part: `Prober`, which runs them in the `sleep` container (the
write-up's `kubectl exec ... -c sleep -- curl ...`) through the exec stream of the lab's one handle
(lab.cluster.ClusterHandle), and `envoy_admin` (pilot-agent's admin proxy, by exec).

curl runs under `sh -c` so that its own exit code and the HTTP status are printed in a trailer we can parse,
whatever kubectl does with exit codes. It runs with `-v`: newer curl (7.88, seen here) says only "Couldn't
connect to server" for both a refused and an unreachable address, while the verbose lines (on stderr) still carry
the kernel's reason ("Network is unreachable", "Connection refused") for the classifier.
No `-4`: the lab must see what an application sees, including the AAAA behaviour of musl (a scenario whose names
have no AAAA record guards against it in its DNS configuration).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.cluster import ClusterHandle

STATUS_MARK = "__LAB_HTTP_CODE__="
EXIT_MARK = "__LAB_CURL_EXIT__="
STATUS_RE = re.compile(re.escape(STATUS_MARK) + r"(\d{3})")
EXIT_RE = re.compile(re.escape(EXIT_MARK) + r"(\d+)")
CURL_ERR_RE = re.compile(r"curl: \((?P<code>\d+)\)\s*(?P<msg>[^\n]*)")
KUBECTL_EXIT_RE = re.compile(r"command terminated with exit code (\d+)")
WRITEOUT_STATUS_RE = re.compile(r"(?im)^\s*(?:response|http)[ _]code:\s*(\d{3})\s*$")
_STATUS_LINE_RE = re.compile(r"HTTP/\d(?:\.\d)?\s+(\d{3})\b")
_HEADER_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*):\s*(?P<value>.*)$")


@dataclass(frozen=True)
class CurlResult:
    status: int | None  # None when curl got no HTTP response (http_code 000)
    exit_code: int
    headers: dict[str, str]
    body: str
    output: str  # everything curl printed, trailer removed: what the classifier reads

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class NslookupResult:
    addresses: list[str]
    exit_code: int
    output: str


def curl_argv(url: str, *, method: str = "GET", head: bool = False, extra: Sequence[str] = (),
              max_time: int = 10, verbose: bool = True) -> list[str]:
    """argv for `sh -c` running curl with headers in the output and a parseable trailer."""
    curl = ["curl", "-sS", *(["-v"] if verbose else []), "--max-time", str(max_time)]
    curl += ["-I"] if head else ["-i", "-X", method]
    curl += [*extra, "-w", f"\\n{STATUS_MARK}%{{http_code}}\\n", url]
    script = f"{shlex.join(curl)}; echo \"{EXIT_MARK}$?\""
    return ["sh", "-c", script]


def nslookup_argv(name: str, server: str | None = None, qtype: str = "a") -> list[str]:
    """The write-up's check: `nslookup -type=a <name> <dns service IP>`."""
    argv = ["nslookup", f"-type={qtype}", name]
    return [*argv, server] if server else argv


def parse_curl(output: str, exit_code: int | None = None, *, stderr: str = "") -> CurlResult:
    """Split what `curl_argv` printed into status, curl exit code, response headers and body.

    `output` is curl's stdout (or stdout and stderr together when they cannot be told apart); headers and body
    are read from it. `stderr` (curl's -v lines and error) only joins the classifier's text.
    """
    status_m = list(STATUS_RE.finditer(output))
    exit_m = list(EXIT_RE.finditer(output))
    code = int(exit_m[-1].group(1)) if exit_m else (exit_code if exit_code is not None else -1)
    status = int(status_m[-1].group(1)) if status_m else None
    if status == 0:
        status = None
    text = EXIT_RE.sub("", STATUS_RE.sub("", output)).rstrip("\n")
    http = parse_http(text)
    headers, body = http.headers, http.body
    if stderr:
        text = text + "\n" + stderr.rstrip("\n")
    return CurlResult(status, code, headers, body, text)


@dataclass(frozen=True)
class HttpResponse:
    status: int | None  # from the last final (not 1xx) status line; None without one
    headers: dict[str, str]  # its headers, names lower-cased
    body: str  # what follows them, without curl's own lines (verbose, progress, errors, trailers); stripped


def parse_http(text: str) -> HttpResponse:
    """The HTTP response in what curl printed (`-i`, with or without `-v`, stdout and stderr mixed or apart):
    the one reader of it, for `parse_curl` and lab.classify."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    status_idx: int | None = None
    status: int | None = None
    headers: dict[str, str] = {}
    # With `curl -i -v` the response appears twice: as printed output (status line, headers, body) and as
    # `< `-prefixed verbose lines on stderr, which may follow the body. The printed one carries the body: prefer it.
    plain = [i for i, line in enumerate(lines) if not is_verbose(line)]
    for candidates in (plain, range(len(lines))):
        for i in candidates:
            m = _STATUS_LINE_RE.search(lines[i])
            if m and not m.group(1).startswith("1"):
                status_idx = i
                status = int(m.group(1))
        if status_idx is not None:
            break
    body_lines: list[str] = []
    if status_idx is not None:
        i = status_idx + 1
        while i < len(lines):
            raw = lines[i]
            s = _strip_verbose(raw)
            if raw.lstrip().startswith("*"):
                i += 1
                continue
            m = _HEADER_RE.match(s)
            if not s or not m:
                break
            headers[m.group("name").lower()] = m.group("value").strip()
            i += 1
        body_lines = lines[i:]
    else:
        body_lines = lines
    kept = [ln for ln in body_lines
            if not is_verbose(ln) and not is_end_marker(ln) and not CURL_ERR_RE.search(ln) and not is_progress(ln)]
    body = "\n".join(kept).strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    return HttpResponse(status, headers, body)


def _strip_verbose(line: str) -> str:
    s = line.strip()
    if s.startswith("<"):
        s = s[1:].strip()
    return s


def is_verbose(line: str) -> bool:
    """curl -v's own lines: `* info`, `> request`, `< response`, and `{ [n bytes data]` markers."""
    s = line.strip()
    return s in ("*", ">", "<") or s[:2] in ("* ", "> ", "< ", "{ ", "} ")


def is_progress(line: str) -> bool:
    """curl's progress meter (printed without -s): its header lines and its rows of numbers and --:--:-- times."""
    s = line.strip()
    if s.startswith(("% Total", "Dload")):
        return True
    return "--:--" in s and bool(re.fullmatch(r"[\d\s.:kMG%-]+", s))


def is_end_marker(line: str) -> bool:
    return bool(STATUS_RE.search(line) or EXIT_RE.search(line) or KUBECTL_EXIT_RE.search(line)
                or CURL_ERR_RE.search(line) or WRITEOUT_STATUS_RE.search(line))


def _dechunk(body: str) -> str:
    """Decode a chunked body as printed by `curl --raw` (size line in hex, data, ..., 0). On anything odd, return
    the text unchanged: the local-reply search works on it too unless a chunk splits a word."""
    out: list[str] = []
    rest = body
    while rest:
        size_line, sep, rest = rest.partition("\n")
        try:
            size = int(size_line.strip().split(";")[0], 16)
        except ValueError:
            return body
        if size == 0:
            return "".join(out)
        out.append(rest[:size])
        rest = rest[size:].lstrip("\n")
    return "".join(out) or body


def parse_nslookup(output: str) -> list[str]:
    """Addresses busybox/bind nslookup printed in its answer section (after a `Name:` line)."""
    addresses: list[str] = []
    in_answer = False
    for raw in output.splitlines():
        line = raw.strip()
        if line.lower().startswith("name:"):
            in_answer = True
            continue
        if in_answer and line.lower().startswith("address"):
            value = line.split(":", 1)[1].strip()
            # busybox prints "Address: 240.0.0.2", bind "Address: 240.0.0.2"; some print "Address 1: ..."
            value = value.split()[0] if value else value
            if value and "#" not in value:
                addresses.append(value)
    return addresses


def envoy_admin(k: ClusterHandle, namespace: str, pod: str, path: str, *, timeout: float | None = None) -> str:
    """GET `path` (e.g. "config_dump", "stats?filter=...") from the Envoy admin of `pod`'s istio-proxy, through
    pilot-agent's admin proxy (pilot/cmd/pilot-agent/request.go at 1.7.8: `pilot-agent request GET <path>` ->
    localhost:15000, printing the body; it exists in the distroless proxyv2 too, where curl does not), by the
    handle's exec stream (ClusterHandle.envoy_admin)."""
    return k.envoy_admin(namespace, pod, path, timeout=timeout)


@dataclass
class Prober:
    """Runs probes in a cluster's pods, through the exec stream of the cluster's handle."""

    cluster: ClusterHandle
    container: str = "sleep"
    timeouts: dict[str, float] = field(default_factory=lambda: {"exec": 60.0})

    def pod(self, namespace: str, selector: str) -> str:
        """The newest Running pod with `selector` that is not being deleted (lab.cluster.newest_running; a field
        selector on status.phase cannot exclude a pod that is being deleted: it stays Running until its containers
        stop)."""
        found = self.cluster.running_pod(namespace, selector)  # always named: running_pod checks it
        return str(found.metadata.name if found.metadata else "")

    def _run(self, namespace: str, pod: str, argv: Sequence[str]) -> tuple[str, str, int, str]:
        """(stdout, stderr, exit code, both together) of `argv` in the probe's container."""
        res = self.cluster.exec(namespace, pod, self.container, argv, timeout=self.timeouts["exec"])
        return res.stdout, res.stderr, res.exit_code, res.output

    def curl(self, namespace: str, pod: str, url: str, *, method: str = "GET", head: bool = False,
             extra: Sequence[str] = ()) -> CurlResult:
        stdout, stderr, code, _ = self._run(namespace, pod, curl_argv(url, method=method, head=head, extra=extra))
        return parse_curl(stdout, code, stderr=stderr)

    def config_dump(self, namespace: str, selector: str) -> dict[str, Any]:
        """The Envoy /config_dump (`envoy_admin`) of the istio-proxy of the pod `pod(namespace, selector)` picks.
        Bad JSON raises ValueError."""
        pod = self.pod(namespace, selector)
        dump: dict[str, Any] = json.loads(envoy_admin(self.cluster, namespace, pod, "config_dump",
                                                      timeout=self.timeouts["exec"]))
        return dump

    def nslookup(self, namespace: str, pod: str, name: str, server: str | None = None) -> NslookupResult:
        stdout, _, code, output = self._run(namespace, pod, nslookup_argv(name, server))
        return NslookupResult(parse_nslookup(stdout), code, output)
