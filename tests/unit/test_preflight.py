"""lab.preflight: each way the machine can be unfit, as one line with a fix, before anything is created."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import ClassVar

import pytest

from lab import preflight
from lab.errors import CommandError, PreflightError, UsageError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes.profiles import ClusterSpec, Profile
from lab.shell import Result
from tests.support.recording import RecordingRunner

PROFILE = load_profile()
MODULES = {"modules": PROFILE.kernel_modules, "needed_by": PROFILE.kernel_modules_for}

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

    (problem,) = preflight.docker_problems(NoDocker(), PROFILE)
    assert problem.fatal and "not installed" in problem.what and "docs.docker.com" in problem.fix


def test_a_hung_docker_engine_is_reported_after_the_timeout():
    class Hung(RecordingRunner):
        def run(self, argv, **kwargs):
            raise CommandError(list(argv), -1, "(timed out after 15s)")

    (problem,) = preflight.docker_problems(Hung(), PROFILE)
    assert problem.fatal and "did not answer" in problem.what


def test_a_healthy_x86_64_docker_host_has_no_problems(good_proc):
    assert preflight.checks(profile_on_free_ports(), docker_runner(), proc_root=good_proc) == []


@pytest.mark.parametrize("arch", ["aarch64", "arm64", ""])
def test_a_non_x86_64_docker_host_is_refused(arch):
    (problem,) = preflight.docker_info_problems(PROFILE, info(Architecture=arch))
    assert "not x86_64" in problem.what and "amd64-only" in problem.fix


def test_too_little_memory_names_the_amount_and_the_minimum():
    (problem,) = preflight.docker_info_problems(PROFILE, info(MemTotal=4 * GIB))
    assert "4.0 GiB" in problem.what and "at least 6 GiB" in problem.what
    assert preflight.docker_info_problems(PROFILE, info(MemTotal=6 * GIB)) == []


def test_too_few_cpus_and_old_docker_are_reported():
    problems = preflight.docker_info_problems(PROFILE, info(NCPU=1, ServerVersion="19.03.13"))
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


def test_require_names_every_problem_one_line_each(good_proc):
    runner = docker_runner(stdout=json.dumps(info(Architecture="aarch64", MemTotal=2 * GIB, NCPU=1)))
    with pytest.raises(PreflightError) as err:
        preflight.require(profile_on_free_ports(), runner, proc_root=good_proc)
    head, *lines = str(err.value).splitlines()
    assert head == "3 problems stop the lab (nothing was created):"
    assert len(lines) == 3 and all(ln.startswith("  - ") for ln in lines)
    assert "not x86_64" in lines[0] and "1 CPU(s)" in lines[1] and "2.0 GiB of memory" in lines[2]


def test_require_with_one_problem_is_that_problems_line():
    runner = docker_runner(stdout=json.dumps(info(NCPU=1)))
    with pytest.raises(PreflightError) as err:
        preflight.require(profile_on_free_ports(), runner, proc_root=Path("/nonexistent"))
    assert "\n" not in str(err.value) and str(err.value).startswith("the Docker host has 1 CPU(s)")


def test_unparseable_docker_info_counts_as_unreachable():
    (problem,) = preflight.docker_problems(docker_runner(stdout="not json"), PROFILE)
    assert problem.fatal and "not reachable" in problem.what


def test_cluster_spec_ports_are_what_is_checked():
    profile = load_profile("default")
    assert [c.gateway_host_port for c in profile.clusters] == [31443, 32443]
    assert all(isinstance(c, ClusterSpec) for c in profile.clusters)


# --- CPU: derived from the pods' requests (lab/scenarios/replicated_control_planes/capacity.py)
# -------------------------------------------------------
def test_the_cpu_minimum_is_the_busiest_nodes_peak_request_rounded_up():
    from lab.scenarios.replicated_control_planes import capacity

    assert PROFILE.cpu_need()[0] == capacity.min_cpus() == 2
    (problem,) = preflight.docker_info_problems(PROFILE, info(NCPU=1))
    assert f"{max(capacity.peak(r) for r in capacity.WORKLOADS)}m" in problem.fix


# --- legacy iptables modules ----------------------------------------------------------------------------------------
RELEASE = "6.8.0-51-generic"
MODULE_PATHS = {"ip_tables": "kernel/net/ipv4/netfilter/ip_tables.ko.zst",
                "iptable_nat": "kernel/net/ipv4/netfilter/iptable_nat.ko.zst",
                "xt_REDIRECT": "kernel/net/netfilter/xt_REDIRECT.ko.zst",
                "xt_owner": "kernel/net/netfilter/xt_owner.ko.zst"}


def _kernel(tmp_path, *, loaded=(), builtin=(), on_disk=(), moddir=True):
    proc = tmp_path / "proc"
    proc.mkdir()
    # /proc/modules: name size refcount deps state address
    (proc / "modules").write_text("".join(f"{m} 16384 0 - Live 0x0000000000000000\n" for m in ("nf_tables", *loaded)))
    mods = tmp_path / "lib-modules"
    if moddir:
        (mods / RELEASE).mkdir(parents=True)
        (mods / RELEASE / "modules.builtin").write_text("".join(f"{MODULE_PATHS[m][:-4]}\n" for m in builtin))
        (mods / RELEASE / "modules.dep").write_text("".join(f"{MODULE_PATHS[m]}: kernel/net/netfilter/x_tables.ko.zst\n"
                                                            for m in on_disk))
    return {"proc_root": proc, "modules_root": mods, "release": RELEASE}


ALL = tuple(MODULE_PATHS)


@pytest.mark.parametrize("where", ["loaded", "builtin", "on_disk"])
def test_modules_that_are_loaded_built_in_or_loadable_are_no_problem(tmp_path, where):
    assert preflight.xtables_problems(RELEASE, **MODULES, **_kernel(tmp_path, **{where: ALL})) == []


def test_a_kernel_without_legacy_xtables_is_one_line_saying_istio_1_7_cannot_run_there(tmp_path):
    kernel = _kernel(tmp_path, on_disk=("xt_owner", "xt_REDIRECT"))
    (problem,) = preflight.xtables_problems(RELEASE, **MODULES, **kernel)
    line = problem.line()
    assert "\n" not in line and "ip_tables, iptable_nat" in line and RELEASE in line
    assert "cannot run on this kernel at all" in line


def test_modules_not_loaded_and_no_lib_modules_says_what_to_run(tmp_path):
    kernel = _kernel(tmp_path, loaded=("ip_tables",), moddir=False)
    (problem,) = preflight.xtables_problems(RELEASE, **MODULES, **kernel)
    assert "`sudo modprobe -a ip_tables iptable_nat xt_REDIRECT xt_owner`" in problem.line()
    assert "iptable_nat, xt_REDIRECT, xt_owner" in problem.what


def test_another_kernel_than_dockers_is_left_to_the_node_check(tmp_path):
    kernel = _kernel(tmp_path)  # nothing anywhere
    assert preflight.xtables_problems("6.10.14-linuxkit", **MODULES, **kernel) == []
    assert preflight.xtables_problems("", **MODULES, **kernel) == []
    assert len(preflight.xtables_problems(RELEASE, **MODULES, **kernel)) == 1


# --- arm64: only for a profile whose images are all multi-arch (issue 11) -----------------------------------

@dataclasses.dataclass(frozen=True)
class _MultiArch(Profile):
    multi_arch_images: ClassVar[bool] = True


def multi_arch(profile=None):
    p = profile or load_profile("default")
    return _MultiArch(**{**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}, "name": "multi"})


@pytest.mark.parametrize("arch", ["aarch64", "arm64", "x86_64", "amd64"])
def test_a_multi_arch_profile_accepts_arm64_and_x86_64_docker_hosts(arch):
    assert preflight.docker_info_problems(multi_arch(), info(Architecture=arch)) == []


@pytest.mark.parametrize("arch", ["aarch64", "arm64"])
def test_the_istio_1_7_profiles_keep_refusing_arm64_with_the_same_message(arch):
    for name in ("default", "writeup"):
        profile = load_profile(name)
        assert profile.multi_arch_images is False
        (problem,) = preflight.docker_info_problems(profile, info(Architecture=arch))
        assert problem.what == f"the Docker host architecture is {arch}, not x86_64"
        assert "amd64-only" in problem.fix


@pytest.mark.parametrize("arch", ["s390x", "ppc64le", "armv7l", ""])
def test_a_multi_arch_profile_still_refuses_other_architectures_in_one_line(arch):
    (problem,) = preflight.docker_info_problems(multi_arch(), info(Architecture=arch))
    assert problem.what == f"the Docker host architecture is {arch or 'unknown'}, not x86_64 or arm64"
    assert "linux/amd64 and linux/arm64" in problem.fix and "\n" not in problem.line()


def test_checks_pass_the_profile_to_the_architecture_check(good_proc):
    arm = json.dumps(info(Architecture="aarch64"))
    assert preflight.checks(multi_arch(profile_on_free_ports()), docker_runner(stdout=arm), proc_root=good_proc) == []
    (problem,) = preflight.checks(profile_on_free_ports(), docker_runner(stdout=arm), proc_root=good_proc)
    assert problem.what == "the Docker host architecture is aarch64, not x86_64"


def test_multi_arch_images_cannot_be_set_from_the_command_line():
    with pytest.raises(UsageError, match="cannot override 'multi_arch_images'"):
        load_profile(overrides={"multi_arch_images": "true"})
