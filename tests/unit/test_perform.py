"""lab.perform's pure pieces: the manifests it renders (a Secret from files, a sample with its images swapped, the
CoreDNS ConfigMap), how it judges a check's result, and what it compares in a live ServiceEntry. The steps it does
against a fake lab are in test_executor.py."""

from __future__ import annotations

import pytest
import yaml

from lab import perform
from lab.perform import judge, sample_manifest, secret_manifest
from lab.plan import Expect
from lab.scenarios.replicated_control_planes import actions as rcp_actions
from lab.shell import Result
from tests.support.fakelab import ISTIO_DIR


def test_serviceentry_changes_names_each_field_that_differs():
    want = {"spec": {"addresses": ["240.0.0.2"], "endpoints": [{"address": "172.18.0.3", "ports": {"http1": 1}}]}}
    assert rcp_actions.serviceentry_changes(None, want) == ["absent"]
    assert rcp_actions.serviceentry_changes({"spec": want["spec"]}, want) == []
    live = {"spec": {"addresses": ["240.0.0.2"], "endpoints": [{"address": "172.18.0.9", "ports": {"http1": 1}}]}}
    (change,) = rcp_actions.serviceentry_changes(live, want)
    assert change.startswith("spec.endpoints is") and "172.18.0.9" in change and "172.18.0.3" in change


def test_secret_manifest_matches_kubectl_create_secret_from_file_keys():
    files = {p.name: p.read_bytes() for p in sorted((ISTIO_DIR / "samples/certs").glob("*.pem"))}
    doc = yaml.safe_load(secret_manifest("cacerts", "istio-system", files))
    assert doc["metadata"] == {"name": "cacerts", "namespace": "istio-system"}
    assert sorted(doc["data"]) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    import base64
    assert base64.b64decode(doc["data"]["root-cert.pem"]) == files["root-cert.pem"]


def test_sample_manifest_swaps_only_the_named_image():
    text = (ISTIO_DIR / "samples/sleep/sleep.yaml").read_text()
    out = sample_manifest(text, [("governmentpaas/curl-ssl", "docker.io/curlimages/curl:8.5.0")])
    assert "image: docker.io/curlimages/curl:8.5.0" in out and "governmentpaas" not in out
    assert out.replace("docker.io/curlimages/curl:8.5.0", "governmentpaas/curl-ssl") == text


def test_sample_manifest_refuses_a_sample_without_the_image():
    with pytest.raises(Exception, match="no `image: nope/nope` line"):
        sample_manifest("image: a/b\n", [("nope/nope", "x/y:1")])


@pytest.mark.parametrize(("expect", "result", "passes"), [
    (Expect("exit0"), Result((), 0, "", ""), True),
    (Expect("exit0"), Result((), 1, "", "boom"), False),
    (Expect("equals", "31443"), Result((), 0, "31443\n", ""), True),
    (Expect("equals", "31443"), Result((), 0, "30001", ""), False),
    (Expect("http", "200"), Result((), 0, "HTTP/1.1 200 OK\n\n__LAB_HTTP_CODE__=200\n__LAB_CURL_EXIT__=0\n", ""),
     True),
    (Expect("http", "200"), Result((), 0, "HTTP/1.1 503 x\n\n__LAB_HTTP_CODE__=503\n__LAB_CURL_EXIT__=0\n", ""),
     False),
    (Expect("resolves", "240.0.0.2"), Result((), 0, "Name:\thttpbin.bar.global\nAddress: 240.0.0.2\n", ""), True),
    (Expect("resolves", "240.0.0.2"), Result((), 1, "** server can't find httpbin.bar.global: NXDOMAIN\n", ""),
     False),
])
def test_judge_says_whether_a_result_meets_its_expectation(expect, result, passes):
    assert (judge(expect, result) is None) == passes


def test_coredns_configmap_keeps_other_keys():
    live = {"metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": "old", "x": "y"}}
    doc = yaml.safe_load(perform.coredns_configmap(live, "new"))
    assert doc["data"] == {"Corefile": "new", "x": "y"}


def test_a_steps_kubectl_takes_its_kubeconfig_and_context_only_from_the_provider_through_the_lab_handle(tmp_path):
    from lab.errors import LabError
    from lab.plan import Paths
    from lab.scenario import load_profile
    from lab.state import State
    from tests.support.fakelab import FakeLab

    profile = load_profile()
    fake = FakeLab(profile, tmp_path / "home")
    env = perform.Env(profile, Paths(fake.home, ISTIO_DIR), fake.runner, fake.tools, fake.provider,
                      State.load(fake.home))
    spec = profile.clusters[1]
    k = env.kubectl(spec.name)
    assert k.base() == [str(fake.tools.kubectl), "--kubeconfig", str(fake.provider.kubeconfig(spec)), "--context",
                        fake.provider.context(spec)]
    assert env.lab is env.lab and env.lab[spec.name].kubeconfig == fake.provider.kubeconfig(spec)
    with pytest.raises(LabError, match="cluster nope is not in profile default"):
        env.kubectl("nope")


def test_an_amd64_only_profile_pulls_and_loads_linux_amd64_without_asking_the_engine(tmp_path):
    # The 1.7 scenario's images are amd64-only: its platform is the literal linux/amd64 (preflight refuses an arm64
    # engine before this), never the engine's, so a run on it asks nothing and pulls what it always pulled.
    from lab import images as lab_images
    from lab.plan import Paths
    from lab.scenario import load_profile
    from lab.scenarios.replicated_control_planes import steps as rcp_steps
    from lab.state import State
    from tests.support.fakelab import FakeLab

    profile = load_profile()
    fake = FakeLab(profile, tmp_path / "home")
    env = perform.Env(profile, Paths(fake.home, ISTIO_DIR), fake.runner, fake.tools, fake.provider,
                      State.load(fake.home))
    fake.clusters["cluster1"].exists = fake.clusters["cluster2"].exists = True
    steps = {s.id: s for s in rcp_steps.build(profile, Paths(fake.home, ISTIO_DIR))}
    fake.fail_when(lambda argv: argv[1:3] == ("image", "inspect"), Result((), 1, "", "No such image"), times=99)
    for step_id in ("host/images-pull", "cluster1/images-load", "cluster2/images-load"):
        perform.execute(env, steps[step_id])
    pulls = [c for c in fake.runner.calls if c[:2] == ("docker", "pull")]
    assert pulls and {c[3] for c in pulls} == {"linux/amd64"}
    assert fake.provider.platforms == ["linux/amd64", "linux/amd64"]
    assert tuple(lab_images.DOCKER_PLATFORM_ARGV) not in fake.runner.calls
