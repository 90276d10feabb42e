"""lab.scheduler's record of a step: the fingerprint state.json keeps. Scheduling itself (branches, resume, interrupt)
is tested through `lab up` against a fake lab in test_executor.py."""

from __future__ import annotations

from lab import scheduler
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes.steps import build

PROFILE = load_profile()


def test_a_lab_action_keeps_the_fingerprint_state_json_recorded_before_actions_were_typed():
    """A lab built before the typed actions recorded LabAction(name, params) fingerprints: they still count."""
    import dataclasses as dc

    from lab import plan
    from lab.state import fingerprint

    @dc.dataclass(frozen=True)
    class LabAction:  # the record form of earlier versions (lab/plan.py until typed actions)
        name: str
        params: tuple[tuple[str, object], ...]

    for profile in (PROFILE, load_profile(overrides={"cert_source": "generated"})):
        actions = [s.run for s in build(profile) if isinstance(s.run, plan.Action)]
        assert {a.name for a in actions} >= {"kind.create", "coredns.patch", "serviceentry.client"}
        for a in actions:
            old = LabAction(a.name, tuple((f.name, getattr(a, f.name)) for f in dc.fields(a)))
            assert scheduler.step_fingerprint(a) == fingerprint(old), a.name
    # and one value as the previous version wrote it (commit 0b7da49, default profile)
    patch = next(s for s in build(load_profile()) if s.id == "cluster1/coredns-global").run
    assert scheduler.step_fingerprint(patch) == "a7dabd3e271e1efc3db489cd7b16adee70a3a4b9cce3027aa692a176f2c816a9"
