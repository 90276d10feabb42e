"""The multi-primary-multi-network scenario's plan (issue 11): goldens of `lab plan` (text, bash script, JSON) for the
default profile, its uninstall and the no-MetalLB override; the order and needs of the steps; every object it
applies validated against Istio 1.30.3's and Kubernetes 1.36's schemas; the CLI; and the scenario's actions against
a recording runner (what kubectl/istioctl/docker are asked, what is refused, what never reaches a log).

Regenerate the goldens with `LAB_REGEN_GOLDEN=1 pytest tests/unit/test_mpmn_steps.py` and review the diff.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import manifests, plan, scenario
from lab.errors import CommandError, LabError, UsageError, ValidationError
from lab.perform import Env, execute, secret_manifest
from lab.scenarios.multi_primary_multi_network import SCENARIO as MPMN
from lab.scenarios.multi_primary_multi_network import actions, istio, names, steps
from lab.scenarios.multi_primary_multi_network.profiles import PROFILES, load_profile
from lab.shell import Result
from lab.state import State
from lab.tokens import File, Lookup
from tests.support.recording import RecordingRunner
from tests.support.schemas import validate_manifest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden"
ISTIO_130 = DATA / "istio-1.30.3"
PATHS = plan.Paths(Path("/home/user/lab/.lab"), Path("/home/user/.cache/istio-multicluster-lab/istio-1.30.3"),
                   Path("/home/user/lab"))  # the checkout, as the script's LAB_REPO (not this machine's)
CASES = {  # golden name -> (overrides, uninstall)
    "multi-primary": ({}, False),
    "multi-primary-uninstall": ({}, True),
    "multi-primary-no-metallb": ({"metallb": "false"}, False),
}
K8S, ISTIO = "1.36", "1.30.3"
KIND_NETWORK = (DATA / "docker-network" / "kuadrant-operator-pr418.json").read_text()


def build(overrides: dict[str, str] | None = None, uninstall: bool = False) -> list[plan.Step]:
    profile = load_profile(overrides=overrides or {})
    return (steps.build_uninstall if uninstall else steps.build)(profile, PATHS)


def by_id(steps_: list[plan.Step]) -> dict[str, plan.Step]:
    return {s.id: s for s in steps_}


def render(name: str, shell: bool) -> str:
    overrides, uninstall = CASES[name]
    s = build(overrides, uninstall)
    if not shell:
        return plan.render_text(s)
    return plan.render_shell(s, PATHS, title="lab uninstall" if uninstall else "lab up", unset=uninstall)


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("LAB_REGEN_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path.name} changed; review and regenerate (see docstring)"


# --- goldens -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_shell_script_matches_its_golden(name):
    check_golden(GOLDEN / f"plan-{name}.sh", render(name, shell=True))


def test_the_plan_listing_and_json_match_their_goldens():
    check_golden(GOLDEN / "plan-multi-primary.txt", render("multi-primary", shell=False))
    check_golden(GOLDEN / "plan-multi-primary.json", plan.to_json(build()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_generated_script_is_valid_bash(name, tmp_path):
    script = tmp_path / "plan.sh"
    script.write_text(render(name, shell=True))
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_every_kubectl_and_istioctl_command_of_the_script_names_its_cluster():
    for line in render("multi-primary", True).splitlines():
        if line.lstrip().startswith("#"):
            continue
        for m in re.finditer(r"\b(kubectl|istioctl) ", line):
            rest = line[m.end():m.end() + 300]
            assert re.search(r'--kubeconfig "\$KUBECONFIG_CLUSTER\d" --context "\$CTX_CLUSTER\d"', rest), line


# --- order and needs ---------------------------------------------------------------------------------------------
def test_steps_run_phase_by_phase_and_the_proof_comes_last_needing_every_step():
    s = build()
    plan.check_order(s)
    phases = [x.phase for x in s]
    assert phases == sorted(phases, key=steps.PHASES.index)
    assert set(phases) == set(steps.PHASES)
    proof = s[-1]
    assert proof.id == "cluster1/curl-httpbin" and set(proof.needs) == {x.id for x in s[:-1]}


@pytest.mark.parametrize("after,before", [
    ("cluster1/cacerts", "host/certs"),
    ("cluster1/cacerts", "cluster1/ns-istio-system"),
    ("cluster1/istio", "cluster1/cacerts"),  # istiod reads cacerts only at start
    ("cluster2/istio", "cluster2/images-load"),
    ("cluster1/metallb", "host/metallb-manifest"),
    ("cluster1/metallb-pool", "cluster1/metallb-speaker"),
    ("cluster2/eastwest-address", "cluster2/metallb-pool"),
    ("cluster2/eastwest", "cluster2/istio"),
    ("cluster2/expose-services", "cluster2/istio"),
    ("cluster1/remote-secret-cluster2", "cluster2/istio"),
    ("cluster1/remote-secret-cluster2", "cluster1/istio"),
    ("cluster2/remote-secret-cluster1", "cluster1/istio"),
    ("cluster1/ns-sample", "cluster1/istio"),  # the injector must run before the pods exist
    ("cluster2/httpbin", "cluster2/ns-sample"),
])
def test_a_step_needs_what_it_builds_on(after, before):
    assert before in by_id(build())[after].needs


def test_httpbin_runs_only_in_cluster2_and_curl_only_in_cluster1_both_in_the_sample_namespace():
    s = by_id(build())
    assert "cluster2/httpbin" in s and "cluster1/httpbin" not in s
    assert "cluster1/curl" in s and "cluster2/curl" not in s
    for step_id, rel in (("cluster1/curl", "samples/curl/curl.yaml"),
                         ("cluster2/httpbin", "samples/httpbin/httpbin.yaml")):
        run = s[step_id].run
        assert isinstance(run, plan.Manifest) and run.namespace == names.APP_NS
        assert run.source == plan.Sample(File("ISTIO_DIR", rel), ())
    assert {"cluster1/ns-sample", "cluster2/ns-sample"} <= s.keys()


def test_each_cluster_gets_a_remote_secret_of_the_other_with_its_control_plane_address_never_loopback():
    s = by_id(build())
    for dst, src in (("cluster1", "cluster2"), ("cluster2", "cluster1")):
        run = s[f"{dst}/remote-secret-{src}"].run
        assert isinstance(run, actions.CreateRemoteSecret)
        assert (run.cluster, run.source, run.source_context) == (dst, src, f"kind-{src}")
        assert run.server.cluster == src and "InternalIP" in run.server.jsonpath
        verify = s[f"{dst}/remote-secret-{src}"].verify
        assert verify.argv[-4:] == ("secret", f"istio-remote-secret-{src}", "-o", "name")


def test_the_proof_curls_httpbin_by_its_ordinary_name_from_the_newest_running_curl_pod():
    check = build()[-1].run
    assert isinstance(check, plan.Check) and check.expect == plan.Expect(plan.ExpectKind.HTTP, "200")
    assert check.argv[-1].endswith(' http://httpbin.sample.svc.cluster.local:8000/headers; echo "__LAB_CURL_EXIT__=$?"')
    (pod,) = [t for t in check.argv if isinstance(t, Lookup)]
    assert pod.cluster == "cluster1" and "--sort-by=.metadata.creationTimestamp" in pod.args
    assert pod.jsonpath == "{.items[-1:].metadata.name}" and "app=curl" in pod.args


def test_the_istiod_check_expects_the_image_the_overlay_names():
    for overrides, want in [({}, "docker.io/istio/pilot:1.30.3"),
                            ({"images.pilot": "reg.example:5000/team/pilot:dev"}, "reg.example:5000/team/pilot:dev"),
                            ({"images.pilot": "mypilot:1"}, "docker.io/library/mypilot:1")]:
        profile = load_profile(overrides=overrides)
        for c in profile.clusters:
            verify = by_id(steps.build(profile))[f"{c.name}/istio"].verify
            assert verify.expect == plan.Expect(plan.ExpectKind.EQUALS, want)


# --- metallb=false ----------------------------------------------------------------------------------------------
def test_without_metallb_there_is_no_metallb_step_image_or_download_and_the_gateway_takes_the_node_address():
    s = by_id(build({"metallb": "false"}))
    assert not [i for i in s if "metallb" in i] and "metallb" not in {x.phase for x in s.values()}
    assert not [i for i in s["host/images-pull"].run.images if "metallb" in i]
    for n in ("cluster1", "cluster2"):
        run = s[f"{n}/eastwest"].run
        assert isinstance(run, actions.InstallEastWest) and run.node_ip is not None and run.node_ip.cluster == n
        wait = s[f"{n}/eastwest-address"].run
        assert "--for=jsonpath={.spec.externalIPs}" in wait.argv
        assert f"{n}/metallb-pool" not in s[f"{n}/eastwest-address"].needs
    with_metallb = by_id(build())
    assert with_metallb["cluster1/eastwest"].run.node_ip is None  # MetalLB's address is the only one
    assert "--for=jsonpath={.status.loadBalancer.ingress}" in with_metallb["cluster1/eastwest-address"].run.argv


def test_an_unpinned_metallb_version_is_one_usage_error():
    with pytest.raises(UsageError, match="metallb_version 'v0.15.0' has no pinned manifest sha256"):
        build({"metallb_version": "v0.15.0"})


def test_metallb_images_other_than_the_manifests_are_swapped_in():
    s = by_id(build({"images.metallb_speaker": "reg.example/speaker:v0.16.1"}))
    assert s["cluster1/metallb"].run.source.images == (("quay.io/metallb/speaker:v0.16.1",
                                                         "reg.example/speaker:v0.16.1"),)


# --- every object validates -------------------------------------------------------------------------------------
def _texts(s: list[plan.Step]) -> list[tuple[str, str]]:
    out = []
    for x in s:
        run = x.run
        if isinstance(run, plan.Manifest) and isinstance(run.source, (plan.Text, plan.Template)):
            out.append((x.id, run.source.yaml))
        if isinstance(run, plan.Command):
            out += [(f"{x.id}:{f.rel}", text) for f, text in run.writes]
        if isinstance(run, actions.InstallEastWest):
            out.append((f"{x.id}:{run.file.rel}", run.text))
    return out


@pytest.mark.parametrize("overrides", [{}, {"metallb": "false"}, {"images.proxyv2": "reg.example/istio/proxy:1"}])
def test_every_object_the_plan_applies_or_installs_validates_against_1_30_3_and_1_36(overrides):
    texts = _texts(build(overrides))
    kinds = {yaml.safe_load(t)["kind"] for _, t in texts}
    assert kinds == {"Namespace", "IstioOperator", "Gateway"}, kinds
    assert len(texts) == 2 * 5  # per cluster: 2 namespaces, 2 IstioOperators, the Gateway
    for what, text in texts:
        try:
            validate_manifest(text, K8S, ISTIO)
        except ValidationError as err:
            raise AssertionError(f"{what}: {err}") from None


def test_the_cacerts_secret_and_the_samples_validate():
    files = {f: b"pem" for f in steps.CACERTS_FILES}
    validate_manifest(secret_manifest("cacerts", names.ISTIO_NS, files), K8S, ISTIO)
    for app in (names.CLIENT_APP, names.SERVER_APP):
        validate_manifest((ISTIO_130 / steps.SAMPLES[app]).read_text(), K8S, ISTIO)
        assert f"image: {steps.SAMPLE_IMAGES[app]}\n" in (ISTIO_130 / steps.SAMPLES[app]).read_text()


def test_the_overlay_sets_hub_and_tag_from_the_images_and_whole_references_only_where_needed():
    profile = PROFILES["multi-primary"]
    ov = istio.overlay(profile, profile.client)
    assert (ov["spec"]["hub"], ov["spec"]["tag"]) == ("docker.io/istio", "1.30.3")
    assert set(ov["spec"]["values"]) == {"global"} and "proxy" not in ov["spec"]["values"]["global"]
    assert ov["spec"]["values"]["global"]["network"] == "network1"
    assert ov["spec"]["meshConfig"]["defaultConfig"]["proxyMetadata"] == {"ISTIO_META_DNS_CAPTURE": "true"}
    assert ov["spec"]["meshConfig"]["accessLogFile"] == "/dev/stdout"  # the fault probe reads the access log
    other = load_profile(overrides={"images.proxyv2": "reg.example/istio/proxy:1"})
    ov = istio.overlay(other, other.server)
    assert (ov["spec"]["hub"], ov["spec"]["tag"]) == ("docker.io/istio", "1.30.3")  # from pilot now
    assert ov["spec"]["values"]["global"]["proxy"] == {"image": "reg.example/istio/proxy:1"}
    assert ov["spec"]["values"]["global"]["proxy_init"] == {"image": "reg.example/istio/proxy:1"}
    assert "pilot" not in ov["spec"]["values"]


def test_the_kind_config_has_the_clusters_own_subnets():
    profile = PROFILES["multi-primary"]
    for c in profile.clusters:
        run = by_id(build())[f"{c.name}/cluster"].run
        cfg = yaml.safe_load(run.config_text)
        assert cfg["name"] == c.name and cfg["networking"] == {"podSubnet": c.pod_subnet,
                                                              "serviceSubnet": c.service_subnet}


# --- uninstall -----------------------------------------------------------------------------------------------------
def test_uninstall_deletes_only_what_the_lab_added_and_ignores_what_is_gone():
    s = build(uninstall=True)
    plan.check_order(s)
    argvs = [[t for t in x.run.argv if isinstance(t, str)] for x in s]
    assert all("--ignore-not-found" in a and "delete" in a for a in argvs)
    deleted = {" ".join(a[a.index("delete") + 1:-1]) for a in argvs}
    assert deleted == {"-n sample -f", "namespace sample", "-n istio-system secret istio-remote-secret-cluster1",
                       "-n istio-system secret istio-remote-secret-cluster2",
                       f"-n istio-system secret {steps.READER_TOKEN_SECRET}"}
    assert not [a for a in argvs if "istio-system" in a and "namespace" in a]
    assert MPMN.uninstall_forgets == ("remote-secrets", "apps", "verify")


# --- the record and the CLI ----------------------------------------------------------------------------------------
def test_the_scenario_record_is_what_the_engine_finds_by_its_name():
    assert scenario.get("multi-primary-multi-network") is MPMN
    assert MPMN.default_profile in MPMN.profiles and scenario.owner_of("multi-primary") is MPMN
    assert MPMN.proof(PROFILES["multi-primary"]) == \
        "curl httpbin.sample.svc.cluster.local:8000/headers from cluster1/sample/curl"


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "LAB_HOME": "/home/user/lab/.lab"}, timeout=120)


def test_lab_plan_with_the_scenario_prints_its_plan_and_lab_scenarios_lists_both():
    res = _lab("plan", "--scenario", "multi-primary-multi-network")
    assert res.returncode == 0, res.stderr
    assert "cluster1/curl-httpbin" in res.stdout and "istioctl create-remote-secret" in res.stdout
    listed = _lab("scenarios")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(ln.startswith("multi-primary-multi-network: Istio 1.30") for ln in lines)
    assert any(ln.startswith("replicated-control-planes (the default): Istio 1.7") for ln in lines)
    assert "  profiles: multi-primary (--scenario multi-primary-multi-network picks multi-primary)" in lines


def test_a_profile_of_the_other_scenario_is_one_line_naming_both():
    res = _lab("plan", "--scenario", "multi-primary-multi-network", "--profile", "default")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "belongs to scenario replicated-control-planes, not multi-primary-multi-network" in res.stderr


# --- the actions, against a recording runner -----------------------------------------------------------------------
@dataclass
class FakeProvider:
    home: Path

    def kubeconfig(self, spec):
        return self.home / "kubeconfig" / spec.name

    def context(self, spec):
        return spec.context


@dataclass
class FakeTools:
    kind: str = "kind"
    kubectl: str = "kubectl"
    istioctl: str = "istioctl"
    istio_dir: Path = ISTIO_130


class ScrubbingRunner(RecordingRunner):
    """A RecordingRunner whose errors are scrubbed of its `redact` strings, as lab.shell.Runner's are."""

    def run(self, argv, **kwargs):
        try:
            return super().run(argv, **kwargs)
        except CommandError as err:
            raise CommandError(self._scrub_argv(err.argv), err.returncode, self._scrub(err.output),
                               err.context) from None


def make_env(tmp_path: Path, runner: RecordingRunner, overrides: dict[str, str] | None = None) -> Env:
    profile = load_profile(overrides=overrides or {})
    return Env(profile, plan.Paths(tmp_path, ISTIO_130), runner, FakeTools(), FakeProvider(tmp_path),
               State(tmp_path), out=io.StringIO(), sleep=lambda s: None)


def test_the_pool_is_the_clusters_slice_and_is_applied_again_while_the_webhook_refuses(tmp_path):
    refusals = [Result((), 1, "", 'Error from server (InternalError): Internal error occurred: failed calling '
                       'webhook "ipaddresspoolvalidationwebhook.metallb.io": connect: connection refused')] * 2

    def kubectl(argv):
        return refusals.pop() if refusals else Result(argv, 0, "applied", "")

    runner = RecordingRunner(answers={("docker", "network", "inspect", "kind"): Result((), 0, KIND_NETWORK, ""),
                                      ("kubectl",): kubectl})
    env = make_env(tmp_path, runner)
    step = by_id(steps.build(env.profile))["cluster2/metallb-pool"]
    assert execute(env, step) is True
    applies = [i for c, i in zip(runner.calls, runner.inputs, strict=True) if "apply" in c]
    assert len(applies) == 3 and applies[0] == applies[2]
    docs = list(yaml.safe_load_all(applies[-1]))
    assert docs[0]["metadata"]["name"] == "lab-cluster2" and docs[0]["spec"]["addresses"] == [
        "172.18.255.239-172.18.255.246"]  # the second slice from the top (tests/unit/test_mpmn_metallb.py)
    assert ("kubectl", "--kubeconfig", str(tmp_path / "kubeconfig" / "cluster2"), "--context", "kind-cluster2",
            "apply", "-f", "-") in runner.calls


def test_a_pool_refused_for_another_reason_fails_at_once(tmp_path):
    runner = RecordingRunner(answers={("docker", "network", "inspect", "kind"): Result((), 0, KIND_NETWORK, ""),
                                      ("kubectl",): Result((), 1, "", "error: no matches for kind IPAddressPool")})
    env = make_env(tmp_path, runner)
    with pytest.raises(CommandError, match="no matches for kind"):
        execute(env, by_id(steps.build(env.profile))["cluster1/metallb-pool"])
    assert sum("apply" in c for c in runner.calls) == 1


def test_the_metallb_pool_command_prints_the_same_pool_as_the_action():
    res = subprocess.run([sys.executable, "-m", "lab", "metallb-pool", "--cluster", "cluster2", "--clusters",
                          "cluster1,cluster2"], input=KIND_NETWORK, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout == actions.pool_manifest("cluster2", actions.slice_of(KIND_NETWORK, "cluster2",
                                                                            ["cluster1", "cluster2"]))
    bad = subprocess.run([sys.executable, "-m", "lab", "metallb-pool", "--cluster", "cluster3", "--clusters",
                          "cluster1,cluster2"], input=KIND_NETWORK, capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cluster3" in bad.stderr


TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldCJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJl"


def remote_secret(cluster: str, server: str) -> str:
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": cluster, "cluster": {
        "certificate-authority-data": base64.b64encode(b"ca").decode(), "server": server}}],
        "users": [{"name": cluster, "user": {"token": TOKEN}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}], "current-context": cluster}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": f"istio-remote-secret-{cluster}", "namespace": "istio-system",
        "annotations": {"networking.istio.io/cluster": cluster}, "labels": {"istio/multiCluster": "true"}},
        "stringData": {cluster: yaml.safe_dump(kubeconfig)}})


def test_the_remote_secret_names_the_control_plane_address_and_goes_to_the_other_cluster_server_side(tmp_path):
    node_ip = "172.18.0.3"
    runner = RecordingRunner(answers={
        ("kubectl", "--kubeconfig", str(tmp_path / "kubeconfig" / "cluster2"), "--context", "kind-cluster2", "get",
         "nodes"): Result((), 0, node_ip, ""),
        ("istioctl", "create-remote-secret"): Result((), 0, remote_secret("cluster2", f"https://{node_ip}:6443"), ""),
    })
    env = make_env(tmp_path, runner)
    assert execute(env, by_id(steps.build(env.profile))["cluster1/remote-secret-cluster2"]) is True
    (create,) = [c for c in runner.calls if c[:2] == ("istioctl", "create-remote-secret")]
    assert create == ("istioctl", "create-remote-secret", "--kubeconfig", str(tmp_path / "kubeconfig" / "cluster2"),
                      "--context", "kind-cluster2", "--name=cluster2", "--server=https://172.18.0.3:6443")
    (i,) = [n for n, c in enumerate(runner.calls) if "apply" in c]
    assert runner.calls[i][:5] == ("kubectl", "--kubeconfig", str(tmp_path / "kubeconfig" / "cluster1"), "--context",
                                   "kind-cluster1")
    assert "--server-side" in runner.calls[i]  # no last-applied annotation with the token
    assert yaml.safe_load(runner.inputs[i])["metadata"]["name"] == "istio-remote-secret-cluster2"
    assert TOKEN not in env.out.getvalue()


def test_a_failed_apply_of_the_remote_secret_never_shows_its_token(tmp_path):
    runner = ScrubbingRunner(answers={
        ("kubectl",): Result((), 0, "172.18.0.3", ""),
        ("istioctl", "create-remote-secret"): Result((), 0, remote_secret("cluster2", "https://172.18.0.3:6443"), ""),
    })
    apply_prefix = ("kubectl", "--kubeconfig", str(tmp_path / "kubeconfig" / "cluster1"), "--context",
                    "kind-cluster1", "apply")
    runner.answers[apply_prefix] = Result((), 1, "", f"error: the object is invalid: token: {TOKEN}")
    env = make_env(tmp_path, runner)
    with pytest.raises(CommandError) as info:
        execute(env, by_id(steps.build(env.profile))["cluster1/remote-secret-cluster2"])
    assert TOKEN not in str(info.value) and "[redacted]" in str(info.value)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "0.0.0.0", "cluster2-control-plane", ""])
def test_a_loopback_or_non_ip_control_plane_address_is_refused(address):
    with pytest.raises(ValidationError):
        actions.api_server_address(address, "cluster2")


def test_istioctl_output_that_is_not_the_one_remote_secret_is_refused():
    with pytest.raises(LabError, match="did not print one Secret istio-remote-secret-cluster2"):
        actions.remote_secret_values(remote_secret("cluster1", "https://172.18.0.2:6443"), "cluster2")
    with pytest.raises(LabError, match="printed no YAML"):
        actions.remote_secret_values("{[", "cluster2")


def test_without_metallb_the_eastwest_install_sets_the_checked_node_address(tmp_path):
    runner = RecordingRunner(answers={("docker", "network", "inspect", "kind"): Result((), 0, KIND_NETWORK, ""),
                                      ("kubectl",): Result((), 0, "172.18.0.3", "")})
    env = make_env(tmp_path, runner, {"metallb": "false"})
    step = by_id(steps.build(env.profile))["cluster2/eastwest"]
    assert execute(env, step) is True
    (install,) = [c for c in runner.calls if c[:2] == ("istioctl", "install")]
    assert install[-2:] == ("--set", f"{istio.EXTERNAL_IPS_SET}172.18.0.3")
    written = (tmp_path / "istio" / "cluster2-eastwest.yaml").read_text()
    assert written == istio.eastwest_yaml(env.profile.server)
    runner.answers[("kubectl",)] = Result((), 0, "10.1.2.3", "")  # not on the kind network
    with pytest.raises(ValidationError, match="not a container address"):
        execute(env, step)


def test_the_pinned_download_keeps_a_good_copy_and_refuses_another_digest(tmp_path, monkeypatch):
    from lab import tools

    calls = []

    def fetch(url, expected, dest, source, say, timeout):
        calls.append(url)
        dest.write_text("metallb")
        return dest

    monkeypatch.setattr(tools, "_fetch_checked", fetch)
    env = make_env(tmp_path, RecordingRunner())
    step = by_id(steps.build(env.profile))["host/metallb-manifest"]
    assert execute(env, step) is True and calls == [steps.METALLB_MANIFEST_URL.format(version="v0.16.1")]
    dest = tmp_path / "metallb" / "metallb-native-v0.16.1.yaml"
    # the stand-in wrote a file with another digest: the next run fetches again
    assert execute(env, step) is True and len(calls) == 2
    monkeypatch.setattr(actions.tools, "sha256_file", lambda p: steps.METALLB_MANIFEST_SHA256["v0.16.1"])
    assert execute(env, step) is False and len(calls) == 2 and dest.read_text() == "metallb"


def test_the_scripts_download_step_checks_the_pinned_digest(tmp_path):
    run = by_id(build())["host/metallb-manifest"].run
    good = b"the manifest\n"
    run = actions.DownloadPinned(run.url, __import__("hashlib").sha256(good).hexdigest(), run.dest)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    payload = tmp_path / "payload"
    curl = bin_dir / "curl"  # writes the payload to the -o file
    curl.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\ncat "$PAYLOAD" > "$2"\n')
    curl.chmod(0o755)
    script = "set -euo pipefail\n" + "\n".join(plan.shell_action(run, {})) + "\n"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LAB_HOME": str(tmp_path), "PAYLOAD": str(payload)}
    payload.write_bytes(good)
    ok = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / run.dest.rel).read_bytes() == good
    (tmp_path / run.dest.rel).unlink()
    payload.write_bytes(b"tampered\n")
    bad = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "the lab pins" in bad.stderr
    assert not (tmp_path / run.dest.rel).exists() and not list((tmp_path / "metallb").glob("*.part"))


def test_the_plan_json_lists_every_step_with_its_phase():
    data = json.loads(plan.to_json(build()))
    assert [d["id"] for d in data] == [s.id for s in build()]
    assert {d["phase"] for d in data} == set(steps.PHASES)


def test_every_template_of_the_scenario_is_used_by_the_plan_with_exactly_its_variables():
    # manifests.render refuses a missing or extra variable, so building the plan renders each one correctly
    used = {"namespace-istio-system.yaml", "namespace-sample.yaml", "istio-overlay.yaml", "eastwest-gateway.yaml",
            "expose-services.yaml", "kind-cluster.yaml", "metallb-pool.yaml"}
    assert set(manifests.names(names.SCENARIO)) == used
    objects = "".join(text for _, text in _texts(build({}))) + actions.pool_manifest("cluster1", actions.slice_of(
        KIND_NETWORK, "cluster1", ["cluster1", "cluster2"]))
    assert not re.search(r"\$\{?[A-Z_]+", objects), "a variable left in an object the lab applies"
    # the script's plain templates: envsubst limited to exactly the file's variables (none: the file itself)
    script = render("multi-primary", True)
    filled = re.findall(r"envsubst '([^']*)' < \"\$LAB_REPO/manifests/multi-primary-multi-network/([^\"]+)\"", script)
    assert {f for _, f in filled} == {"namespace-istio-system.yaml", "namespace-sample.yaml"}
    for wanted, f in filled:
        assert set(wanted.split()) == {f"${v}" for v in manifests.variables(f, names.SCENARIO)}, f
    assert 'cat "$LAB_REPO/manifests/multi-primary-multi-network/expose-services.yaml" | kubectl' in script


def test_download_pinned_fetches_checks_and_keeps_a_good_copy(tmp_path):
    import hashlib

    from lab import tools
    from lab.errors import PreflightError
    from tests.support.artifact_server import serve

    body = b"apiVersion: v1\nkind: Namespace\n"
    pin = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "m" / "metallb-native.yaml"
    with serve({"/m.yaml": body, "/bad.yaml": b"tampered"}) as srv:
        assert tools.download_pinned(srv.url("/m.yaml"), pin, dest, progress=lambda _: None) == dest
        assert dest.read_bytes() == body and srv.requests == ["/m.yaml"]
        tools.download_pinned(srv.url("/m.yaml"), pin, dest, progress=lambda _: None)
        assert srv.requests == ["/m.yaml"], "a copy with the pinned digest is kept"
        other = tmp_path / "m" / "other.yaml"
        with pytest.raises(PreflightError, match="the lab pins " + pin):
            tools.download_pinned(srv.url("/bad.yaml"), pin, other, progress=lambda _: None)
        assert not other.exists() and sorted(p.name for p in dest.parent.iterdir()) == ["metallb-native.yaml"]
        with pytest.raises(PreflightError, match="HTTP 404"):
            tools.download_pinned(srv.url("/nope.yaml"), pin, other, progress=lambda _: None)
    with pytest.raises(ValidationError, match="not 64 hex digits"):
        tools.download_pinned("http://x.invalid/m.yaml", "abc", dest)


# --- the platform: the engine's own, asked once (issue 11 item 1) --------------------------------------------------
PLATFORM_ARGV = ("docker", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")


@dataclass
class LoadingProvider(FakeProvider):
    loads: list = None  # (cluster, images, platform) per load_images call

    def load_images(self, spec, images, platform):
        self.loads = [*(self.loads or []), (spec.name, tuple(images), platform)]


def platform_env(tmp_path: Path, engine: str) -> tuple[Env, RecordingRunner, LoadingProvider]:
    runner = RecordingRunner(answers={PLATFORM_ARGV: Result((), 0, engine + "\n", ""),
                                      ("docker", "image", "inspect"): Result((), 1, "", "No such image")})
    provider = LoadingProvider(tmp_path)
    env = Env(load_profile(), plan.Paths(tmp_path, ISTIO_130), runner, FakeTools(), provider, State(tmp_path),
              out=io.StringIO(), sleep=lambda s: None)
    return env, runner, provider


def test_on_an_arm64_engine_lab_up_pulls_and_loads_arm64_and_asks_the_engine_once(tmp_path):
    env, runner, provider = platform_env(tmp_path, "linux/arm64")
    s = by_id(steps.build(env.profile))
    for step_id in ("host/images-pull", "cluster1/images-load", "cluster2/images-load"):
        assert execute(env, s[step_id]) is True
    pulls = [c for c in runner.calls if c[:2] == ("docker", "pull")]
    assert pulls and {c[2:4] for c in pulls} == {("--platform", "linux/arm64")}
    assert [p for _, _, p in provider.loads] == ["linux/arm64", "linux/arm64"]
    assert runner.calls.count(PLATFORM_ARGV) == 1
    assert not [c for c in runner.calls if "linux/amd64" in c]


@pytest.mark.parametrize("engine", ["linux/s390x", "windows/amd64", "linux/arm"])
def test_an_engine_the_images_are_not_published_for_stops_the_pull_in_one_line_and_pulls_nothing(tmp_path, engine):
    from lab.errors import PreflightError

    env, runner, _ = platform_env(tmp_path, engine)
    with pytest.raises(PreflightError) as err:
        execute(env, by_id(steps.build(env.profile))["host/images-pull"])
    assert "\n" not in str(err.value) and engine in str(err.value)
    assert not [c for c in runner.calls if c[:2] == ("docker", "pull")]


def test_the_plan_carries_the_engines_platform_for_every_pull_and_load_never_linux_amd64():
    from lab.tokens import DockerPlatform

    token = DockerPlatform(("linux/amd64", "linux/arm64"))
    image_steps = [s for s in build() if isinstance(s.run, (plan.PullImages, plan.LoadImages))]
    assert len(image_steps) == 3 and {s.run.platform for s in image_steps} == {token}
    assert plan.docker_platforms_of(build()) == [token]


def _platform_script(tmp_path: Path) -> Path:
    """The script's prelude, header, pulls and cluster1's first load, with docker and kind as recording stubs (kind
    load docker-image fails, as on Docker 29's containerd image store, so the archive fallback runs)."""
    lines = render("multi-primary", shell=True).splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("DOCKER_PLATFORM="))
    end = lines.index("esac", start)
    load = next(i for i, ln in enumerate(lines) if ln.startswith("kind load docker-image --name cluster1 "))
    body = [*lines[start:end + 1], *[ln for ln in lines if ln.startswith("docker pull ")], lines[load],
            lines[load + 1]]
    stubs = ['docker() { if [ "$1" = version ]; then echo "$ENGINE"; else echo "docker $*" >>"$LOG"; fi; }',
             'kind() { if [ "$2" = docker-image ]; then return 1; fi; echo "kind $*" >>"$LOG"; }']
    script = tmp_path / "platform.sh"
    script.write_text("\n".join(["set -euo pipefail", *stubs, *body]) + "\n")
    return script


@pytest.mark.parametrize("engine", ["linux/arm64", "linux/amd64"])
def test_the_script_pulls_and_saves_as_the_platform_the_engine_reports(tmp_path, engine):
    log = tmp_path / "log"
    res = subprocess.run(["bash", str(_platform_script(tmp_path))], capture_output=True, text=True, check=False,
                         env={"PATH": os.environ["PATH"], "ENGINE": engine, "LOG": str(log),
                              "LAB_HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    pulls = [c for c in calls if c.startswith("docker pull ")]
    assert len(pulls) == len(load_profile().image_refs()) and all(
        c.startswith(f"docker pull --platform {engine} ") for c in pulls)
    assert f"docker image save --platform {engine} -o {tmp_path}/tmp/image-cluster1.tar docker.io/istio/pilot:1.30.3" \
        in calls


def test_the_script_stops_with_lab_ups_own_line_on_an_engine_the_images_are_not_published_for(tmp_path):
    from lab import images as lab_images

    log = tmp_path / "log"
    res = subprocess.run(["bash", str(_platform_script(tmp_path))], capture_output=True, text=True, check=False,
                         env={"PATH": os.environ["PATH"], "ENGINE": "linux/s390x", "LOG": str(log),
                              "LAB_HOME": str(tmp_path)})
    assert res.returncode == 1 and not log.exists()
    assert res.stderr == lab_images.platform_problem("linux/s390x", lab_images.MULTI_ARCH_PLATFORMS) + "\n"
