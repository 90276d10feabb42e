"""Tools the lab runs (kind, kubectl, istioctl + the Istio release tree): found or downloaded once, verified.

Owns: download URLs and checksum URLs for each tool, parsing of the published checksum files and of the tools'
`version` output, the download cache (streamed to a temp file, sha256-checked, atomically renamed), safe
extraction of the Istio release tarball, and `ensure_tools`, which returns the four paths the rest of the lab uses.

Sources (each for the machine the lab runs on, `host_platform`: linux or darwin, amd64 or arm64):
- kind: release assets `kind-<os>-<arch>` and `kind-<os>-<arch>.sha256sum` on
  https://github.com/kubernetes-sigs/kind/releases/download/<v>/ (kind hack/release/build/cross.sh at v0.17.0,
  v0.20.0 and v0.32.0 builds linux and darwin, each amd64 and arm64, then `shasum -a 256 "$f" > "$f".sha256sum`,
  i.e. "<hex>  kind-linux-amd64").
- kubectl: https://dl.k8s.io/release/<v>/bin/<os>/<arch>/kubectl and `kubectl.sha256`, which holds the bare hex
  digest (kubernetes website, docs/tasks/tools/install-kubectl-linux.md: `echo "$(cat kubectl.sha256)  kubectl" |
  sha256sum --check`; install-kubectl-macos.md for bin/darwin/amd64 and bin/darwin/arm64).
- Istio: https://github.com/istio/istio/releases/download/<v>/istio-<v>-<suffix>.tar.gz and `.sha256`, written by
  istio/release-builder pkg/util/files.go `CreateSha` as "<hex> <file>\n" (docs/sources.md#istio-release). The
  suffix is `linux-amd64` or `linux-arm64` (Istio 1.6+), `osx` for macOS on amd64 (every release; 1.20+ also names it
  `osx-amd64` and keeps `osx`, release-builder pkg/build/archive.go at 1.30.3) and `osx-arm64` (Istio 1.10+), as
  istio/istio release/downloadIstioCandidate.sh at 1.30.3 picks them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests

from lab.errors import CommandError, PreflightError, ValidationError
from lab.files import atomic_write
from lab.profile import ProfileBase as Profile
from lab.profile import version_key
from lab.shell import Runner

Progress = Callable[[str], None]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Tools:
    """Paths of the binaries and of the extracted Istio release (istio-<v>/) the lab uses."""

    kind: Path
    kubectl: Path
    istioctl: Path
    istio_dir: Path


@dataclass(frozen=True)
class Sources:
    """Base URLs of the three downloads; tests point them at a local HTTP server."""

    kind: str = "https://github.com/kubernetes-sigs/kind/releases/download"
    kubectl: str = "https://dl.k8s.io/release"
    istio: str = "https://github.com/istio/istio/releases/download"


DEFAULT_SOURCES = Sources()


@dataclass(frozen=True)
class HostPlatform:
    """The OS and CPU the downloaded binaries must run on, in kind's and kubectl's spelling."""

    os: str  # "linux" or "darwin"
    arch: str  # "amd64" or "arm64"

    @property
    def istio_suffix(self) -> str:
        """The part of the Istio release asset's name after the version (see the module docstring)."""
        if self.os == "darwin":
            return "osx" if self.arch == "amd64" else f"osx-{self.arch}"
        return f"{self.os}-{self.arch}"


LINUX_AMD64 = HostPlatform("linux", "amd64")
# The first Istio release with an archive for the platform (downloadIstioCandidate.sh at 1.30.3: ARCH_SUPPORTED=1.6,
# ARCH_SUPPORTED_OSX=1.10 for osx-arm64); linux-amd64 and osx exist for every release the lab knows.
_ISTIO_FIRST = {HostPlatform("linux", "arm64"): (1, 6), HostPlatform("darwin", "arm64"): (1, 10)}
_OS = {"linux": "linux", "darwin": "darwin"}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_platform(system: str | None = None, machine: str | None = None) -> HostPlatform:
    """This machine (`platform.system()`, `platform.machine()`) as a download target; PreflightError if none fits."""
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    os_name = _OS.get(system.lower())
    arch = _ARCH.get(machine.lower()) or ("arm64" if machine.lower().startswith("armv8") else None)
    if os_name is None:
        raise PreflightError(f"this machine runs {system or 'an unknown OS'}: the lab downloads kind, kubectl and "
                             "istioctl for Linux and macOS only; on Windows run it inside WSL2")
    if arch is None:
        raise PreflightError(f"this machine's CPU is {machine or 'unknown'}: kind, kubectl and istioctl are "
                             "downloaded for amd64 (x86_64) and arm64 (aarch64) only; put the tools at the "
                             "profile's versions on PATH, or use such a machine")
    return HostPlatform(os_name, arch)


def cache_dir() -> Path:
    """`$LAB_CACHE`, else `$XDG_CACHE_HOME/istio-multicluster-lab`, else `~/.cache/istio-multicluster-lab`."""
    if os.environ.get("LAB_CACHE"):
        return Path(os.environ["LAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "istio-multicluster-lab"


def kind_url(version: str, sources: Sources = DEFAULT_SOURCES,
             host: HostPlatform = LINUX_AMD64) -> tuple[str, str]:
    """(binary URL, checksum URL) of kind `version` (`v0.20.0`) for `host` (linux-amd64 unless told)."""
    url = f"{sources.kind.rstrip('/')}/{version}/kind-{host.os}-{host.arch}"
    return url, url + ".sha256sum"


def kubectl_url(version: str, sources: Sources = DEFAULT_SOURCES,
                host: HostPlatform = LINUX_AMD64) -> tuple[str, str]:
    """(binary URL, checksum URL) of kubectl `version` (`v1.21.14`) for `host` (linux/amd64 unless told)."""
    url = f"{sources.kubectl.rstrip('/')}/{version}/bin/{host.os}/{host.arch}/kubectl"
    return url, url + ".sha256"


def istio_asset(version: str, host: HostPlatform = LINUX_AMD64) -> str:
    """The release tarball's file name; PreflightError when that Istio release has none for `host`."""
    first = _ISTIO_FIRST.get(host)
    if first is not None and version_key(version)[:2] < first:
        raise PreflightError(f"Istio {version} has no {host.istio_suffix} release (the first is "
                             f"{first[0]}.{first[1]}): run this profile from an amd64 machine")
    return f"istio-{version}-{host.istio_suffix}.tar.gz"


def istio_url(version: str, sources: Sources = DEFAULT_SOURCES,
              host: HostPlatform = LINUX_AMD64) -> tuple[str, str]:
    """(tarball URL, checksum URL) of the Istio `version` (`1.7.8`) release for `host` (linux-amd64 unless told)."""
    # GitHub release asset istio-<version>-<arch>.tar.gz (release-builder pkg/build/archive.go)
    url = f"{sources.istio.rstrip('/')}/{version}/{istio_asset(version, host)}"
    return url, url + ".sha256"


def parse_checksum(text: str, filename: str | None = None) -> str:
    """The sha256 hex digest in a published checksum file.

    Accepts a bare digest (dl.k8s.io) or `sha256sum` lines "<hex>  [*]<name>" (kind, Istio); with several lines,
    `filename` picks the line. Raises ValidationError when there is no well-formed digest.
    """
    entries: list[tuple[str, str | None]] = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields:
            continue
        if not _HEX64.match(fields[0]) or len(fields) > 2:
            raise ValidationError(f"checksum file line {raw.strip()[:80]!r} is not '<sha256 hex> [file name]'")
        name = fields[1].lstrip("*") if len(fields) == 2 else None
        entries.append((fields[0].lower(), name))
    if not entries:
        raise ValidationError("checksum file is empty: expected a sha256 hex digest")
    if filename is not None:
        named = [d for d, n in entries if n == filename]
        if named:
            return named[0]
        if all(n is not None for _, n in entries):
            names = ", ".join(str(n) for _, n in entries)
            raise ValidationError(f"checksum file lists {names}, not {filename}")
    if len(entries) > 1:
        raise ValidationError(f"checksum file has {len(entries)} digests; cannot tell which is {filename}")
    return entries[0][0]


def parse_kind_version(output: str) -> str | None:
    """`kind version` output ("kind v0.20.0 go1.20.4 linux/amd64") -> "v0.20.0"; None if not recognised."""
    m = re.search(r"\bkind (v\d+\.\d+\.\d+\S*)", output)
    return m.group(1) if m else None


def parse_kubectl_version(output: str) -> str | None:
    """`kubectl version --client -o json` output (or the old `GitVersion:"v1.21.14"` / `Client Version: v1.21.14`
    text forms) -> "v1.21.14"; None if not recognised."""
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if isinstance(data, dict):
        client = data.get("clientVersion")
        version = client.get("gitVersion") if isinstance(client, dict) else None
        if isinstance(version, str):
            return version
        return None
    m = re.search(r'GitVersion:"(v[^"]+)"', output) or re.search(r"Client Version: (v\d+\.\d+\.\d+\S*)", output)
    return m.group(1) if m else None


def parse_istioctl_version(output: str) -> str | None:
    """`istioctl version --remote=false` output ("1.7.8", or "client version: 1.7.8") -> "1.7.8"."""
    for line in output.splitlines():
        line = line.strip()
        m = re.fullmatch(r"(?:client version:\s*)?(\d+\.\d+\.\d+\S*)", line, flags=re.IGNORECASE)
        if m:
            return m.group(1)
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def download(url: str, checksum_url: str, dest: Path, *, progress: Progress | None = None,
             timeout: float = 60.0) -> Path:
    """Stream `url` to a temp file next to `dest`, check it against the digest in `checksum_url`, rename.

    Raises PreflightError (one line: what and what to do) on an HTTP error or a checksum mismatch; a failed
    download leaves nothing at `dest`.
    """
    say = progress or _progress
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        resp = requests.get(checksum_url, timeout=timeout)
        resp.raise_for_status()
        expected = parse_checksum(resp.text, PurePosixPath(url).name)
    except requests.RequestException as err:
        raise PreflightError(f"cannot fetch checksum {checksum_url} ({_reason(err)}): check the network or "
                             f"the version in the profile") from err
    except ValidationError as err:
        raise PreflightError(f"checksum file {checksum_url} is not usable ({err}): check the URL") from err
    return _fetch_checked(url, expected, dest, f"{checksum_url} says", say, timeout)


def download_pinned(url: str, sha256: str, dest: Path, *, progress: Progress | None = None,
                    timeout: float = 60.0) -> Path:
    """`download` for a file whose publisher prints no checksum file: `sha256` is the digest the lab pinned.

    An existing `dest` with that digest is kept (nothing is fetched); one with another digest is fetched again.
    Raises PreflightError as `download` does; a failed download leaves nothing new at `dest`.
    """
    if not _HEX64.match(sha256):
        raise ValidationError(f"pinned sha256 {sha256!r} for {url} is not 64 hex digits")
    expected = sha256.lower()
    if dest.is_file() and sha256_file(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _fetch_checked(url, expected, dest, "the lab pins", progress or _progress, timeout)


def _fetch_checked(url: str, expected: str, dest: Path, source: str, say: Progress, timeout: float) -> Path:
    """Stream `url` to a temp file beside `dest`, compare its sha256 with `expected` (what `source` gives), rename."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            total = int(r.headers.get("Content-Length") or 0)
            done = 0
            next_report = 0.0
            say(f"downloading {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""))
            for chunk in r.iter_content(chunk_size=_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if total and done / total >= next_report:
                    say(f"  {dest.name}: {done * 100 // total}% of {total / 1e6:.1f} MB")
                    next_report += 0.25
        actual = digest.hexdigest()
        if actual != expected:
            raise PreflightError(f"{url} has sha256 {actual}, but {source} {expected}: "
                                 f"the download is corrupt or tampered with; delete {dest.parent} and retry")
        os.replace(tmp, dest)
        say(f"  {dest.name}: sha256 verified")
        return dest
    except requests.RequestException as err:
        raise PreflightError(f"cannot download {url} ({_reason(err)}): check the network or the version "
                             f"in the profile") from err
    finally:
        tmp.unlink(missing_ok=True)


def _reason(err: requests.RequestException) -> str:
    resp = getattr(err, "response", None)
    if resp is not None:
        return f"HTTP {resp.status_code}"
    return type(err).__name__


def safe_extract(tarball: Path, dest: Path) -> None:
    """Extract a .tar.gz into `dest`, refusing members that escape it (absolute, `..`, links out, devices)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(tarball, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            _check_member(m, root)
        # The "data" filter (Python 3.12, backported to 3.10.12/3.11.4) enforces the same rules again.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - older patch releases
            tar.extractall(root, members=members)


def _check_member(m: tarfile.TarInfo, root: Path) -> None:
    name = PurePosixPath(m.name)
    if name.is_absolute() or ".." in name.parts:
        raise ValidationError(f"archive member {m.name!r} points outside the extraction directory; refusing")
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        raise ValidationError(f"archive member {m.name!r} is a device or fifo; refusing")
    target = (root / m.name).resolve()
    if root not in (target, *target.parents):
        raise ValidationError(f"archive member {m.name!r} resolves outside the extraction directory; refusing")
    if m.issym() or m.islnk():
        link = PurePosixPath(m.linkname)
        base = root if m.islnk() else (root / m.name).parent
        resolved = (base / link).resolve() if not link.is_absolute() else Path(link)
        if link.is_absolute() or root not in (resolved, *resolved.parents):
            raise ValidationError(f"archive link {m.name!r} -> {m.linkname!r} points outside; refusing")


def _on_path_version(runner: Runner, name: str, argv_tail: list[str], parse: Callable[[str], str | None],
                     want: str) -> Path | None:
    found = shutil.which(name)
    if not found:
        return None
    try:
        res = runner.run([found, *argv_tail], check=False, timeout=30, context=f"{name} version")
    except (CommandError, PreflightError):
        return None
    return Path(found) if res.ok and parse(res.output) == want else None


def _ensure_binary(url_pair: tuple[str, str], dest: Path, progress: Progress | None) -> Path:
    if not dest.is_file():
        download(*url_pair, dest, progress=progress)
    mode = dest.stat().st_mode
    if not mode & stat.S_IXUSR:
        dest.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return dest


def ensure_istio(version: str, cache: Path, *, sources: Sources = DEFAULT_SOURCES,
                 progress: Progress | None = None, host: HostPlatform = LINUX_AMD64) -> Path:
    """The extracted `istio-<version>/` directory in the cache (downloaded, verified and extracted once)."""
    base = cache / "istio"
    istio_dir = base / f"istio-{version}"
    marker = base / f".istio-{version}.extracted"
    if marker.is_file() and (istio_dir / "bin" / "istioctl").is_file():
        return istio_dir
    tarball = base / istio_asset(version, host)
    if not tarball.is_file():
        download(*istio_url(version, sources, host), tarball, progress=progress)
    # Extract into a scratch directory and move the tree in whole, so an interrupted extraction is never reused.
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=base))
    try:
        safe_extract(tarball, scratch)
        extracted = scratch / f"istio-{version}"
        if not (extracted / "bin" / "istioctl").is_file():
            raise PreflightError(f"{tarball.name} has no istio-{version}/bin/istioctl: delete {tarball} and retry")
        if istio_dir.exists():
            shutil.rmtree(istio_dir)
        os.replace(extracted, istio_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    atomic_write(marker, sha256_file(tarball) + "\n")
    (progress or _progress)(f"  extracted {istio_dir}")
    return istio_dir


def _cached_istio(version: str, cache: Path) -> Path | None:
    base = cache / "istio"
    istio_dir = base / f"istio-{version}"
    if (base / f".istio-{version}.extracted").is_file() and (istio_dir / "bin" / "istioctl").is_file():
        return istio_dir
    return None


def ensure_tools(profile: Profile, cache_dir: Path, runner: Runner, *, sources: Sources = DEFAULT_SOURCES,
                 progress: Progress | None = None, use_path: bool = True, download: bool = True,
                 host: HostPlatform | None = None) -> Tools:
    """kind, kubectl and istioctl at the profile's exact versions, and the extracted Istio release directory.

    Prefers binaries on PATH whose version matches exactly (when `use_path`), then the cache, then downloads.
    The Istio release tree (samples, manifests/examples) always comes from the cache: istioctl on PATH does not
    say where its release directory is. With `download=False` (read-only commands) nothing is fetched: what is
    missing is one PreflightError naming all of it. Downloads are for `host`, this machine unless told.
    """
    cache = cache_dir
    if not download:
        return _cached_tools(profile, cache, runner, use_path)
    host = host or host_platform()
    kind = use_path and _on_path_version(runner, "kind", ["version"], parse_kind_version, profile.kind_version)
    if not kind:
        kind = _ensure_binary(kind_url(profile.kind_version, sources, host),
                              cache / "bin" / f"kind-{profile.kind_version}", progress)
    kubectl = use_path and _on_path_version(runner, "kubectl", ["version", "--client", "-o", "json"],
                                            parse_kubectl_version, profile.kubectl_version)
    if not kubectl:
        kubectl = _ensure_binary(kubectl_url(profile.kubectl_version, sources, host),
                                 cache / "bin" / f"kubectl-{profile.kubectl_version}", progress)
    istio_dir = ensure_istio(profile.istio_version, cache, sources=sources, progress=progress, host=host)
    istioctl = use_path and _on_path_version(runner, "istioctl", ["version", "--remote=false"],
                                             parse_istioctl_version, profile.istio_version)
    if not istioctl:
        istioctl = istio_dir / "bin" / "istioctl"
    return Tools(kind=Path(kind), kubectl=Path(kubectl), istioctl=Path(istioctl), istio_dir=istio_dir)


def _cached_tools(profile: Profile, cache: Path, runner: Runner, use_path: bool) -> Tools:
    missing = []
    kind = (use_path and _on_path_version(runner, "kind", ["version"], parse_kind_version, profile.kind_version)) \
        or cache / "bin" / f"kind-{profile.kind_version}"
    if not Path(kind).is_file():
        missing.append(f"kind {profile.kind_version}")
    kubectl = (use_path and _on_path_version(runner, "kubectl", ["version", "--client", "-o", "json"],
                                             parse_kubectl_version, profile.kubectl_version)) \
        or cache / "bin" / f"kubectl-{profile.kubectl_version}"
    if not Path(kubectl).is_file():
        missing.append(f"kubectl {profile.kubectl_version}")
    istio_dir = _cached_istio(profile.istio_version, cache)
    if istio_dir is None:
        missing.append(f"the Istio {profile.istio_version} release")
    if missing:
        raise PreflightError(f"{', '.join(missing)}: not on PATH or in the cache {cache}; this command only reads "
                             "what is there and downloads nothing (`make lab-up` downloads them)")
    assert istio_dir is not None
    return Tools(kind=Path(kind), kubectl=Path(kubectl), istioctl=istio_dir / "bin" / "istioctl", istio_dir=istio_dir)


def cached_kubectl(profile: Profile, cache: Path, runner: Runner) -> Path | None:
    """The kubectl `lab up` used (PATH at the pinned version, else the cache), or None; never downloads."""
    found = _on_path_version(runner, "kubectl", ["version", "--client", "-o", "json"], parse_kubectl_version,
                             profile.kubectl_version)
    cached = cache / "bin" / f"kubectl-{profile.kubectl_version}"
    return found or (cached if cached.is_file() else None)
