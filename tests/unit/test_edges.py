"""The pure pieces behind the bad-input battery (tests/integration/test_bad_input.py): value checks, the state
file's shape, the damaged-state message, atomic writes, the read cap, and what read-only commands may use."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest

from lab import executor, files, state, values
from lab.errors import LabError, NoLabError, UsageError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import doctor
from tests.support.fakelab import FakeLab


# --- values -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["\uff13\uff11\uff14\uff14\uff13", "1_000", "\u0663", "0x10", "1.0", "", " ", "1e3"])
def test_numbers_are_ascii_digits_only(text):
    with pytest.raises(UsageError, match="not a whole number in ASCII digits"):
        values.ascii_int(text, "port")


def test_numbers_in_range():
    assert values.ascii_int(" 31443 ", "port", 1, 65535) == 31443
    with pytest.raises(UsageError, match="outside 1-65535"):
        values.ascii_int("65536", "port", 1, 65535)


@pytest.mark.parametrize("text", ["v1.21.14", "v0.20.0"])
def test_versions_accepted(text):
    assert values.v_version(text, "kubectl_version") == text


@pytest.mark.parametrize("text", ["1.21.14", "vfoo.bar", "v1.21", "v1.21.14/../../x", "../../../etc", "v1.2\u0663.1",
                                  "v1.21.14-rc.1", "v1.21.14\n"])
def test_versions_refused(text):
    with pytest.raises(UsageError, match="is not a version of the form vX.Y.Z"):
        values.v_version(text, "kubectl_version")


@pytest.mark.parametrize("ref", ["docker.io/istio/pilot:{tag}", "kindest/node:v1.21.14@sha256:" + "a" * 64,
                                 "localhost:5000/pilot:1.7.8-custom", "pilot", "governmentpaas/curl-ssl:latest"])
def test_image_references_accepted(ref):
    assert values.image_reference(ref, "images.x") == ref


@pytest.mark.parametrize("ref", ["", "docker.io/istio/pi lot:1.7.8", "Docker.io/UPPER/x", "x@sha256:abc", "x:tag;rm",
                                 "x:" + "t" * 200, "-x"])
def test_image_references_refused(ref):
    with pytest.raises(UsageError, match="is not an image reference"):
        values.image_reference(ref, "images.x")


def test_every_known_istio_release_loads_and_a_later_one_is_unknown():
    for n in range(9):
        assert load_profile(overrides={"istio_version": f"1.7.{n}"}).istio_version == f"1.7.{n}"
    with pytest.raises(UsageError, match="unknown 1.7 release"):
        load_profile(overrides={"istio_version": "1.7.9"})


# --- the state file ------------------------------------------------------------------------------------------------
GOOD = {"format": 1, "profile": {"name": "default", "overrides": {}}, "steps": {},
        "clusters": {"cluster1": {"created_by_lab": True}, "cluster2": {"created_by_lab": True}}}


@pytest.mark.parametrize("doc, problem", [
    ([], "top level is a list"),
    ({**GOOD, "format": 2}, "format 2 is not 1, perhaps written by another version of the lab"),
    ({k: v for k, v in GOOD.items() if k != "format"}, "it has no `format` field"),
    ({**GOOD, "clusters": ["cluster1"]}, "`clusters` is a list"),
    ({**GOOD, "clusters": {"cluster1": "yes"}}, "record of cluster cluster1 is a str"),
    ({**GOOD, "clusters": {"../x": {}}}, "not a kind cluster name"),
    ({**GOOD, "clusters": {"c1": {"kubeconfig": 3}}}, "clusters.c1.kubeconfig` is not a string"),
    ({**GOOD, "profile": "default"}, "`profile` is a str"),
    ({**GOOD, "profile": {"name": "default", "overrides": {"istio_version": 178}}}, "overrides` is not an object"),
    ({**GOOD, "steps": []}, "`steps` is not an object"),
    ({**GOOD, "last_probe": "200"}, "`last_probe` is not an object"),
])
def test_state_shape_problems(doc, problem):
    assert problem in (state.shape_problem(doc) or "")


def test_a_good_state_has_no_shape_problem():
    assert state.shape_problem(GOOD) is None


def test_the_clusters_of_a_truncated_state_file_are_still_named():
    text = json.dumps(GOOD, indent=2, sort_keys=True)
    cut = text[: text.index('"cluster2"') + 30].encode()
    assert state.recoverable_clusters(cut) == ["cluster1", "cluster2"]
    message = state.damaged(Path("/x/state.json"), cut, "not readable JSON")
    assert "kind delete cluster --name cluster1; kind delete cluster --name cluster2" in message
    assert "\n" not in message


def test_a_damaged_state_file_without_names_says_how_to_find_them():
    assert "kind get clusters" in state.damaged(Path("/x/state.json"), b"\x00\xff", "not readable JSON")


def test_state_load_refuses_a_wrong_shape_and_names_the_clusters(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({**GOOD, "profile": "default"}))
    with pytest.raises(LabError, match=r"damaged \(`profile` is a str.*cluster1, cluster2"):
        state.State.load(tmp_path)


def test_lab_home_of_an_unknown_user_is_one_usage_error(monkeypatch):
    monkeypatch.setenv("LAB_HOME", "~nosuchuser-of-this-test/x")
    with pytest.raises(UsageError, match="LAB_HOME '~nosuchuser-of-this-test/x'"):
        state.lab_home()


def test_check_home_refuses_a_file_and_a_path_under_one_and_creates_nothing(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        state.check_home(tmp_path / "f")
    with pytest.raises(UsageError, match="would be under"):
        state.check_home(tmp_path / "f" / "lab")
    state.check_home(tmp_path / "new" / "lab")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_lock_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / "lock").mkdir()
    with pytest.raises(LabError, match="is a directory, not the lab's lock file"):
        state.Lock(tmp_path).acquire()


def test_a_binary_lock_is_stale_and_taken_over(tmp_path):
    (tmp_path / "lock").write_bytes(b"\xff\xfe\x00")
    with state.Lock(tmp_path) as lock:
        assert lock.record().pid == os.getpid()


# --- atomic writes and the read cap ---------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old\n")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        files.atomic_write(target, "new\n")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_state_save_on_a_full_disk_keeps_the_previous_state(tmp_path, monkeypatch):
    st = state.State(tmp_path)
    st.save()
    before = (tmp_path / "state.json").read_text()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        st.set_probe({"status": 200})
    assert (tmp_path / "state.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_private_file_is_0600(tmp_path):
    assert files.atomic_write(tmp_path / "key.pem", b"k", private=True).stat().st_mode & 0o777 == 0o600
    assert files.atomic_write(tmp_path / "cert.pem", b"c").stat().st_mode & 0o777 == 0o644


def test_the_read_cap():
    assert files.read_capped(io.BytesIO(b"x" * 10), "input", limit=10) == b"x" * 10
    with pytest.raises(UsageError, match="input is larger than"):
        files.read_capped(io.BytesIO(b"x" * 11), "input", limit=10)


def test_an_os_error_is_one_line_with_its_path_and_what_to_do():
    line = files.describe_os_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/f/x"))
    assert line == "/a/f/x: Not a directory; a part of the path is a file, not a directory: choose another path"


def test_a_missing_directory_says_what_to_do_not_only_check_the_path():
    # mkdir under /proc fails with ENOENT although /proc exists: "check the path" alone gave the user nothing to do
    line = files.describe_os_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/x"))
    assert line == ("/proc/x: No such file or directory; a directory on the path does not exist or cannot be "
                    "created there: check it, or choose another path")


# --- read-only commands and the last lines of `lab up` ----------------------------------------------------------------
def _hooks(lab: FakeLab, **kw) -> executor.Hooks:
    base = dict(preflight=lambda *a, **k: None, tools=lambda p, r: lab.tools, cached_tools=lambda p, r: lab.tools,
                provider=lambda p, h, t, r: lab.provider, sleep=lambda s: None)
    return executor.Hooks(**{**base, **kw})


def test_up_ends_with_how_to_use_the_clusters(tmp_path):
    lab = FakeLab(load_profile(), tmp_path / "home")
    out = io.StringIO()
    assert executor.up(load_profile(), home=lab.home, runner=lab.runner, out=out, hooks=_hooks(lab)) == 0
    tail = out.getvalue().splitlines()[-4:]
    assert tail[1] == f"  KUBECONFIG={lab.home}/kubeconfig/cluster1 kubectl --context kind-cluster1 get pods -A"
    assert tail[2] == f"  KUBECONFIG={lab.home}/kubeconfig/cluster2 kubectl --context kind-cluster2 get pods -A"
    assert "~/.kube/config is not changed" in tail[0]


def test_status_never_asks_for_downloads(tmp_path):
    lab = FakeLab(load_profile(), tmp_path / "home")
    executor.up(load_profile(), home=lab.home, runner=lab.runner, out=io.StringIO(), hooks=_hooks(lab))

    def download(*a):
        raise AssertionError("status asked for the downloading tools hook")

    from tests.support.apilab import fakelab_api

    with fakelab_api(lab):  # the rows are read through the lab handle, on the API
        assert executor.status(home=lab.home, runner=lab.runner, out=io.StringIO(),
                               hooks=_hooks(lab, tools=download)) == 0


def test_the_cached_tools_never_download_and_name_what_is_missing(tmp_path, monkeypatch):
    from lab import tools
    from lab.errors import PreflightError
    from tests.support.recording import RecordingRunner

    monkeypatch.setattr(tools, "download", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PreflightError, match=r"kind v0\.20\.0, kubectl v1\.21\.14, the Istio 1\.7\.8 release: not on"):
        tools.ensure_tools(load_profile(), tmp_path / "cache", RecordingRunner(), download=False)
    assert not (tmp_path / "cache").exists()


def test_doctor_reads_the_profile_the_lab_was_built_with(tmp_path, monkeypatch):
    (tmp_path / "state.json").write_text(json.dumps({**GOOD, "profile": {"name": "writeup", "overrides": {}}}))
    seen = []

    def access(profile, home, runner=None):
        seen.append((profile.name, home))
        raise LabError("stop here")

    monkeypatch.setattr(doctor, "lab_access", access)
    with pytest.raises(LabError, match="stop here"):
        doctor.run(lab_home=str(tmp_path))
    with pytest.raises(LabError, match="stop here"):
        doctor.run(profile="default", lab_home=str(tmp_path))
    assert seen == [("writeup", tmp_path), ("default", tmp_path)]


def test_doctor_without_a_lab_is_the_no_lab_line(tmp_path):
    with pytest.raises(NoLabError, match=f"no lab in {tmp_path}"):
        doctor.run(lab_home=str(tmp_path))


def test_a_tools_cache_under_a_file_is_an_os_error_naming_the_path(tmp_path, monkeypatch):
    from lab import tools
    from tests.support.recording import RecordingRunner

    (tmp_path / "f").write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tools.requests, "get", lambda *a, **k: pytest.fail("no download may start"))
    with pytest.raises(NotADirectoryError) as err:
        tools.ensure_tools(load_profile(), tmp_path / "f" / "cache", RecordingRunner())
    assert str(tmp_path / "f") in files.describe_os_error(err.value)


# --- the help texts ---------------------------------------------------------------------------------------------------
def test_every_command_has_a_help_that_says_what_it_does(capsys):
    from lab import cli

    for path in cli.leaf_commands():
        assert cli.main([*path, "--help"]) == 0
        out = capsys.readouterr().out
        usage, _, rest = out.partition("\n\n")
        assert usage.startswith(f"usage: python -m lab {' '.join(path)}"), out
        description = rest.split("\n\n")[0]
        assert description and not description.startswith(("options:", "positional")), (path, out)
        assert "-v, --verbose" in out, f"{path}: -v is accepted after the subcommand too"


@pytest.mark.parametrize("host, ok", [("httpbin.bar.global", True), ("*.global", True), ("HTTPBIN.bar.global.", True),
                                      ("httpbin.bar.svc.cluster.local", True), ("not a host!", False),
                                      ("a..b", False), ("*", False), ("-a.b", False), ("h\u00e9.global", False)])
def test_configdump_hosts(host, ok, capsys):
    from lab import cli

    dump = Path(__file__).resolve().parents[1] / "data" / "envoy_config_dump" / \
        "istio-secrets-only-ROOTCA.config_dump.json"
    code = cli.main(["configdump", f"--host={host}", str(dump)])
    err = capsys.readouterr().err
    assert (code == 0) == ok, err
    if not ok:
        assert code == 2 and "is not a DNS host name" in err and err.count("\n") == 1
