"""The profiles of the replicated-control-planes scenario: every pinned version, image and address it uses.

Sources for the pins: docs/sources.md#kind-node-images (node images), docs/sources.md#istio-release and
docs/sources.md#istio-images (Istio).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import ClassVar

from lab.errors import UsageError
from lab.profile import ClusterBase, ProfileBase, check_images
from lab.scenarios.replicated_control_planes.istio import XTABLES_MODULES
from lab.scenarios.replicated_control_planes.names import SCENARIO


@dataclass(frozen=True)
class ClusterSpec(ClusterBase):
    """One cluster: "client" runs sleep in foo and calls the remote service, "server" runs httpbin in bar."""

    gateway_host_port: int  # host side of the 127.0.0.1 port mapping onto the gateway's 15443 nodePort
    vip: str  # the VIP of httpbin.bar.global in this cluster (unique per cluster, 240.0.0.0/4)

    def host_ports(self) -> tuple[tuple[int, str], ...]:
        return ((self.gateway_host_port, f"host port for {self.name}'s gateway"),)


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

# The Istio 1.7 patch releases (tags 1.7.0 ... 1.7.8 of istio/istio; 1.7.8 of February 2021 is the last): a
# version outside them has no release tarball to download, so it is refused here rather than by a 404 later.
ISTIO_RELEASES = tuple(f"1.7.{n}" for n in range(9))


@dataclass(frozen=True)
class Profile(ProfileBase):
    istio_version: str = "1.7.8"
    clusters: tuple[ClusterSpec, ...] = DEFAULT_CLUSTERS
    gateway_node_port: int = 31443  # fixed nodePort of the ingress gateway's 15443 (tls) port
    images: Images = field(default_factory=Images)
    cert_source: str = "samples"  # "samples" (the write-up) or "generated" (per-cluster intermediates)
    aaaa_guard: bool = True  # see lab/scenarios/replicated_control_planes/corefile.py: musl + istiocoredns AAAA

    scenario: ClassVar[str] = SCENARIO
    kernel_modules: ClassVar[tuple[str, ...]] = XTABLES_MODULES
    kernel_modules_for: ClassVar[str] = "Istio 1.7"
    # cert_source too: istiod reads `cacerts` only when it starts (Istio 1.7.8 pilot/pkg/bootstrap/istio_ca.go), so
    # re-applying it from another root leaves both istiods on the old one until some restart splits the mesh.
    REBUILD_ON: ClassVar[tuple[str, ...]] = (*ProfileBase.REBUILD_ON, "cert_source")

    @property
    def client(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.role == "client")

    @property
    def server(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.role == "server")

    def image_refs(self) -> dict[str, str]:
        return self.images.resolved(self.istio_version)

    def cpu_need(self) -> tuple[int, int, str]:
        from lab.scenarios.replicated_control_planes import capacity

        return (capacity.min_cpus(), max(capacity.peak(role) for role in capacity.WORKLOADS),
                "lab/scenarios/replicated_control_planes/capacity.py")

    def check(self) -> None:
        if not re.fullmatch(r"1\.7\.[0-9]+", self.istio_version, re.ASCII):
            raise UsageError(f"istio_version {self.istio_version!r} is not a 1.7.x release; the .global scenario is "
                             "1.7's")
        if self.istio_version not in ISTIO_RELEASES:
            raise UsageError(f"istio_version {self.istio_version} is an unknown 1.7 release; "
                             f"known: {ISTIO_RELEASES[0]} to {ISTIO_RELEASES[-1]}")
        check_images(self)
        if not 30000 <= self.gateway_node_port <= 32767:
            raise UsageError(f"gateway_node_port {self.gateway_node_port} is outside the NodePort range 30000-32767")
        if self.cert_source not in ("samples", "generated"):
            raise UsageError(f"cert_source {self.cert_source!r} must be 'samples' or 'generated'")


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


def load_profile(name: str = "default", overrides: dict[str, str] | None = None) -> Profile:
    """One of this scenario's profiles with `overrides` applied, typed as this scenario's (lab.scenario.load_profile
    finds any scenario's, and refuses a name this scenario does not define)."""
    from lab.scenario import load_profile as load_any

    profile = load_any(name, overrides, scenario=SCENARIO)
    assert isinstance(profile, Profile)
    return profile
