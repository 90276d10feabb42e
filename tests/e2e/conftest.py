"""Fixtures of the e2e suite: one lab per session (reused when healthy, else built as `lab up` builds it), the
Docker gate, artifacts on failure.

Options (registered in the root conftest.py): --lab-profile, --lab-set KEY=VALUE (e.g. istio_version=1.7.3),
--lab-keep, --lab-artifacts. JUnit XML comes from pytest's own --junitxml. Durations: a "lab e2e" section at the
end lists every test's setup + call + teardown time (and `make e2e` passes --durations=0).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import LabError
from lab.profile import parse_overrides
from lab.scenario import load_profile
from lab.shell import Runner
from tests.e2e import artifacts
from tests.e2e.session import LabSession, docker_problem

E2E_DIR = Path(__file__).parent
_SESSION_KEY = pytest.StashKey[LabSession]()
_DURATIONS_KEY = pytest.StashKey[dict[str, float]]()
_SETUP_DUMPED_KEY = pytest.StashKey[bool]()


def _in_suite(item: pytest.Item) -> bool:
    return E2E_DIR in item.path.parents


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if _in_suite(i)]
    if not mine:
        return
    # The reinstall lane is the slowest: run it last, after everything that needs only a healthy lab.
    items.sort(key=lambda i: _in_suite(i) and i.get_closest_marker("reinstall") is not None)
    for item in mine:
        item.add_marker(pytest.mark.e2e)
    try:  # a bad --lab-profile/--lab-set is a usage error before anything else, Docker or not
        _profile(config)
    except LabError as err:
        raise pytest.UsageError(f"e2e: {err}") from err
    if config.option.collectonly:
        return
    # One cheap check for the whole suite: without a Docker daemon there is no lab, so nothing runs and nothing
    # errors; every test is skipped with the same precise reason.
    problem = docker_problem(Runner())
    if problem:
        skip = pytest.mark.skip(reason=problem)
        for item in mine:
            item.add_marker(skip)


def _profile(config: pytest.Config):
    overrides = parse_overrides(config.getoption("--lab-set"))
    return load_profile(config.getoption("--lab-profile"), overrides), overrides


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
