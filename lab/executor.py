"""Executing the plan: `lab up`, `lab down`, `lab status`, `lab uninstall`.

`up` runs the steps of lab.plan through one `lab.shell.Runner`: one thread per branch (each cluster, and the
host), a branch waiting only where a step needs a step of another branch; one progress line per step with its
duration; a summary with per-phase timings. Every step is safe to re-run (manifests are applied, secrets and
ConfigMaps rendered and applied, never created), completed steps are recorded in `$LAB_HOME/state.json`
with fingerprints of the profile and of the step, so a re-run verifies cheaply instead of redoing, and an
interrupted run continues where it stopped. A lock refuses a second concurrent run.

The pure pieces (token resolution, manifest rendering, judging a check's result) are module functions tested
offline; everything that touches a cluster goes through the runner, the provider (lab.kind) or lab.kube.Kubectl.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import partial, singledispatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yaml

from lab import certs, corefile, names, probe, serviceentry
from lab import images as lab_images
from lab.errors import CommandError, LabError, NoLabError, NotReadyError, UsageError, no_lab_message
from lab.files import atomic_write
from lab.kube import Kubectl, corefile_of, read_coredns
from lab.plan import (
    SERVER_SIDE_APPLY,
    Action,
    ApplyClientServiceEntry,
    Check,
    Command,
    CreateCluster,
    Expect,
    ExpectKind,
    GenerateCerts,
    LoadImages,
    Manifest,
    PatchCoreDNS,
    Paths,
    PullImages,
    Run,
    Sample,
    SecretFromFiles,
    Step,
    Text,
    build,
    build_uninstall,
    kubectl_for_lookup,
)
from lab.profile import ClusterSpec, Profile, load_profile
from lab.retry import NotYet, poll
from lab.settings import TIMEOUTS
from lab.shell import Result, Runner, end_children
from lab.state import Lock, State, check_home, fingerprint, lab_home
from lab.tokens import Context, File, Kubeconfig, Lookup, Token

if TYPE_CHECKING:
    from lab.kind import Provider
    from lab.tools import Tools

T = TypeVar("T")

# --- pure helpers ---------------------------------------------------------------------------------------------
def secret_manifest(name: str, namespace: str, files: Mapping[str, bytes]) -> str:
    """lab.certs.secret_object (what `kubectl create secret generic NAME --from-file=...` makes) as YAML."""
    return yaml.safe_dump(certs.secret_object(name, namespace, files), sort_keys=False)


def sample_manifest(text: str, images: Iterable[tuple[str, str]]) -> str:
    """A sample manifest with `image: <old>` lines replaced by `image: <new>` (what the shell plan's sed does)."""
    for old, new in images:
        text, count = re.subn(rf"(?m)^(\s*-?\s*)image: {re.escape(old)}$", rf"\g<1>image: {new}", text)
        if count == 0:
            raise LabError(f"the sample manifest has no `image: {old}` line to replace; is the Istio release right?")
    return text


def coredns_configmap(live: Mapping[str, Any], corefile_text: str) -> str:
    """The live kube-system/coredns ConfigMap with its Corefile replaced (other keys kept), for `kubectl apply`."""
    data = dict(live.get("data") or {})
    data["Corefile"] = corefile_text
    meta = live.get("metadata") or {}
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": meta.get("name", "coredns"), "namespace": meta.get("namespace", "kube-system")},
           "data": data}
    return yaml.safe_dump(obj, sort_keys=False)


def judge(expect: Expect, result: Result) -> str | None:
    """None if `result` meets `expect`, else the reason (shown when the deadline passes)."""
    if expect.kind is ExpectKind.EXIT0:
        return None if result.ok else f"exit {result.returncode}: {_tail(result.output)}"
    if expect.kind is ExpectKind.EQUALS:
        got = result.stdout.strip()
        if not result.ok:
            return f"exit {result.returncode}: {_tail(result.output)}"
        return None if got == expect.value else f"got {got!r}, expected {expect.value!r}"
    if expect.kind is ExpectKind.HTTP:
        curl = probe.parse_curl(result.output, result.returncode)
        if curl.status == int(expect.value):
            return None
        return f"HTTP {curl.status or '-'} (curl exit {curl.exit_code}): {_tail(curl.output)}"
    if expect.kind is ExpectKind.RESOLVES:
        found = probe.parse_nslookup(result.stdout)
        return None if expect.value in found else f"answers {found or 'none'}: {_tail(result.output)}"
    raise ValueError(f"unknown expectation {expect.kind}")


def _tail(text: str, lines: int = 2) -> str:
    return " | ".join(x.strip() for x in text.strip().splitlines()[-lines:] if x.strip()) or "(no output)"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


# --- the run-time context -----------------------------------------------------------------------------------
@dataclass
class Env:
    """Everything a step needs at run time. Tests build one with a RecordingRunner and a fake provider."""

    profile: Profile
    paths: Paths
    runner: Runner
    tools: Tools
    provider: Provider
    state: State
    out: TextIO = field(default_factory=lambda: sys.stdout)
    sleep: Callable[[float], None] | None = None  # for lab.retry.poll; tests pass a no-op
    clock: Callable[[], float] = time.monotonic
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # set on interrupt: waits end at once

    def cluster(self, name: str) -> ClusterSpec:
        for c in self.profile.clusters:
            if c.name == name:
                return c
        raise LabError(f"cluster {name} is not in profile {self.profile.name}")

    def kubectl(self, cluster: str) -> Kubectl:
        spec = self.cluster(cluster)
        return Kubectl(self.runner, str(self.provider.kubeconfig(spec)), self.provider.context(spec),
                       binary=str(self.tools.kubectl))

    def say(self, line: str) -> None:
        with self._print_lock:
            print(line, file=self.out, flush=True)

    def resolve(self, token: Token) -> str:
        """A token's value now (a Lookup runs kubectl; an empty answer is 'not yet')."""
        if isinstance(token, str):
            return token
        if isinstance(token, Kubeconfig):
            return str(self.provider.kubeconfig(self.cluster(token.cluster)))
        if isinstance(token, Context):
            return self.provider.context(self.cluster(token.cluster))
        if isinstance(token, File):
            return str(self.paths.resolve(token))
        if isinstance(token, Lookup):
            argv = self.argv(kubectl_for_lookup(token))
            res = self.runner.run(argv, check=False, timeout=TIMEOUTS.command, context=token.what)
            value = res.stdout.strip()
            if not res.ok or not value:
                raise NotYet(f"{token.what} not known yet ({_tail(res.output) if not res.ok else 'empty'})")
            return value
        raise TypeError(f"unknown token {token!r}")

    def argv(self, tokens: Sequence[Token]) -> list[str]:
        argv = [self.resolve(t) for t in tokens]
        binaries = {"kind": self.tools.kind, "kubectl": self.tools.kubectl, "istioctl": self.tools.istioctl}
        if argv and argv[0] in binaries:
            argv[0] = str(binaries[argv[0]])
        return argv

    def poll(self, fn: Callable[[], T], *, timeout: float, what: str) -> T:
        return poll(fn, timeout=timeout, what=what, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        # A wait between attempts that an interrupt (Ctrl-C in the main thread) cuts short in every branch.
        if self.sleep is not None:
            self.sleep(seconds)
            interrupted = self.stop.is_set()
        else:
            interrupted = self.stop.wait(seconds)
        if interrupted:
            raise KeyboardInterrupt


# --- running one step ---------------------------------------------------------------------------------------
def run_check(env: Env, check: Check, what: str, *, once: bool = False) -> Result:
    """Run a check until it passes (polled up to its timeout), or once. Returns the passing result."""

    def attempt() -> Result:
        res = env.runner.run(env.argv(check.argv), check=False, timeout=max(check.timeout, TIMEOUTS.command),
                             context=what)
        reason = judge(check.expect, res)
        if reason:
            raise NotYet(reason)
        return res

    if once or check.timeout <= 0:
        try:
            return attempt()
        except NotYet as err:
            raise NotReadyError(f"{what}: {err}") from err
    return env.poll(attempt, timeout=check.timeout, what=what)


def render_manifest(env: Env, m: Manifest) -> tuple[str, list[str]]:
    """(manifest text, strings to redact) for a Manifest step."""
    src = m.source
    if isinstance(src, Text):
        return src.yaml, []
    if isinstance(src, Sample):
        return sample_manifest(env.paths.resolve(src.file).read_text(encoding="utf-8"), src.images), []
    assert isinstance(src, SecretFromFiles)
    files: dict[str, bytes] = {}
    for f in src.files:
        path = env.paths.resolve(f)
        try:
            files[path.name] = path.read_bytes()
        except OSError as err:
            raise LabError(f"cannot read {path} for secret {src.name} ({err.strerror}); "
                           "is the Istio release complete (or run `python -m lab certs generate`)?") from err
    text = secret_manifest(src.name, src.namespace, files)
    secrets = [v.decode("utf-8", "replace") for k, v in files.items() if "key" in k]
    secrets += [base64.b64encode(v).decode() for k, v in files.items() if "key" in k]
    return text, secrets


def apply(env: Env, cluster: str, text: str, namespace: str | None, what: str,
          redact: Sequence[str] = ()) -> Result:
    runner = dataclasses.replace(env.runner, redact=[*env.runner.redact, *redact]) if redact else env.runner
    ns = ["-n", namespace] if namespace else []
    # Manifests with secrets go server-side, so that no last-applied-configuration annotation copies the key.
    mode = list(SERVER_SIDE_APPLY) if redact else []
    k = env.kubectl(cluster)
    return runner.run([*k.base(), "apply", *mode, *ns, "-f", "-"], input=text, timeout=TIMEOUTS.command,
                      context=what)


def execute(env: Env, step: Step, *, forced: bool = False) -> bool:
    """Do the step. Returns False when it found everything already in place (nothing changed). `forced`: a step it
    needs changed in this run, so a self-checking action acts even when its own check finds nothing to do."""
    run = step.run
    what = step.id
    if isinstance(run, Command):
        for f, text in run.writes:
            atomic_write(env.paths.resolve(f), text)
        argv = env.poll(lambda: env.argv(run.argv), timeout=TIMEOUTS.rollout, what=f"{what}: run-time values") \
            if any(isinstance(t, Lookup) for t in run.argv) else env.argv(run.argv)
        env.runner.run(argv, timeout=run.timeout, context=what, env=dict(run.env) or None)
        return True
    if isinstance(run, Manifest):
        text, redact = render_manifest(env, run)
        apply(env, run.cluster, text, run.namespace, what, redact)
        return True
    if isinstance(run, Check):
        res = run_check(env, run, f"{what} ({step.title})")
        if run.expect.kind is ExpectKind.HTTP:
            curl = probe.parse_curl(res.output, res.returncode)
            env.state.set_probe({"step": step.id, "status": curl.status, "curl_exit": curl.exit_code,
                                 "ok": curl.ok})
        return False
    return perform(run, env, step, forced)


@singledispatch
def perform(action: Action, env: Env, step: Step, forced: bool) -> bool:
    """Do a lab action in-process; True if it changed something. `forced`: see `execute`."""
    raise LabError(f"{step.id}: unknown lab action {action.name}")


@perform.register
def _kind_create(run: CreateCluster, env: Env, step: Step, forced: bool) -> bool:
    spec = env.cluster(run.cluster)
    existed = env.provider.exists(spec)
    if existed and not env.state.owns_cluster(spec.name):
        raise UsageError(
            f"a kind cluster named {spec.name} exists that this lab did not create (not in {env.state.path}); "
            f"delete it (`kind delete cluster --name {spec.name}`) or use another LAB_HOME")
    recorded = (env.state.clusters.get(spec.name) or {}).get("identity")
    if existed and recorded and env.provider.identity(spec) != recorded:
        raise UsageError(
            f"the kind cluster {spec.name} is not the one this lab created (its node containers changed: it was "
            f"deleted and created again outside the lab); `make lab-down` forgets it without deleting it, then "
            f"delete it yourself (`kind delete cluster --name {spec.name}`) or use another LAB_HOME")
    if existed and (env.state.clusters.get(spec.name) or {}).get("status") == "creating":
        # Our creation never finished: kind installs no signal handler (no os/signal in kind v0.20.0's tree), so
        # a `kind create cluster` stopped by Ctrl-C leaves its node containers behind, kubeadm perhaps half-run,
        # and kind deletes them itself only when it fails on its own (pkg/cluster/internal/create/create.go,
        # unless --retain). Reusing such a node would wait for a Ready that may never come: start again.
        env.say(f"  {spec.name:<9} a creation of this cluster did not finish last time; deleting it to start again")
        env.provider.delete(spec)
        existed = False
    if not existed:
        # Recorded before creating: a creation interrupted half-way still counts as the lab's (`lab down`).
        env.state.cluster_intent(spec.name, env.provider.name)
    # The provider reuses an existing cluster (rewriting its kubeconfig if needed) and waits for its node.
    env.provider.create(spec)
    # Created and Ready: from here on a re-run reuses it (a failing provider check below is reported again on the
    # next run, not "fixed" by creating the same node once more).
    env.state.cluster_created(spec.name, Path(env.provider.kubeconfig(spec)), env.provider.context(spec),
                              env.provider.identity(spec))
    env.provider.verify(spec)
    return not existed


@perform.register
def _images_pull(run: PullImages, env: Env, step: Step, forced: bool) -> bool:
    pulled = False
    for image in run.images:
        if not lab_images.present(env.runner, image):
            lab_images.pull(env.runner, image, timeout=TIMEOUTS.command, context=f"{step.id}: {image}")
            pulled = True
    return pulled


@perform.register
def _images_load(run: LoadImages, env: Env, step: Step, forced: bool) -> bool:
    env.provider.load_images(env.cluster(run.cluster), list(run.images))
    return True


@perform.register
def _certs_generate(run: GenerateCerts, env: Env, step: Step, forced: bool) -> bool:
    certs.generate(env.paths.resolve(run.out), list(run.clusters))
    return True


@perform.register
def _coredns_patch(run: PatchCoreDNS, env: Env, step: Step, forced: bool) -> bool:
    cluster = run.cluster
    forward = run.forward
    ip = env.poll(lambda: env.resolve(forward), timeout=TIMEOUTS.rollout, what=f"{step.id}: {forward.what}")
    k = env.kubectl(cluster)
    live = read_coredns(k, context=step.id)
    text = corefile_of(live)
    patched = corefile.patch(text, ip, aaaa_guard=run.aaaa_guard)
    if patched == text:
        return False
    atomic_write(env.paths.resolve(run.file), patched)
    apply(env, cluster, coredns_configmap(live, patched), None, step.id)
    return True


@perform.register
def _serviceentry_client(run: ApplyClientServiceEntry, env: Env, step: Step, forced: bool) -> bool:
    address_t, port_t = run.address, run.port
    address, port = env.poll(lambda: (env.resolve(address_t), env.resolve(port_t)), timeout=TIMEOUTS.rollout,
                             what=f"{step.id}: {address_t.what} and {port_t.what}")
    svc = serviceentry.RemoteService(run.service, run.service_namespace)
    obj = serviceentry.render_client(svc, run.vip, address, int(port))
    cluster, namespace = run.cluster, run.namespace
    res = env.kubectl(cluster).run("-n", namespace, "get", "serviceentries.networking.istio.io",
                                   obj["metadata"]["name"], "-o", "json", check=False, context=step.id)
    stale = serviceentry_changes(_json_or_none(res.stdout) if res.ok else None, obj)
    if not stale and not forced:
        return False
    if stale:
        env.say(f"  {cluster:<9} {step.id}: {'; '.join(stale)}: applying it")
    apply(env, cluster, serviceentry.to_yaml(obj), namespace, step.id)
    return True


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def serviceentry_changes(live: Any, want: Mapping[str, Any]) -> list[str]:
    """What differs between a live ServiceEntry (kubectl's JSON, or None when absent) and the one the lab renders:
    every field of the lab's spec (the endpoint's address and port included), one phrase each; [] if none."""
    if not isinstance(live, dict):
        return ["absent"]
    spec = live["spec"] if isinstance(live.get("spec"), dict) else {}
    return [f"spec.{key} is {spec.get(key)!r}, not {value!r}" for key, value in want["spec"].items()
            if spec.get(key) != value]


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
        line = f"  {tag:<9} {o.step.id:<30} {o.status:<9} {_duration(o.seconds):>7}  {o.step.title}"
        if o.status == Status.FAILED:
            line += f"\n            -> {_error_line(o.error)}"
        self.env.say(line)


def _error_line(err: BaseException | None) -> str:
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
    head = f"{what}: {'finished' if ok else 'stopped'} in {_duration(report.seconds)} ({parts})"
    if not ok:
        again = "make lab-up" if what == "lab up" else f"python -m {what}"
        head += f"; finished steps are kept: fix the cause and run `{again}` again"
    lines = [head, "  phase            wall time"]
    for phase, secs in {**(before or {}), **report.phases()}.items():
        lines.append(f"  {phase:<16} {_duration(secs):>9}")
    return "\n".join(lines)


# --- the commands ---------------------------------------------------------------------------------------------
def _default_preflight(profile: Profile, runner: Runner, **kwargs: object) -> None:
    from lab import preflight

    preflight.require(profile, runner, **kwargs)


def _default_tools(profile: Profile, runner: Runner) -> Tools:
    from lab import tools

    return tools.ensure_tools(profile, tools.cache_dir(), runner)


def _cached_tools(profile: Profile, runner: Runner) -> Tools:
    from lab import tools

    return tools.ensure_tools(profile, tools.cache_dir(), runner, download=False)


def _default_provider(profile: Profile, home: Path, tools: Tools, runner: Runner) -> Provider:
    from lab import kind

    return kind.make_provider(profile, home, tools, runner)


@dataclass
class Hooks:
    """What `up`/`down`/`status`/`uninstall` build on; tests replace them (no Docker, no downloads)."""

    preflight: Callable[..., None] = _default_preflight
    tools: Callable[[Profile, Runner], Tools] = _default_tools
    # read-only commands (`status`) use what is on PATH or cached and say what is missing; they never download
    cached_tools: Callable[[Profile, Runner], Tools] = _cached_tools
    provider: Callable[[Profile, Path, Tools, Runner], Provider] = _default_provider
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] = time.monotonic


def _open_env(hooks: Hooks, profile: Profile, home: Path, state: State, runner: Runner, out: TextIO) -> Env:
    """Tools (found or downloaded), the provider, and the run-time Env that `up` and `uninstall` run steps in."""
    tools = hooks.tools(profile, runner)
    provider = hooks.provider(profile, home, tools, runner)
    return Env(profile, Paths(home, Path(tools.istio_dir)), runner, tools, provider, state, out, hooks.sleep,
               hooks.clock)


def up(profile: Profile, *, home: Path | str | None = None, overrides: Mapping[str, str] | None = None,
       runner: Runner | None = None, out: TextIO | None = None, hooks: Hooks | None = None) -> int:
    """Build the lab (or check and finish a healthy or half-built one). Returns the exit code."""
    hooks = hooks or Hooks()
    runner = runner or Runner()
    out = out or sys.stdout
    home = lab_home(home)
    check_home(home)
    # Preflight first: nothing (not even $LAB_HOME) is created on a machine that cannot run the lab.
    known = State.load(home).clusters if (home / "state.json").exists() else {}
    hooks.preflight(profile, runner, skip_ports_of=frozenset(n for n, r in known.items() if r.get("created_by_lab")))
    with Lock(home, "up"):
        state = State.load(home)
        _refuse_other_clusters(state, profile, home)
        state.set_profile(profile.name, dict(overrides or {}), fingerprint(profile))
        t0 = hooks.clock()
        env = _open_env(hooks, profile, home, state, runner, out)
        tools_seconds = hooks.clock() - t0
        print(f"  {'host':<9} {'tools':<30} {'ready':<9} {_duration(tools_seconds):>7}  kind, kubectl, "
              f"istioctl and the Istio {profile.istio_version} release", file=out, flush=True)
        # The provider's own wait (node Ready, up to TIMEOUTS.kind_create) must end at Ctrl-C like the plan's.
        env.provider.sleep = env._sleep
        report = Scheduler(env, build(profile, env.paths)).run()
        print(summary(report, before={"tools": tools_seconds}), file=out, flush=True)
        state.set_run({"command": "up", "ok": not report.failed, "seconds": round(report.seconds, 1),
                       "phases": {k: round(v, 1) for k, v in report.phases().items()}})
        if report.failed:
            # The first failure is the one line the CLI prints (a LabError); anything else is a bug: traceback.
            first = report.failed[0]
            raise first.error if first.error is not None else LabError(f"{first.step.id} failed")
        _write_lock_file(env)
        probe_rec = state.data.get("last_probe") or {}
        print(f"lab up: curl {names.REMOTE_HOST}:{names.REMOTE_PORT}/headers from "
              f"{profile.client.name}/{names.CLIENT_NS}/sleep returned {probe_rec.get('status')}", file=out, flush=True)
        print(usage_lines(profile, env.provider), file=out, flush=True)
    return 0


def usage_lines(profile: Profile, provider: Provider) -> str:
    """How to use the clusters now (the lab's own kubeconfig files; ~/.kube/config is not touched)."""
    lines = ["use the clusters with the lab's own kubeconfig files (your ~/.kube/config is not changed):"]
    for c in profile.clusters:
        lines.append(f"  KUBECONFIG={provider.kubeconfig(c)} kubectl --context {provider.context(c)} get pods -A")
    lines.append("  make lab-status (what is there), make lab-doctor (which hop is broken), make lab-down (delete)")
    return "\n".join(lines)


def _refuse_other_clusters(state: State, profile: Profile, home: Path) -> None:
    """A lab built with other nodes (image, kind version, subnets) cannot be changed in place: say so."""
    if not state.profile or not any(r.get("created_by_lab") for r in state.clusters.values()):
        return
    try:
        old = _recorded_profile(state)
    except LabError:
        return
    # cert_source too: istiod reads `cacerts` only when it starts (Istio 1.7.8 pilot/pkg/bootstrap/istio_ca.go), so
    # re-applying it from another root leaves both istiods on the old one until some restart splits the mesh.
    keys = ("node_image", "kind_version", "clusters", "cert_source")
    changed = [k for k in keys if getattr(old, k) != getattr(profile, k)]
    if changed:
        raise UsageError(f"the lab in {home} was built with another {', '.join(changed)}; run `make lab-down` "
                         "first (or use another LAB_HOME) to build it with this profile")


def _write_lock_file(env: Env) -> None:
    try:
        entries = lab_images.lock_entries(env.profile, env.runner)
        lab_images.write_lock(env.paths.home / "lock.json", entries, env.profile)
    except LabError as err:  # the lab works; say why the digests are missing instead of failing the run
        env.say(f"lab up: note: image digests not recorded in lock.json ({err})")
        return
    missing = lab_images.unrecorded_latest(env.profile, entries)
    if missing:
        env.say(f"lab up: note: no repo digest for {', '.join(missing)} (not pulled from a registry?): lock.json "
                "cannot tell when that unpinned tag moves")


def _recorded_profile(state: State, *, lenient: bool = False) -> Profile:
    """The profile the lab was built with. `lenient`: if it no longer loads (renamed, an override this version
    refuses), fall back to the default one, so that `lab down` can still delete the recorded clusters."""
    rec = state.profile or {}
    try:
        return load_profile(rec.get("name", "default"), rec.get("overrides") or {})
    except LabError as err:
        if not lenient:
            raise LabError(f"the profile recorded in {state.path} no longer loads ({err}); `make lab-down` still "
                           "deletes its clusters, then build it again with `make lab-up`") from err
        return load_profile()


def down(*, home: Path | str | None = None, runner: Runner | None = None, out: TextIO | None = None,
         hooks: Hooks | None = None) -> int:
    """Delete the clusters this lab created (state file + the provider's label check), and nothing else."""
    hooks = hooks or Hooks()
    runner = runner or Runner()
    out = out or sys.stdout
    home = lab_home(home)
    if not (home / "state.json").exists():
        # the same line as status/uninstall/doctor, as a note: deleting a lab that is not there has succeeded
        print(f"lab: note: {no_lab_message(home)}; nothing to delete", file=sys.stderr)
        return 0
    with Lock(home, "down"):
        state = State.load(home)
        profile = _recorded_profile(state, lenient=True)
        ours = {n: r for n, r in state.clusters.items() if r.get("created_by_lab")}
        if not ours:
            print(f"lab down: {home} records no cluster created by the lab; nothing to delete", file=out)
        else:
            tools = hooks.tools(profile, runner)
            provider = hooks.provider(profile, home, tools, runner)
            for name, rec in ours.items():
                spec = next((c for c in profile.clusters if c.name == name), None) or \
                    dataclasses.replace(profile.clusters[0], name=name)
                t0 = hooks.clock()
                current = provider.identity(spec) if rec.get("identity") else None
                if current and current != rec["identity"]:
                    # same name, other instance: created outside the lab after the lab's was deleted; not ours
                    deleted = False
                    word = ("not deleted: a kind cluster of that name exists but it is not the one this lab created "
                            "(other node containers); forgotten")
                else:
                    deleted = provider.delete(spec)
                    word = "deleted" if deleted else \
                        "not found (no kind node labelled as this cluster; nothing deleted)"
                print(f"  {name:<9} {word} ({_duration(hooks.clock() - t0)})", file=out, flush=True)
                Path(provider.kubeconfig(spec)).unlink(missing_ok=True)
                state.forget_cluster_steps(name)
                state.forget_cluster(name)
        if not state.clusters:
            state.path.unlink(missing_ok=True)
        else:
            state.forget_steps([s for s in state.done_steps if s.startswith("host/")])
    return 0


def uninstall(*, home: Path | str | None = None, runner: Runner | None = None, out: TextIO | None = None,
              hooks: Hooks | None = None) -> int:
    """The write-up's uninstall section: apps, ServiceEntries and their namespaces; clusters and Istio stay."""
    hooks = hooks or Hooks()
    runner = runner or Runner()
    out = out or sys.stdout
    home = lab_home(home)
    if not (home / "state.json").exists():
        raise NoLabError(home)
    with Lock(home, "uninstall"):
        state = State.load(home)
        profile = _recorded_profile(state)
        env = _open_env(hooks, profile, home, state, runner, out)
        report = Scheduler(env, build_uninstall(profile, env.paths), record=False).run()
        # What uninstall removed must be applied again by the next `lab up`.
        state.forget_steps([s.id for s in build(profile, env.paths) if s.phase in ("apps", "serviceentries",
                                                                                    "verify")])
        print(summary(report, "lab uninstall"), file=out, flush=True)
        if report.failed:
            err = report.failed[0].error
            raise err if isinstance(err, LabError) else LabError(_error_line(err))
    return 0


def status(*, home: Path | str | None = None, runner: Runner | None = None, out: TextIO | None = None,
           hooks: Hooks | None = None) -> int:
    """What the lab has: clusters, Istio, istiocoredns, apps, ServiceEntries, the last probe. 0 if all there."""
    hooks = hooks or Hooks()
    runner = runner or Runner()
    out = out or sys.stdout
    home = lab_home(home)
    if not (home / "state.json").exists():
        raise NoLabError(home)
    state = State.load(home)
    profile = _recorded_profile(state)
    rec = state.profile or {}
    print(f"lab in {home}: profile {rec.get('name')}{' ' + str(rec['overrides']) if rec.get('overrides') else ''} "
          f"(Istio {profile.istio_version}, "
          f"{profile.node_image.split('@')[0]}), {len(state.done_steps)} steps recorded", file=out)
    tools = hooks.cached_tools(profile, runner)
    provider = hooks.provider(profile, home, tools, runner)
    healthy = True
    for c in profile.clusters:
        owned = state.owns_cluster(c.name)
        exists = provider.exists(c)
        print(f"  {c.name}: cluster {'up' if exists else 'absent'}"
              f"{'' if owned else ' (not created by this lab)'}", file=out)
        if not exists:
            healthy = False
            continue
        k = Kubectl(runner, str(provider.kubeconfig(c)), provider.context(c), binary=str(tools.kubectl))
        for label, ok, detail in _cluster_status(k, c):
            healthy = healthy and ok
            print(f"    {'ok ' if ok else 'NO '} {label}: {detail}", file=out)
    probe_rec = state.data.get("last_probe")
    if probe_rec:
        print(f"  last probe ({probe_rec.get('at')}): {probe_rec.get('step')} -> HTTP {probe_rec.get('status')}, "
              f"curl exit {probe_rec.get('curl_exit')}", file=out)
    else:
        healthy = False
        print("  last probe: none yet", file=out)
    return 0 if healthy else 1


def _cluster_status(k: Kubectl, c: ClusterSpec) -> list[tuple[str, bool, str]]:
    def ready(ns: str, deploy: str) -> tuple[bool, str]:
        res = k.run("-n", ns, "get", "deployment", deploy, "-o",
                    "jsonpath={.status.readyReplicas}/{.spec.replicas} {.spec.template.spec.containers[0].image}",
                    check=False)
        if not res.ok:
            return False, "absent"
        counts, _, image = res.stdout.strip().partition(" ")
        got, _, want = counts.partition("/")
        return bool(got) and got == want, f"{counts} ready ({image})"

    rows: list[tuple[str, bool, str]] = []
    rows.append(("istiod", *ready("istio-system", "istiod")))
    rows.append(("istiocoredns", *ready("istio-system", "istiocoredns")))
    try:
        text: str | None = corefile_of(read_coredns(k))
    except CommandError:
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
    se = k.run("get", "serviceentries.networking.istio.io", "-A", "-o",
               "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.spec.hosts} "
               "{.spec.addresses} {.spec.endpoints[*].address}:{.spec.endpoints[*].ports}{\"\\n\"}{end}",
               check=False)
    entries = [line for line in se.stdout.splitlines() if line.strip()] if se.ok else []
    rows.append(("ServiceEntries", bool(entries), "; ".join(entries) or "none"))
    return rows
