"""istioctl of the Istio versions the lab installs, built from istio.io/istio by the wrapper modules
`upstream/istioctl-1.7.8` and `upstream/istioctl-1.7.0` (the stand-in for 1.7.3: see its README.md), and small
helpers to run it and read what it renders."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.upstream.gobuild import go_build, go_module_dir

ISTIO_MODULE = "istio.io/istio"
HUB = "docker.io/istio"  # release-builder's StandardEnv HUB and common/scripts/report_build_info.sh's default


@dataclass(frozen=True)
class Release:
    """One Istio version the lab runs (`version`), and the tag whose code the wrapper module builds."""

    version: str  # the lab's istio_version; stamped as the build version, so images render as <hub>/<name>:<version>
    module: str  # folder under upstream/
    code_tag: str  # the istio/istio tag the module requires (its pseudo-version's commit)
    commit: str
    version_pkg: str = "istio.io/pkg/version"  # 1.30: istio.io/istio/pkg/version (report_build_info.sh@1.30.3)

    @property
    def id(self) -> str:
        return self.version if self.code_tag == self.version else f"{self.version}(code {self.code_tag})"

    @property
    def ldflags(self) -> str:
        # The variables common/scripts/report_build_info.sh sets for a release build (istio.io/pkg/version);
        # DockerInfo = {Hub: buildHub, Tag: buildVersion}, which operator/pkg/manifest/shared.go overlayHubAndTag
        # lays over the profile's hub/tag.
        pkg = self.version_pkg
        return " ".join([
            f"-X {pkg}.buildVersion={self.version}",
            f"-X {pkg}.buildGitRevision={self.commit}",
            f"-X {pkg}.buildStatus=Clean",
            f"-X {pkg}.buildTag={self.code_tag}",
            f"-X {pkg}.buildHub={HUB}",
        ])


RELEASES = (
    Release("1.7.8", "istioctl-1.7.8", "1.7.8", "30e54dcb8a1c6196e48394f79fed1399e2562ed3"),
    # 1.7.3's pseudo-version is not served by the module proxy; 1.7.0's charts and render code are those of 1.7.3
    # for everything tested here (upstream/istioctl-1.7.0/README.md lists the differences).
    Release("1.7.3", "istioctl-1.7.0", "1.7.0", "2022348138e47498c4b54995b4cb5a1656817c4e"),
)

# Istio 1.30.3 for the multi-primary-multi-network scenario: no 1.30 tag is served as a module, the wrapper builds
# release-1.30 after 1.30.3 (upstream/istioctl-1.30.x/README.md lists the differences: none in what is tested).
RELEASE_130 = Release("1.30.3", "istioctl-1.30.x", "1.30.3", "9739e10eb9d7", "istio.io/istio/pkg/version")


def build(release: Release) -> Path:
    return go_build(release.module, name=f"istioctl-{release.id}", ldflags=release.ldflags)


def release_dir(release: Release) -> Path:
    """istio.io/istio's module directory: the tag's manifests/ (charts, profiles, examples) and samples/."""
    return go_module_dir(release.module, ISTIO_MODULE)


def run(binary: Path, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    # HOME-independent: istioctl reads $HOME/.istioctl/config.yaml (istioctl/cmd/root.go) but none exists here.
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def objects(text: str) -> list[dict]:
    """The Kubernetes objects of a multi-document YAML stream (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc.get("kind")]


def find(objs: Iterable[dict], kind: str, name: str, namespace: str | None = None) -> dict:
    """The one object of that kind and name (and namespace); AssertionError naming what exists otherwise."""
    matches = [o for o in objs if o.get("kind") == kind and o.get("metadata", {}).get("name") == name
               and (namespace is None or o.get("metadata", {}).get("namespace") == namespace)]
    if len(matches) != 1:
        present = sorted(o["metadata"]["name"] for o in objs if o.get("kind") == kind)
        raise AssertionError(f"expected one {kind} {name} (namespace {namespace}), found {len(matches)}; "
                             f"{kind} objects rendered: {present}")
    return matches[0]


def containers(obj: dict) -> Iterator[dict]:
    """Every container and init container of a workload's pod template (or of a Pod)."""
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec)
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []
