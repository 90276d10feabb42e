"""The kind v1alpha4 Cluster config of the multi-primary-multi-network scenario: manifests/multi-primary-multi-network/
kind-cluster.yaml (its header gives the sources: one control-plane node on the profile's pinned image, the cluster's
own pod and service subnets, no host ports) rendered for one cluster."""

from __future__ import annotations

from typing import Any

import yaml

from lab import manifests
from lab.scenarios.multi_primary_multi_network.names import SCENARIO
from lab.scenarios.multi_primary_multi_network.profiles import ClusterSpec, Profile

CONFIG_TEMPLATE = "kind-cluster.yaml"


def render_config(profile: Profile, cluster: ClusterSpec) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(manifests.render(
        CONFIG_TEMPLATE, SCENARIO, CLUSTER_NAME=cluster.name, NODE_IMAGE=profile.node_image,
        POD_SUBNET=cluster.pod_subnet, SERVICE_SUBNET=cluster.service_subnet))
    return config


def config_yaml(profile: Profile, cluster: ClusterSpec) -> str:
    """`render_config` as YAML text (what `kind create cluster --config` reads)."""
    return yaml.safe_dump(render_config(profile, cluster), sort_keys=False)
