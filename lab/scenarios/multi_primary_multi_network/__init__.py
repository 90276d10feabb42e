"""Istio 1.30 "multi-primary on different networks" on two kind clusters (issue 11): one istiod per cluster, one
shared root CA, east-west gateways on 15443 with AUTO_PASSTHROUGH and MetalLB addresses, endpoint discovery through
remote secrets, DNS proxying in the sidecar; curl in cluster1 calls httpbin that runs only in cluster2.

The package holds everything specific to the scenario: its names (names.py), profiles (profiles.py), steps
(steps.py, actions.py, istio.py, kindconfig.py), MetalLB arithmetic (metallb.py), `lab status` rows and doctor hops
(status.py, doctor.py) and fault catalogue (faults.py); its objects are files in manifests/multi-primary-multi-network/.
`SCENARIO` is what the engine finds through the entry point. status, doctor and faults are imported when called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, TextIO

from lab.cluster import ClusterHandle
from lab.errors import LabError
from lab.scenario import Scenario
from lab.scenarios.multi_primary_multi_network import actions, names, steps
from lab.scenarios.multi_primary_multi_network.profiles import PROFILES, ClusterSpec, Profile
from lab.shell import Runner


def _proof(profile: Profile) -> str:
    return (f"curl {names.SERVER_HOST}:{names.SERVER_PORT}/headers from {profile.client.name}/{names.APP_NS}/"
            f"{names.CLIENT_APP}")


def _part(module: str) -> Any:
    """One of the package's modules that the engine needs only for `lab status`, `lab doctor` and `lab faults`,
    imported when one of those runs."""
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{module}":
            raise
        raise LabError(f"the {names.SCENARIO} scenario has no {module}.py in this checkout; update the lab") from None


def _status(h: ClusterHandle, runner: Runner, cluster: ClusterSpec) -> list[tuple[str, bool, str]]:
    """Its rows run kubectl, on the handle's kubeconfig and context."""
    rows: list[tuple[str, bool, str]] = _part("status").rows(h.kubectl(runner), cluster)
    return rows


def _doctor(profile: str | None, home: Path, as_json: bool, out: TextIO) -> int:
    return int(_part("doctor").command(profile, home, as_json, out))


def _faults_table() -> str:
    return str(_part("faults").catalogue_table())


def _with_faults_table(text: str) -> str:
    return str(_part("faults").with_catalogue_table(text))


SCENARIO: Scenario[Profile] = Scenario(
    name=names.SCENARIO,
    title="Istio 1.30, multi-primary on different networks: east-west gateways, remote secrets, DNS proxying",
    profiles=PROFILES,
    default_profile="multi-primary",
    build=steps.build,
    build_uninstall=steps.build_uninstall,
    uninstall_forgets=("remote-secrets", "apps", "verify"),
    proof=_proof,
    config_hosts=names.SERVICE_HOSTS,
    status=_status,
    doctor=_doctor,
    faults_table=_faults_table,
    with_faults_table=_with_faults_table,
    add_commands=actions.add_commands,
)
