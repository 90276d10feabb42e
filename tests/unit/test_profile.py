"""Profiles: pins, overrides and the rules that refuse bad values before anything runs.

The first tests hold for every profile of every installed scenario (lab.scenario.profiles()); the rest are the 1.7
scenario's own pins and refusals (the 1.30 scenario's are in test_mpmn_profile.py)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from lab import images as lab_images
from lab.errors import UsageError
from lab.profile import ProfileBase, apply_overrides, check, overridable, parse_overrides
from lab.scenario import load_profile, profiles, scenarios
from lab.values import image_reference

EVERY = sorted(profiles())


def _profile(name: str) -> ProfileBase:
    profile: ProfileBase = profiles()[name].profiles[name]
    return profile


# --- every profile of every scenario ----------------------------------------------------------------------------
def test_the_invariants_below_see_every_scenario():
    # every installed scenario has profiles, so the loops below cover each
    assert {profiles()[n].name for n in EVERY} == set(scenarios())
    assert "default" in EVERY


def test_profiles_are_computed_once_and_a_name_two_scenarios_share_is_an_installation_error(monkeypatch):
    from lab import scenario as registry
    from lab.errors import LabError

    assert registry.profiles() is registry.profiles()  # cached, as scenarios() is
    one = scenarios()["replicated-control-planes"]
    monkeypatch.setattr(registry, "scenarios", lambda: {one.name: one, "twin": dataclasses.replace(one, name="twin")})
    registry.profiles.cache_clear()  # what a test that changes the installed scenarios must do
    try:
        with pytest.raises(LabError, match="profile 'default' is defined by both replicated-control-planes and twin"):
            registry.profiles()
    finally:
        registry.profiles.cache_clear()  # a failed computation is not cached; the next call sees the real scenarios


@pytest.mark.parametrize("name", EVERY)
def test_every_profile_passes_check_and_belongs_to_its_scenario(name):
    p = _profile(name)
    check(p)
    assert p.name == name and p.scenario == profiles()[name].name
    assert load_profile(name) == p


@pytest.mark.parametrize("name", EVERY)
def test_every_profile_pins_its_node_image_by_digest_and_kubectl_within_one_minor(name):
    p = _profile(name)
    m = re.fullmatch(r"[a-z0-9./-]+:v1\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}", p.node_image)
    assert m, p.node_image
    assert p.node_minor == int(m.group(1))
    assert re.fullmatch(r"v\d+\.\d+\.\d+", p.kind_version) and re.fullmatch(r"v1\.\d+\.\d+", p.kubectl_version)
    assert abs(int(p.kubectl_version.split(".")[1]) - p.node_minor) <= 1


@pytest.mark.parametrize("name", EVERY)
def test_every_profile_names_well_formed_images_by_an_explicit_tag(name):
    # by tag, not digest: the lab `kind load`s by tag and lock.json records the digests (lab.images.image_list)
    p = _profile(name)
    refs = p.image_refs()
    assert refs, "a profile runs images"
    for role, ref in refs.items():
        assert image_reference(ref, role) == ref
        assert "{tag}" not in ref, f"{role}: the Istio version placeholder is filled in"
        assert "@" not in ref and ":" in ref.rsplit("/", 1)[-1], f"{role} {ref}: an explicit tag"
    assert lab_images.image_list(p) == list(dict.fromkeys(refs.values()))


@pytest.mark.parametrize("name", EVERY)
def test_every_profile_maps_distinct_host_ports(name):
    ports = [port for c in _profile(name).clusters for port, _ in c.host_ports()]
    assert len(set(ports)) == len(ports) and all(1 <= port <= 65535 for port in ports)


@pytest.mark.parametrize("name", EVERY)
def test_every_profile_has_one_client_one_server_and_distinct_cluster_names(name):
    p = _profile(name)
    names = [c.name for c in p.clusters]
    assert len(set(names)) == len(names) >= 2
    assert p.client.role == "client" and p.server.role == "server"
    assert all(c.context == f"kind-{c.name}" for c in p.clusters)


def _as_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("name", EVERY)
def test_every_overridable_value_round_trips_through_set(name):
    # `--set KEY=<the value it has>` gives the same profile back, for every key `--set` takes
    p = _profile(name)
    keys = sorted(overridable(p))
    assert keys
    for key in keys:
        items = [f"{key}={_as_text(getattr(p, key))}"]
        assert apply_overrides(p, parse_overrides(items)) == p, items
    images = getattr(p, "images", None)
    if images is not None:
        for key, ref in dataclasses.asdict(images).items():
            assert apply_overrides(p, parse_overrides([f"images.{key}={ref}"])) == p, key


# --- the 1.7 scenario's profiles ----------------------------------------------------------------------------------


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
