"""Preflight: everything checked before the lab creates anything, each problem one line (what, and the fix).

Checks: Docker engine reachable (`docker info`), its version (kind v0.20.0 requires Docker 20.10.0+, release
notes), Docker host architecture x86_64 (Istio 1.7 images and kennethreitz/httpbin are amd64-only:
docs/sources.md#istio-images-amd64), or x86_64 or arm64 for a profile whose images are all multi-arch
(`Profile.multi_arch_images`), CPUs and memory of the Docker host, Linux inotify limits (kind known-issues,
"Pod errors due to 'too many open files'"), the host ports the kind configs bind on 127.0.0.1,
and (when given) the tools' versions.

Minimums (derived from requests, see docs/platform.md): every kind node sees the whole Docker host, and per cluster
the scheduled requests are about 2.8 GiB of memory (istiod alone requests 2048Mi: Istio 1.7.8
manifests/charts/istio-control/istio-discovery/values.yaml); two clusters and their control planes run side by side,
so the lab wants 6 GiB. CPUs: the profile's `cpu_need` (a scenario sums every pod's CPU
request on one node, with the surges of its fault suite, and rounds that peak up).

The kernel modules the profile's sidecars need (`kernel_modules`; Istio 1.7's: the legacy iptables modules
its scenario's istio.py lists): when the Docker engine runs on
this machine's kernel, they must be loaded, built in, or loadable from /lib/modules/<release> (which kind mounts into
every node, where the lab loads them: lab/kind.py). Another kernel (Docker Desktop's VM, a remote engine) is checked
inside the first node instead.
"""

from __future__ import annotations

import errno
import json
import platform
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import CommandError, PreflightError
from lab.profile import ProfileBase as Profile
from lab.shell import Runner

if TYPE_CHECKING:
    from lab.tools import Tools

MIN_MEMORY_BYTES = 6 * 1024**3
MIN_DOCKER = (20, 10, 0)
# kind docs, known-issues "Pod errors due to 'too many open files'".
INOTIFY_MIN = {"max_user_watches": 524288, "max_user_instances": 512}
DOCKER_INFO_TIMEOUT = 15.0


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str
    fatal: bool = False  # no point checking further (no Docker engine to ask)

    def line(self) -> str:
        """The one line the CLI prints."""
        return f"{self.what}: {self.fix}"


def parse_docker_info(stdout: str) -> dict[str, Any]:
    """The JSON object `docker info --format '{{json .}}'` prints ({} if it is not JSON)."""
    try:
        data = json.loads(stdout.strip() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


AMD64 = ("x86_64", "amd64")
# `docker info` reports the engine's `uname -m`: aarch64 on arm64 Linux and in Docker Desktop's VM on Apple Silicon.
ARM64 = ("aarch64", "arm64")


def docker_info_problems(profile: Profile, info: dict[str, Any]) -> list[Problem]:
    """Architecture, version, CPUs and memory from a reachable engine's `docker info`, for `profile` (pure). arm64
    passes only for a profile whose images are all multi-arch (`multi_arch_images`)."""
    problems: list[Problem] = []
    arch = str(info.get("Architecture") or "")
    if profile.multi_arch_images:
        if arch not in AMD64 + ARM64:
            problems.append(Problem(
                f"the Docker host architecture is {arch or 'unknown'}, not x86_64 or arm64",
                f"profile {profile.name}'s images are published for linux/amd64 and linux/arm64; use an x86_64 "
                "or arm64 host (Apple Silicon with Docker Desktop is arm64)"))
    elif arch not in AMD64:
        problems.append(Problem(
            f"the Docker host architecture is {arch or 'unknown'}, not x86_64",
            "Istio 1.7 images (amd64-only up to Istio 1.14) and kennethreitz/httpbin cannot run natively there; "
            "use an x86_64 Linux host or VM"))
    version = str(info.get("ServerVersion") or "")
    parsed = _version(version)
    if parsed is not None and parsed < MIN_DOCKER:
        problems.append(Problem(f"Docker {version} is older than 20.10.0",
                                "kind v0.20.0 requires Docker 20.10.0 or newer; upgrade Docker"))
    cpus = int(info.get("NCPU") or 0)
    need, worst, where = profile.cpu_need()
    if 0 < cpus < need:
        problems.append(Problem(f"the Docker host has {cpus} CPU(s), the lab needs at least {need}",
                                f"each kind node can use at most the host's CPUs and one cluster's pods request up "
                                f"to {worst}m during the fault suite ({where}); give Docker {need}+ CPUs "
                                "(Docker Desktop: Settings > Resources)"))
    mem = int(info.get("MemTotal") or 0)
    if 0 < mem < MIN_MEMORY_BYTES:
        problems.append(Problem(
            f"the Docker host has {mem / 1024**3:.1f} GiB of memory, the lab needs at least "
            f"{MIN_MEMORY_BYTES // 1024**3} GiB",
            "two Kubernetes control planes and two istiods (2 GiB requested each) do not fit; give Docker more "
            "memory (Docker Desktop: Settings > Resources) or use a bigger host"))
    return problems


def _version(text: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def docker_problems(runner: Runner, profile: Profile) -> list[Problem]:
    """Docker reachable, x86_64, recent enough, enough CPUs and memory for `profile` (one `docker info` call)."""
    return _docker(runner, profile)[0]


def _docker(runner: Runner, profile: Profile) -> tuple[list[Problem], dict[str, Any]]:
    argv = ["docker", "info", "--format", "{{json .}}"]
    try:
        res = runner.run(argv, check=False, timeout=DOCKER_INFO_TIMEOUT, context="preflight: docker info")
    except PreflightError:
        return [Problem("the docker command is not installed or not on PATH",
                        "install Docker (https://docs.docker.com/engine/install/) and make sure `docker info` works",
                        fatal=True)], {}
    except CommandError:
        return [Problem(f"the Docker engine did not answer `docker info` within {DOCKER_INFO_TIMEOUT:.0f}s",
                        "restart Docker and check that `docker info` answers", fatal=True)], {}
    info = parse_docker_info(res.stdout)
    if not res.ok or not info.get("ServerVersion"):
        # With no engine, `docker info` exits 1, prints the client part on stdout and the reason on stderr.
        reason = _last_line(res.stderr) or _last_line(res.stdout) or f"exit {res.returncode}"
        return [Problem(f"the Docker engine is not reachable ({reason})",
                        "start Docker (Docker Desktop, or `sudo systemctl start docker`) and check `docker info`; "
                        "nothing was created", fatal=True)], {}
    return docker_info_problems(profile, info), info


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def inotify_problems(proc_root: Path = Path("/proc")) -> list[Problem]:
    """fs.inotify.max_user_watches / max_user_instances against kind's known-issues values (Linux only)."""
    base = proc_root / "sys" / "fs" / "inotify"
    if not base.is_dir():
        return []
    problems = []
    for key, minimum in INOTIFY_MIN.items():
        try:
            value = int((base / key).read_text().strip())
        except (OSError, ValueError):
            continue
        if value < minimum:
            problems.append(Problem(
                f"fs.inotify.{key} is {value}, below the {minimum} kind recommends for several nodes",
                f"run `sudo sysctl fs.inotify.{key}={minimum}` (persist it in /etc/sysctl.conf)"))
    return problems


def _module_names(text: str) -> set[str]:
    """Module names from `modules.dep`/`modules.builtin` lines (paths) or /proc/modules lines (names first);
    the kernel treats `-` and `_` in module names alike."""
    out = set()
    for line in text.splitlines():
        first = line.split(":", 1)[0].split()[0] if line.strip() else ""
        name = first.rsplit("/", 1)[-1]
        name = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", name)
        if name:
            out.add(name.replace("-", "_"))
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def xtables_problems(docker_kernel: str, *, release: str, modules: tuple[str, ...], needed_by: str,
                     proc_root: Path = Path("/proc"), modules_root: Path = Path("/lib/modules")) -> list[Problem]:
    """The legacy iptables modules, when the Docker engine runs on this kernel (`release`, as `uname -r`): each must
    be loaded, built in, or in /lib/modules/<release> for the lab to load from the nodes. [] when Docker's kernel is
    another one (then lab.kind checks in the node) or nothing can be read."""
    if not modules or not docker_kernel or docker_kernel != release:
        return []
    loaded_text = _read(proc_root / "modules")
    if loaded_text is None:
        return []
    moddir = modules_root / release
    have = _module_names(loaded_text)
    for index in ("modules.builtin", "modules.dep"):
        have |= _module_names(_read(moddir / index) or "")
    missing = [m for m in modules if m.replace("-", "_") not in have]
    if not missing:
        return []
    load = f"sudo modprobe -a {' '.join(modules)}"
    if not moddir.is_dir():
        return [Problem(f"the legacy iptables modules {', '.join(missing)} are not loaded and {moddir} does not "
                        "exist, so the kind nodes cannot load them",
                        f"run `{load}` on the Docker host ({needed_by}'s istio-init needs them), then run the lab "
                        "again")]
    return [Problem(f"kernel {release} has no legacy iptables modules {', '.join(missing)} (not loaded, not built in, "
                    f"not in {moddir})",
                    f"{needed_by}'s sidecars (legacy xtables only) cannot run on this kernel at all; use "
                    "a kernel built with the legacy iptables options (IP_NF_IPTABLES, IP_NF_NAT, "
                    "NETFILTER_XT_TARGET_REDIRECT, NETFILTER_XT_MATCH_OWNER), such as Ubuntu's or Debian's")]


def port_problems(profile: Profile, host: str = "127.0.0.1", *,
                  skip_ports_of: Iterable[str] = ()) -> list[Problem]:
    """Each host port the clusters map (ClusterBase.host_ports) must be free to bind on 127.0.0.1."""
    skip = set(skip_ports_of)
    problems = []
    for cluster in profile.clusters:
        if cluster.name in skip:
            continue
        for port, what in cluster.host_ports():
            reason = port_in_use(host, port)
            if reason:
                problems.append(Problem(
                    f"{host}:{port} ({what}) is {reason}",
                    f"free the port (e.g. `ss -ltnp 'sport = :{port}'` shows who holds it)"))
    return problems


def port_in_use(host: str, port: int) -> str | None:
    """None if `host:port` can be bound for TCP now, else why not ('in use', ...)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            return "in use" if err.errno == errno.EADDRINUSE else f"not bindable ({err.strerror})"
    return None


def tool_problems(profile: Profile, tools: Tools, runner: Runner) -> list[Problem]:
    """The tools the lab will run report the profile's exact versions (`tools` is a lab.tools.Tools)."""
    from lab import tools as tools_mod  # late: tools imports istio, keep preflight importable alone

    checks = [
        ("kind", tools.kind, ["version"], tools_mod.parse_kind_version, profile.kind_version),
        ("kubectl", tools.kubectl, ["version", "--client", "-o", "json"], tools_mod.parse_kubectl_version,
         profile.kubectl_version),
        ("istioctl", tools.istioctl, ["version", "--remote=false"], tools_mod.parse_istioctl_version,
         profile.istio_version),
    ]
    problems = []
    for name, path, args, parse, want in checks:
        try:
            res = runner.run([str(path), *args], check=False, timeout=30, context=f"preflight: {name} version")
            got = parse(res.output) if res.ok else None
        except (PreflightError, CommandError):
            got = None
        if got != want:
            problems.append(Problem(f"{path} reports version {got or 'unknown'}, the profile pins {want}",
                                    "remove it from the cache (see `lab.tools.cache_dir()`) so the lab downloads "
                                    "the pinned version"))
    return problems


def checks(profile: Profile, runner: Runner, *, proc_root: Path = Path("/proc"),
           modules_root: Path = Path("/lib/modules"), skip_ports_of: frozenset[str] = frozenset(),
           tools: Tools | None = None) -> list[Problem]:
    """All problems, Docker first (stopping there if the engine is unreachable). `skip_ports_of` names clusters
    that already exist (their port is bound by their own node container). `tools` (lab.tools.Tools) adds the
    version checks."""
    problems, info = _docker(runner, profile)
    if any(p.fatal for p in problems):
        return [p for p in problems if p.fatal][:1]
    if platform.system() == "Linux":
        problems += inotify_problems(proc_root)
        problems += xtables_problems(str(info.get("KernelVersion") or ""), release=platform.release(),
                                     modules=profile.kernel_modules, needed_by=profile.kernel_modules_for,
                                     proc_root=proc_root, modules_root=modules_root)
    problems += port_problems(profile, skip_ports_of=skip_ports_of)
    if tools is not None:
        problems += tool_problems(profile, tools, runner)
    return problems


def message(problems: list[Problem]) -> str:
    """What PreflightError says: one problem as its line; several as a count, then each one on its own line."""
    if len(problems) == 1:
        return problems[0].line()
    return f"{len(problems)} problems stop the lab (nothing was created):\n" + "\n".join(
        f"  - {p.line()}" for p in problems)


def require(profile: Profile, runner: Runner, **kwargs: Any) -> None:
    """Raise PreflightError naming every problem, one line each."""
    problems = checks(profile, runner, **kwargs)
    if problems:
        raise PreflightError(message(problems))
