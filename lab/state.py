"""What the lab remembers between runs, in `$LAB_HOME` (default `./.lab`), and the lock that serialises runs.

- `state.json`: the clusters the lab created (the only ones `lab down` may delete), the steps completed with
  the fingerprint of the profile and of each step (so a re-run verifies instead of redoing, and resumes after an
  interruption), and the last probe.
- `lock`: the pid of the run holding it; a second concurrent run is refused, a lock left by a dead pid is taken.
- `kubeconfig/<cluster>`: the lab's own kubeconfig files (the user's ~/.kube/config is never written).

Writes are atomic (temporary file + rename), so an interruption never leaves a half-written state file.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.errors import LabError, LockedError

STATE_FILE = "state.json"
LOCK_FILE = "lock"
FORMAT = 1


def lab_home(explicit: str | Path | None = None) -> Path:
    """`explicit`, else `$LAB_HOME`, else `./.lab` (absolute, so that messages and scripts are unambiguous)."""
    raw = explicit or os.environ.get("LAB_HOME") or ".lab"
    return Path(raw).expanduser().resolve()


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
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise LabError(f"{path} is not readable JSON ({err}); move it aside and run `lab up` again") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LabError(f"{path} has an unknown format; move it aside and run `lab up` again")
        data.setdefault("clusters", {})
        data.setdefault("steps", {})
        return cls(home, data)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def save(self) -> None:
        with self._lock:
            self.home.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)

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


class Lock:
    """`$LAB_HOME/lock` holding our pid. Refuses while a live process holds it; takes over a dead holder's lock."""

    def __init__(self, home: Path, command: str = "up") -> None:
        self.path = home / LOCK_FILE
        self.command = command
        self.held = False

    def acquire(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, command = self.holder()
                if pid is not None and pid_alive(pid):
                    raise LockedError(
                        f"another lab run holds {self.path} (pid {pid}, `lab {command}`); wait for it to finish "
                        f"or stop it, then try again") from None
                # A stale lock (its process is gone, or the file is unreadable): take it over.
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n{self.command}\n")
            self.held = True
            return self
        raise LockedError(f"could not take {self.path}: another run keeps recreating it; try again")

    def holder(self) -> tuple[int | None, str]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return None, "?"
        try:
            return int(lines[0].strip()), (lines[1].strip() if len(lines) > 1 else "?")
        except (ValueError, IndexError):
            return None, "?"

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
