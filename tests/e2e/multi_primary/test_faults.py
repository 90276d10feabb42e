"""The multi-primary-multi-network scenario's documented failures, one at a time: break the lab, wait until the
probe's class is stable, compare it with what lab.scenarios.multi_primary_multi_network.faults expects for the Istio
version under test, heal the lab, and prove the call works again.

The probe is the catalogue's own (`probe_class`: curl from cluster1's curl to httpbin.sample.svc.cluster.local:8000,
classified with lab.classify and the client sidecar's access log). The expectations are reasoned from the 1.30 source
(docs/multi-primary-faults.md), not observed; every run appends what it saw to <artifacts>/observed.jsonl so the
catalogue can be corrected with an `Observation` when a real run disagrees.

The catalogue is imported when this module is collected, guarded: in a checkout without it, one placeholder test
says so instead of the faults.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from lab.errors import LabError, NotReadyError
from tests.e2e import artifacts
from tests.e2e.helpers import observation, settled_class
from tests.e2e.session import MPMN_FAULTS, mpmn_faults

pytestmark = [pytest.mark.e2e, pytest.mark.multi_primary_multi_network, pytest.mark.fault]

catalogue = mpmn_faults()
PROBE = "from cluster1/sample/curl to http://httpbin.sample.svc.cluster.local:8000/headers"


def _params():
    if catalogue is None:
        yield pytest.param(None, id="no-catalogue", marks=pytest.mark.skip(
            reason=f"{MPMN_FAULTS} is not in this checkout: the scenario has no fault catalogue to run"))
        return
    for fault in catalogue.FAULTS:
        marks = [pytest.mark.reinstall] if fault.needs_reinstall else []
        yield pytest.param(fault, id=fault.id, marks=marks)


class _Observer:
    """Probes through the catalogue's probe_class, keeping the evidence of the latest answer for failure messages."""

    def __init__(self, fault_lab) -> None:
        self.fault_lab = fault_lab
        self.evidence: list[str] = []

    def __call__(self) -> str:
        try:
            cls, evidence = catalogue.probe_class(self.fault_lab)
        except LabError as err:  # the pod being replaced, an exec that failed: not a verdict, poll again
            self.evidence = [str(err)]
            return "probe-error"
        self.evidence = [str(e) for e in evidence]
        return str(cls)


def _observe(observer: _Observer, *, settle: float, timeout: float, sleep) -> tuple[str | None, list[str]]:
    history: list[str] = []
    try:
        return settled_class(observer, settle=settle, timeout=timeout, history=history, sleep=sleep), history
    except NotReadyError:
        return None, history


def _restore(lab, fault) -> None:
    """The catalogue's restore_and_heal; any failure marks the lab unhealthy (the next test rebuilds it)."""
    try:
        catalogue.restore_and_heal(lab.fault_lab, fault)
    except BaseException as err:  # noqa: BLE001 - reported, then re-raised
        lab.mark_unhealthy(f"restore of {fault.id} failed: {type(err).__name__}: {err}")
        raise


@pytest.mark.parametrize("fault", list(_params()))
def test_fault_shows_its_documented_symptom_then_heals(lab, fault, record_property, request):
    version = lab.profile.istio_version
    expected = catalogue.expectation(fault, version)
    observer = _Observer(lab.fault_lab)
    t0 = time.monotonic()
    try:
        fault.inject(lab.fault_lab)
        record_property("inject_seconds", round(time.monotonic() - t0, 1))
        seen, history = _observe(observer, settle=fault.settle, timeout=fault.timeout,
                                 sleep=getattr(lab.fault_lab, "sleep", None))
        line = observation(lab.profile, fault.id, "injected", expected.cls, seen, history, observer.evidence,
                           datetime.now(timezone.utc).date())
        with open(lab.artifacts / "observed.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
        if seen != expected.cls:  # the lab as the fault left it (after restore it is gone)
            artifacts.dump_lab(lab, lab.artifacts / artifacts.safe_name(request.node.nodeid) / "injected")
    finally:
        t1 = time.monotonic()
        try:
            _restore(lab, fault)
        finally:
            record_property("restore_seconds", round(time.monotonic() - t1, 1))
    record_property("injected: expected", expected.cls)
    record_property("injected: observed", seen)
    assert seen == expected.cls, (
        f"{fault.id}: {PROBE} expected class {expected.cls} [{expected.confidence}%: {expected.why}], got "
        f"{seen or 'no stable class'}; sequence {history}; evidence {observer.evidence}")
