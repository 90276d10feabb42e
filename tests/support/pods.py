"""Test-only builders of `kubectl get pods -o json` lists (the fields lab.probe.newest_running_pod reads)."""

from __future__ import annotations

import json

from lab.shell import Result


def pod(name: str, created: str, phase: str = "Running", deleting: str | None = None) -> dict:
    """One pod item; `deleting` sets metadata.deletionTimestamp (a pod in its termination grace period)."""
    meta: dict = {"name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = deleting
    return {"metadata": meta, "status": {"phase": phase}}


def pod_list(*items: dict) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


def rollout(running: str, *, at: str = "2026-11-25T20:00:00Z") -> dict:
    """The list seen right after a rollout: `running` (the one to pick), an older pod being deleted that is still
    Running, and a newer replacement still Pending."""
    return pod_list(pod(running, at),
                    pod(f"{running}-old", "2026-11-25T19:00:00Z", deleting="2026-11-25T20:30:00Z"),
                    pod(f"{running}-next", "2026-11-25T20:29:00Z", phase="Pending"))


def answer(lst: dict) -> Result:
    return Result((), 0, json.dumps(lst), "")
