"""State file and lock: what the lab remembers between runs, and how it refuses concurrent runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab.errors import LabError, LockedError
from lab.profile import load_profile
from lab.state import Lock, State, fingerprint, lab_home, pid_alive


def test_lab_home_defaults_to_dot_lab_and_honours_env(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert lab_home() == tmp_path / ".lab"
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "x"))
    assert lab_home() == tmp_path / "x"
    assert lab_home(tmp_path / "y") == tmp_path / "y"


def test_profile_fingerprint_changes_with_any_override():
    base = fingerprint(load_profile())
    assert base == fingerprint(load_profile())
    assert base != fingerprint(load_profile(overrides={"istio_version": "1.7.3"}))
    assert base != fingerprint(load_profile(overrides={"images.sleep": "curlimages/curl:8.5.0"}))


def test_loading_without_a_state_file_creates_nothing(tmp_path):
    home = tmp_path / "lab"
    state = State.load(home)
    assert not state.exists and not home.exists()


def test_completed_steps_survive_a_reload(tmp_path):
    s = State(tmp_path)
    s.set_profile("default", {}, "fp1")
    s.mark_done("cluster1/cluster", "a", 1.5)
    again = State.load(tmp_path)
    assert again.step_done("cluster1/cluster", "a")
    assert not again.step_done("cluster1/cluster", "b"), "a changed step must not count as done"
    assert not again.step_done("cluster2/cluster", "a")


def test_a_different_profile_forgets_every_completed_step(tmp_path):
    s = State(tmp_path)
    s.set_profile("default", {}, "fp1")
    s.mark_done("cluster1/istio", "a", 1.0)
    s.set_profile("default", {}, "fp1")
    assert s.step_done("cluster1/istio", "a")
    s.set_profile("default", {"istio_version": "1.7.3"}, "fp2")
    assert not s.step_done("cluster1/istio", "a")
    assert State.load(tmp_path).profile == {"name": "default", "overrides": {"istio_version": "1.7.3"},
                                            "fingerprint": "fp2"}


def test_cluster_intent_is_recorded_before_creation_so_an_interrupted_create_stays_ours(tmp_path):
    s = State(tmp_path)
    s.cluster_intent("cluster1")
    assert State.load(tmp_path).owns_cluster("cluster1")
    assert not State.load(tmp_path).owns_cluster("cluster2")
    s.cluster_created("cluster1", tmp_path / "kubeconfig" / "cluster1", "kind-cluster1")
    rec = State.load(tmp_path).clusters["cluster1"]
    assert rec["status"] == "created" and rec["context"] == "kind-cluster1" and rec["created_by_lab"]


def test_corrupt_state_file_is_one_clear_error(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(LabError, match="not readable JSON.*move it aside"):
        State.load(tmp_path)


def test_state_writes_leave_no_temporary_files(tmp_path):
    s = State(tmp_path)
    for i in range(5):
        s.mark_done(f"host/x{i}", "f", 0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert len(json.loads((tmp_path / "state.json").read_text())["steps"]) == 5


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_refuses_a_second_run_naming_the_holder_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "lock").write_text(f"{holder.pid}\nup\n")
        with pytest.raises(LockedError) as info:
            Lock(tmp_path, "up").acquire()
        msg = str(info.value)
        assert f"pid {holder.pid}" in msg and "\n" not in msg
        assert (tmp_path / "lock").read_text().startswith(str(holder.pid)), "the holder's lock must stay"
    finally:
        holder.kill()
        holder.wait()


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = _dead_pid()
    assert not pid_alive(dead)
    (tmp_path / "lock").write_text(f"{dead}\nup\n")
    with Lock(tmp_path, "down"):
        assert (tmp_path / "lock").read_text() == f"{os.getpid()}\ndown\n"
    assert not (tmp_path / "lock").exists()


def test_unreadable_lock_is_taken_over(tmp_path):
    (tmp_path / "lock").write_text("garbage")
    with Lock(tmp_path):
        assert (tmp_path / "lock").read_text().startswith(str(os.getpid()))


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    with Lock(tmp_path), pytest.raises(LockedError, match=f"pid {os.getpid()}"):
        Lock(tmp_path).acquire()
