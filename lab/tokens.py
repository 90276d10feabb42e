"""The plan's argv tokens: values an argv names that the plan does not write out itself.

A `Kubeconfig`, `Context`, `File`, `Lookup` or `DockerPlatform` is resolved by the executor (lab/perform.py
Env.resolve) and written by the shell renderer as a variable or `$(kubectl ...)` (lab/plan.py). The argv builders of
other modules (lab/kind.py, lab/images.py, a scenario's istioctl steps) accept them where they accept a path or a
platform, so the plan passes real tokens in, never marker strings to be parsed back out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import overload

SHELL_BASES = ("LAB_HOME", "ISTIO_DIR")


@dataclass(frozen=True)
class Kubeconfig:
    """The lab's own kubeconfig file of a cluster ($LAB_HOME/kubeconfig/<cluster>); never ~/.kube/config."""

    cluster: str


@dataclass(frozen=True)
class Context:
    """The kubeconfig context of a cluster (kind names it kind-<cluster>)."""

    cluster: str
    name: str


@dataclass(frozen=True)
class File:
    """A path under one of the script's base directories: $LAB_HOME (the lab's state) or $ISTIO_DIR (the release)."""

    base: str
    rel: str

    def __post_init__(self) -> None:
        if self.base not in SHELL_BASES or not re.fullmatch(r"[A-Za-z0-9._/-]+", self.rel):
            raise ValueError(f"bad File({self.base!r}, {self.rel!r})")


@dataclass(frozen=True)
class Lookup:
    """A value known only at run time: `kubectl get <args> -o jsonpath=<path>` on a cluster."""

    cluster: str
    context: str
    args: tuple[str, ...]
    jsonpath: str
    what: str  # for messages: "istiocoredns ClusterIP"


@dataclass(frozen=True)
class DockerPlatform:
    """The Docker engine's own platform (`linux/arm64` on Apple Silicon under Docker Desktop): what a profile whose
    images are all multi-arch pulls and saves them as. Known only at run time: `docker version --format
    '{{.Server.Os}}/{{.Server.Arch}}'` (lab.images.DOCKER_PLATFORM_ARGV), once per run; a platform outside `accepted`
    (the platforms every image of the profile is published for) is refused, never replaced by another."""

    accepted: tuple[str, ...]


@dataclass(frozen=True)
class Concat:
    """One argv element made of several parts (`--kubeconfig=` + a Kubeconfig, `ADDR` + `:` + `PORT`)."""

    parts: tuple[str | Kubeconfig | Context | File | Lookup | DockerPlatform, ...]


Token = str | Kubeconfig | Context | File | Lookup | DockerPlatform | Concat


@overload
def joined(prefix: str, value: str) -> str: ...
@overload
def joined(prefix: str, value: Token) -> Token: ...
def joined(prefix: str, value: Token) -> Token:
    """`prefix` + `value` as one argv element (`--kubeconfig=<file>`): a string, or a Concat when `value` is a token."""
    if isinstance(value, str):
        return prefix + value
    if isinstance(value, Concat):
        return Concat((prefix, *value.parts))
    return Concat((prefix, value))


def arg(value: Path | Token) -> Token:
    """An argv builder's value as an argv element: a path as its string, a string or token as it is."""
    return str(value) if isinstance(value, Path) else value
