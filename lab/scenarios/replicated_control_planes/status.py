"""What `lab status` shows of the replicated-control-planes scenario in one cluster (read-only), read through the
Kubernetes API (lab.cluster: Deployment readiness, the coredns ConfigMap, the ServiceEntries)."""

from __future__ import annotations

import json
import re
from typing import Any

from lab.cluster import SERVICE_ENTRY, ClusterHandle
from lab.errors import LabError
from lab.scenarios.replicated_control_planes import corefile, names
from lab.scenarios.replicated_control_planes.profiles import ClusterSpec


def _json(value: Any) -> str:
    """A field as kubectl's jsonpath prints a list or an object: compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def serviceentry_line(se: dict[str, Any]) -> str:
    """One ServiceEntry as the row used to show it (`kubectl get serviceentries -A -o jsonpath=...`):
    `ns/name ["hosts"] ["addresses"] <endpoint addresses>:<endpoint ports>`."""
    meta, spec = se.get("metadata") or {}, se.get("spec") or {}
    endpoints = spec.get("endpoints") or []
    addresses = " ".join(str(e.get("address", "")) for e in endpoints)
    ports = " ".join(_json(e["ports"]) for e in endpoints if "ports" in e)
    return (f"{meta.get('namespace', '')}/{meta.get('name', '')} {_json(spec.get('hosts', []))} "
            f"{_json(spec.get('addresses', []))} {addresses}:{ports}")


def rows(h: ClusterHandle, c: ClusterSpec) -> list[tuple[str, bool, str]]:
    """`lab status` for one cluster: istiod, istiocoredns, the CoreDNS `global` block, the apps, the ServiceEntries,
    read through the engine's lab handle on it (the provider's kubeconfig and context)."""
    def ready(ns: str, deploy: str) -> tuple[bool, str]:
        try:
            found = h.readiness(ns, deploy)
        except LabError as err:  # the API did not answer: say why, in the row
            return False, f"unknown ({str(err).splitlines()[0]})"
        return (found.ok, str(found)) if found is not None else (False, "absent")

    rows: list[tuple[str, bool, str]] = []
    rows.append(("istiod", *ready(names.ISTIO_NS, "istiod")))
    rows.append(("istiocoredns", *ready(names.ISTIO_NS, "istiocoredns")))
    try:
        text: str | None = h.corefile()
    except LabError:
        text = None
    block = None
    if text is not None:
        try:
            block = corefile.global_block(text)
        except LabError as err:
            block = None
            rows.append(("kube-system CoreDNS global block", False, str(err)))
    fwd = re.search(r"forward \. (\S+)", block or "")
    rows.append(("kube-system CoreDNS global block", block is not None,
                 f"forward to {fwd.group(1)}" if fwd else "missing"))
    apps = ([(names.CLIENT_NS, "sleep")] if c.role == "client"
            else [(names.SERVER_NS, names.REMOTE_NAME), (names.SERVER_NS, "sleep")])
    for ns, app in apps:
        rows.append((f"{app} in {ns}", *ready(ns, app)))
    try:
        entries = [serviceentry_line(se) for se in h.list_objects(SERVICE_ENTRY)]
    except LabError:
        entries = []
    rows.append(("ServiceEntries", bool(entries), "; ".join(entries) or "none"))
    return rows
