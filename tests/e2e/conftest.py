"""Fixtures of the e2e suite: the scenario under test, one lab per session (reused when healthy, else built as `lab
up` builds it), the Docker gate, artifacts on failure.

Options (registered in the root conftest.py): --lab-profile (env LAB_E2E_PROFILE), --lab-scenario (env
LAB_E2E_SCENARIO: that scenario's default profile), --lab-set KEY=VALUE (e.g. istio_version=1.7.3), --lab-keep,
--lab-artifacts. JUnit XML comes from pytest's own --junitxml. Durations: a "lab e2e" section at the end lists every
test's setup + call + teardown time (and `make e2e` passes --durations=0).

The suite collects both scenarios' tests; each module carries its scenario's marker (`replicated_control_planes`,
`multi_primary_multi_network`: tests.e2e.helpers.marker_of), so `-m` selects one scenario's. The scenario under
test is the profile's: a test of the other scenario is skipped, saying which is under test and how to pick its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import LabError
from lab.profile import parse_overrides
from lab.scenario import load_profile
from lab.shell import Runner
from tests.e2e import artifacts
from tests.e2e.helpers import MARKERS, skip_reason
from tests.e2e.session import LabSession, docker_problem

E2E_DIR = Path(__file__).parent
_SESSION_KEY = pytest.StashKey[LabSession]()
_DURATIONS_KEY = pytest.StashKey[dict[str, float]]()
_SETUP_DUMPED_KEY = pytest.StashKey[bool]()


def _in_suite(item: pytest.Item) -> bool:
    return E2E_DIR in item.path.parents


def scenario_of(item: pytest.Item) -> str:
    """The scenario whose marker the test carries; exactly one, or the suite is wrong (a usage error)."""
    found = sorted({m.name for m in item.iter_markers() if m.name in MARKERS})
    if len(found) != 1:
        raise pytest.UsageError(f"e2e: {item.nodeid} carries {', '.join(found) or 'no'} scenario marker(s); mark its "
                                f"module with exactly one of {', '.join(sorted(MARKERS))}")
    return MARKERS[found[0]]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if _in_suite(i)]
    if not mine:
        return
    # The reinstall lane is the slowest: run it last, after everything that needs only a healthy lab.
    items.sort(key=lambda i: _in_suite(i) and i.get_closest_marker("reinstall") is not None)
    for item in mine:
        item.add_marker(pytest.mark.e2e)
    try:  # a bad --lab-profile/--lab-scenario/--lab-set is a usage error before anything else, Docker or not
        profile, _ = _profile(config)
    except LabError as err:
        raise pytest.UsageError(f"e2e: {err}") from err
    reasons = {item.nodeid: skip_reason(scenario_of(item), profile.scenario, profile.name) for item in mine}
    if config.option.collectonly:
        return
    # A test of the other scenario cannot run against this lab: skipped, saying which scenario is under test. The
    # suite's reasons go first (append=False), before a test's own skip mark: pytest reports the first one.
    for item in mine:
        reason = reasons[item.nodeid]
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason), append=False)
    # One cheap check for the scenario's tests: without a Docker daemon there is no lab, so nothing runs and nothing
    # errors; every one of them is skipped with the same precise reason.
    runnable = [item for item in mine if not reasons[item.nodeid]]
    problem = docker_problem(Runner()) if runnable else None
    if problem:
        skip = pytest.mark.skip(reason=problem)
        for item in runnable:
            item.add_marker(skip, append=False)


def _profile(config: pytest.Config):
    overrides = parse_overrides(config.getoption("--lab-set"))
    profile = load_profile(config.getoption("--lab-profile"), overrides, scenario=config.getoption("--lab-scenario"))
    return profile, overrides


@pytest.fixture(scope="session")
def artifacts_dir(pytestconfig: pytest.Config) -> Path:
    path = Path(pytestconfig.getoption("--lab-artifacts")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def lab_session(pytestconfig: pytest.Config, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    profile, overrides = _profile(pytestconfig)  # checked at collection already
    session = LabSession(profile=profile, runner=Runner(), artifacts=artifacts_dir, overrides=overrides,
                         keep=pytestconfig.getoption("--lab-keep"), workdir=tmp_path_factory.mktemp("lab-faults"))
    pytestconfig.stash[_SESSION_KEY] = session
    session.start()
    yield session
    session.stop()


@pytest.fixture()
def lab(lab_session: LabSession) -> LabSession:
    """The session's lab, rebuilt first if an earlier test left it unhealthy (a failed fault restore)."""
    lab_session.ensure_healthy()
    return lab_session


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if _in_suite(item) and not report.skipped:
        # Every phase counts: the lab build runs in the first test's setup, a fault's restore in its body.
        durations = item.config.stash.setdefault(_DURATIONS_KEY, {})
        durations[item.nodeid] = durations.get(item.nodeid, 0.0) + report.duration
    # Setup too: a lab that could not be rebuilt after a failed restore fails there, and is worth seeing; but only
    # the first time, since every later test then fails its setup the same way.
    if report.when in ("setup", "call") and report.failed and _in_suite(item):
        session = item.config.stash.get(_SESSION_KEY, None)
        first = report.when == "call" or not item.config.stash.get(_SETUP_DUMPED_KEY, False)
        if session is not None and session.kubectl and first:
            if report.when == "setup":
                item.config.stash[_SETUP_DUMPED_KEY] = True
            base = artifacts.dump_lab(session, session.artifacts / artifacts.safe_name(item.nodeid))
            report.sections.append(("artifacts", f"saved under {base}"))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    durations = config.stash.get(_DURATIONS_KEY, {})
    if not durations:
        return
    terminalreporter.section("lab e2e: duration of each test (setup + call + teardown)")
    for nodeid, seconds in durations.items():
        terminalreporter.write_line(f"{seconds:8.1f}s  {nodeid}")
