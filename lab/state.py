"""What the lab remembers between runs, in `$LAB_HOME` (default `./.lab`), and the lock that serialises runs.

- `state.json`: the clusters the lab created (the only ones `lab down` may delete), the steps completed with
  the fingerprint of the profile and of each step (so a re-run verifies instead of redoing, and resumes after an
  interruption), and the last probe.
- `lock`: the pid of the run holding it, with that process's start time and the boot id; a second concurrent run
  is refused, a lock left by a dead process (or by a process of an earlier boot, or one whose pid was reused) is
  taken.
- `kubeconfig/<cluster>`: the lab's own kubeconfig files (the user's ~/.kube/config is never written).

Writes are atomic (temporary file + rename), so an interruption never leaves a half-written state file.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.errors import LabError, LockedError, UsageError
from lab.files import MAX_INPUT, atomic_write, read_file_capped

STATE_FILE = "state.json"
LOCK_FILE = "lock"
FORMAT = 1


def lab_home(explicit: str | Path | None = None) -> Path:
    """`explicit`, else `$LAB_HOME`, else `./.lab` (absolute, so that messages and scripts are unambiguous)."""
    raw = str(explicit or os.environ.get("LAB_HOME") or ".lab")
    where = "--home" if explicit else "LAB_HOME" if os.environ.get("LAB_HOME") else "the default"
    if "\0" in raw:
        raise UsageError(f"{where} {raw!r} holds a NUL byte; give a directory path")
    try:
        return Path(raw).expanduser().resolve()
    except RuntimeError as err:  # `~nosuchuser/x`: pathlib cannot determine that user's home directory
        raise UsageError(f"{where} {raw!r}: {str(err).rstrip('.')}; give an absolute path or one under an "
                         "existing user's ~") from err


def check_home(home: Path) -> None:
    """Refuse, before anything runs, a state directory the lab could not create or write (a file, a path under a
    file, a read-only place): one line instead of a failure half-way through `lab up`. Creates nothing."""
    probe = home
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = "is" if probe == home else f"would be under {probe}, which is"
        raise UsageError(f"the lab's state directory {home} {where} a file, not a directory: choose another "
                         "with --home or LAB_HOME")
    try:  # the real test (os.access says yes to root on a read-only mount or in /proc): a file that vanishes
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise UsageError(f"the lab's state directory {home} cannot be {'written' if probe == home else 'created'} "
                         f"({probe}: {err.strerror}): choose another with --home or LAB_HOME") from err


def fingerprint(obj: object) -> str:
    """A stable sha256 of a dataclass tree (a Profile, a Step): what must match for a recorded step to count."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        payload: object = {"__type__": type(obj).__name__,
                           **{f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    else:
        payload = _plain(obj)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _plain(v: object) -> object:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"__type__": type(v).__name__, **{f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v


class State:
    """The state file, safe to update from the executor's threads; every change is saved at once."""

    def __init__(self, home: Path, data: dict[str, Any] | None = None) -> None:
        self.home = home
        self.path = home / STATE_FILE
        self._lock = threading.RLock()
        self.data: dict[str, Any] = data or {"format": FORMAT, "profile": None, "clusters": {}, "steps": {}}

    @classmethod
    def load(cls, home: Path) -> State:
        path = home / STATE_FILE
        if not path.exists():
            return cls(home)
        try:
            raw = read_file_capped(path, MAX_INPUT)
        except OSError as err:
            raise LabError(f"{path} cannot be read ({err.strerror}); check its permissions") from err
        except UsageError as err:
            raise LabError(damaged(path, b"", "far too large for a state file")) from err
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as err:
            raise LabError(damaged(path, raw, f"not readable JSON: {_first_line(err)}")) from err
        problem = shape_problem(data)
        if problem:
            raise LabError(damaged(path, raw, problem))
        data.setdefault("clusters", {})
        data.setdefault("steps", {})
        return cls(home, data)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def save(self) -> None:
        with self._lock:
            atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    # --- profile -------------------------------------------------------------------------------------------
    def set_profile(self, name: str, overrides: dict[str, str], fp: str) -> None:
        """Record the profile of this run; a different fingerprint forgets every completed step."""
        with self._lock:
            old = self.data.get("profile") or {}
            if old.get("fingerprint") != fp:
                self.data["steps"] = {}
            self.data["profile"] = {"name": name, "overrides": dict(overrides), "fingerprint": fp}
            self.save()

    @property
    def profile(self) -> dict[str, Any] | None:
        return self.data.get("profile")

    # --- clusters ------------------------------------------------------------------------------------------
    def cluster_intent(self, name: str, provider: str = "kind") -> None:
        """Before creating: a cluster interrupted mid-creation is still known to be the lab's. Also when the lab
        creates again a cluster of its own that disappeared: the old instance's identity no longer applies."""
        with self._lock:
            rec = self.data["clusters"].setdefault(name, {"provider": provider, "created_by_lab": True})
            rec.update({"status": "creating", "since": _now()})
            rec.pop("identity", None)
            self.save()

    def cluster_created(self, name: str, kubeconfig: Path, context: str, identity: str | None = None) -> None:
        """`identity`: what the provider says tells this cluster from another of the same name (kind: the node
        container IDs), so that a cluster deleted and re-created outside the lab is not taken for the lab's."""
        with self._lock:
            rec = self.data["clusters"].setdefault(name, {"provider": "kind", "created_by_lab": True})
            rec.update({"status": "created", "kubeconfig": str(kubeconfig), "context": context})
            if identity:
                rec["identity"] = identity
            self.save()

    def owns_cluster(self, name: str) -> bool:
        rec = self.data["clusters"].get(name)
        return bool(rec and rec.get("created_by_lab"))

    def forget_cluster(self, name: str) -> None:
        with self._lock:
            self.data["clusters"].pop(name, None)
            self.save()

    @property
    def clusters(self) -> dict[str, dict[str, Any]]:
        return dict(self.data["clusters"])

    # --- steps ---------------------------------------------------------------------------------------------
    def step_done(self, step_id: str, fp: str) -> bool:
        rec = self.data["steps"].get(step_id)
        return bool(rec and rec.get("fingerprint") == fp)

    def mark_done(self, step_id: str, fp: str, seconds: float) -> None:
        with self._lock:
            self.data["steps"][step_id] = {"fingerprint": fp, "seconds": round(seconds, 3), "at": _now()}
            self.save()

    def forget_steps(self, step_ids: Iterable[str]) -> None:
        with self._lock:
            for s in step_ids:
                self.data["steps"].pop(s, None)
            self.save()

    def forget_cluster_steps(self, cluster: str) -> None:
        with self._lock:
            for s in [s for s in self.data["steps"] if s.startswith(cluster + "/")]:
                del self.data["steps"][s]
            self.save()

    @property
    def done_steps(self) -> list[str]:
        return list(self.data["steps"])

    # --- results -------------------------------------------------------------------------------------------
    def set_probe(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.data["last_probe"] = {**record, "at": _now()}
            self.save()

    def set_run(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.data["last_run"] = {**record, "at": _now()}
            self.save()


# --- the state file's shape: checked on load, so that nothing of the wrong type reaches a path or a command -------
_CLUSTER_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")


def shape_problem(data: object) -> str | None:
    """What is wrong with a loaded state document, or None (pure)."""
    if not isinstance(data, dict):
        return f"the top level is a {type(data).__name__}, not an object"
    if "format" not in data:
        return "it has no `format` field"
    if data["format"] != FORMAT:
        return f"format {data['format']!r} is not {FORMAT}, perhaps written by another version of the lab"
    prof = data.get("profile")
    if prof is not None:
        if not isinstance(prof, dict):
            return f"`profile` is a {type(prof).__name__}, not an object"
        if not isinstance(prof.get("name", "default"), str):
            return "`profile.name` is not a string"
        ov = prof.get("overrides") or {}
        if not isinstance(ov, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ov.items()):
            return "`profile.overrides` is not an object of strings"
    clusters = data.get("clusters", {})
    if not isinstance(clusters, dict):
        return f"`clusters` is a {type(clusters).__name__}, not an object"
    for name, rec in clusters.items():
        if not _CLUSTER_NAME.fullmatch(name):
            return f"cluster name {name!r} is not a kind cluster name"
        if not isinstance(rec, dict):
            return f"the record of cluster {name} is a {type(rec).__name__}, not an object"
        for key in ("kubeconfig", "context", "identity", "status", "provider"):
            if key in rec and not isinstance(rec[key], str):
                return f"`clusters.{name}.{key}` is not a string"
    steps = data.get("steps", {})
    if not isinstance(steps, dict) or not all(isinstance(v, dict) for v in steps.values()):
        return "`steps` is not an object of step records"
    for key in ("last_probe", "last_run"):
        if key in data and not isinstance(data[key], dict):
            return f"`{key}` is not an object"
    return None


def recoverable_clusters(raw: bytes) -> list[str]:
    """The cluster names a damaged state file still shows (`"clusters": {"cluster1": {...`), best effort."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("clusters"), dict):
        return sorted(n for n in data["clusters"] if isinstance(n, str) and _CLUSTER_NAME.fullmatch(n))
    # Truncated or garbled JSON: the names under "clusters" as save() writes them (sorted keys, indent 2).
    block = re.search(r'"clusters":\s*\{(.*?)(?:\n  \}|\Z)', text, re.S)
    names = re.findall(r'^    "([a-z0-9][a-z0-9.-]*)":\s*\{', block.group(1), re.M) if block else []
    return sorted({n for n in names if _CLUSTER_NAME.fullmatch(n)})


def damaged(path: Path, raw: bytes, why: str) -> str:
    """The one line for a damaged state file: why, the clusters it recorded, how to delete them by hand."""
    names = recoverable_clusters(raw)
    if names:
        recorded = (f"it recorded the kind cluster(s) {', '.join(names)}; moved aside, `lab down` no longer knows "
                    "them: delete them by hand (" + "; ".join(f"kind delete cluster --name {n}" for n in names) + ")")
    else:
        recorded = ("no cluster name can be read from it: `kind get clusters` lists the clusters on this machine, "
                    "delete the lab's by hand (kind delete cluster --name NAME)")
    return f"{path} is damaged ({why}); move it aside and run `lab up` again; {recorded}"


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- the lock -----------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError as err:
        return err.errno != errno.ESRCH
    return True


# proc(5): /proc/<pid>/stat field 22 is `starttime`, the time the process started after system boot, in clock
# ticks; /proc/sys/kernel/random/boot_id is a random UUID generated anew at each boot. Together with the pid they
# name one process: a pid reused after a reboot, or by another process later, differs in one of them.
PROC = Path("/proc")


def process_start(pid: int, proc: Path = PROC) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat); None when unreadable."""
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # field 2 (comm) is in parentheses and may hold spaces and ')': the fields after it follow the last ')'
    rest = stat.rpartition(")")[2].split()
    try:
        return int(rest[22 - 3])
    except (IndexError, ValueError):
        return None


def boot_id(proc: Path = PROC) -> str | None:
    try:
        value = (proc / "sys" / "kernel" / "random" / "boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the run holding it; `start` and `boot` are None when not recorded."""

    pid: int | None
    command: str = "?"
    start: int | None = None
    boot: str | None = None

    def render(self) -> str:
        extra = ([f"start={self.start}"] if self.start is not None else []) + (
            [f"boot={self.boot}"] if self.boot else [])
        return "\n".join([str(self.pid), self.command, *extra]) + "\n"

    @classmethod
    def parse(cls, text: str) -> LockHolder:
        lines = [line.strip() for line in text.splitlines()]
        try:
            pid = int(lines[0])
        except (ValueError, IndexError):
            return cls(None)
        fields = dict(line.split("=", 1) for line in lines[2:] if "=" in line)
        try:
            start = int(fields["start"]) if "start" in fields else None
        except ValueError:
            start = None
        return cls(pid, lines[1] if len(lines) > 1 and lines[1] else "?", start, fields.get("boot") or None)


def holder_is_live(holder: LockHolder, *, alive: bool, boot_now: str | None, start_now: int | None) -> bool:
    """Whether the recorded holder is still the running process (pure decision).

    `alive`: the pid exists now (kill 0). `boot_now`: this boot's id; `start_now`: the pid's start time now (None
    where /proc cannot tell, e.g. no /proc: then only `alive` decides, as it does for a lock that recorded neither).
    """
    if holder.pid is None or not alive:
        return False
    if holder.boot and boot_now and holder.boot != boot_now:
        return False  # written before a reboot: whatever has that pid now is another process
    # a different start time: the pid was reused by another process
    return holder.start is None or start_now is None or holder.start == start_now


class Lock:
    """`$LAB_HOME/lock` naming our process. Refuses while its holder runs; takes over a stale holder's lock."""

    def __init__(self, home: Path, command: str = "up", proc: Path = PROC) -> None:
        self.path = home / LOCK_FILE
        self.command = command
        self.proc = proc  # /proc, or another root in tests (a missing one behaves like a system without /proc)
        self.held = False

    def acquire(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                rec = self.record()
                if rec.pid is not None and holder_is_live(rec, alive=pid_alive(rec.pid), boot_now=boot_id(self.proc),
                                                          start_now=process_start(rec.pid, self.proc)):
                    raise LockedError(
                        f"another lab run holds {self.path} (pid {rec.pid}, `lab {rec.command}`); wait for it to "
                        f"finish or stop it, then try again") from None
                # A stale lock (its process is gone or is another one now, or the file is unreadable): take it over.
                self.path.unlink(missing_ok=True)
                continue
            me = LockHolder(os.getpid(), self.command, process_start(os.getpid(), self.proc), boot_id(self.proc))
            with os.fdopen(fd, "w") as fh:
                fh.write(me.render())
            self.held = True
            return self
        raise LockedError(f"could not take {self.path}: another run keeps recreating it; try again")

    def record(self) -> LockHolder:
        if self.path.is_dir():
            raise LabError(f"{self.path} is a directory, not the lab's lock file; remove it (nothing of the lab "
                           "is in it) and run the command again")
        try:
            return LockHolder.parse(read_file_capped(self.path, 4096).decode("utf-8"))
        except (OSError, UnicodeDecodeError, UsageError):
            return LockHolder(None)  # unreadable or not the lab's text: stale, taken over

    def holder(self) -> tuple[int | None, str]:
        rec = self.record()
        return rec.pid, rec.command

    def release(self) -> None:
        if self.held:
            pid, _ = self.holder()
            if pid == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
