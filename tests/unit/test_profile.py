"""Profiles: pins, overrides and the rules that refuse bad values before anything runs."""

from __future__ import annotations

import pytest

from lab.errors import UsageError
from lab.profile import parse_overrides
from lab.scenario import load_profile


def test_default_profile_pins_kind_020_and_k8s_121_by_digest():
    p = load_profile()
    assert p.kind_version == "v0.20.0"
    assert p.node_image.startswith("kindest/node:v1.21.14@sha256:8a4e9bb3")
    assert (p.client.name, p.server.name) == ("cluster1", "cluster2")
    assert p.client.vip != p.server.vip


def test_writeup_profile_stays_in_the_writeups_kubernetes_range():
    p = load_profile("writeup")
    assert (p.kind_version, p.node_minor, p.kubectl_version) == ("v0.17.0", 19, "v1.19.16")


def test_overrides_change_only_what_they_name():
    p = load_profile("default", parse_overrides(["istio_version=1.7.3", "images.sleep=curlimages/curl:8.5.0",
                                                 "load_images=false"]))
    assert (p.istio_version, p.images.sleep, p.load_images) == ("1.7.3", "curlimages/curl:8.5.0", False)
    assert p.images.httpbin == load_profile().images.httpbin


@pytest.mark.parametrize(("items", "message"), [
    (["istio_version=1.8.0"], "not a 1.7.x release"),
    (["node_image=kindest/node:v1.21.14"], "no @sha256 digest"),
    (["gateway_node_port=443"], "outside the NodePort range"),
    (["kubectl_version=v1.25.3"], "more than one minor"),
    (["clusters=x"], "cannot override 'clusters'"),
    (["images.nginx=x"], "unknown image 'nginx'"),
    (["load_images=maybe"], "takes true or false"),
])
def test_bad_overrides_are_refused_with_the_rule(items, message):
    with pytest.raises(UsageError, match=message):
        load_profile("default", parse_overrides(items))


def test_unknown_profile_and_malformed_override_are_usage_errors():
    with pytest.raises(UsageError, match="choose one of: default, multi-primary, writeup"):
        load_profile("nope")
    with pytest.raises(UsageError, match="not KEY=VALUE"):
        parse_overrides(["istio_version"])


def test_version_key_orders_patch_releases_numerically():
    from lab.profile import version_key

    assert version_key("1.7.10") > version_key("1.7.5") > version_key("1.7.4")
    assert version_key("1.7.8") == (1, 7, 8)
