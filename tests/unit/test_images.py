"""lab.images: the image list by tag, the pull-once plan, digests from docker, and lock.json."""

from __future__ import annotations

import json

import pytest

from lab import images
from lab.errors import ValidationError
from lab.scenario import load_profile
from lab.shell import Result
from tests.support.recording import RecordingRunner

DEFAULT_IMAGES = [
    "docker.io/istio/pilot:1.7.8",
    "docker.io/istio/proxyv2:1.7.8",
    "docker.io/coredns/coredns:1.6.2",
    "docker.io/istio/coredns-plugin:0.2-istio-1.1",
    "docker.io/governmentpaas/curl-ssl:latest",
    "docker.io/kennethreitz/httpbin:latest",
]
DIGEST = "docker.io/kennethreitz/httpbin@sha256:599fe5e5073102dbb0ee3dbb65f049dab44fa9fc251f6835c9990f8fb196a72b"


def res(rc=0, out="", err="") -> Result:
    return Result((), rc, out, err)


def test_default_profile_images_are_the_istio_1_7_8_set_by_tag():
    assert images.image_list(load_profile("default")) == DEFAULT_IMAGES


def test_an_istio_version_override_retags_istios_images_only():
    got = images.image_list(load_profile("default", {"istio_version": "1.7.3"}))
    assert got[:2] == ["docker.io/istio/pilot:1.7.3", "docker.io/istio/proxyv2:1.7.3"]
    assert got[2:] == DEFAULT_IMAGES[2:]


def test_a_profile_image_given_by_digest_is_refused_because_kind_load_works_by_tag():
    profile = load_profile("default", {"images.httpbin": DIGEST})
    with pytest.raises(ValidationError, match="loads by tag"):
        images.image_list(profile)


def test_the_same_image_twice_is_pulled_once():
    profile = load_profile("default", {"images.sleep": "docker.io/kennethreitz/httpbin:latest"})
    assert images.image_list(profile).count("docker.io/kennethreitz/httpbin:latest") == 1


def test_pull_plan_pulls_the_amd64_platform_and_is_empty_when_loading_is_off():
    profile = load_profile("default")
    plan = images.pull_plan(profile, images.platform_for(profile))
    assert plan[0] == ["docker", "pull", "--platform", "linux/amd64", "docker.io/istio/pilot:1.7.8"]
    assert len(plan) == len(DEFAULT_IMAGES)
    assert images.pull_plan(load_profile("default", {"load_images": "false"}), "linux/amd64") == []


def test_ensure_pulled_pulls_only_what_the_host_lacks():
    on_host = set(DEFAULT_IMAGES[:2])

    def inspect(argv):
        return res(0, "sha256:abc") if argv[-1] in on_host else res(1, err="No such image")

    runner = RecordingRunner(answers={("docker", "image", "inspect"): inspect})
    pulled = images.ensure_pulled(load_profile("default"), runner)
    assert pulled == DEFAULT_IMAGES[2:]
    assert [c for c in runner.calls if c[1] == "pull"] == [
        ("docker", "pull", "--platform", "linux/amd64", image) for image in DEFAULT_IMAGES[2:]]


def test_repo_digest_comes_from_docker_image_inspect():
    runner = RecordingRunner(answers={("docker", "image", "inspect"): res(0, DIGEST + "\n")})
    assert images.repo_digest(runner, "docker.io/kennethreitz/httpbin:latest") == DIGEST
    assert runner.calls == [("docker", "image", "inspect", "--format", "{{index .RepoDigests 0}}",
                             "docker.io/kennethreitz/httpbin:latest")]


@pytest.mark.parametrize("answer", [
    # a locally built image has no RepoDigests: Go's template index fails
    res(1, err='template parsing error: template: :1:2: executing "" at <index .RepoDigests 0>: error calling '
               'index: index out of range: 0'),
    res(1, err="Error: No such image: x:1"),
    res(0, "\n"),
])
def test_repo_digest_is_none_without_a_registry_digest(answer):
    runner = RecordingRunner(answers={("docker", "image", "inspect"): answer})
    assert images.repo_digest(runner, "x:1") is None


def test_lock_entries_record_only_images_with_digests():
    def inspect(argv):
        return res(0, DIGEST) if "httpbin" in argv[-1] else res(1)

    runner = RecordingRunner(answers={("docker", "image", "inspect"): inspect})
    assert images.lock_entries(load_profile("default"), runner) == {"docker.io/kennethreitz/httpbin:latest": DIGEST}


def test_lock_file_round_trips_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "lab" / "lock.json"
    entries = {"docker.io/kennethreitz/httpbin:latest": DIGEST}
    images.write_lock(path, entries, load_profile("writeup"))
    assert images.read_lock(path) == entries
    doc = json.loads(path.read_text())
    assert doc["profile"] == "writeup" and doc["istio_version"] == "1.7.8" and doc["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["lock.json"]


def test_a_missing_lock_is_empty_and_a_broken_one_is_a_one_line_error(tmp_path):
    assert images.read_lock(tmp_path / "lock.json") == {}
    (tmp_path / "lock.json").write_text("{not json")
    with pytest.raises(ValidationError, match="is not JSON"):
        images.read_lock(tmp_path / "lock.json")
    (tmp_path / "lock.json").write_text(json.dumps({"images": {"a:1": "not-a-digest"}}))
    with pytest.raises(ValidationError, match="name@sha256"):
        images.read_lock(tmp_path / "lock.json")


def test_drift_names_images_whose_digest_moved():
    old = {"a:1": "a@sha256:" + "1" * 64, "b:1": "b@sha256:" + "2" * 64}
    new = {"a:1": "a@sha256:" + "1" * 64, "b:1": "b@sha256:" + "3" * 64, "c:1": "c@sha256:" + "4" * 64}
    assert images.drift(old, new) == {"b:1": (old["b:1"], new["b:1"])}


# What `docker pull` prints when Docker Hub's limit is reached (Docker docs, "Docker Hub usage and limits").
RATE_LIMITED = ("Error response from daemon: toomanyrequests: You have reached your unauthenticated pull rate limit. "
                "https://www.docker.com/increase-rate-limit\n")


@pytest.mark.parametrize("stderr", [RATE_LIMITED, "Error response from daemon: 429 Too Many Requests\n"])
def test_a_rate_limited_pull_is_one_line_saying_to_docker_login(stderr):
    from lab.errors import LabError

    runner = RecordingRunner(answers={("docker", "image", "inspect"): Result((), 1, "", "No such image"),
                                      ("docker", "pull"): Result((), 1, "", stderr)})
    with pytest.raises(LabError) as err:
        images.ensure_pulled(load_profile(), runner)
    line = str(err.value)
    assert "\n" not in line and "`docker login`" in line and "docker.io/istio/pilot:1.7.8" in line
    assert not isinstance(err.value, images.CommandError)


def test_any_other_pull_failure_stays_the_commands_own_error():
    runner = RecordingRunner(answers={("docker", "image", "inspect"): Result((), 1, "", "No such image"),
                                      ("docker", "pull"): Result((), 1, "", "manifest unknown\n")})
    with pytest.raises(images.CommandError, match="manifest unknown"):
        images.ensure_pulled(load_profile(), runner)


def test_the_lock_records_a_digest_for_every_unpinned_latest_image_the_profile_runs():
    profile = load_profile()
    latest = [i for i in images.image_list(profile) if i.endswith(":latest")]
    assert latest == ["docker.io/governmentpaas/curl-ssl:latest", "docker.io/kennethreitz/httpbin:latest"]
    digest = {i: i.rsplit(":", 1)[0] + "@sha256:" + "ab" * 32 for i in images.image_list(profile)}
    inspect = ("docker", "image", "inspect")
    runner = RecordingRunner(answers={inspect: lambda argv: Result(argv, 0, digest[argv[-1]], "")})
    entries = images.lock_entries(profile, runner)
    assert {i: entries[i] for i in latest} == {i: digest[i] for i in latest}
    assert images.unrecorded_latest(profile, entries) == []
    assert images.unrecorded_latest(profile, {k: v for k, v in entries.items() if "httpbin" not in k}) == [
        "docker.io/kennethreitz/httpbin:latest"]


def test_a_latest_image_can_be_pinned_to_another_tag_with_set():
    profile = load_profile(overrides={"images.httpbin": "docker.io/kennethreitz/httpbin:0.9.2"})
    assert "docker.io/kennethreitz/httpbin:0.9.2" in images.image_list(profile)
    assert images.unrecorded_latest(profile, {}) == ["docker.io/governmentpaas/curl-ssl:latest"]


# --- the platform images are pulled and saved as ---------------------------------------------------------------
# What `docker version --format '{{.Server.Os}}/{{.Server.Arch}}'` prints: the template, then one newline
# (docker/cli cli/command/system/version.go prettyPrintVersion). The values are the Server Engine's "OS/Arch" of the
# `docker version` examples in Docker's own man page docker-version(1) (the same two fields, default template):
# Docker Desktop 4.49.0 / Engine 28.5.1 on Apple Silicon and Docker Desktop 4.19.0 / Engine 23.0.3 on an Intel Mac.
ENGINE_ARM64 = "linux/arm64\n"
ENGINE_AMD64 = "linux/amd64\n"
CANNOT_CONNECT = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon "
                  "running?\n")


def engine(stdout: str = ENGINE_ARM64, rc: int = 0, err: str = "") -> dict:
    return {tuple(images.DOCKER_PLATFORM_ARGV): res(rc, stdout, err)}


def test_a_profile_with_amd64_only_images_pulls_linux_amd64_and_one_with_multi_arch_images_the_engines_platform():
    from lab.scenarios.multi_primary_multi_network.profiles import load_profile as mpmn_profile
    from lab.tokens import DockerPlatform

    assert images.platform_for(load_profile("default")) == "linux/amd64"
    assert images.platform_for(mpmn_profile()) == DockerPlatform(("linux/amd64", "linux/arm64"))


def test_the_engine_platform_is_asked_as_go_names_it_from_the_servers_own_fields():
    assert images.DOCKER_PLATFORM_ARGV == ["docker", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]


@pytest.mark.parametrize(("stdout", "platform"), [
    (ENGINE_ARM64, "linux/arm64"),
    (ENGINE_AMD64, "linux/amd64"),
    ("linux/aarch64\n", "linux/arm64"),  # uname -m spellings, read as containerd's platforms.normalizeArch does
    ("linux/x86_64\n", "linux/amd64"),
    ("windows/amd64\n", "windows/amd64"),
])
def test_the_engine_platform_parses_to_the_form_docker_pull_platform_takes(stdout, platform):
    assert images.parse_docker_platform(stdout) == platform


@pytest.mark.parametrize("stdout", ["", "\n", "/\n", "linux\n", "linux/arm64\nlinux/amd64\n",
                                    "<no value>/<no value>\n"])
def test_anything_but_one_os_arch_pair_is_one_line_saying_to_check_the_engine(stdout):
    from lab.errors import LabError

    with pytest.raises(LabError) as err:
        images.parse_docker_platform(stdout)
    assert "\n" not in str(err.value) and "`docker version`" in str(err.value)


@pytest.mark.parametrize("stdout", ["linux/s390x\n", "windows/amd64\n", "linux/arm\n", "linux/ppc64le\n"])
def test_an_engine_platform_the_images_are_not_published_for_is_refused_in_one_line(stdout):
    from lab.errors import PreflightError

    runner = RecordingRunner(answers=engine(stdout))
    with pytest.raises(PreflightError) as err:
        images.docker_platform(runner, images.MULTI_ARCH_PLATFORMS)
    line = str(err.value)
    assert "\n" not in line and stdout.strip() in line and "linux/amd64 and linux/arm64" in line


def test_an_engine_that_does_not_answer_is_one_line_with_dockers_reason():
    from lab.errors import PreflightError

    runner = RecordingRunner(answers=engine("", rc=1, err=CANNOT_CONNECT))
    with pytest.raises(PreflightError) as err:
        images.docker_platform(runner, images.MULTI_ARCH_PLATFORMS)
    assert "\n" not in str(err.value) and "Cannot connect to the Docker daemon" in str(err.value)


def test_ensure_pulled_pulls_a_multi_arch_profile_as_the_engines_platform_asking_once():
    from lab.scenarios.multi_primary_multi_network.profiles import load_profile as mpmn_profile

    runner = RecordingRunner(answers={**engine(ENGINE_ARM64), ("docker", "image", "inspect"): res(1, err="No such")})
    profile = mpmn_profile()
    pulled = images.ensure_pulled(profile, runner)
    assert pulled == images.image_list(profile)
    assert runner.calls.count(tuple(images.DOCKER_PLATFORM_ARGV)) == 1
    assert [c for c in runner.calls if c[1] == "pull"] == [
        ("docker", "pull", "--platform", "linux/arm64", image) for image in pulled]


def test_ensure_pulled_never_asks_the_engine_for_an_amd64_only_profile():
    runner = RecordingRunner(answers={("docker", "image", "inspect"): res(1, err="No such")})
    images.ensure_pulled(load_profile("default"), runner)
    assert tuple(images.DOCKER_PLATFORM_ARGV) not in runner.calls
    assert {c[3] for c in runner.calls if c[1] == "pull"} == {"linux/amd64"}
