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


# --- plan.Template: a plain template applied as it is, which the script fills with envsubst ---------------------
def test_a_template_source_renders_as_the_renderer_and_checks_its_variables_when_built():
    t = plan.Template(SCENARIO, "namespace.yaml", {"NAME": "istio-system"})
    assert t.yaml == manifests.render("namespace.yaml", SCENARIO, NAME="istio-system")
    assert t.vars == (("NAME", "istio-system"),)
    assert t.path == "$LAB_REPO/manifests/replicated-control-planes/namespace.yaml"
    with pytest.raises(ManifestError, match="missing NAME"):
        plan.Template(SCENARIO, "namespace.yaml", {})
    with pytest.raises(ManifestError, match="not used LABELS"):
        plan.Template(SCENARIO, "namespace.yaml", {"NAME": "foo", "LABELS": "x"})
    with pytest.raises(ManifestError, match="cannot be placed into a manifest safely"):
        plan.Template(SCENARIO, "namespace.yaml", {"NAME": 'a"b'})
    with pytest.raises(ValueError, match="bad Template"):
        plan.Template("../etc", "namespace.yaml", {"NAME": "foo"})


def test_a_template_with_a_double_dollar_cannot_be_a_template_source(tmp_path, monkeypatch):
    # string.Template writes `$$` as one `$`, envsubst keeps both: the script would apply another object
    monkeypatch.setattr(manifests, "ROOT", tmp_path)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "price.yaml").write_text('# Write-up section: x\n\nprice: "$$5 $NAME"\n')
    assert manifests.render("price.yaml", "s", NAME="a") == 'price: "$5 a"\n'
    with pytest.raises(ManifestError, match="`\\$\\$` at offset 8 is one `\\$` for the lab but two for envsubst"):
        plan.Template("s", "price.yaml", {"NAME": "a"})


@pytest.mark.parametrize("scenario", sorted(p.name for p in manifests.ROOT.iterdir() if p.is_dir()))
def test_every_template_of_every_scenario_can_be_filled_by_envsubst(scenario):
    for name in manifests.names(scenario):
        manifests.check_envsubst(name, scenario)


def test_the_script_fills_a_template_with_envsubst_limited_to_its_variables():
    t = plan.Template(SCENARIO, serviceentry.SERVER_TEMPLATE,
                      serviceentry.server_vars(serviceentry.RemoteService("httpbin", "bar"), "240.0.0.3"))
    assert plan.shell_template(t) == (
        "ADDRESS=httpbin.bar.svc.cluster.local HOST=httpbin.bar.global NAME=httpbin-bar PORT=8000 PORT_NAME=http1 "
        "VIP=240.0.0.3 \\\n"
        "  envsubst '$ADDRESS $HOST $NAME $PORT $PORT_NAME $VIP' "
        '< "$LAB_REPO/manifests/replicated-control-planes/serviceentry-server.yaml"')
    # values are shell-quoted (a value may hold what the shell would expand)
    odd = plan.Template(SCENARIO, "namespace.yaml", {"NAME": "it's $HOME"})
    assert plan.shell_template(odd).startswith("NAME='it'\"'\"'s $HOME' \\\n  envsubst '$NAME' < ")


def test_a_template_without_variables_is_the_file_itself_in_the_script():
    # no envsubst (and no dangling `\` line of assignments): check_envsubst has refused `$$`, so the file is the object
    t = plan.Template("multi-primary-multi-network", "expose-services.yaml", {})
    assert plan.shell_template(t) == 'cat "$LAB_REPO/manifests/multi-primary-multi-network/expose-services.yaml"'


def test_the_steps_that_apply_a_plain_template_name_the_file_and_the_others_keep_their_text():
    steps = {s.id: s for s in rcp_steps.build(load_profile(), PATHS)}
    sources = {i: s.run.source for i, s in steps.items() if isinstance(s.run, plan.Manifest)}
    templates = {i for i, src in sources.items() if isinstance(src, plan.Template)}
    assert templates == {"cluster1/ns-istio-system", "cluster2/ns-istio-system", "cluster2/serviceentry"}
    # the labelled namespaces are changed in code: still rendered by the plan
    assert isinstance(sources["cluster1/ns-foo"], plan.Text) and isinstance(sources["cluster2/ns-bar"], plan.Text)
    se = sources["cluster2/serviceentry"]
    assert yaml.safe_load(se.yaml) == serviceentry.render_server(serviceentry.RemoteService("httpbin", "bar"),
                                                                 "240.0.0.3")
    assert yaml.safe_load(sources["cluster1/ns-istio-system"].yaml) == yaml.safe_load(
        rcp_steps.namespace_manifest("istio-system"))


def test_only_a_script_that_fills_templates_asks_for_lab_repo_and_envsubst():
    profile = load_profile()
    up = plan.render_shell(rcp_steps.build(profile, PATHS), PATHS)
    down = plan.render_shell(rcp_steps.build_uninstall(profile, PATHS), PATHS)
    assert f'export LAB_REPO="${{LAB_REPO:-{manifests.REPO}}}"' in up and "envsubst (GNU gettext" in up
    assert "LAB_REPO" not in down and "envsubst" not in down


def test_merge_goes_into_mappings_and_replaces_everything_else_in_place():
    into = {"a": {"b": 1, "c": [1]}, "d": "x"}
    out = manifests.merge(into, {"a": {"c": [2], "e": {"f": 3}}, "d": {"g": 4}})
    assert out is into
    assert into == {"a": {"b": 1, "c": [2], "e": {"f": 3}}, "d": {"g": 4}}  # lists and scalars replaced whole
