"""Scenarios as the engine sees them, and where it finds them.

A scenario is one package under lab/scenarios/ plus its `manifests/<name>/` folder. Its package exports a
`Scenario` record: its profiles, the steps `lab up` and `lab uninstall` run, and what `lab status`, `lab doctor` and
`lab faults` show. The engine never imports a scenario: it finds each through its entry point in the
`istio_multicluster_lab.scenarios` group (pyproject.toml `[project.entry-points]`), so adding one touches its package,
its manifests folder and that one line (docs/extending.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TextIO

from lab.cluster import ClusterHandle
from lab.errors import LabError, UsageError
from lab.plan import Paths, Step
from lab.profile import P, ProfileBase, apply_overrides
from lab.shell import Runner

ENTRY_POINTS = "istio_multicluster_lab.scenarios"
DEFAULT_PROFILE = "default"

StatusRows = list[tuple[str, bool, str]]  # (what, ok, detail) per line of `lab status`


@dataclass(frozen=True)
class Scenario(Generic[P]):
    """What the engine needs from a scenario; every callable takes the scenario's own profile type."""

    name: str  # as on the command line and the manifests/<name>/ folder
    title: str  # one line for `lab scenarios`
    profiles: Mapping[str, P]
    default_profile: str  # the profile `--scenario NAME` picks
    build: Callable[[P, Paths], list[Step]]  # the steps of `lab up`
    build_uninstall: Callable[[P, Paths], list[Step]]  # the steps of `lab uninstall`
    uninstall_forgets: tuple[str, ...]  # phases of `build` whose recorded steps `lab uninstall` undoes
    proof: Callable[[P], str]  # what `lab up`'s last step proves: "curl HOST:PORT/headers from CLUSTER/NS/APP"
    config_hosts: str  # `lab configdump`'s host query when none is given: "*.SUFFIX", every name of its services
    # `lab status` rows for one cluster (the profile's cluster type), through the lab's handle on it; the runner is
    # for rows a scenario reads with kubectl (`ClusterHandle.kubectl(runner)`: the same kubeconfig and context)
    status: Callable[[ClusterHandle, Runner, Any], StatusRows]
    doctor: Callable[[str | None, Path, bool, TextIO], int]  # `lab doctor`: (profile, home, --json, out) -> exit code
    faults_table: Callable[[], str]  # the fault catalogue as Markdown (`lab faults table`)
    with_faults_table: Callable[[str], str]  # a README text with that table put in its place
    add_commands: Callable[[argparse._SubParsersAction[Any]], None] | None = None  # the scenario's own subcommands


@cache
def scenarios() -> dict[str, Scenario[Any]]:
    """Every installed scenario by name (sorted), from the entry points."""
    found: dict[str, Scenario[Any]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        obj = ep.load()
        if not isinstance(obj, Scenario) or obj.name != ep.name:
            raise LabError(f"entry point {ep.name} = {ep.value} is not a Scenario named {ep.name!r}")
        found[ep.name] = obj
    if not found:
        raise LabError(f"no scenario is installed (entry points {ENTRY_POINTS}): install the project with "
                       "`make venv` (or `pip install -e .`) and run it again")
    return found


@cache
def profiles() -> dict[str, Scenario[Any]]:
    """profile name -> its scenario; a name two scenarios both use is an installation error. Computed once, like
    `scenarios()` (a test that changes the entry points clears both caches)."""
    out: dict[str, Scenario[Any]] = {}
    for s in scenarios().values():
        for name in s.profiles:
            if name in out:
                raise LabError(f"profile {name!r} is defined by both {out[name].name} and {s.name}; rename one")
            out[name] = s
    return out


def get(name: str) -> Scenario[Any]:
    known = scenarios()
    if name not in known:
        raise UsageError(f"unknown scenario {name!r}; choose one of: {', '.join(known)}")
    return known[name]


def of(profile: ProfileBase) -> Scenario[Any]:
    """The scenario a profile belongs to."""
    return get(profile.scenario)


def owner_of(name: str) -> Scenario[Any]:
    """The scenario that defines the profile `name`; UsageError naming every known profile."""
    by_name = profiles()
    if name not in by_name:
        raise UsageError(f"unknown profile {name!r}; choose one of: {', '.join(sorted(by_name))}")
    return by_name[name]


def load_profile(name: str | None = None, overrides: dict[str, str] | None = None, *,
                 scenario: str | None = None) -> ProfileBase:
    """The named profile (or `scenario`'s default, or the lab's default) with `overrides` applied and checked."""
    if name is None:
        name = get(scenario).default_profile if scenario else DEFAULT_PROFILE
    owner = owner_of(name)
    if scenario is not None and owner.name != scenario:
        raise UsageError(f"profile {name!r} belongs to scenario {owner.name}, not {scenario}; leave one of "
                         "--profile and --scenario out")
    profile: ProfileBase = apply_overrides(owner.profiles[name], overrides)
    return profile

