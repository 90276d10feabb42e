"""The multi-primary-multi-network profile: its pins and the checks that refuse a lab Istio 1.30 would not run."""

from __future__ import annotations

import dataclasses

import pytest

from lab.errors import UsageError
from lab.profile import apply_overrides, check
from lab.scenarios.multi_primary_multi_network import names
from lab.scenarios.multi_primary_multi_network.profiles import PROFILES, ClusterSpec, Profile

DEFAULT = PROFILES["multi-primary"]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_passes_its_own_checks(name: str) -> None:
    check(PROFILES[name])


def test_the_pins_are_the_issues() -> None:
    assert DEFAULT.kind_version == "v0.32.0"
    assert DEFAULT.node_image == ("kindest/node:v1.36.1@sha256:"
                                  "3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5")
    assert DEFAULT.istio_version == "1.30.3"
    refs = DEFAULT.image_refs()
    assert refs["pilot"] == "docker.io/istio/pilot:1.30.3"
    assert refs["proxyv2"] == "docker.io/istio/proxyv2:1.30.3"
    assert refs["metallb_controller"] == "quay.io/metallb/controller:v0.16.1"
    assert DEFAULT.scenario == names.SCENARIO and DEFAULT.multi_arch_images


def test_without_metallb_its_images_are_not_pulled() -> None:
    refs = apply_overrides(DEFAULT, {"metallb": "false"}).image_refs()
    assert not any(k.startswith("metallb_") for k in refs)
    assert "pilot" in refs


def test_one_network_per_cluster_named_as_istio_io_names_them() -> None:
    assert [c.network for c in DEFAULT.clusters] == ["network1", "network2"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"istio_version": "1.7.8"}, "not a 1.30.x release"),
    ({"istio_version": "1.30.9"}, "unknown 1.30 release"),
    ({"mesh_id": "Mesh_1"}, "not a DNS label"),
    ({"node_image": "kindest/node:v1.31.0@sha256:" + "0" * 64, "kubectl_version": "v1.31.0"}, "1.32 to 1.36"),
])
def test_refusals(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        apply_overrides(DEFAULT, overrides)


def test_a_shared_service_subnet_is_refused() -> None:
    c1, c2 = DEFAULT.clusters
    shared = dataclasses.replace(c2, service_subnet=c1.service_subnet)
    with pytest.raises(UsageError, match="istio#32819"):
        check(dataclasses.replace(DEFAULT, clusters=(c1, shared)))


def test_a_subnet_that_is_not_a_cidr_is_refused() -> None:
    c1, c2 = DEFAULT.clusters
    bad = ClusterSpec(c2.name, c2.role, "10.20.0.0/33", c2.service_subnet, c2.network)
    with pytest.raises(UsageError, match="not a CIDR"):
        check(dataclasses.replace(DEFAULT, clusters=(c1, bad)))


def test_clusters_are_not_overridable() -> None:
    with pytest.raises(UsageError, match="cannot override 'clusters'"):
        apply_overrides(DEFAULT, {"clusters": "x"})
    assert isinstance(DEFAULT, Profile)
