"""The profiles of the multi-primary-multi-network scenario: every pinned version, image and address it uses.

Sources for the pins (upstream files named below; docs/multi-primary-faults.md and tests/data/*/README.md cite them):
- Istio 1.30.3, tagged 2026-07-13 (istio/istio tag 1.30.3, commit 56df41f6); supported on Kubernetes 1.32-1.36
  (istio.io content/en/docs/releases/supported-releases). Images: docker.io/istio/pilot and proxyv2 at the release
  tag, the hub and tag release istioctl builds carry (the charts' own values.yaml@1.30.3 leave global.hub and tag
  empty; the overlay sets both, so what runs is what the lab pulled).
- kind v0.32.0 and its default node image, pinned by digest (kind pkg/apis/config/defaults/image.go@v0.32.0).
- MetalLB v0.16.1, L2, native manifests (config/manifests/metallb-native.yaml@v0.16.1: quay.io/metallb/controller and
  speaker at v0.16.1; >= 0.16.0 on Kubernetes 1.36).
- The samples' images: samples/curl/curl.yaml and samples/httpbin/httpbin.yaml@1.30.3 (tests/data/istio-1.30.3).
Every one of these images is published for linux/amd64 and linux/arm64.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from typing import ClassVar

from lab.errors import UsageError
from lab.profile import ClusterBase, ProfileBase, check_images
from lab.scenarios.multi_primary_multi_network.names import SCENARIO


@dataclass(frozen=True)
class ClusterSpec(ClusterBase):
    """One primary cluster: "client" runs curl in `sample` and calls httpbin, "server" runs httpbin there only."""

    network: str  # values.global.network and the istio-system namespace's topology.istio.io/network label


@dataclass(frozen=True)
class Images:
    pilot: str = "docker.io/istio/pilot:{tag}"
    proxyv2: str = "docker.io/istio/proxyv2:{tag}"
    curl: str = "docker.io/curlimages/curl:8.16.0"
    httpbin: str = "docker.io/mccutchen/go-httpbin:v2.15.0"
    metallb_controller: str = "quay.io/metallb/controller:v0.16.1"
    metallb_speaker: str = "quay.io/metallb/speaker:v0.16.1"

    def resolved(self, istio_version: str) -> dict[str, str]:
        return {k: v.format(tag=istio_version) for k, v in dataclasses.asdict(self).items()}


DEFAULT_CLUSTERS = (
    # Distinct pod and service subnets: a remote-only Service's address in cluster1 is cluster2's ClusterIP
    # (pilot/pkg/model/service.go getAllAddressesForProxy@1.30.3), which must not be a local one (istio#32819).
    ClusterSpec("cluster1", "client", "10.10.0.0/16", "10.255.10.0/24", "network1"),
    ClusterSpec("cluster2", "server", "10.20.0.0/16", "10.255.20.0/24", "network2"),
)

# The Istio 1.30 patch releases tagged when the lab was written (istio/istio tags 1.30.0 ... 1.30.3).
ISTIO_RELEASES = tuple(f"1.30.{n}" for n in range(4))
METALLB_VERSION = "v0.16.1"


@dataclass(frozen=True)
class Profile(ProfileBase):
    istio_version: str = "1.30.3"
    clusters: tuple[ClusterSpec, ...] = DEFAULT_CLUSTERS
    images: Images = field(default_factory=Images)
    mesh_id: str = "mesh1"
    metallb: bool = True  # False: no MetalLB; the east-west gateway keeps only its spec.externalIPs fallback
    metallb_version: str = METALLB_VERSION

    scenario: ClassVar[str] = SCENARIO
    multi_arch_images: ClassVar[bool] = True
    REBUILD_ON: ClassVar[tuple[str, ...]] = (*ProfileBase.REBUILD_ON, "mesh_id")

    @property
    def client(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.role == "client")

    @property
    def server(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.role == "server")

    def image_refs(self) -> dict[str, str]:
        refs = self.images.resolved(self.istio_version)
        if not self.metallb:
            refs = {k: v for k, v in refs.items() if not k.startswith("metallb_")}
        return refs

    def check(self) -> None:
        if not re.fullmatch(r"1\.30\.[0-9]+", self.istio_version, re.ASCII):
            raise UsageError(f"istio_version {self.istio_version!r} is not a 1.30.x release; this scenario is "
                             "written against Istio 1.30")
        if self.istio_version not in ISTIO_RELEASES:
            raise UsageError(f"istio_version {self.istio_version} is an unknown 1.30 release; "
                             f"known: {ISTIO_RELEASES[0]} to {ISTIO_RELEASES[-1]}")
        if not 32 <= self.node_minor <= 36:
            raise UsageError(f"node_image is Kubernetes 1.{self.node_minor}; Istio 1.30 supports 1.32 to 1.36")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.mesh_id, re.ASCII):
            raise UsageError(f"mesh_id {self.mesh_id!r} is not a DNS label (lowercase letters, digits, '-')")
        check_images(self)
        _check_subnets(self.clusters)


def _check_subnets(clusters: tuple[ClusterSpec, ...]) -> None:
    nets = []
    for c in clusters:
        for what in ("pod_subnet", "service_subnet"):
            try:
                nets.append((f"{c.name} {what}", ipaddress.ip_network(getattr(c, what))))
            except ValueError as err:
                raise UsageError(f"{c.name} {what} {getattr(c, what)!r} is not a CIDR: {err}") from None
    for i, (a, na) in enumerate(nets):
        for b, nb in nets[i + 1:]:
            if na.overlaps(nb):
                raise UsageError(f"{a} {na} overlaps {b} {nb}; a remote ClusterIP would collide with a local "
                                 "address under DNS proxying (istio#32819): give each cluster its own subnets")


PROFILES: dict[str, Profile] = {
    # kind v0.32.0's default node image (Kubernetes 1.36.1), within Istio 1.30's supported 1.32-1.36.
    "multi-primary": Profile(
        name="multi-primary",
        kind_version="v0.32.0",
        node_image="kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5",
        kubectl_version="v1.36.1",
    ),
}


def load_profile(name: str = "multi-primary", overrides: dict[str, str] | None = None) -> Profile:
    """One of this scenario's profiles with `overrides` applied, typed as this scenario's."""
    from lab.scenario import load_profile as load_any

    profile = load_any(name, overrides, scenario=SCENARIO)
    assert isinstance(profile, Profile)
    return profile
