"""Profiles: every pinned version, image and address the lab uses, in one overridable record.

Sources for the pins: docs/sources.md#kind-node-images (node images), docs/sources.md#istio-release and
docs/sources.md#istio-images (Istio).
Nothing else in the lab hard-codes a version, an image, a cluster name or a subnet.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from lab.errors import UsageError
from lab.values import ascii_int, image_reference, v_version


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster of the topology. `role` says what the scenario runs there."""

    name: str
    role: str  # "client" (sleep in foo, calls the remote service) or "server" (httpbin in bar)
    pod_subnet: str
    service_subnet: str
    gateway_host_port: int  # host side of the 127.0.0.1 port mapping onto the gateway's 15443 nodePort
    vip: str  # the VIP of httpbin.bar.global in this cluster (unique per cluster, 240.0.0.0/4)

    @property
    def context(self) -> str:
        # kind names the kubeconfig context "kind-" + cluster name (kind pkg/cluster/internal/kubeconfig).
        return f"kind-{self.name}"


@dataclass(frozen=True)
class Images:
    # Istio 1.7.8 images (istioctl's build-time hub/tag; docs/sources.md#istio-images); `{tag}` is the Istio version.
    pilot: str = "docker.io/istio/pilot:{tag}"
    proxyv2: str = "docker.io/istio/proxyv2:{tag}"
    # istiocoredns chart values (manifests/charts/istiocoredns/values.yaml, unchanged 1.7.0-1.7.8).
    coredns: str = "docker.io/coredns/coredns:1.6.2"
    coredns_plugin: str = "docker.io/istio/coredns-plugin:0.2-istio-1.1"
    # samples/sleep and samples/httpbin at 1.7.x use unpinned tags; the lock file records what a run used.
    sleep: str = "docker.io/governmentpaas/curl-ssl:latest"
    httpbin: str = "docker.io/kennethreitz/httpbin:latest"

    def resolved(self, istio_version: str) -> dict[str, str]:
        return {k: v.format(tag=istio_version) for k, v in dataclasses.asdict(self).items()}


DEFAULT_CLUSTERS = (
    # Subnets follow Istio's own kind topology (prow/config/topology/multicluster.json).
    ClusterSpec("cluster1", "client", "10.10.0.0/16", "10.255.10.0/24", 31443, "240.0.0.2"),
    ClusterSpec("cluster2", "server", "10.20.0.0/16", "10.255.20.0/24", 32443, "240.0.0.3"),
)


@dataclass(frozen=True)
class Profile:
    name: str
    kind_version: str
    node_image: str  # always with @sha256 digest, as kind's release notes require
    kubectl_version: str  # within one minor of the nodes
    istio_version: str = "1.7.8"
    gateway_node_port: int = 31443  # fixed nodePort of the ingress gateway's 15443 (tls) port
    clusters: tuple[ClusterSpec, ...] = DEFAULT_CLUSTERS
    images: Images = field(default_factory=Images)
    load_images: bool = True  # pull once on the host, `kind load` into every cluster
    cert_source: str = "samples"  # "samples" (the write-up) or "generated" (per-cluster intermediates)
    aaaa_guard: bool = True  # see lab/corefile.py: musl + istiocoredns AAAA NXDOMAIN
    # Every image the profile runs is published for linux/amd64 and linux/arm64, so preflight accepts an arm64
    # Docker host. A fact about the pinned images, not a choice: not overridable (Istio 1.7's images are amd64-only).
    multi_arch_images: bool = False

    @property
    def client(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.role == "client")

    @property
    def server(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.role == "server")

    @property
    def node_minor(self) -> int:
        return int(self.node_image.split(":v", 1)[1].split(".")[1])


PROFILES: dict[str, Profile] = {
    # Kubernetes 1.21 is the newest Istio 1.7 can run on (1.22 removed admissionregistration v1beta1); no upstream
    # report confirms 1.7 on 1.21 (inferred). kind v0.20.0 is the last release listing a 1.21 image.
    "default": Profile(
        name="default",
        kind_version="v0.20.0",
        node_image="kindest/node:v1.21.14@sha256:8a4e9bb3f415d2bb81629ce33ef9c76ba514c14d707f9797a01e3216376ba093",
        kubectl_version="v1.21.14",
    ),
    # The write-up's Kubernetes range (1.17-1.19); 1.19 is the oldest that runs on cgroup v2 hosts. This node image
    # predates kind's fix for iptables 1.8.8+ nf_tables hosts (kind #3054): the lab checks the DNS DNAT rules.
    "writeup": Profile(
        name="writeup",
        kind_version="v0.17.0",
        node_image="kindest/node:v1.19.16@sha256:476cb3269232888437b61deca013832fee41f9f074f9bed79f57e4280f7c48b7",
        kubectl_version="v1.19.16",
    ),
}

# The Istio 1.7 patch releases (tags 1.7.0 ... 1.7.8 of istio/istio; 1.7.8 of February 2021 is the last): a
# version outside them has no release tarball to download, so it is refused here rather than by a 404 later.
ISTIO_RELEASES = tuple(f"1.7.{n}" for n in range(9))

_OVERRIDABLE = {f.name for f in dataclasses.fields(Profile)} - {"name", "clusters", "images", "multi_arch_images"}
_IMAGE_KEYS = {f.name for f in dataclasses.fields(Images)}


def version_key(version: str) -> tuple[int, ...]:
    """An Istio (or any x.y.z) version as a comparable tuple: "1.7.10" > "1.7.5"."""
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def load_profile(name: str = "default", overrides: dict[str, str] | None = None) -> Profile:
    """The named profile with `overrides` applied (`istio_version=1.7.3`, `images.sleep=...`)."""
    if name not in PROFILES:
        raise UsageError(f"unknown profile {name!r}; choose one of: {', '.join(sorted(PROFILES))}")
    profile = PROFILES[name]
    changes: dict[str, Any] = {}  # field name -> value of that field's type
    image_changes: dict[str, str] = {}
    for key, raw in (overrides or {}).items():
        if key.startswith("images."):
            sub = key.split(".", 1)[1]
            if sub not in _IMAGE_KEYS:
                raise UsageError(f"unknown image {sub!r}; known: {', '.join(sorted(_IMAGE_KEYS))}")
            image_changes[sub] = raw
            continue
        if key not in _OVERRIDABLE:
            raise UsageError(f"cannot override {key!r}; overridable: {', '.join(sorted(_OVERRIDABLE))}")
        changes[key] = _coerce(key, raw, getattr(profile, key))
    if image_changes:
        changes["images"] = dataclasses.replace(profile.images, **image_changes)
    profile = dataclasses.replace(profile, **changes)
    _check(profile)
    return profile


def parse_overrides(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(" \t"), value.strip(" \t")
        if not sep or not key:
            raise UsageError(f"override {item!r} is not KEY=VALUE (e.g. istio_version=1.7.3)")
        if not value:
            raise UsageError(f"override {item!r} has an empty value; leave --set {key}=... out to keep the default")
        if key in out and out[key] != value:
            raise UsageError(f"--set {key} given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


def _coerce(key: str, raw: str, current: object) -> object:
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{key} takes true or false, not {raw!r}")
    if isinstance(current, int):
        return ascii_int(raw, key)
    return raw


_NODE_IMAGE = re.compile(r"[^@\s]+:v[0-9]+\.[0-9]+\.[0-9]+@sha256:[0-9a-f]{64}", re.ASCII)


def _check(p: Profile) -> None:
    v_version(p.kind_version, "kind_version")
    v_version(p.kubectl_version, "kubectl_version")
    if "@sha256:" not in p.node_image:
        raise UsageError(f"node_image {p.node_image!r} has no @sha256 digest; kind's release notes require one")
    if not _NODE_IMAGE.fullmatch(p.node_image):
        raise UsageError(f"node_image {p.node_image!r} is not NAME:vX.Y.Z@sha256:<64 hex digits> (kind's release "
                         "notes list them so; the tag gives the Kubernetes version)")
    image_reference(p.node_image, "node_image")
    if not re.fullmatch(r"1\.7\.[0-9]+", p.istio_version, re.ASCII):
        raise UsageError(f"istio_version {p.istio_version!r} is not a 1.7.x release; the .global scenario is 1.7's")
    if p.istio_version not in ISTIO_RELEASES:
        raise UsageError(f"istio_version {p.istio_version} is an unknown 1.7 release; "
                         f"known: {ISTIO_RELEASES[0]} to {ISTIO_RELEASES[-1]}")
    for name, ref in dataclasses.asdict(p.images).items():
        image_reference(ref, f"images.{name}")
    if not 30000 <= p.gateway_node_port <= 32767:
        raise UsageError(f"gateway_node_port {p.gateway_node_port} is outside the NodePort range 30000-32767")
    if p.cert_source not in ("samples", "generated"):
        raise UsageError(f"cert_source {p.cert_source!r} must be 'samples' or 'generated'")
    kubectl_minor = int(p.kubectl_version.lstrip("v").split(".")[1])
    if abs(kubectl_minor - p.node_minor) > 1:
        raise UsageError(f"kubectl {p.kubectl_version} is more than one minor from the nodes (1.{p.node_minor})")
