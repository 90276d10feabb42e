"""A fake Kubernetes API server on 127.0.0.1 for lab/cluster.py's offline tests: it answers the REST paths, the watch
stream and the exec websocket the `kubernetes` client uses, with the JSON shapes the real API returns (objects from
tests/data/kubeapi/, written after the Kubernetes API reference; errors as the metav1.Status apimachinery's
pkg/api/errors builds), and records every request so a test can check what the client sent.

Test-only. It holds objects in memory by (API path prefix, namespace, plural, name); a watch sends the events queued
for it and then holds the stream open until the request's timeoutSeconds, as the real server does.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A metav1.Status as the API server writes it for an error (k8s.io/apimachinery pkg/api/errors)."""
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


def not_found(plural: str, name: str, group: str = "") -> dict[str, Any]:
    what = f"{plural}.{group}" if group else plural
    return status(404, "NotFound", f'{what} "{name}" not found', name=name, group=group or None, kind=plural)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class ExecScript:
    """What one exec answers: stdout, stderr, then the error channel's status (None: close without one)."""

    stdout: str = ""
    stderr: str = ""
    status: dict[str, Any] | None = field(default_factory=lambda: {"metadata": {}, "status": "Success"})
    hang: float = 0.0  # seconds to keep the stream open before closing it (a command that runs long)


def exit_code_status(code: int) -> dict[str, Any]:
    """The error channel's Status for a command that exited non-zero (kubelet's remotecommand, k8s.io/apimachinery
    pkg/util/remotecommand constants NonZeroExitCodeReason, ExitCodeCauseType)."""
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: exit status "
            f"{code}", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


class FakeApiServer:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.errors: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}  # (method, path) -> (code, status)
        self.watch_events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.exec_scripts: list[ExecScript] = []
        # When set, answers every exec instead of `exec_scripts`: given the request (path, query["command"], ...).
        self.exec_answer: Callable[[Request], ExecScript] | None = None
        # Called with each request before it is answered (a test changes the store there: a controller's work).
        self.before: Callable[[Request], None] | None = None
        self.logs: dict[tuple[str, str, str], str] = {}  # (namespace, pod, container) -> what `.../log` returns
        # When True, a patch that changes a Deployment's spec is rolled out at once: the controller's work done
        # (observedGeneration caught up, every replica updated and available), so a rollout wait ends on its read.
        self.instant_rollouts = False
        self._version = 1000
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)  # a short poll: stop() returns at once

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.watch_events.put(None)
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- the store ------------------------------------------------------------------------------------------------
    def next_version(self) -> str:
        with self._lock:
            self._version += 1
            return str(self._version)

    def put(self, prefix: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` under `prefix` ("/api/v1", "/apis/apps/v1", "/apis/networking.istio.io/v1alpha3")."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = self.next_version()
        self.objects[(prefix, meta.get("namespace", ""), plural, meta["name"])] = obj
        return obj

    def get(self, prefix: str, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((prefix, namespace, plural, name))

    def fail(self, method: str, path: str, code: int, body: dict[str, Any] | str) -> None:
        """Answer METHOD PATH with this status and body (a str: sent as it is) from now on."""
        self.errors[(method, path)] = (code, body)

    def kubeconfig(self, path: Path, *, context: str = "kind-fake", token: str = "fake-token") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}]}))
        return path

    # --- HTTP -----------------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # as the real server: keep-alive, and a watch as a chunked stream

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _read_body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                return json.loads(raw) if raw else None

            def _send(self, code: int, body: Any) -> None:
                # a str is sent as it is, still as JSON (a server answering with broken JSON)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                body = self._read_body() if method in ("PUT", "POST", "PATCH") else None
                server.requests.append(Request(method, parts.path, query, dict(self.headers.items()), body))
                if server.before is not None:
                    server.before(server.requests[-1])
                if (method, parts.path) in server.errors:
                    code, err = server.errors[(method, parts.path)]
                    return self._send(code, err)
                if parts.path.endswith("/exec") and self.headers.get("Upgrade", "").lower() == "websocket":
                    return server._exec(self, server.requests[-1])
                return server._rest(self, method, parts.path, query, body)

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET")

            def do_PUT(self) -> None:  # noqa: N802
                self._route("PUT")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._route("PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                self._route("DELETE")

        return Handler

    @staticmethod
    def _split(path: str) -> tuple[str, str, str, str, str]:
        """(prefix, namespace, plural, name, subresource) of an API path."""
        segs = path.strip("/").split("/")
        if segs[0] == "api":
            prefix, rest = "/" + "/".join(segs[:2]), segs[2:]
        else:
            prefix, rest = "/" + "/".join(segs[:3]), segs[3:]
        namespace = ""
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        return prefix, namespace, plural, name, sub

    def _rest(self, h: BaseHTTPRequestHandler, method: str, path: str, query: dict[str, list[str]],
              body: Any) -> None:
        send = h._send  # type: ignore[attr-defined]
        prefix, ns, plural, name, sub = self._split(path)
        group = prefix.split("/")[2] if prefix.startswith("/apis/") else ""
        if method == "GET" and not name:
            if query.get("watch") == ["true"]:
                return self._watch(h, query)
            return send(200, self._list(prefix, ns, plural, query))
        key = (prefix, ns, plural, name)
        live = self.objects.get(key)
        if method == "GET" and plural == "pods" and sub == "log":
            container = (query.get("container") or [""])[0]
            if live is None or (ns, name, container) not in self.logs:
                return send(404, not_found(plural, name, group))
            return self._text(h, self.logs[(ns, name, container)])
        if method == "POST":
            if self.get(prefix, ns, plural, body["metadata"]["name"]) is not None:
                return send(409, status(409, "AlreadyExists", f'{plural} "{body["metadata"]["name"]}" already exists'))
            return send(201, self.put(prefix, plural, body))
        if live is None:
            return send(404, not_found(plural, name, group))
        if method == "GET":
            return send(200, live)
        if method == "PUT":
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != live["metadata"]["resourceVersion"]:
                return send(409, status(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": '
                                        "the object has been modified; please apply your changes to the latest "
                                        "version and try again"))
            if sub == "status":
                body = {**live, "status": body.get("status")}
            return send(200, self.put(prefix, plural, body))
        if method == "PATCH":
            merged = _merge(copy.deepcopy(live), body)
            if plural == "deployments" and merged.get("spec") != live.get("spec"):
                merged["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
                if self.instant_rollouts:
                    wanted = int((merged.get("spec") or {}).get("replicas", 1))
                    merged["status"] = {**(merged.get("status") or {}), "replicas": wanted,
                                        "updatedReplicas": wanted, "readyReplicas": wanted,
                                        "availableReplicas": wanted,
                                        "observedGeneration": merged["metadata"]["generation"]}
            return send(200, self.put(prefix, plural, merged))
        if method == "DELETE":
            del self.objects[key]
            return send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": {"name": name, "group": group, "kind": plural}})
        return send(405, status(405, "MethodNotAllowed", f"{method} is not supported"))

    @staticmethod
    def _text(h: BaseHTTPRequestHandler, text: str) -> None:
        data = text.encode()
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _list(self, prefix: str, ns: str, plural: str, query: dict[str, list[str]]) -> dict[str, Any]:
        wanted = dict(p.split("=", 1) for p in (query.get("labelSelector") or [""])[0].split(",") if "=" in p)
        items = [o for (p, n, pl, _), o in sorted(self.objects.items())
                 if p == prefix and pl == plural and (not ns or n == ns)
                 and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
        return {"kind": "List", "apiVersion": prefix.split("/", 2)[-1],
                "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _watch(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        """Send the queued events, one JSON line each, then keep the stream open until timeoutSeconds."""
        timeout = float((query.get("timeoutSeconds") or ["5"])[0])
        end = time.monotonic() + timeout
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                item = self.watch_events.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if item is None:
                break
            kind, obj = item
            try:
                chunk((json.dumps({"type": kind, "object": obj}) + "\n").encode())
            except OSError:
                return
        with suppress(OSError):
            chunk(b"")

    # --- exec over a websocket (RFC 6455, server side: unmasked frames) ---------------------------------------------
    def _exec(self, h: BaseHTTPRequestHandler, request: Request) -> None:
        key = h.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        h.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
        if self.exec_answer is not None:
            script = self.exec_answer(request)
        else:
            script = self.exec_scripts.pop(0) if self.exec_scripts else ExecScript()
        for channel, text in ((1, script.stdout), (2, script.stderr)):
            if text:
                h.wfile.write(_frame(bytes([channel]) + text.encode()))
        h.wfile.flush()
        if script.hang:
            time.sleep(script.hang)
        if script.status is not None:
            h.wfile.write(_frame(bytes([3]) + json.dumps(script.status).encode()))
        h.wfile.write(_frame(struct.pack("!H", 1000), opcode=0x8))
        h.wfile.flush()


def _frame(payload: bytes, opcode: int = 0x2) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _merge(live: Any, patch: Any) -> Any:
    """A JSON merge of `patch` into `live` (enough for the strategic merge patches of maps the handle sends)."""
    if not isinstance(live, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    for k, v in patch.items():
        live[k] = _merge(live.get(k), v) if v is not None else None
        if v is None:
            live.pop(k)
    return live


@contextmanager
def running() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    try:
        yield server
    finally:
        server.stop()
