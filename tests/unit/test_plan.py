"""The plan as data: its contents per the issue, its ordering rules, and strict validation of every manifest it
applies (Kubernetes kinds against kubernetes-validate's schemas, Istio kinds against Istio 1.7.8's CRDs)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from lab import plan
from lab.errors import ValidationError
from lab.perform import coredns_configmap, sample_manifest, secret_manifest
from lab.plan import (
    Check,
    Command,
    Context,
    CreateCluster,
    File,
    Kubeconfig,
    Lookup,
    Manifest,
    Sample,
    SecretFromFiles,
)
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, istio, serviceentry
from lab.scenarios.replicated_control_planes import steps as rcp_steps
from lab.scenarios.replicated_control_planes.actions import ApplyClientServiceEntry, PatchCoreDNS
from tests.support import schemas
from tests.support.fakelab import ISTIO_DIR, START_COREFILE

PROFILES = {
    "default": load_profile(),
    "writeup": load_profile("writeup"),
    "istio-1.7.3": load_profile(overrides={"istio_version": "1.7.3"}),
    "generated-certs": load_profile(overrides={"cert_source": "generated"}),
    "no-image-loading": load_profile(overrides={"load_images": "false"}),
    "other-sleep-image": load_profile(overrides={"images.sleep": "docker.io/curlimages/curl:8.5.0"}),
}


@pytest.fixture(params=sorted(PROFILES))
def profile(request):
    return PROFILES[request.param]


def by_id(steps):
    return {s.id: s for s in steps}


def depends_on(steps, a: str, b: str) -> bool:
    """Whether step `a` (transitively) needs step `b`."""
    index = by_id(steps)
    todo, seen = list(index[a].needs), set()
    while todo:
        n = todo.pop()
        if n == b:
            return True
        if n not in seen:
            seen.add(n)
            todo += index[n].needs
    return False


def before(steps, a: str, b: str) -> bool:
    ids = [s.id for s in steps]
    return ids.index(a) < ids.index(b) and depends_on(steps, b, a)


# --- ordering rules --------------------------------------------------------------------------------------------
def test_cacerts_comes_before_istioctl_install_in_every_cluster(profile):
    steps = rcp_steps.build(profile)
    for c in profile.clusters:
        assert before(steps, f"{c.name}/ns-istio-system", f"{c.name}/cacerts")
        assert before(steps, f"{c.name}/cacerts", f"{c.name}/istio")


def test_coredns_patch_comes_after_istiocoredns_exists_and_before_the_restart(profile):
    steps = rcp_steps.build(profile)
    for c in profile.clusters:
        n = c.name
        assert before(steps, f"{n}/istio", f"{n}/istiocoredns")
        assert before(steps, f"{n}/istiocoredns", f"{n}/coredns-global")
        assert before(steps, f"{n}/coredns-global", f"{n}/coredns-restart")
        assert before(steps, f"{n}/coredns-restart", f"{n}/coredns-ready")


def test_cluster1_serviceentry_comes_after_cluster2_gateway_exists(profile):
    steps = rcp_steps.build(profile)
    c1, c2 = profile.client.name, profile.server.name
    assert before(steps, f"{c2}/istio", f"{c2}/gateway")
    assert before(steps, f"{c2}/gateway-ready", f"{c1}/serviceentry")


def test_apps_come_after_the_injection_label_and_istio(profile):
    steps = rcp_steps.build(profile)
    index = by_id(steps)
    for c in profile.clusters:
        ns = "foo" if c.role == "client" else "bar"
        label = index[f"{c.name}/ns-{ns}"]
        assert yaml.safe_load(label.run.source.yaml)["metadata"]["labels"] == {"istio-injection": "enabled"}
        assert before(steps, f"{c.name}/istio", label.id), "the injector must run before pods are created"
        apps = ["sleep"] if c.role == "client" else ["httpbin", "sleep"]
        for app in apps:
            assert before(steps, label.id, f"{c.name}/{app}")
            assert index[f"{c.name}/{app}"].run.namespace == ns


def test_the_final_curl_is_last_and_needs_every_other_step(profile):
    steps = rcp_steps.build(profile)
    last = steps[-1]
    assert last.id == f"{profile.client.name}/curl"
    assert set(last.needs) == {s.id for s in steps[:-1]}
    assert last.run.expect == plan.Expect("http", "200")
    assert "httpbin.bar.global:8000/headers" in last.run.argv[-1]


def test_the_plan_order_respects_every_need(profile):
    steps = rcp_steps.build(profile)
    plan.check_order(steps)  # raises if a need comes later or an id repeats
    broken = list(reversed(steps))
    with pytest.raises(ValueError, match="do not come before it"):
        plan.check_order(broken)


def test_nothing_orders_the_two_clusters_before_the_serviceentries(profile):
    # Both clusters build in parallel: no step of one cluster needs the other cluster until cluster1's
    # ServiceEntry needs cluster2's gateway.
    steps = rcp_steps.build(profile)
    for s in steps:
        if s.cluster and s.phase in ("clusters", "control-plane", "dns", "apps"):
            other = [n for n in s.needs if not n.startswith(s.cluster + "/") and not n.startswith("host/")]
            assert other == [], s.id


# --- contents per the issue -------------------------------------------------------------------------------------
def test_each_cluster_is_created_with_the_profile_pinned_node_image(profile):
    steps = by_id(rcp_steps.build(profile))
    for c in profile.clusters:
        run = steps[f"{c.name}/cluster"].run
        assert isinstance(run, CreateCluster) and run.name == "kind.create"
        assert f"--image={profile.node_image}" in run.argv
        assert "@sha256:" in profile.node_image


def test_cacerts_holds_the_four_files_from_the_profile_cert_source(profile):
    steps = by_id(rcp_steps.build(profile))
    for c in profile.clusters:
        src = steps[f"{c.name}/cacerts"].run.source
        assert isinstance(src, SecretFromFiles) and (src.name, src.namespace) == ("cacerts", "istio-system")
        names = [f.rel.rsplit("/", 1)[1] for f in src.files]
        assert names == ["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"]
        if profile.cert_source == "generated":
            assert all(f == File("LAB_HOME", f"certs/{c.name}/{n}") for f, n in zip(src.files, names, strict=True))
            assert before(list(steps.values()), "host/certs", f"{c.name}/cacerts")
        else:
            assert all(f.base == "ISTIO_DIR" and f.rel.startswith("samples/certs/") for f in src.files)


def test_istio_is_installed_with_the_multicluster_values_file_then_the_lab_overlay(profile):
    steps = by_id(rcp_steps.build(profile))
    for c in profile.clusters:
        run = steps[f"{c.name}/istio"].run
        assert isinstance(run, Command) and run.argv[:2] == ("istioctl", "install")
        files = [run.argv[i + 1] for i, a in enumerate(run.argv) if a == "-f"]
        assert files == [File("ISTIO_DIR", "manifests/examples/multicluster/values-istio-multicluster-gateways.yaml"),
                         File("LAB_HOME", f"istio-overlay-{c.name}.yaml")]
        (written, text), = run.writes
        assert written == files[1] and yaml.safe_load(text)["kind"] == "IstioOperator"


def test_coredns_patch_forwards_to_the_istiocoredns_cluster_ip_looked_up_at_run_time(profile):
    steps = by_id(rcp_steps.build(profile))
    for c in profile.clusters:
        run = steps[f"{c.name}/coredns-global"].run
        assert isinstance(run, PatchCoreDNS)
        fwd = run.forward
        assert isinstance(fwd, Lookup) and fwd.cluster == c.name
        assert fwd.args == ("-n", "istio-system", "service", "istiocoredns") and fwd.jsonpath == "{.spec.clusterIP}"
        assert run.aaaa_guard == profile.aaaa_guard


def test_serviceentries_match_the_write_up_in_both_clusters(profile):
    steps = by_id(rcp_steps.build(profile))
    client, server = profile.client, profile.server
    cl = steps[f"{client.name}/serviceentry"].run
    assert isinstance(cl, ApplyClientServiceEntry)
    assert cl.vip == client.vip and cl.namespace == "foo"
    addr, port = cl.address, cl.port
    assert (addr.cluster, addr.jsonpath) == (server.name, "{.items[0].status.hostIP}")
    assert "istio=ingressgateway" in addr.args
    assert (port.cluster, port.jsonpath) == (server.name, "{.spec.ports[?(@.port==15443)].nodePort}")
    sv = steps[f"{server.name}/serviceentry"].run
    doc = yaml.safe_load(sv.source.yaml)
    assert sv.namespace == "bar" and doc["spec"]["hosts"] == ["httpbin.bar.global"]
    assert doc["spec"]["endpoints"] == [{"address": "httpbin.bar.svc.cluster.local"}]
    assert doc["spec"]["addresses"] == [server.vip] and doc["metadata"]["name"] == "httpbin-bar"


def test_dns_checks_go_through_istiocoredns_and_kube_dns_and_expect_the_vip(profile):
    steps = by_id(rcp_steps.build(profile))
    c = profile.client.name
    for name, svc in (("istiocoredns", "istiocoredns"), ("kube-dns", "kube-dns")):
        run = steps[f"{c}/nslookup-{name}"].run
        assert isinstance(run, Check) and run.expect == plan.Expect("resolves", profile.client.vip)
        assert "nslookup" in run.argv and "-type=a" in run.argv and "httpbin.bar.global" in run.argv
        server = run.argv[-1]
        assert isinstance(server, Lookup) and svc in server.args


def test_every_kubectl_and_istioctl_command_names_its_cluster(profile):
    steps = rcp_steps.build(profile)
    for s in steps:
        for argv in _argvs(s):
            if argv and argv[0] in ("kubectl", "istioctl"):
                assert any(isinstance(t, Kubeconfig) and t.cluster == s.cluster for t in argv), s.id
                assert any(isinstance(t, Context) and t.cluster == s.cluster for t in argv), s.id


def _argvs(step):
    run = step.run
    out = []
    for item in (run, step.verify):
        if isinstance(item, (Command, Check)):
            out.append(item.argv)
    return out


def test_the_sample_images_follow_the_profile(profile):
    steps = by_id(rcp_steps.build(profile))
    src = steps[f"{profile.client.name}/sleep"].run.source
    assert isinstance(src, Sample)
    if profile.images.sleep == "docker.io/governmentpaas/curl-ssl:latest":
        assert src.images == (), "the sample's own reference names the same image"
    else:
        assert src.images == (("governmentpaas/curl-ssl", profile.images.sleep),)


def test_image_steps_follow_load_images(profile):
    ids = {s.id for s in rcp_steps.build(profile)}
    assert ("host/images-pull" in ids) == profile.load_images
    assert ("cluster1/images-load" in ids) == profile.load_images


def test_uninstall_mirrors_the_write_up_section_in_its_order():
    steps = rcp_steps.build_uninstall(PROFILES["default"])
    c1 = [s.id for s in steps if s.cluster == "cluster1"]
    assert c1 == ["cluster1/uninstall-sleep", "cluster1/uninstall-serviceentry", "cluster1/uninstall-ns"]
    c2 = [s.id for s in steps if s.cluster == "cluster2"]
    assert c2[0] == "cluster2/uninstall-httpbin" and c2[-1] == "cluster2/uninstall-ns"
    for s in steps:
        assert s.run.argv[5] == "delete" and "--ignore-not-found" in s.run.argv
        assert s.section == rcp_steps.S_UNINSTALL


def test_text_rendering_lists_every_step_with_cluster_and_section():
    steps = rcp_steps.build(PROFILES["default"])
    text = plan.render_text(steps)
    for i, s in enumerate(steps, 1):
        assert f"{i:2d}. [{s.cluster or 'host'}] {s.id}" in text
    assert text.count("write-up: ") == len(steps)
    assert json.loads(plan.to_json(steps))[-1]["id"] == "cluster1/curl"


def test_file_tokens_refuse_paths_the_shell_could_misread():
    with pytest.raises(ValueError):
        File("LAB_HOME", "a b")
    with pytest.raises(ValueError):
        File("HOME", "x")


# --- every manifest the plan applies, validated strictly ----------------------------------------------------------
CERTS = ISTIO_DIR / "samples" / "certs"


def _rendered_manifests(profile):
    """(step id, text, secrets) for every manifest the plan applies, rendered as the executor renders it, with the
    test data's Istio release and sample certificates."""
    paths = plan.Paths(Path("/nonexistent-home"), ISTIO_DIR)
    for s in rcp_steps.build(profile, paths):
        run = s.run
        if isinstance(run, Manifest):
            src = run.source
            if isinstance(src, (plan.Text, plan.Template)):
                yield s.id, src.yaml, []
            elif isinstance(src, Sample):
                yield s.id, sample_manifest(paths.resolve(src.file).read_text(), src.images), []
            else:
                files = {f.rel.rsplit("/", 1)[1]: (CERTS / f.rel.rsplit("/", 1)[1]).read_bytes() for f in src.files}
                key = base64.b64encode(files["ca-key.pem"]).decode()
                yield s.id, secret_manifest(src.name, src.namespace, files), [key, files["ca-key.pem"].decode()]
        elif isinstance(run, Command):
            for _, text in run.writes:
                yield s.id, text, []
        elif isinstance(run, PatchCoreDNS):
            live = {"metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": START_COREFILE}}
            patched = corefile.patch(START_COREFILE, "10.255.10.53", aaaa_guard=run.aaaa_guard)
            yield s.id, coredns_configmap(live, patched), []
        elif isinstance(run, ApplyClientServiceEntry):
            svc = serviceentry.RemoteService(run.service, run.service_namespace)
            obj = serviceentry.render_client(svc, run.vip, "172.18.0.3", profile.gateway_node_port)
            yield s.id, serviceentry.to_yaml(obj), []


def test_every_manifest_the_plan_applies_is_valid_against_the_real_schemas(profile):
    k8s = f"1.{profile.node_minor}"
    seen = set()
    for step_id, text, secrets in _rendered_manifests(profile):
        try:
            schemas.validate_manifest(text, k8s_version=k8s)
        except ValidationError as err:
            msg = str(err)
            for secret in secrets:
                msg = msg.replace(secret, "[redacted]")  # never print the CA key, even in a failure
            pytest.fail(f"{step_id}: {msg}")
        seen.update(d["kind"] for d in yaml.safe_load_all(text) if d)
    assert {"Namespace", "Secret", "IstioOperator", "ConfigMap", "ServiceEntry", "Deployment", "Service",
            "ServiceAccount"} <= seen


def test_the_validation_is_strict_enough_to_catch_a_wrong_field():
    _, text, _ = next(m for m in _rendered_manifests(PROFILES["default"]) if m[0] == "cluster1/serviceentry")
    with pytest.raises(ValidationError):
        schemas.validate_manifest(text.replace("resolution: DNS", "resolutoin: DNS"))
    _, ns, _ = next(m for m in _rendered_manifests(PROFILES["default"]) if m[0] == "cluster1/ns-foo")
    with pytest.raises(ValidationError):
        schemas.validate_manifest(ns.replace("labels:", "lables:"))


# --- the sidecar stats lab doctor reads ------------------------------------------------------------------------
def _patched_sample_deployment(step) -> dict:
    """The release's sleep Deployment with the merge patch that `step` sends (RFC 7386, as kubectl --type merge)."""
    argv = step.run.argv
    assert argv[argv.index("patch") + 1:argv.index("patch") + 5] == ("deployment", "sleep", "--type", "merge")
    patch = json.loads(argv[argv.index("-p") + 1])
    docs = [d for d in yaml.safe_load_all((ISTIO_DIR / rcp_steps.SAMPLE_SLEEP).read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")

    def merge(target, p):
        for k, v in p.items():
            if isinstance(v, dict) and isinstance(target.get(k), dict):
                merge(target[k], v)
            else:
                target[k] = v
    merge(deployment, patch)
    return deployment


def test_every_sleep_pod_template_gets_the_stats_annotation_before_its_rollout_is_awaited(profile):
    steps = rcp_steps.build(profile)
    index = by_id(steps)
    for c in profile.clusters:
        step = index[f"{c.name}/sleep-stats"]
        assert isinstance(step.run, Command)
        assert before(steps, f"{c.name}/sleep", step.id)
        assert before(steps, step.id, f"{c.name}/sleep-ready"), "the pod awaited must be the annotated one"
        deployment = _patched_sample_deployment(step)
        # the name Istio 1.7.8 reads (pilot/pkg/model/context.go BootstrapNodeMetadata.StatsInclusionSuffixes)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"sidecar.istio.io/statsInclusionSuffixes": "ssl.fail_verify_error"}
        assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "sleep"}, "the patch only adds"
        schemas.validate_k8s(deployment, k8s_version=f"1.{profile.node_minor}")
        ns = "foo" if c.role == "client" else "bar"
        assert ("-n", ns) == step.run.argv[5:7] and Context(c.name, c.context) in step.run.argv


def test_the_stats_annotation_step_verifies_the_annotation_it_sets():
    step = by_id(rcp_steps.build(PROFILES["default"]))["cluster1/sleep-stats"]
    key, value = rcp_steps.STATS_ANNOTATION
    assert step.verify.expect == plan.Expect("equals", value)
    jsonpath = step.verify.argv[-1]
    assert jsonpath == "jsonpath={.spec.template.metadata.annotations." + key.replace(".", "\\.") + "}"


def test_the_doctor_names_the_same_annotation_the_plan_sets():
    from lab.scenarios.replicated_control_planes import doctor

    assert ": ".join(rcp_steps.STATS_ANNOTATION) == doctor.STATS_ANNOTATION


def test_an_overridden_pilot_image_is_both_installed_and_what_the_install_step_verifies():
    profile = load_profile(overrides={"images.pilot": "reg.example:5000/istio/pilot:1.7.8"})
    step = by_id(rcp_steps.build(profile))["cluster1/istio"]
    ((_, overlay_text),) = step.run.writes
    overlay = yaml.safe_load(overlay_text)
    mirrored = "reg.example:5000/istio/pilot:1.7.8"
    assert overlay["spec"]["values"]["pilot"]["image"] == step.verify.expect.value == mirrored


def test_the_probes_run_in_the_newest_running_sleep_pod_not_one_still_terminating():
    # after the sleep-stats rollout the replaced pod stays Running (sleep as PID 1 ignores SIGTERM) for its grace
    # period, with its sidecar already gone; the lookup must pick the new pod
    steps = rcp_steps.build(PROFILES["default"])
    lookups = [t for s in steps if isinstance(s.run, Check) for t in s.run.argv if isinstance(t, Lookup)
               and t.what.startswith("sleep pod")]
    assert lookups and all("--sort-by=.metadata.creationTimestamp" in t.args for t in lookups)
    assert all(t.jsonpath == "{.items[-1:].metadata.name}" for t in lookups)


@pytest.mark.parametrize("pilot", [None, "pilot:1.7.8-custom", "example/pilot:1.7.8", "reg.example:5000/pilot:1"])
def test_the_istiod_check_expects_the_pilot_image_the_overlay_installs(pilot):
    # the overlay's pilot.image is what the istiod Deployment then shows; one normalisation (istio.chart_image)
    overrides = {"images.pilot": pilot} if pilot else {}
    profile = load_profile(overrides=overrides)
    values = istio.overlay(profile)["spec"]["values"]
    installed = values["pilot"]["image"] if pilot else profile.images.resolved(profile.istio_version)["pilot"]
    for c in profile.clusters:
        verify = by_id(rcp_steps.build(profile))[f"{c.name}/istio"].verify
        assert verify.expect.kind == "equals" and verify.expect.value == installed
    if pilot == "pilot:1.7.8-custom":
        assert installed == "docker.io/library/pilot:1.7.8-custom"


# --- typed actions ------------------------------------------------------------------------------------------------
def _actions(p):
    return [s.run for s in rcp_steps.build(p) if isinstance(s.run, plan.Action)]


def test_every_lab_action_type_has_its_own_shell_form_and_the_plan_uses_each_of_them():
    from lab.scenario import scenarios

    action_types = set(plan.Action.__subclasses__())
    used = {type(s.run) for sc in scenarios().values() for p in sc.profiles.values() for s in sc.build(p, None)
            if isinstance(s.run, plan.Action)}
    assert {type(a) for p in PROFILES.values() for a in _actions(p)} <= used
    assert used == action_types, "every action type is one a plan of some scenario builds"
    for t in action_types:
        assert plan.shell_action.dispatch(t) is not plan.shell_action.dispatch(plan.Action), t.__name__
        assert t.__dataclass_params__.frozen, t.__name__


def test_an_action_type_without_a_shell_form_is_refused_by_name_not_rendered_as_something_else():
    @dataclasses.dataclass(frozen=True)
    class Unknown(plan.Action):
        name: ClassVar[str] = "test.unknown"
        x: int = 1

    with pytest.raises(TypeError, match="no shell form for lab action test.unknown"):
        plan.shell_action(Unknown(), {})
    assert plan.describe(Unknown()) == "lab action test.unknown(x=1)"


def test_the_kind_create_argv_carries_real_tokens_for_the_config_and_the_kubeconfig(profile):
    steps = by_id(rcp_steps.build(profile))
    for c in profile.clusters:
        run = steps[f"{c.name}/cluster"].run
        assert isinstance(run, CreateCluster)
        assert plan.Concat(("--kubeconfig=", Kubeconfig(c.name))) in run.argv
        assert run.argv[run.argv.index("--config") + 1] == run.config == File("LAB_HOME", f"kind/{c.name}.yaml")
        assert not any("\0" in t for t in run.argv if isinstance(t, str))


def test_an_unknown_expectation_kind_is_refused_when_the_check_is_made():
    assert plan.Expect("http", "200").kind is plan.ExpectKind.HTTP
    with pytest.raises(ValueError, match="'status'"):
        plan.Expect("status", "200")
