"""Preflight: everything checked before the lab creates anything, each problem one line (what, and the fix).

Checks: Docker engine reachable (`docker info`), Docker host architecture x86_64 (Istio 1.7 images are amd64-only),
Docker memory (MemTotal) against a minimum for two clusters with Istio, Linux inotify limits (kind known-issues),
host ports the kind configs bind on 127.0.0.1, and the tools found on PATH/cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.profile import Profile
from lab.shell import Runner


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str

    def line(self) -> str:
        """The one line the CLI prints."""
        return f"{self.what}: {self.fix}"


def docker_problems(runner: Runner) -> list[Problem]:
    """Docker reachable, x86_64, enough memory (one `docker info --format '{{json .}}'` call)."""
    raise NotImplementedError


def inotify_problems(proc_root: Path = Path("/proc")) -> list[Problem]:
    """fs.inotify.max_user_watches / max_user_instances against kind's known-issues values (Linux only)."""
    raise NotImplementedError


def port_problems(profile: Profile, host: str = "127.0.0.1") -> list[Problem]:
    """Each cluster's gateway host port must be free to bind on 127.0.0.1."""
    raise NotImplementedError


def checks(profile: Profile, runner: Runner, *, proc_root: Path = Path("/proc"),
           skip_ports_of: frozenset[str] = frozenset()) -> list[Problem]:
    """All problems, Docker first (stopping there if the engine is unreachable). `skip_ports_of` names clusters
    that already exist (their port is bound by their own node container)."""
    raise NotImplementedError


def require(profile: Profile, runner: Runner, **kwargs: object) -> None:
    """Raise PreflightError with the first problem's line (and a count of the others)."""
    raise NotImplementedError
