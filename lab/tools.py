"""Tools the lab runs (kind, kubectl, istioctl + the Istio release tree): found or downloaded once, verified.

Owns: download URLs and checksum URLs for each tool, parsing of the published checksum files and of the tools'
`version` output, the download cache (streamed to a temp file, sha256-checked, atomically renamed), safe
extraction of the Istio release tarball, and `ensure_tools`, which returns the four paths the rest of the lab uses.

Sources:
- kind: release assets `kind-linux-amd64` and `kind-linux-amd64.sha256sum` on
  https://github.com/kubernetes-sigs/kind/releases/download/<v>/ (kind's hack/release/build/cross.sh writes the
  `.sha256sum` next to each binary, in `sha256sum` format "<hex>  <file>").
- kubectl: https://dl.k8s.io/release/<v>/bin/linux/amd64/kubectl and `kubectl.sha256` (the hex digest only).
- Istio: https://github.com/istio/istio/releases/download/<v>/istio-<v>-linux-amd64.tar.gz and `.sha256`
  (istio/release-builder release-1.7 pkg/build/archive.go; ../shared/facts/istio-1.7.md §2).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.profile import Profile
from lab.shell import Runner

Progress = Callable[[str], None]


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


def cache_dir() -> Path:
    """`$LAB_CACHE`, else `$XDG_CACHE_HOME/istio-multicluster-lab`, else `~/.cache/istio-multicluster-lab`."""
    raise NotImplementedError


def kind_url(version: str, sources: Sources = DEFAULT_SOURCES) -> tuple[str, str]:
    """(binary URL, checksum URL) of kind `version` (`v0.20.0`) for linux-amd64."""
    raise NotImplementedError


def kubectl_url(version: str, sources: Sources = DEFAULT_SOURCES) -> tuple[str, str]:
    """(binary URL, checksum URL) of kubectl `version` (`v1.21.14`) for linux/amd64."""
    raise NotImplementedError


def istio_url(version: str, sources: Sources = DEFAULT_SOURCES) -> tuple[str, str]:
    """(tarball URL, checksum URL) of the Istio `version` (`1.7.8`) linux-amd64 release."""
    raise NotImplementedError


def parse_checksum(text: str, filename: str | None = None) -> str:
    """The sha256 hex digest in a published checksum file.

    Accepts a bare digest (dl.k8s.io) or `sha256sum` lines "<hex>  [*]<name>" (kind, Istio); with several lines,
    `filename` picks the line. Raises ValidationError when there is no well-formed digest.
    """
    raise NotImplementedError


def parse_kind_version(output: str) -> str | None:
    """`kind version` output ("kind v0.20.0 go1.20.4 linux/amd64") -> "v0.20.0"; None if not recognised."""
    raise NotImplementedError


def parse_kubectl_version(output: str) -> str | None:
    """`kubectl version --client` output (old Go-struct form or "Client Version: v1.21.14") -> "v1.21.14"."""
    raise NotImplementedError


def parse_istioctl_version(output: str) -> str | None:
    """`istioctl version --remote=false` output ("1.7.8") -> "1.7.8"."""
    raise NotImplementedError


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    raise NotImplementedError


def download(url: str, checksum_url: str, dest: Path, *, progress: Progress | None = None,
             timeout: float = 60.0) -> Path:
    """Stream `url` to a temp file next to `dest`, check it against the digest in `checksum_url`, rename.

    Raises PreflightError (one line: what and what to do) on an HTTP error or a checksum mismatch; a failed
    download leaves nothing at `dest`.
    """
    raise NotImplementedError


def safe_extract(tarball: Path, dest: Path) -> None:
    """Extract a .tar.gz into `dest`, refusing members that escape it (absolute, `..`, links out, devices)."""
    raise NotImplementedError


def ensure_tools(profile: Profile, cache_dir: Path, runner: Runner, *, sources: Sources = DEFAULT_SOURCES,
                 progress: Progress | None = None, use_path: bool = True) -> Tools:
    """kind, kubectl and istioctl at the profile's exact versions, and the extracted Istio release directory.

    Prefers binaries on PATH whose version matches exactly (when `use_path`), then the cache, then downloads.
    """
    raise NotImplementedError


_ = os  # used by the implementation
