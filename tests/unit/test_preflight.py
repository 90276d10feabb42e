"""lab.preflight: each way the machine can be unfit, as one line with a fix, before anything is created."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest

from lab import preflight
from lab.errors import CommandError, PreflightError
from lab.profile import ClusterSpec, load_profile
from lab.shell import RecordingRunner, Result

# What `docker info --format '{{json .}}'` of a Docker 28.2.2 client with no engine gives on this project's
# engine-less host (stdout reduced to the keys the lab reads): exit 1, client part on stdout, reason on stderr.
NO_ENGINE_STDERR = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                    "Is the docker daemon running?\n")
NO_ENGINE_STDOUT = json.dumps({"ID": "", "ServerVersion": "", "Architecture": "", "MemTotal": 0, "NCPU": 0,
                               "ClientInfo": {"Version": "28.2.2", "Arch": "amd64"}})
GIB = 1024**3


def info(**overrides) -> dict:
    base = {"ServerVersion": "27.3.1", "Architecture": "x86_64", "NCPU": 8, "MemTotal": 16 * GIB,
            "OSType": "linux", "OperatingSystem": "Ubuntu 24.04.1 LTS"}
    return {**base, **overrides}


def docker_runner(rc=0, stdout=None, stderr="") -> RecordingRunner:
    out = stdout if stdout is not None else json.dumps(info())
    return RecordingRunner(answers={("docker", "info"): Result((), rc, out, stderr)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def profile_on_free_ports():
    base = load_profile("default")
    clusters = tuple(dataclasses.replace(c, gateway_host_port=free_port()) for c in base.clusters)
    return dataclasses.replace(base, clusters=clusters)


@pytest.fixture
def good_proc(tmp_path) -> Path:
    d = tmp_path / "proc" / "sys" / "fs" / "inotify"
    d.mkdir(parents=True)
    (d / "max_user_watches").write_text("524288\n")
    (d / "max_user_instances").write_text("512\n")
    return tmp_path / "proc"


def test_no_docker_engine_is_one_fatal_line_saying_what_and_what_to_do(good_proc):
    runner = docker_runner(rc=1, stdout=NO_ENGINE_STDOUT, stderr=NO_ENGINE_STDERR)
    problems = preflight.checks(profile_on_free_ports(), runner, proc_root=good_proc)
    assert len(problems) == 1 and problems[0].fatal
    line = problems[0].line()
    assert "Docker engine is not reachable (Cannot connect to the Docker daemon" in line
    assert "start Docker" in line and "\n" not in line
    assert runner.calls == [("docker", "info", "--format", "{{json .}}")]


def test_require_raises_preflight_error_with_the_first_line():
    runner = docker_runner(rc=1, stdout=NO_ENGINE_STDOUT, stderr=NO_ENGINE_STDERR)
    with pytest.raises(PreflightError, match=r"^the Docker engine is not reachable .*: start Docker") as err:
        preflight.require(profile_on_free_ports(), runner)
    assert err.value.exit_code == 1


def test_missing_docker_client_is_reported_not_raised():
    class NoDocker(RecordingRunner):
        def run(self, argv, **kwargs):
            raise PreflightError("docker is not installed or not on PATH")

    (problem,) = preflight.docker_problems(NoDocker())
    assert problem.fatal and "not installed" in problem.what and "docs.docker.com" in problem.fix


def test_a_hung_docker_engine_is_reported_after_the_timeout():
    class Hung(RecordingRunner):
        def run(self, argv, **kwargs):
            raise CommandError(list(argv), -1, "(timed out after 15s)")

    (problem,) = preflight.docker_problems(Hung())
    assert problem.fatal and "did not answer" in problem.what


def test_a_healthy_x86_64_docker_host_has_no_problems(good_proc):
    assert preflight.checks(profile_on_free_ports(), docker_runner(), proc_root=good_proc) == []


@pytest.mark.parametrize("arch", ["aarch64", "arm64", ""])
def test_a_non_x86_64_docker_host_is_refused(arch):
    (problem,) = preflight.docker_info_problems(info(Architecture=arch))
    assert "not x86_64" in problem.what and "amd64-only" in problem.fix


def test_too_little_memory_names_the_amount_and_the_minimum():
    (problem,) = preflight.docker_info_problems(info(MemTotal=4 * GIB))
    assert "4.0 GiB" in problem.what and "at least 6 GiB" in problem.what
    assert preflight.docker_info_problems(info(MemTotal=6 * GIB)) == []


def test_too_few_cpus_and_old_docker_are_reported():
    problems = preflight.docker_info_problems(info(NCPU=1, ServerVersion="19.03.13"))
    whats = " / ".join(p.what for p in problems)
    assert "1 CPU(s)" in whats and "Docker 19.03.13 is older than 20.10.0" in whats


def test_inotify_limits_below_kinds_values_each_get_the_sysctl_fix(tmp_path):
    d = tmp_path / "sys" / "fs" / "inotify"
    d.mkdir(parents=True)
    (d / "max_user_watches").write_text("8192\n")
    (d / "max_user_instances").write_text("128\n")
    problems = preflight.inotify_problems(tmp_path)
    assert [p.fix for p in problems] == ["run `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in "
                                         "/etc/sysctl.conf)",
                                         "run `sudo sysctl fs.inotify.max_user_instances=512` (persist it in "
                                         "/etc/sysctl.conf)"]


def test_inotify_is_not_checked_where_proc_has_no_inotify(tmp_path):
    assert preflight.inotify_problems(tmp_path) == []


def test_a_host_port_in_use_is_reported_unless_its_cluster_already_exists():
    profile = profile_on_free_ports()
    c1 = profile.clusters[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", c1.gateway_host_port))
        holder.listen()
        (problem,) = preflight.port_problems(profile)
        assert f"127.0.0.1:{c1.gateway_host_port}" in problem.what and "cluster1" in problem.what
        assert "in use" in problem.what
        assert preflight.port_problems(profile, skip_ports_of=["cluster1"]) == []


def test_tool_versions_must_match_the_profile_exactly():
    @dataclasses.dataclass
    class T:
        kind: Path = Path("/c/kind")
        kubectl: Path = Path("/c/kubectl")
        istioctl: Path = Path("/c/istioctl")
        istio_dir: Path = Path("/c/istio")

    runner = RecordingRunner(answers={
        ("/c/kind",): Result((), 0, "kind v0.20.0 go1.20.4 linux/amd64\n", ""),
        ("/c/kubectl",): Result((), 0, '{"clientVersion": {"gitVersion": "v1.22.0"}}', ""),
        ("/c/istioctl",): Result((), 1, "", "exec format error"),
    })
    problems = preflight.tool_problems(load_profile("default"), T(), runner)
    assert [p.what for p in problems] == ["/c/kubectl reports version v1.22.0, the profile pins v1.21.14",
                                          "/c/istioctl reports version unknown, the profile pins 1.7.8"]


def test_require_mentions_how_many_more_problems_there_are(good_proc):
    runner = docker_runner(stdout=json.dumps(info(Architecture="aarch64", MemTotal=2 * GIB)))
    with pytest.raises(PreflightError, match=r"not x86_64: .* \(\+1 more problem\(s\)\)$"):
        preflight.require(profile_on_free_ports(), runner, proc_root=good_proc)


def test_unparseable_docker_info_counts_as_unreachable():
    (problem,) = preflight.docker_problems(docker_runner(stdout="not json"))
    assert problem.fatal and "not reachable" in problem.what


def test_cluster_spec_ports_are_what_is_checked():
    profile = load_profile("default")
    assert [c.gateway_host_port for c in profile.clusters] == [31443, 32443]
    assert all(isinstance(c, ClusterSpec) for c in profile.clusters)
