"""A loopback HTTP server (http.server in a thread) serving fake release artifacts for download tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ArtifactServer:
    files: dict[str, bytes]  # URL path ("/v0.20.0/kind-linux-amd64") -> body
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def url(self, path: str = "") -> str:
        return self.base + path


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[ArtifactServer]:
    state = ArtifactServer(files)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
