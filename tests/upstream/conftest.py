"""The upstream lane (`make test-upstream`): Istio's and CoreDNS's own code, and musl's resolver, as local
processes. Every test here is marked `upstream`; without the Go toolchain the Go-built components skip with the
reason, so `make test` stays green for a user without Go."""

from __future__ import annotations

import pytest

from tests.upstream.gobuild import LOG, BuildError, go_executable


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/upstream/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.upstream)


def pytest_terminal_summary(terminalreporter):
    if LOG.entries or LOG.versions or LOG.notes:
        terminalreporter.section("upstream components")
        for name, how in LOG.entries:
            terminalreporter.write_line(f"{name}: {how}")
        for name, version in LOG.versions:
            terminalreporter.write_line(f"ran {name}: {version}")
        for name, note in LOG.notes:
            terminalreporter.write_line(f"{name}: {note}")


@pytest.fixture(scope="session")
def require_go() -> str:
    go = go_executable()
    if go is None:
        pytest.skip("the Go toolchain (go) is not on PATH: the upstream lane builds istioctl, pilot and CoreDNS "
                    "from their Go modules; install Go 1.26 to run it")
    return go


def built(factory, *args, **kwargs):
    """Call a gobuild factory; a build failure fails the test with the command and its output's tail."""
    try:
        return factory(*args, **kwargs)
    except BuildError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def kube_plane(require_go):
    """etcd and two kube-apiservers v1.36.1 (clusters cluster1 and cluster2 with the multi-primary profile's
    Service ranges) as local processes (tests/upstream/kubeapi.py), stopped and removed at the session's end."""
    from lab.scenarios.multi_primary_multi_network.profiles import PROFILES
    from tests.upstream import kubeapi

    apiserver, etcd = built(kubeapi.build)
    cidrs = {c.name: c.service_subnet for c in PROFILES["multi-primary"].clusters}
    try:
        plane = kubeapi.start(apiserver, etcd, cidrs)
    except kubeapi.StartError as err:
        pytest.fail(str(err), pytrace=False)
    yield plane
    plane.stop()
