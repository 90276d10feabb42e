"""The cluster provider seam, and its kind implementation: the only module that knows about kind.

Owns: the `Provider` protocol the plan and executor work against ("a cluster with a kubeconfig and a context"),
the kind v1alpha4 Cluster config (`render_config`), and `KindProvider`, a thin layer over
`pytest_kind.KindCluster` (GPL-3.0: used as a dependency, never copied) plus the docker/kind commands it lacks:
label-confirmed deletion, image loading with the Docker 29 fallback, node IP lookup and the kind #3054 DNS check.

Field sources: kind `pkg/apis/config/v1alpha4/types.go` at v0.17.0 and v0.20.0 (json tags); Istio 1.7.8
`prow/config/trustworthy-jwt.yaml` (kubeadm patch for Kubernetes < 1.20); ../shared/facts/kind.md §3-4.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from lab.profile import ClusterSpec, Profile
from lab.shell import Runner

API_VERSION = "kind.x-k8s.io/v1alpha4"
# kind labels every node container with the cluster name (kind pkg/cluster/internal/providers/docker/constants.go).
CLUSTER_LABEL = "io.x-k8s.kind.cluster"


@runtime_checkable
class Provider(Protocol):
    """What the plan/executor need from a cluster provider. Nothing outside the provider module knows more."""

    name: str

    def kubeconfig(self, cluster: ClusterSpec) -> Path:
        """The kubeconfig file the lab uses for `cluster` (never the user's ~/.kube/config)."""
        ...

    def context(self, cluster: ClusterSpec) -> str:
        """The context name inside that kubeconfig."""
        ...

    def exists(self, cluster: ClusterSpec) -> bool:
        """True if the cluster exists and this provider can prove it made it."""
        ...

    def create(self, cluster: ClusterSpec) -> None:
        """Create the cluster (idempotent: an existing one is reused) and wait until its node is Ready."""
        ...

    def verify(self, cluster: ClusterSpec) -> None:
        """Provider-specific checks after creation; raises PreflightError with one line on a known breakage."""
        ...

    def delete(self, cluster: ClusterSpec) -> bool:
        """Delete the cluster if it is confirmed to be ours; returns whether something was deleted."""
        ...

    def load_images(self, cluster: ClusterSpec, images: Sequence[str]) -> None:
        """Make host images (by tag) available on the cluster's nodes without a registry pull."""
        ...

    def node_ip(self, cluster: ClusterSpec) -> str:
        """The address other clusters reach this cluster's nodes (and NodePorts) on."""
        ...

    def shell_create(self, cluster: ClusterSpec) -> list[str]:
        """Bash lines a person can replay to create the cluster (for `lab plan --shell`)."""
        ...

    def shell_delete(self, cluster: ClusterSpec) -> list[str]:
        """Bash lines that delete the cluster (for `lab plan --shell --uninstall`)."""
        ...

    def shell_load_images(self, cluster: ClusterSpec, images: Sequence[str]) -> list[str]:
        """Bash lines that load host images into the cluster."""
        ...


def render_config(profile: Profile, cluster: ClusterSpec) -> dict:
    """The kind v1alpha4 Cluster config for `cluster`: one control-plane node on the profile's pinned image,
    the cluster's pod/service subnets, a 127.0.0.1 host port mapped onto the gateway's fixed nodePort, and (for
    Kubernetes < 1.20) the kubeadm patch Istio 1.7's CI used for third-party JWT."""
    raise NotImplementedError


def config_yaml(profile: Profile, cluster: ClusterSpec) -> str:
    """`render_config` as YAML text."""
    raise NotImplementedError


def create_argv(kind: Path | str, cluster: ClusterSpec, profile: Profile, config: Path | str,
                kubeconfig: Path | str) -> list[str]:
    """`kind create cluster` argv (what pytest_kind runs, written out for the shell plan)."""
    raise NotImplementedError


def node_container(cluster: ClusterSpec) -> str:
    """The node container name: `<cluster>-control-plane` (kind names nodes `<cluster>-<role>`)."""
    raise NotImplementedError


def dns_dnat_problem(iptables_save: str) -> str | None:
    """kind #3054 check on `iptables-save` output from inside a node: None when Docker's embedded-DNS DNAT rules
    (chain DOCKER_OUTPUT) still carry `--dport 53`, else a one-line explanation of what broke and what to do."""
    raise NotImplementedError




class KindProvider:
    """`Provider` on kind, built on pytest_kind.KindCluster with explicit kind/kubectl/kubeconfig paths."""

    name = "kind"

    def __init__(self, profile: Profile, state_dir: Path, tools: object, runner: Runner) -> None:
        """`tools` is a lab.tools.Tools; `state_dir` holds kubeconfig/<cluster> and kind/<cluster>.yaml."""
        raise NotImplementedError

    def kubeconfig(self, cluster: ClusterSpec) -> Path:
        raise NotImplementedError

    def context(self, cluster: ClusterSpec) -> str:
        raise NotImplementedError

    def node_container(self, cluster: ClusterSpec) -> str:
        raise NotImplementedError

    def exists(self, cluster: ClusterSpec) -> bool:
        raise NotImplementedError

    def create(self, cluster: ClusterSpec) -> None:
        raise NotImplementedError

    def verify(self, cluster: ClusterSpec) -> None:
        raise NotImplementedError

    def delete(self, cluster: ClusterSpec) -> bool:
        raise NotImplementedError

    def load_images(self, cluster: ClusterSpec, images: Sequence[str]) -> None:
        raise NotImplementedError

    def node_ip(self, cluster: ClusterSpec) -> str:
        raise NotImplementedError

    def shell_create(self, cluster: ClusterSpec) -> list[str]:
        raise NotImplementedError

    def shell_delete(self, cluster: ClusterSpec) -> list[str]:
        raise NotImplementedError

    def shell_load_images(self, cluster: ClusterSpec, images: Sequence[str]) -> list[str]:
        raise NotImplementedError
