"""When each step of the plan runs: `Scheduler` (one thread per branch), its `Outcome`s, the `Report` and `summary`.

A branch is a cluster or the host; a step waits only where it needs a step of another branch. One progress line per
step with its duration; a summary with per-phase timings. Completed steps are recorded in `$LAB_HOME/state.json` with
fingerprints of the step (`step_fingerprint`), so a re-run verifies cheaply instead of redoing, and an interrupted run
continues where it stopped. lab.perform does the steps.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial

from lab.errors import CommandError, NotReadyError
from lab.perform import Env, execute, run_check
from lab.plan import Action, Check, Run, Step
from lab.shell import end_children
from lab.state import fingerprint


def duration(seconds: float) -> str:
    """A step's or a phase's wall time as the progress lines and the summary show it."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def step_fingerprint(run: Run) -> str:
    """What state.json records for a step's run. A lab action is fingerprinted in the form it had before actions
    were typed (`LabAction(name, params)`: its name and its fields in order), so that the steps of a lab built by
    an earlier version of the lab still count as done."""
    if isinstance(run, Action):
        return fingerprint({"__type__": "LabAction", "name": run.name,
                            "params": tuple((f.name, getattr(run, f.name)) for f in dataclasses.fields(run))})
    return fingerprint(run)


# --- the scheduler ------------------------------------------------------------------------------------------
class Status(str, Enum):
    """What became of a step, as its progress line and the summary say it."""

    DONE = "done"  # done now
    IN_PLACE = "in-place"  # recorded (or found) in place: nothing to do
    VERIFIED = "verified"  # recorded, and its cheap check passed
    CHECKED = "checked"  # a check that passed
    FAILED = "failed"
    BLOCKED = "blocked"  # not run: a step it needs failed or was blocked

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass
class Outcome:
    step: Step
    status: Status
    seconds: float = 0.0
    started: float = 0.0
    error: BaseException | None = None


@dataclass
class Report:
    outcomes: dict[str, Outcome]
    seconds: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.status == Status.FAILED]

    def phases(self) -> dict[str, float]:
        """Wall time per phase: from its first step's start to its last step's end (branches overlap)."""
        spans: dict[str, list[float]] = {}
        for o in self.outcomes.values():
            if o.status == Status.BLOCKED:
                continue
            lo_hi = spans.setdefault(o.step.phase or "other", [o.started, o.started + o.seconds])
            lo_hi[0] = min(lo_hi[0], o.started)
            lo_hi[1] = max(lo_hi[1], o.started + o.seconds)
        return {p: hi - lo for p, (lo, hi) in spans.items()}


class Scheduler:
    """One thread per branch (a cluster, or the host); a step starts when the steps it needs have finished.

    The plan's order is a topological order and each branch follows it, so the earliest unfinished step can
    always run: no deadlock. A failure blocks the steps that need it; independent work continues, so the next
    run has less to do. An interrupt (KeyboardInterrupt) stops every branch after its current step.
    """

    def __init__(self, env: Env, steps: Sequence[Step], *, record: bool = True) -> None:
        self.env = env
        self.steps = list(steps)
        self.record = record
        self.cond = threading.Condition()
        self.outcomes: dict[str, Outcome] = {}
        self.fresh: set[str] = set()  # steps that changed something: their dependents must not trust records
        self.interrupted = False
        self.t0 = env.clock()

    def run(self) -> Report:
        branches: dict[str, list[Step]] = {}
        for s in self.steps:
            branches.setdefault(s.cluster or "host", []).append(s)
        threads = [threading.Thread(target=self._branch, args=(steps,), name=f"lab-{key}", daemon=True)
                   for key, steps in branches.items()]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except KeyboardInterrupt:
            self.env.stop.set()
            with self.cond:
                self.interrupted = True
                self.cond.notify_all()
            # A SIGINT sent to the lab's pid alone does not reach the commands the branches wait on: end them
            # (as Ctrl-C at a terminal would have), or the join below would wait for a `docker pull` to finish.
            end_children()
            for t in threads:
                t.join()
            raise
        if any(isinstance(o.error, KeyboardInterrupt) for o in self.outcomes.values()):
            raise KeyboardInterrupt
        return Report(dict(self.outcomes), self.env.clock() - self.t0)

    def _branch(self, steps: list[Step]) -> None:
        for step in steps:
            with self.cond:
                self.cond.wait_for(partial(self._may_start, step))
                if self.interrupted:
                    return
                bad = [n for n in step.needs if self.outcomes[n].status in (Status.FAILED, Status.BLOCKED)]
                forced = any(n in self.fresh for n in step.needs)
            if bad:
                self._finish(Outcome(step, Status.BLOCKED, 0.0, self.env.clock() - self.t0))
                continue
            self._finish(self._one(step, forced))

    def _may_start(self, step: Step) -> bool:
        return self.interrupted or all(n in self.outcomes for n in step.needs)

    def _finish(self, outcome: Outcome) -> None:
        with self.cond:
            self.outcomes[outcome.step.id] = outcome
            if isinstance(outcome.error, KeyboardInterrupt):
                self.interrupted = True
                self.env.stop.set()
            self.cond.notify_all()
        self._report(outcome)

    def _one(self, step: Step, forced: bool) -> Outcome:
        env = self.env
        started = env.clock()
        fp = step_fingerprint(step.run)
        status = Status.DONE
        try:
            # A self-checking action (a `docker ps`, one ConfigMap read, one ServiceEntry read after the write-up's
            # lookups) runs on every `lab up`, so a deleted cluster, a removed `global` block or a cluster1
            # ServiceEntry pointing at an old gateway address (cluster2's node IP or nodePort changed, e.g. after a
            # Docker restart) is noticed and repaired.
            recorded = self.record and not forced and env.state.step_done(step.id, fp) and not (
                isinstance(step.run, Action) and step.run.self_checking)
            if recorded and not isinstance(step.run, Check):
                if step.verify is None:
                    status = Status.IN_PLACE
                else:
                    try:
                        run_check(env, step.verify, f"{step.id} (verify)", once=True)
                        status = Status.VERIFIED
                    except NotReadyError:
                        recorded = False  # gone or changed behind our back: do it again
            if not recorded or isinstance(step.run, Check):
                changed = execute(env, step, forced=forced)
                if isinstance(step.run, Check):
                    status = Status.CHECKED
                    changed = forced  # a check passes freshness through to what needs it
                elif not changed:
                    status = Status.IN_PLACE
                if changed:
                    with self.cond:
                        self.fresh.add(step.id)
            if self.record:
                env.state.mark_done(step.id, fp, env.clock() - started)
        except BaseException as err:  # noqa: BLE001 - recorded, reported, re-raised by the caller
            if isinstance(err, CommandError) and err.returncode == -signal.SIGINT:
                # Ctrl-C reaches the whole foreground process group: the kubectl/istioctl/kind this step ran died
                # of the same SIGINT the main thread turns into KeyboardInterrupt. Report it as the interrupt.
                err = KeyboardInterrupt()
            return Outcome(step, Status.FAILED, env.clock() - started, started - self.t0, err)
        return Outcome(step, status, env.clock() - started, started - self.t0)

    def _report(self, o: Outcome) -> None:
        tag = o.step.cluster or "host"
        line = f"  {tag:<9} {o.step.id:<30} {o.status:<9} {duration(o.seconds):>7}  {o.step.title}"
        if o.status == Status.FAILED:
            line += f"\n            -> {error_line(o.error)}"
        self.env.say(line)


def error_line(err: BaseException | None) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def summary(report: Report, what: str = "lab up", before: Mapping[str, float] | None = None) -> str:
    """The closing lines: outcome counts and the wall time of each phase (`before`: phases outside the plan)."""
    counts: dict[Status, int] = {}
    for o in report.outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    ok = not report.failed and Status.BLOCKED not in counts
    head = f"{what}: {'finished' if ok else 'stopped'} in {duration(report.seconds)} ({parts})"
    if not ok:
        again = "make lab-up" if what == "lab up" else f"python -m {what}"
        head += f"; finished steps are kept: fix the cause and run `{again}` again"
    lines = [head, "  phase            wall time"]
    for phase, secs in {**(before or {}), **report.phases()}.items():
        lines.append(f"  {phase:<16} {duration(secs):>9}")
    return "\n".join(lines)
