"""Build the project's upstream wrapper modules (under `upstream/`) and cache the binaries.

Each wrapper module requires an upstream Go module (istio.io/istio, github.com/coredns/coredns) by version, as
ordinary module use; nothing of upstream's source is copied. Binaries are cached under
`$XDG_CACHE_HOME/istio-multicluster-lab/upstream/bin/` keyed by the module's own files, the build flags and the Go
version, so a warm run rebuilds nothing; Go's own module and build caches (`go env GOMODCACHE GOCACHE`, under the
user's home) make a rebuild after a change quick too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "upstream"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "istio-multicluster-lab" / "upstream"


def go_executable() -> str | None:
    return shutil.which("go")


def go_version() -> str:
    go = go_executable()
    if go is None:
        raise BuildError("the Go toolchain (go) is not on PATH")
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


class BuildError(RuntimeError):
    """A wrapper module did not build: the message carries the command and the tail of its output."""


@dataclass
class BuildLog:
    """What the lane built or reused, for the end-of-session summary (component -> seconds, or 'cached')."""

    entries: list[tuple[str, str]] = field(default_factory=list)
    versions: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # findings worth reading on a green run


LOG = BuildLog()


def _fingerprint(module: Path, extra: list[str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in module.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(module)).encode())
        digest.update(path.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]


def _cached_build(module: str, name: str, key_parts: list[str], command: list[str], timeout: float) -> Path:
    """Run `go COMMAND... -o <tmp>` style builds in `upstream/MODULE` once per fingerprint; return the cached binary.
    COMMAND holds the placeholder "{out}" where the output path goes."""
    go = go_executable()
    if go is None:
        raise BuildError("the Go toolchain (go) is not on PATH")
    module_dir = MODULES / module
    out = cache_dir() / "bin" / f"{name}-{_fingerprint(module_dir, [*key_parts, go_version()])}"
    if out.exists():
        LOG.entries.append((name, "cached"))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")  # two lanes building at once do not share a file
    argv = [go, *(str(tmp) if part == "{out}" else part for part in command)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=module_dir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CGO_ENABLED": os.environ.get("CGO_ENABLED", "0")})
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise BuildError(f"{' '.join(argv)} (in {module_dir}) exited {proc.returncode}:\n{tail}")
    tmp.replace(out)
    LOG.entries.append((name, f"built in {time.monotonic() - started:.0f} s"))
    return out


def go_build(
    module: str,
    package: str = ".",
    *,
    name: str | None = None,
    ldflags: str = "",
    tags: str = "",
    timeout: float = 3000,
) -> Path:
    """`go build` PACKAGE of the wrapper module `upstream/MODULE` and return the cached binary's path."""
    command = ["build", "-trimpath", "-o", "{out}"]
    if ldflags:
        command += ["-ldflags", ldflags]
    if tags:
        command += ["-tags", tags]
    return _cached_build(module, name or module, [package, ldflags, tags], [*command, package], timeout)


def go_test_binary(module: str, package: str, *, name: str, timeout: float = 3000) -> Path:
    """`go test -c` PACKAGE of the wrapper module and return the cached test binary (run it with -test.run)."""
    return _cached_build(module, name, ["test", package], ["test", "-c", "-trimpath", "-o", "{out}", package], timeout)


def go_module_dir(module: str, path: str) -> Path:
    """The directory of the required module PATH as the wrapper module `upstream/MODULE` resolves it
    (`go list -m -f {{.Dir}}`, in Go's module cache; downloaded if needed): the release files (charts,
    samples) of the exact version the binary was built from."""
    go = go_executable()
    if go is None:
        raise BuildError("the Go toolchain (go) is not on PATH")
    module_dir = MODULES / module
    argv = [go, "list", "-m", "-f", "{{.Dir}}", path]
    proc = subprocess.run(argv, cwd=module_dir, capture_output=True, text=True, timeout=900)
    out = proc.stdout.strip()
    if proc.returncode != 0 or not out:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise BuildError(f"{' '.join(argv)} (in {module_dir}) exited {proc.returncode}:\n{tail}")
    return Path(out)
