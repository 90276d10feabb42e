"""The commands: `lab up`, `lab down`, `lab status`, `lab uninstall`, on one shared setup (`_Session`).

`up` runs the steps of lab.plan through lab.scheduler (one thread per branch: each cluster, and the host), which does
each step with lab.perform. Every step is safe to re-run (manifests are applied, secrets and ConfigMaps rendered and
applied, never created), completed steps are recorded in `$LAB_HOME/state.json`, and a lock refuses a second
concurrent run. `down` deletes only the clusters the lab created; `status` reads; `uninstall` runs the plan's
uninstall steps.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from lab import images as lab_images
from lab.cluster import LabHandle
from lab.errors import LabError, NoLabError, UsageError, no_lab_message
from lab.perform import Env
from lab.plan import Paths
from lab.profile import ProfileBase as Profile
from lab.scenario import DEFAULT_PROFILE, Scenario, load_profile, of, owner_of, profiles
from lab.scheduler import Scheduler, duration, error_line, summary
from lab.shell import Runner
from lab.state import Lock, State, check_home, fingerprint, lab_home

if TYPE_CHECKING:
    from lab.kind import KindTools, Provider
    from lab.tools import Tools


# --- the shared setup -----------------------------------------------------------------------------------------------
def _default_preflight(profile: Profile, runner: Runner, **kwargs: object) -> None:
    from lab import preflight

    preflight.require(profile, runner, **kwargs)


def _default_tools(profile: Profile, runner: Runner) -> Tools:
    from lab import tools

    return tools.ensure_tools(profile, tools.cache_dir(), runner)


def _cached_tools(profile: Profile, runner: Runner) -> Tools:
    from lab import tools

    return tools.ensure_tools(profile, tools.cache_dir(), runner, download=False)


def _default_provider(profile: Profile, home: Path, tools: KindTools, runner: Runner) -> Provider:
    from lab import kind

    return kind.make_provider(profile, home, tools, runner)


@dataclass
class Hooks:
    """What `up`/`down`/`status`/`uninstall` build on; tests replace them (no Docker, no downloads)."""

    preflight: Callable[..., None] = _default_preflight
    tools: Callable[[Profile, Runner], Tools] = _default_tools
    # read-only commands (`status`) use what is on PATH or cached and say what is missing; they never download
    cached_tools: Callable[[Profile, Runner], Tools] = _cached_tools
    provider: Callable[[Profile, Path, KindTools, Runner], Provider] = _default_provider
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] = time.monotonic



@dataclass
class _Session:
    """What every command starts from: its hooks, runner and output (the defaults filled in) and the lab's home."""

    hooks: Hooks
    runner: Runner
    out: TextIO
    home: Path

    @classmethod
    def open(cls, home: Path | str | None, runner: Runner | None, out: TextIO | None,
             hooks: Hooks | None) -> _Session:
        hooks = hooks or Hooks()
        runner = runner or Runner()
        return cls(hooks, runner, out or sys.stdout, lab_home(home))

    def has_lab(self) -> bool:
        return (self.home / "state.json").exists()

    def require_lab(self) -> None:
        if not self.has_lab():
            raise NoLabError(self.home)

    @contextmanager
    def locked(self, command: str) -> Iterator[State]:
        """The lab's lock held for `command`, and the state read under it."""
        with Lock(self.home, command):
            yield State.load(self.home)

    def provider(self, profile: Profile, tools: KindTools) -> Provider:
        return self.hooks.provider(profile, self.home, tools, self.runner)

    def env(self, profile: Profile, state: State) -> Env:
        """Tools (found or downloaded), the provider, and the run-time Env that `up` and `uninstall` run steps in."""
        tools = self.hooks.tools(profile, self.runner)
        provider = self.provider(profile, tools)
        return Env(profile, Paths(self.home, Path(tools.istio_dir)), self.runner, tools, provider, state, self.out,
                   self.hooks.sleep, self.hooks.clock)


@dataclass(frozen=True)
class _NoTools:
    """The binaries a provider is built with for a command that asks it only where each cluster's kubeconfig is and
    which context it holds (lab.kind.Provider.kubeconfig/context run nothing): none is looked up or downloaded."""

    kind: Path = Path("kind")
    kubectl: Path = Path("kubectl")


def provider_for(profile: Profile, home: Path | str | None, runner: Runner | None = None,
                 hooks: Hooks | None = None) -> Provider:
    """The lab's provider for a command that only reads (`lab doctor`), to build the one lab handle from
    (lab.cluster.LabHandle.from_provider): the kubeconfig layout stays the provider's alone."""
    s = _Session.open(home, runner, None, hooks)
    return s.provider(profile, _NoTools())


def up(profile: Profile, *, home: Path | str | None = None, overrides: Mapping[str, str] | None = None,
       runner: Runner | None = None, out: TextIO | None = None, hooks: Hooks | None = None) -> int:
    """Build the lab (or check and finish a healthy or half-built one). Returns the exit code."""
    s = _Session.open(home, runner, out, hooks)
    check_home(s.home)
    # Preflight first: nothing (not even $LAB_HOME) is created on a machine that cannot run the lab.
    known = State.load(s.home).clusters if s.has_lab() else {}
    s.hooks.preflight(profile, s.runner,
                      skip_ports_of=frozenset(n for n, r in known.items() if r.get("created_by_lab")))
    with s.locked("up") as state:
        _refuse_other_clusters(state, profile, s.home)
        state.set_profile(profile.name, dict(overrides or {}), fingerprint(profile))
        t0 = s.hooks.clock()
        env = s.env(profile, state)
        tools_seconds = s.hooks.clock() - t0
        print(f"  {'host':<9} {'tools':<30} {'ready':<9} {duration(tools_seconds):>7}  kind, kubectl, "
              f"istioctl and the Istio {profile.istio_version} release", file=s.out, flush=True)
        # The provider's own wait (node Ready, up to TIMEOUTS.kind_create) must end at Ctrl-C like the plan's.
        env.provider.sleep = env._sleep
        report = Scheduler(env, of(profile).build(profile, env.paths)).run()
        print(summary(report, before={"tools": tools_seconds}), file=s.out, flush=True)
        state.set_run({"command": "up", "ok": not report.failed, "seconds": round(report.seconds, 1),
                       "phases": {k: round(v, 1) for k, v in report.phases().items()}})
        if report.failed:
            # The first failure is the one line the CLI prints (a LabError); anything else is a bug: traceback.
            first = report.failed[0]
            raise first.error if first.error is not None else LabError(f"{first.step.id} failed")
        _write_lock_file(env)
        probe_rec = state.data.get("last_probe") or {}
        print(f"lab up: {of(profile).proof(profile)} returned {probe_rec.get('status')}", file=s.out, flush=True)
        print(usage_lines(profile, env.provider), file=s.out, flush=True)
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
    if old.scenario != profile.scenario:
        raise UsageError(f"the lab in {home} was built for the {old.scenario} scenario; run `make lab-down` first (or "
                         f"use another LAB_HOME) to build the {profile.scenario} scenario")
    changed = [k for k in profile.REBUILD_ON if getattr(old, k) != getattr(profile, k)]
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
    s = _Session.open(home, runner, out, hooks)
    if not s.has_lab():
        # the same line as status/uninstall/doctor, as a note: deleting a lab that is not there has succeeded
        print(f"lab: note: {no_lab_message(s.home)}; nothing to delete", file=sys.stderr)
        return 0
    with s.locked("down") as state:
        profile = _recorded_profile(state, lenient=True)
        ours = {n: r for n, r in state.clusters.items() if r.get("created_by_lab")}
        if not ours:
            print(f"lab down: {s.home} records no cluster created by the lab; nothing to delete", file=s.out)
        else:
            provider = s.provider(profile, s.hooks.tools(profile, s.runner))
            for name, rec in ours.items():
                _delete_cluster(s, provider, state, profile, name, rec)
        if not state.clusters:
            state.path.unlink(missing_ok=True)
        else:
            state.forget_steps([step for step in state.done_steps if step.startswith("host/")])
    return 0


def _delete_cluster(s: _Session, provider: Provider, state: State, profile: Profile, name: str,
                    rec: Mapping[str, object]) -> None:
    """`lab down` for one cluster the lab recorded as its own: deleted if it is still that one, then forgotten."""
    spec = next((c for c in profile.clusters if c.name == name), None) or \
        dataclasses.replace(profile.clusters[0], name=name)
    t0 = s.hooks.clock()
    current = provider.identity(spec) if rec.get("identity") else None
    if current and current != rec["identity"]:
        # same name, other instance: created outside the lab after the lab's was deleted; not ours
        word = ("not deleted: a kind cluster of that name exists but it is not the one this lab created "
                "(other node containers); forgotten")
    else:
        deleted = provider.delete(spec)
        word = "deleted" if deleted else \
            "not found (no kind node labelled as this cluster; nothing deleted)"
    print(f"  {name:<9} {word} ({duration(s.hooks.clock() - t0)})", file=s.out, flush=True)
    Path(provider.kubeconfig(spec)).unlink(missing_ok=True)
    state.forget_cluster_steps(name)
    state.forget_cluster(name)


def uninstall(*, home: Path | str | None = None, runner: Runner | None = None, out: TextIO | None = None,
              hooks: Hooks | None = None) -> int:
    """The write-up's uninstall section: apps, ServiceEntries and their namespaces; clusters and Istio stay."""
    s = _Session.open(home, runner, out, hooks)
    s.require_lab()
    with s.locked("uninstall") as state:
        profile = _recorded_profile(state)
        env = s.env(profile, state)
        scenario = of(profile)
        report = Scheduler(env, scenario.build_uninstall(profile, env.paths), record=False).run()
        # What uninstall removed must be applied again by the next `lab up`.
        state.forget_steps([step.id for step in scenario.build(profile, env.paths)
                            if step.phase in scenario.uninstall_forgets])
        print(summary(report, "lab uninstall"), file=s.out, flush=True)
        if report.failed:
            err = report.failed[0].error
            raise err if isinstance(err, LabError) else LabError(error_line(err))
    return 0


def status(*, home: Path | str | None = None, runner: Runner | None = None, out: TextIO | None = None,
           hooks: Hooks | None = None) -> int:
    """What the lab has: its clusters, Istio, the scenario's own rows (`Scenario.status`), the last probe. 0 if all
    there."""
    s = _Session.open(home, runner, out, hooks)
    s.require_lab()
    state = State.load(s.home)
    profile = _recorded_profile(state)
    rec = state.profile or {}
    print(f"lab in {s.home}: profile {rec.get('name')}{' ' + str(rec['overrides']) if rec.get('overrides') else ''} "
          f"(Istio {profile.istio_version}, "
          f"{profile.node_image.split('@')[0]}), {len(state.done_steps)} steps recorded", file=s.out)
    tools = s.hooks.cached_tools(profile, s.runner)
    provider = s.provider(profile, tools)
    with closing(LabHandle.from_provider(profile.clusters, provider, str(tools.kubectl))) as handle:
        healthy = _cluster_rows(s, state, profile, provider, handle)
    probe_rec = state.data.get("last_probe")
    if probe_rec:
        print(f"  last probe ({probe_rec.get('at')}): {probe_rec.get('step')} -> HTTP {probe_rec.get('status')}, "
              f"curl exit {probe_rec.get('curl_exit')}", file=s.out)
    else:
        healthy = False
        print("  last probe: none yet", file=s.out)
    return 0 if healthy else 1


def _cluster_rows(s: _Session, state: State, profile: Profile, provider: Provider, handle: LabHandle) -> bool:
    """`lab status`'s lines for each cluster: up or absent, then the scenario's rows through the lab's handle on it.
    True when every row is ok."""
    healthy = True
    for c in profile.clusters:
        owned = state.owns_cluster(c.name)
        exists = provider.exists(c)
        print(f"  {c.name}: cluster {'up' if exists else 'absent'}"
              f"{'' if owned else ' (not created by this lab)'}", file=s.out)
        if not exists:
            healthy = False
            continue
        for label, ok, detail in of(profile).status(handle[c.name], s.runner, c):
            healthy = healthy and ok
            print(f"    {'ok ' if ok else 'NO '} {label}: {detail}", file=s.out)
    return healthy


def scenario_of_lab(home: Path, profile: str | None = None) -> Scenario[Profile]:
    """The scenario of `profile`, else of the profile the lab in `home` was built with, else the default one's
    (`lab doctor` reads with the scenario's own doctor)."""
    if profile is not None:
        return owner_of(profile)
    if (home / "state.json").exists():
        name = (State.load(home).profile or {}).get("name")
        if name in profiles():
            return owner_of(name)
    return owner_of(DEFAULT_PROFILE)
