"""The kind v1alpha4 Cluster config of the replicated-control-planes scenario, from its manifests/ templates.

manifests/replicated-control-planes/kind-cluster.yaml (one control-plane node on the profile's pinned image, the
cluster's pod/service subnets, a 127.0.0.1 host port mapped onto the gateway's fixed nodePort) and, for Kubernetes
< 1.20, kubeadm-trustworthy-jwt.yaml. Field sources: kind `pkg/apis/config/v1alpha4/types.go` at v0.17.0 and v0.20.0
(kind decodes the config strictly, so an unknown key is an error); Istio 1.7.8 `prow/config/trustworthy-jwt.yaml`;
docs/sources.md#kind-config-v1alpha4, docs/sources.md#istio-kubernetes-support.
"""

from __future__ import annotations

from typing import Any

import yaml

from lab import manifests
from lab.scenarios.replicated_control_planes.names import SCENARIO
from lab.scenarios.replicated_control_planes.profiles import ClusterSpec, Profile

# The kubeadm patch for Kubernetes < 1.20 (Istio 1.7.8 prow/config/trustworthy-jwt.yaml): its source and reason are
# in manifests/replicated-control-planes/kubeadm-trustworthy-jwt.yaml.
TRUSTWORTHY_JWT_TEMPLATE = "kubeadm-trustworthy-jwt.yaml"
CONFIG_TEMPLATE = "kind-cluster.yaml"


def needs_trustworthy_jwt_patch(profile: Profile) -> bool:
    """Kubernetes < 1.20 needs the kubeadm patch (docs/sources.md#istio-kubernetes-support)."""
    return profile.node_minor < 20


def render_config(profile: Profile, cluster: ClusterSpec) -> dict[str, Any]:
    """The kind v1alpha4 Cluster config for `cluster` (manifests/replicated-control-planes/kind-cluster.yaml): one
    control-plane node on the profile's pinned image, the cluster's pod/service subnets, a 127.0.0.1 host port mapped
    onto the gateway's fixed nodePort, and (for Kubernetes < 1.20) the kubeadm patch Istio 1.7's CI used for
    third-party JWT (kubeadm-trustworthy-jwt.yaml)."""
    config: dict[str, Any] = yaml.safe_load(manifests.render(
        CONFIG_TEMPLATE, SCENARIO, CLUSTER_NAME=cluster.name, NODE_IMAGE=profile.node_image,
        GATEWAY_NODE_PORT=profile.gateway_node_port, GATEWAY_HOST_PORT=cluster.gateway_host_port,
        POD_SUBNET=cluster.pod_subnet, SERVICE_SUBNET=cluster.service_subnet))
    # A list only some node images need, so it is added here rather than written (empty) into the template.
    if needs_trustworthy_jwt_patch(profile):
        config["kubeadmConfigPatches"] = [manifests.render(TRUSTWORTHY_JWT_TEMPLATE, SCENARIO)]
    return config


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the kubeadm patch) as `|` blocks, so the config reads like kind's examples."""


def _str_block(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_block)


def config_yaml(profile: Profile, cluster: ClusterSpec) -> str:
    """`render_config` as YAML text."""
    return yaml.dump(render_config(profile, cluster), Dumper=_BlockDumper, sort_keys=False)
