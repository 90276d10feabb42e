"""Istio 1.7's replicated control planes (the write-up): each cluster its own istiod, one shared root CA, remote
services named `<name>.<namespace>.global` and resolved by istiocoredns, sleep in cluster1 calling httpbin in
cluster2 through cluster2's ingress gateway on 15443.

The package holds everything specific to the scenario: its profiles (profiles.py), steps (steps.py, actions.py,
kindconfig.py, istio.py, corefile.py, serviceentry.py), names (names.py), fault catalogue (faults.py), doctor hops
(doctor.py), `lab status` rows (status.py) and subcommands (cli.py); its objects are files in
manifests/replicated-control-planes/. `SCENARIO` is what the engine finds through the entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from lab.cluster import ClusterHandle
from lab.scenario import Scenario
from lab.scenarios.replicated_control_planes import cli, names, serviceentry, status, steps
from lab.scenarios.replicated_control_planes.profiles import PROFILES, ClusterSpec, Profile
from lab.shell import Runner


def _proof(profile: Profile) -> str:
    return (f"curl {names.REMOTE_HOST}:{names.REMOTE_PORT}/headers from {profile.client.name}/{names.CLIENT_NS}/"
            "sleep")


def _status(h: ClusterHandle, runner: Runner, cluster: ClusterSpec) -> list[tuple[str, bool, str]]:
    return status.rows(h, cluster)  # read through the API only: no kubectl, so no runner


def _doctor(profile: str | None, home: Path, as_json: bool, out: TextIO) -> int:
    from lab.scenarios.replicated_control_planes import doctor

    return doctor.command(profile, home, as_json, out)


def _faults_table() -> str:
    from lab.scenarios.replicated_control_planes import faults

    return faults.catalogue_table()


def _with_faults_table(text: str) -> str:
    from lab.scenarios.replicated_control_planes import faults

    return faults.with_catalogue_table(text)


SCENARIO: Scenario[Profile] = Scenario(
    name=names.SCENARIO,
    title="Istio 1.7, replicated control planes: .global names, istiocoredns, ServiceEntries (the write-up)",
    profiles=PROFILES,
    default_profile="default",
    build=steps.build,
    build_uninstall=steps.build_uninstall,
    uninstall_forgets=("apps", "serviceentries", "verify"),
    proof=_proof,
    config_hosts=f"*.{serviceentry.DOMAIN}",  # every remote service's name: <name>.<namespace>.global
    status=_status,
    doctor=_doctor,
    faults_table=_faults_table,
    with_faults_table=_with_faults_table,
    add_commands=cli.add_commands,
)
