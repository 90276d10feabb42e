"""State file and lock: what the lab remembers between runs, and how it refuses concurrent runs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import LabError, LockedError
from lab.scenario import load_profile
from lab.state import Lock, LockHolder, State, boot_id, fingerprint, holder_is_live, lab_home, pid_alive, process_start


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


def _stat_start(pid: int) -> int:
    # proc(5): field 22 of /proc/<pid>/stat, counted from the fields after the parenthesised comm (field 2)
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@contextlib.contextmanager
def _sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


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
        assert (tmp_path / "lock").read_text() == (f"{os.getpid()}\ndown\nstart={_stat_start(os.getpid())}\n"
                                                   f"boot={_boot()}\n")
    assert not (tmp_path / "lock").exists()


def test_unreadable_lock_is_taken_over(tmp_path):
    (tmp_path / "lock").write_text("garbage")
    with Lock(tmp_path):
        assert (tmp_path / "lock").read_text().startswith(str(os.getpid()))


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    with Lock(tmp_path), pytest.raises(LockedError, match=f"pid {os.getpid()}"):
        Lock(tmp_path).acquire()


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@needs_proc
def test_lock_of_a_running_holder_with_its_start_time_and_boot_is_refused(tmp_path):
    with _sleeper() as holder:
        (tmp_path / "lock").write_text(f"{holder.pid}\nup\nstart={_stat_start(holder.pid)}\nboot={_boot()}\n")
        with pytest.raises(LockedError, match=f"pid {holder.pid}, `lab up`"):
            Lock(tmp_path, "down").acquire()


@needs_proc
def test_lock_whose_pid_now_belongs_to_a_process_started_at_another_time_is_taken_over(tmp_path):
    # the pid is live (kill 0 succeeds) but is not the process that wrote the lock: a reused pid
    with _sleeper() as other:
        assert pid_alive(other.pid)
        (tmp_path / "lock").write_text(f"{other.pid}\nup\nstart={_stat_start(other.pid) - 1}\nboot={_boot()}\n")
        with Lock(tmp_path, "down"):
            assert (tmp_path / "lock").read_text().startswith(f"{os.getpid()}\ndown\n")


@needs_proc
def test_lock_written_in_another_boot_is_taken_over_although_its_pid_is_live(tmp_path):
    foreign = "00000000-0000-4000-8000-000000000000"
    assert foreign != _boot()
    with _sleeper() as other:
        (tmp_path / "lock").write_text(f"{other.pid}\nup\nstart={_stat_start(other.pid)}\nboot={foreign}\n")
        with Lock(tmp_path, "down"):
            assert Lock(tmp_path).record() == LockHolder(os.getpid(), "down", _stat_start(os.getpid()), _boot())


def test_without_proc_a_live_pid_still_holds_the_lock_and_a_dead_one_does_not(tmp_path):
    # no /proc: neither start time nor boot id can be read, so the kill check alone decides
    noproc = tmp_path / "noproc"
    with _sleeper() as holder:
        (tmp_path / "lock").write_text(f"{holder.pid}\nup\nstart=1\nboot=some-other-boot\n")
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            Lock(tmp_path, "down", proc=noproc).acquire()
    (tmp_path / "lock").write_text(f"{_dead_pid()}\nup\n")
    with Lock(tmp_path, "down", proc=noproc):
        assert (tmp_path / "lock").read_text() == f"{os.getpid()}\ndown\n"


@needs_proc
def test_process_start_reads_field_22_of_a_real_process_and_none_once_it_is_gone():
    with _sleeper() as child:
        assert process_start(child.pid) == _stat_start(child.pid)
        assert process_start(child.pid) >= process_start(os.getpid())
    assert process_start(child.pid) is None
    assert boot_id() == _boot()


def test_process_start_finds_field_22_after_a_comm_holding_spaces_and_parentheses(tmp_path):
    (tmp_path / "42").mkdir()
    fields = [str(n) for n in range(3, 53)]  # fields 3.. of proc(5); field n holds the number n
    (tmp_path / "42" / "stat").write_text("42 (a) b (c) " + " ".join(fields) + "\n")
    assert process_start(42, tmp_path) == 22
    assert process_start(43, tmp_path) is None and boot_id(tmp_path) is None


@pytest.mark.parametrize(("holder", "alive", "boot_now", "start_now", "live"), [
    (LockHolder(10, "up", 500, "b1"), True, "b1", 500, True),
    (LockHolder(10, "up", 500, "b1"), False, "b1", 500, False),   # gone
    (LockHolder(10, "up", 500, "b1"), True, "b2", 500, False),    # another boot
    (LockHolder(10, "up", 500, "b1"), True, "b1", 501, False),    # pid reused
    (LockHolder(10, "up", 500, "b1"), True, None, None, True),    # no /proc: kill check only
    (LockHolder(10, "up"), True, "b1", 501, True),                # an old lock without start/boot
    (LockHolder(None), True, "b1", 500, False),                   # unreadable lock
])
def test_holder_is_live_only_for_the_same_process_in_the_same_boot(holder, alive, boot_now, start_now, live):
    assert holder_is_live(holder, alive=alive, boot_now=boot_now, start_now=start_now) is live


def test_lock_record_round_trips_and_reads_the_old_two_line_format():
    rec = LockHolder(123, "uninstall", 9876, "95855e39-989a-497e-874a-b75f5274b37d")
    assert LockHolder.parse(rec.render()) == rec
    assert LockHolder.parse("123\nup\n") == LockHolder(123, "up")
    assert LockHolder.parse("garbage") == LockHolder(None)
