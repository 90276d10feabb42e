"""The documented failures, one at a time: break the lab, wait until the probe's class is stable, compare it with
what lab.scenarios.replicated_control_planes.faults expects for the Istio version under test, heal the lab, and prove
the call works again.

A fault on cluster2's gateway is judged only once the gateway's /config_dump shows the change (its `gateway_state`,
read through lab.configdump) and cluster1's sleep has new connections
(lab.scenarios.replicated_control_planes.faults.reach_new_connections): pooled
connections through the gateway would otherwise keep the old path alive for up to an hour.

The expectations are reasoned, not observed; every run writes what it saw to <artifacts>/observed.jsonl so the
catalogue (lab/scenarios/replicated_control_planes/faults.py, `observed=`) can be corrected with a note when a real run
disagrees.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from lab.errors import LabError, NotReadyError
from lab.scenarios.replicated_control_planes.faults import (
    FAULTS,
    PROBE_URL,
    Fault,
    Followup,
    probe_class,
    reach_new_connections,
    restore_and_heal,
    settled_class,
)
from tests.e2e import artifacts

pytestmark = [pytest.mark.e2e, pytest.mark.replicated_control_planes, pytest.mark.fault]


def _params():
    for fault in FAULTS:
        marks = [pytest.mark.reinstall] if fault.needs_reinstall else []
        yield pytest.param(fault, id=fault.id, marks=marks)


class _Observer:
    """Probes through lab.scenarios.replicated_control_planes.faults.probe_class, keeping the evidence of the latest
    answer for failure messages."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.evidence: list[str] = []

    def __call__(self) -> str:
        try:
            cls, self.evidence = probe_class(self.handle)
        except LabError as err:  # the pod being replaced, an exec that failed: not a verdict, poll again
            self.evidence = [str(err)]
            return "probe-error"
        return cls


def _observe(observer: _Observer, *, settle: float, timeout: float) -> tuple[str | None, list[str]]:
    history: list[str] = []
    try:
        return settled_class(observer, settle=settle, timeout=timeout, history=history), history
    except NotReadyError:
        return None, history


def _record(lab, fault_id: str, stage: str, expected: str, seen: str | None, history: list[str],
            evidence: list[str]) -> None:
    line = {"fault": fault_id, "stage": stage, "istio_version": lab.profile.istio_version, "expected": expected,
            "observed": seen, "history": history, "evidence": evidence,
            "date": datetime.now(timezone.utc).date().isoformat()}
    with open(lab.artifacts / "observed.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def _message(fault_id: str, stage: str, exp, seen, history, evidence) -> str:
    return (f"{fault_id} ({stage}): from cluster1/foo/sleep to {PROBE_URL} expected class {exp.cls} "
            f"[{exp.confidence}%: {exp.why}], got {seen or 'no stable class'}; sequence {history}; "
            f"evidence {evidence}")


def _dump_if_unexpected(lab, request, stage: str, expected: str, seen: str | None) -> None:
    """The lab as the fault left it, when the symptom is not the expected one (after restore it is gone)."""
    if seen != expected:
        stage_dir = "injected" if stage == "injected" else "followup"
        artifacts.dump_lab(lab, lab.artifacts / artifacts.safe_name(request.node.nodeid) / stage_dir)


@pytest.mark.parametrize("fault", list(_params()))
def test_fault_shows_its_documented_symptom_then_heals(lab, fault: Fault, record_property, request):
    version = lab.profile.istio_version
    expected = fault.expected_for(version)
    observer = _Observer(lab.fault_lab)
    results: list[tuple[str, object, str | None, list[str], list[str]]] = []
    t0 = time.monotonic()
    try:
        fault.inject(lab.fault_lab)
        # a gateway-side fault: its change in cluster2's gateway config dump first, then new connections
        paths = reach_new_connections(lab.fault_lab, fault.gateway_state, f"injecting {fault.id}")
        record_property("inject_seconds", round(time.monotonic() - t0, 1))
        seen, history = _observe(observer, settle=fault.settle, timeout=fault.timeout)
        evidence = [*observer.evidence, *(f"gateway path: {p}" for p in paths)]
        results.append(("injected", expected, seen, history, evidence))
        _record(lab, fault.id, "injected", expected.cls, seen, history, evidence)
        _dump_if_unexpected(lab, request, "injected", expected.cls, seen)
        if fault.followup is not None:
            follow: Followup = fault.followup
            follow.apply(lab.fault_lab)
            paths = reach_new_connections(lab.fault_lab, follow.gateway_state, follow.title)
            f_exp = follow.expected_for(version)
            f_seen, f_history = _observe(observer, settle=fault.settle, timeout=fault.timeout)
            f_evidence = [*observer.evidence, *(f"gateway path: {p}" for p in paths)]
            results.append((follow.title, f_exp, f_seen, f_history, f_evidence))
            _record(lab, fault.id, follow.title, f_exp.cls, f_seen, f_history, f_evidence)
            _dump_if_unexpected(lab, request, follow.title, f_exp.cls, f_seen)
    finally:
        t1 = time.monotonic()
        try:
            # any failure (a LabError, the call never ok again, a KeyError or bad JSON) marks the lab unhealthy
            restore_and_heal(lab.fault_lab, fault, observer, on_failure=lab.mark_unhealthy)
        finally:
            record_property("restore_seconds", round(time.monotonic() - t1, 1))
    for stage, exp, seen, _history, _evidence in results:
        record_property(f"{stage}: expected", exp.cls)
        record_property(f"{stage}: observed", seen)
    for stage, exp, seen, history, evidence in results:
        assert seen == exp.cls, _message(fault.id, stage, exp, seen, history, evidence)
