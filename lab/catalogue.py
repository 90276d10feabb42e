"""What every scenario's fault catalogue shares (each scenario's faults.py holds its own faults, inject and restore):

- `Expectation` (what a probe should show while a fault is in place, for a range of Istio versions) and `pick`, the
  one expectation covering a version; `Observation`, what a real run saw; `Fault`, the fields every catalogue entry
  has (a scenario's Fault subclasses it with its own lab type, default timings and extra fields);
- `clean`: a live API object made fit to create or replace again (what inject saves for restore);
- `settled_class`: poll a classified probe until its class is stable, counting only probes begun after the settling
  time (with `want`, until it is that class); `heal`: undo a fault and wait for `ok`, reporting any failure;
- `with_table`: a document with the lines between two marker lines replaced by a generated table.

Pure but for the polling, which sleeps through lab.retry.poll (deadline-based, never a fixed sleep).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lab.errors import LabError
from lab.profile import version_key
from lab.retry import NotYet, poll
from lab.settings import TIMEOUTS


# --- data ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """What a probe should show while a fault is in place, for a range of Istio versions."""

    versions: str  # inclusive range "1.7.0-1.7.4", or one version "1.7.8"
    cls: str  # a name from lab.classify.CLASSES
    confidence: int  # percent: how sure the reasoned expectation is (docs/design.md)
    why: str  # the reasoning, with the upstream source it rests on

    @property
    def bounds(self) -> tuple[str, str]:
        low, _, high = self.versions.partition("-")
        return low, high or low

    def covers(self, version: str) -> bool:
        low, high = self.bounds
        return version_key(low) <= version_key(version) <= version_key(high)


@dataclass(frozen=True)
class Observation:
    """What a real run saw; recorded by hand when it disagrees with (or confirms) an Expectation."""

    istio_version: str
    cls: str
    date: str  # ISO date of the run
    note: str  # what was seen: status line, response flags, log line


def pick(expectations: tuple[Expectation, ...], version: str, what: str) -> Expectation:
    """The one expectation that covers Istio `version`; none or several is a catalogue error naming `what`."""
    matches = [e for e in expectations if e.covers(version)]
    if len(matches) != 1:
        raise LabError(f"{what}: {len(matches)} expectations cover Istio {version}; the catalogue needs exactly one")
    return matches[0]


L = TypeVar("L")  # the lab a scenario's faults act on (its FaultLab)


@dataclass(frozen=True)
class Fault(Generic[L]):
    """One entry of a fault catalogue: how it breaks the lab, what a probe should show per Istio version, how to undo
    it. Build it with keywords (a subclass adds fields and its own `settle`/`timeout` defaults)."""

    id: str  # the id in the catalogue's table and the e2e test ids
    cluster: str  # role of the cluster it breaks: "client" (cluster1) or "server" (cluster2)
    breaks: str  # one line: what inject does
    expectations: tuple[Expectation, ...]
    inject: Callable[[L], None]
    restore: Callable[[L], None]
    needs_reinstall: bool = False  # slow lane (pytest marker `reinstall`)
    settle: float = 0.0  # seconds after inject before a verdict counts (DNS caches, xDS pushes)
    timeout: float = 0.0  # seconds after settling to reach a stable class
    observed: tuple[Observation, ...] = ()

    @property
    def expected(self) -> dict[str, str]:
        """Version range -> expected class."""
        return {e.versions: e.cls for e in self.expectations}

    def expected_for(self, version: str) -> Expectation:
        return pick(self.expectations, version, self.id)


# --- live objects ---------------------------------------------------------------------------------------------------
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """A live object made fit to create or replace again (a copy): status and server-set metadata removed, and the
    null annotations, labels and top-level fields a typed client's JSON carries."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in SERVER_FIELDS:
        meta.pop(key, None)
    for key in ("annotations", "labels"):
        if key in meta and meta[key] is None:
            meta.pop(key)
    return {k: v for k, v in out.items() if v is not None}


# --- observing ------------------------------------------------------------------------------------------------------
def settled_class(observe: Callable[[], str], *, settle: float, timeout: float, stable: int = 3,
                  interval: float = TIMEOUTS.poll_interval, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] | None = None, history: list[str] | None = None,
                  want: str | None = None) -> str:
    """Call `observe` until it returned the same class `stable` times in a row, counting only calls begun after
    `settle` seconds (with `want`, that class must be `want`: for waiting until a restored lab answers `ok` again).

    A call begun during the settling time, or one that is not `want`, breaks the row (lab.retry.poll's `stable`).
    Every class seen is appended to `history` (so a failure can show the whole sequence). Raises NotReadyError when
    no stable class is reached within `settle + timeout` seconds.
    """
    seen = history if history is not None else []
    start = clock()

    def attempt() -> str:
        began = clock() - start
        cls = observe()
        seen.append(cls)
        if began < settle:
            raise NotYet(f"{cls} at {began:.0f}s, settling for {settle:.0f}s")
        if want is not None and cls != want:
            raise NotYet(f"{cls}, waiting for {want}")
        return cls

    return poll(attempt, timeout=settle + timeout, interval=interval, what="a stable probe class", stable=stable,
                sleep=sleep)


def heal(fault_id: str, restore: Callable[[], None], observe: Callable[[], str], *, timeout: float,
         sleep: Callable[[float], None] | None = None, on_failure: Callable[[str], None] | None = None,
         history: list[str] | None = None) -> None:
    """Undo a fault (`restore`), then wait up to `timeout` until `observe` says `ok` again. Any failure, a bug's
    KeyError or bad JSON as much as a LabError, leaves the lab in a state nobody checked: `on_failure` hears it (the
    e2e suite marks the lab unhealthy), then it propagates."""
    try:
        restore()
        settled_class(observe, settle=0, timeout=timeout, want="ok", history=history, sleep=sleep)
    except BaseException as err:  # noqa: BLE001 - reported and re-raised, never swallowed
        if on_failure is not None:
            on_failure(f"restore of {fault_id} failed: {type(err).__name__}: {err}")
        raise


# --- generated tables ---------------------------------------------------------------------------------------------
def with_table(text: str, begin: str, end: str, table: str) -> str:
    """`text` with the lines strictly between its one `begin` line and its one `end` line replaced by `table`."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise LabError(f"the fault table needs exactly one line `{begin}` and, after it, one line `{end}` "
                       f"(found {len(begins)} and {len(ends)})")
    return "".join(lines[:begins[0] + 1]) + table + "".join(lines[ends[0]:])
