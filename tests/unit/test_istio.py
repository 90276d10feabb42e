"""lab.scenarios.replicated_control_planes.istio: the install overlay against Istio 1.7.8's own default profile, the
install argv, the release files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.errors import PreflightError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import istio

DATA = Path(__file__).resolve().parent.parent / "data" / "istio"
DEFAULT_PROFILE = yaml.safe_load((DATA / "1.7.8" / "default-profile.yaml").read_text())
# Flags `istioctl install` accepts in Istio 1.7.8 (operator/cmd/mesh/install.go addInstallFlags, plus the
# persistent root flags of operator/cmd/mesh/root.go): long and short forms.
INSTALL_FLAGS_1_7_8 = {"--filename", "-f", "--kubeconfig", "-c", "--context", "--readiness-timeout",
                       "--skip-confirmation", "-y", "--force", "--set", "-s", "--charts", "--manifests", "-d",
                       "--revision", "-r", "--dry-run"}


def default_gateway() -> dict:
    (gw,) = [g for g in DEFAULT_PROFILE["spec"]["components"]["ingressGateways"] if g["name"] == istio.GATEWAY]
    return gw


def overlay_gateway(profile=None) -> dict:
    (gw,) = istio.overlay(profile or load_profile("default"))["spec"]["components"]["ingressGateways"]
    return gw


def test_overlay_repeats_every_default_gateway_port_unchanged_but_the_tls_nodeport():
    defaults = default_gateway()["k8s"]["service"]["ports"]
    ours = overlay_gateway()["k8s"]["service"]["ports"]
    assert [{k: v for k, v in p.items() if k != "nodePort"} for p in ours] == defaults
    assert [p.get("nodePort") for p in ours] == [None, None, None, 31443]
    assert [p["name"] for p in ours if "nodePort" in p] == ["tls"]
    assert [p["port"] for p in ours if "nodePort" in p] == [15443]


def test_overlay_takes_the_nodeport_from_the_profile():
    profile = load_profile("default", {"gateway_node_port": "30443"})
    tls = [p for p in overlay_gateway(profile)["k8s"]["service"]["ports"] if p["name"] == "tls"]
    assert tls == [{"name": "tls", "port": 15443, "targetPort": 15443, "nodePort": 30443}]


def test_overlay_makes_the_gateway_a_nodeport_service_and_keeps_it_enabled():
    gw = overlay_gateway()
    assert gw["enabled"] is True
    assert gw["k8s"]["service"]["type"] == "NodePort"


def test_overlay_leaves_the_gateway_env_alone_so_sni_dnat_survives():
    # The profile (and the gateway chart's values.yaml) carry the router mode; the overlay leaves env alone.
    assert {"name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat"} in default_gateway()["k8s"]["env"]
    assert "env" not in overlay_gateway()["k8s"]
    assert "gateways" not in istio.overlay(load_profile("default"))["spec"]["values"]


def test_overlay_sets_if_not_present_pull_policy_and_stdout_access_logs():
    spec = istio.overlay(load_profile("writeup"))["spec"]
    assert spec["values"]["global"]["imagePullPolicy"] == "IfNotPresent"
    assert spec["meshConfig"]["accessLogFile"] == "/dev/stdout"
    # the 1.7.8 default profile leaves both at their off/Always defaults: the overlay is what changes them
    assert DEFAULT_PROFILE["spec"]["values"]["global"].get("imagePullPolicy", "") == ""
    assert "accessLogFile" not in DEFAULT_PROFILE["spec"].get("meshConfig", {})


def test_overlay_is_an_istio_operator_for_the_install_api():
    doc = yaml.safe_load(istio.overlay_yaml(load_profile("default")))
    assert (doc["apiVersion"], doc["kind"]) == ("install.istio.io/v1alpha1", "IstioOperator")
    assert doc == istio.overlay(load_profile("default"))


def test_overlay_does_not_touch_what_the_multicluster_values_file_sets():
    values = DATA / "1.7.8" / "values-istio-multicluster-gateways.yaml"
    theirs = yaml.safe_load(values.read_text())["spec"]
    ours = istio.overlay(load_profile("default"))["spec"]
    assert "egressGateways" not in ours["components"] and "addonComponents" not in ours
    assert set(ours["values"]["global"]) & set(theirs["values"]["global"]) == set()


def test_install_argv_passes_files_in_order_and_names_the_cluster():
    argv = istio.install_argv("/c/istioctl", "/s/kubeconfig/cluster2", "kind-cluster2",
                              [Path("/c/values.yaml"), "/s/overlay.yaml"], readiness_timeout="420s")
    assert argv == ["/c/istioctl", "install", "-f", "/c/values.yaml", "-f", "/s/overlay.yaml", "--skip-confirmation",
                    "--kubeconfig", "/s/kubeconfig/cluster2", "--context", "kind-cluster2",
                    "--readiness-timeout", "420s"]


def test_install_argv_uses_only_flags_istioctl_1_7_8_install_defines():
    argv = istio.install_argv("istioctl", "k", "c", ["a", "b"], readiness_timeout="1s")
    assert {a for a in argv if a.startswith("-")} <= INSTALL_FLAGS_1_7_8


def test_install_argv_without_files_is_refused():
    with pytest.raises(ValueError, match="at least one -f"):
        istio.install_argv("istioctl", "k", "c", [])


def test_values_file_is_found_in_the_release_or_reported_missing(tmp_path):
    with pytest.raises(PreflightError, match="values-istio-multicluster-gateways.yaml is missing"):
        istio.values_file(tmp_path)
    target = tmp_path / istio.VALUES_FILE
    target.parent.mkdir(parents=True)
    target.write_text("kind: IstioOperator\n")
    assert istio.values_file(tmp_path) == target


@pytest.mark.parametrize("name", ["default", "writeup"])
def test_overlay_passes_strict_istio_operator_validation(name):
    from tests.support import schemas

    schemas.validate_istio(istio.overlay(load_profile(name)))
    schemas.validate_manifest(istio.overlay_yaml(load_profile(name)))


def test_strict_validation_would_catch_a_misspelt_overlay_field():
    from lab.errors import ValidationError
    from tests.support import schemas

    bad = istio.overlay(load_profile("default"))
    bad["spec"]["components"]["ingressGateways"][0]["k8s"]["service"]["ports"][3]["nodeport"] = 31443
    with pytest.raises(ValidationError):
        schemas.validate_istio(bad)


# The lab's sidecar requests (lab/scenarios/replicated_control_planes/istio.py LAB_CPU_M; memory as the 1.7.8 profile),
# always in values.global.proxy.
SIDECAR = {"requests": {"cpu": "50m", "memory": "128Mi"}}


# --- Istio images the profile overrides --------------------------------------------------------------------------
MIRRORED = {"images.pilot": "reg.example:5000/istio/pilot:1.7.8",
            "images.proxyv2": "reg.example:5000/istio/proxyv2:1.7.8",
            "images.coredns": "reg.example:5000/coredns/coredns:1.6.2",
            "images.coredns_plugin": "reg.example:5000/istio/coredns-plugin:0.2-istio-1.1"}


@pytest.mark.parametrize("name", ["default", "writeup"])
def test_default_images_leave_the_image_values_to_istioctl(name):
    # istioctl renders docker.io/istio/<image>:<its version> itself; the overlay must not repeat or change it
    assert istio.overlay(load_profile(name))["spec"]["values"] == {"global": {"imagePullPolicy": "IfNotPresent",
                                                                             "proxy": {"resources": SIDECAR}}}


def test_overridden_istio_images_reach_the_install_so_the_loaded_images_are_the_ones_run():
    profile = load_profile(overrides=MIRRORED)
    values = istio.overlay(profile)["spec"]["values"]
    # Istio 1.7.8 charts take a value containing "/" as the whole image reference (istio-discovery deployment,
    # injection template, gateway deployments); istiocoredns renders coreDNSImage:coreDNSTag.
    assert values["pilot"] == {"image": MIRRORED["images.pilot"]}
    assert values["global"]["proxy"] == {"image": MIRRORED["images.proxyv2"], "resources": SIDECAR}
    assert values["global"]["proxy_init"] == {"image": MIRRORED["images.proxyv2"]}
    assert values["global"]["imagePullPolicy"] == "IfNotPresent"
    coredns = values["istiocoredns"]
    assert f"{coredns['coreDNSImage']}:{coredns['coreDNSTag']}" == MIRRORED["images.coredns"]
    assert coredns["coreDNSPluginImage"] == MIRRORED["images.coredns_plugin"]


def test_the_overlay_with_overridden_images_passes_strict_validation():
    from tests.support import schemas

    schemas.validate_istio(istio.overlay(load_profile(overrides=MIRRORED)))


def test_only_the_overridden_image_is_set():
    values = istio.overlay(load_profile(overrides={"images.coredns_plugin": "example/plugin:1"}))["spec"]["values"]
    assert values == {"global": {"imagePullPolicy": "IfNotPresent", "proxy": {"resources": SIDECAR}},
                      "istiocoredns": {"coreDNSPluginImage": "example/plugin:1"}}


@pytest.mark.parametrize(("ref", "installed"), [
    ("pilot:1.7.8-custom", "docker.io/library/pilot:1.7.8-custom"),
    ("pilot", "docker.io/library/pilot"),
    ("example/pilot:1.7.8", "example/pilot:1.7.8"),
    ("localhost:5000/pilot:1.7.8", "localhost:5000/pilot:1.7.8"),
    ("docker.io/istio/pilot:1.7.8-custom", "docker.io/istio/pilot:1.7.8-custom"),
])
def test_chart_image_gives_a_bare_reference_dockers_default_registry_and_keeps_any_other(ref, installed):
    # istio-discovery templates/deployment.yaml at 1.7.8 would otherwise render <hub>/<ref>:<tag>
    assert istio.chart_image(ref) == installed
    overrides = {"images.pilot": ref, "images.proxyv2": ref.replace("pilot", "proxyv2")}
    values = istio.overlay(load_profile(overrides=overrides))["spec"]["values"]
    assert values["pilot"]["image"] == installed
    assert values["global"]["proxy"]["image"] == istio.chart_image(ref.replace("pilot", "proxyv2"))
