"""lab.manifests: the objects as files in manifests/<scenario>/, each used by a builder with exactly its variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab import kind, manifests, plan
from lab.errors import LabError, ManifestError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, istio, kindconfig, serviceentry
from lab.scenarios.replicated_control_planes import steps as rcp_steps
from lab.scenarios.replicated_control_planes.names import SCENARIO

PATHS = plan.Paths(Path("/home/user/lab/.lab"), Path("/home/user/.cache/istio-multicluster-lab/istio-1.7.8"))
SECTIONS = {v for k, v in vars(rcp_steps).items() if k.startswith("S_") and isinstance(v, str)}
README = manifests.ROOT / "README.md"


def test_the_folder_sits_beside_the_package_in_the_checkout():
    assert Path(plan.__file__).resolve().parents[1] / "manifests" == manifests.ROOT
    assert manifests.folder(SCENARIO).is_dir() and manifests.names(SCENARIO)


@pytest.mark.parametrize("name", manifests.names(SCENARIO))
def test_every_template_names_its_write_up_section_and_upstream_source(name):
    header, body = manifests.read(name, SCENARIO)
    said = re.findall(r"^# Write-up section: (.+)$", header, flags=re.M)
    assert said and set(said) <= SECTIONS, said
    assert re.search(r"^# Upstream: \S", header, flags=re.M)
    assert body.strip() and not body.startswith("\n")


def test_a_missing_variable_is_a_lab_error_naming_it():
    with pytest.raises(ManifestError, match=r"namespace.yaml: variables missing NAME \(it uses NAME\)"):
        manifests.render("namespace.yaml", SCENARIO)
    assert issubclass(ManifestError, LabError)


def test_an_extra_variable_is_a_lab_error_naming_it():
    with pytest.raises(ManifestError, match="not used LABELS"):
        manifests.render("namespace.yaml", SCENARIO, NAME="foo", LABELS="x")


@pytest.mark.parametrize("value", ['fo"o', "foo\\", "foo\nbar: baz", "foo\tbar"])
def test_a_value_that_would_break_out_of_its_quoted_scalar_is_refused(value):
    with pytest.raises(ManifestError, match="cannot be placed into a manifest safely"):
        manifests.render("namespace.yaml", SCENARIO, NAME=value)


@pytest.mark.parametrize("value", [True, 1.5, None, ["foo"]])
def test_only_strings_and_integers_are_values(value):
    with pytest.raises(ManifestError, match="must be a string or an integer"):
        manifests.render("namespace.yaml", SCENARIO, NAME=value)


def test_a_missing_template_says_to_run_from_a_checkout():
    with pytest.raises(ManifestError, match="run the lab from a checkout of the repository"):
        manifests.render("no-such.yaml", SCENARIO)


def test_a_template_without_its_header_or_with_a_stray_dollar_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(manifests, "ROOT", tmp_path)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "bare.yaml").write_text("kind: Namespace\n")
    (tmp_path / "s" / "dollar.yaml").write_text("# Write-up section: x\n\nprice: 5$ \n")
    with pytest.raises(ManifestError, match="must start with comment lines"):
        manifests.render("bare.yaml", "s")
    with pytest.raises(ManifestError, match="a `\\$` that starts no variable"):
        manifests.variables("dollar.yaml", "s")


def test_string_variables_keep_their_type_whatever_the_value():
    # A port name and a host name may be all digits or a YAML 1.1 word; the templates quote string variables, so the
    # objects stay what the builders were given (the dump quotes them, as it did before the templates).
    svc = serviceentry.RemoteService("httpbin", "bar", port_name="80")
    obj = serviceentry.render_client(svc, "240.0.0.2", "123", 31443)
    assert obj["spec"]["ports"][0]["name"] == "80"
    assert obj["spec"]["endpoints"][0] == {"address": "123", "ports": {"80": 31443}}
    on = serviceentry.render_server(serviceentry.RemoteService("httpbin", "bar", port_name="on"), "240.0.0.3")
    assert on["spec"]["ports"][0]["name"] == "on"
    assert "name: 'on'" in serviceentry.to_yaml(on)
    assert yaml.safe_load(rcp_steps.namespace_manifest("123"))["metadata"]["name"] == "123"


def _record(monkeypatch) -> list[tuple[str, frozenset[str]]]:
    calls: list[tuple[str, frozenset[str]]] = []
    real = manifests.render

    def recording(name, scenario=SCENARIO, **values):
        calls.append((name, frozenset(values)))
        return real(name, scenario, **values)

    monkeypatch.setattr(manifests, "render", recording)
    return calls


def test_the_lab_s_plans_use_every_template_with_exactly_its_variables(monkeypatch):
    calls = _record(monkeypatch)
    for profile in (load_profile("default"), load_profile("writeup"),
                    load_profile(overrides={"aaaa_guard": "false"})):
        steps = rcp_steps.build(profile, PATHS)
        plan.render_shell(steps, PATHS)
        plan.render_text(steps)
    used = {name for name, _ in calls}
    assert used == set(manifests.names(SCENARIO))
    for name, given in calls:
        assert given == manifests.variables(name, SCENARIO), name


def test_the_builders_render_from_the_files(monkeypatch):
    calls = _record(monkeypatch)
    profile = load_profile("writeup")
    kindconfig.config_yaml(profile, profile.clusters[0])
    istio.overlay_yaml(profile)
    istio.stats_annotation_patch()
    rcp_steps.namespace_manifest("foo", {"istio-injection": "enabled"})
    svc = serviceentry.RemoteService("httpbin", "bar")
    serviceentry.render_client(svc, "240.0.0.2", "172.18.0.4", 31443)
    serviceentry.render_server(svc, "240.0.0.3")
    corefile.render_block("10.96.0.20")
    corefile.render_block("10.96.0.20", aaaa_guard=False)
    assert [name for name, _ in calls] == [
        "kind-cluster.yaml", "kubeadm-trustworthy-jwt.yaml", "istio-overlay.yaml", "sleep-stats-patch.yaml",
        "namespace.yaml", "serviceentry-client.yaml", "serviceentry-server.yaml", "coredns-global.Corefile",
        "coredns-global-noguard.Corefile"]


def test_the_templates_say_what_the_python_constants_say():
    # Facts the parser and other modules also use (zone, port, cache TTL, apiVersions, the gateway's name and port).
    block = corefile.render_block("10.96.0.20")
    assert block.startswith(f"{corefile.ZONE}:{corefile.PORT} {{")
    assert corefile.cache_ttl(block) == corefile.CACHE_TTL
    profile = load_profile("default")
    assert kindconfig.render_config(profile, profile.clusters[0])["apiVersion"] == kind.API_VERSION
    svc = serviceentry.RemoteService("httpbin", "bar")
    assert serviceentry.render_server(svc, "240.0.0.3")["apiVersion"] == serviceentry.API_VERSION
    gateway = istio.overlay(profile)["spec"]["components"]["ingressGateways"][0]
    assert gateway["name"] == istio.GATEWAY
    tls = [p for p in gateway["k8s"]["service"]["ports"] if p["name"] == "tls"]
    assert tls == [{"name": "tls", "port": istio.TLS_PORT, "targetPort": istio.TLS_PORT,
                    "nodePort": profile.gateway_node_port}]


def test_the_readme_lists_every_template_with_its_variables():
    text = README.read_text(encoding="utf-8")
    for name in manifests.names(SCENARIO):
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is not in {README}"
        assert set(re.findall(r"`\$(\w+)`", row)) == manifests.variables(name, SCENARIO), row
