"""Root pytest configuration: the lab's own options (prefixed --lab-; pytest-kind owns --keep-cluster,
--kubeconfig and --cluster-name)."""

from __future__ import annotations

import os

try:
    from hypothesis import settings
except ImportError:  # the e2e suite can run without the test extras
    settings = None

if settings is not None:
    # CI: the same examples on every run (a property failure must not turn CI red at random) and no per-example
    # deadline (a loaded 2-core machine is not a bug). Locally hypothesis explores, and remembers what it found.
    settings.register_profile("ci", derandomize=True, deadline=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")


def pytest_addoption(parser):
    group = parser.getgroup("lab", "istio-multicluster-lab")
    # The scenario under test comes from the profile: --lab-profile names one (of any scenario), --lab-scenario picks
    # that scenario's default profile; both default to the environment (LAB_E2E_PROFILE, LAB_E2E_SCENARIO), then to
    # the lab's default profile (tests/e2e/conftest.py).
    group.addoption("--lab-profile", default=os.environ.get("LAB_E2E_PROFILE") or None,
                    help="lab profile for e2e tests (default, writeup, multi-primary; env LAB_E2E_PROFILE)")
    group.addoption("--lab-scenario", default=os.environ.get("LAB_E2E_SCENARIO") or None,
                    help="scenario for e2e tests, with its default profile (replicated-control-planes, "
                         "multi-primary-multi-network; env LAB_E2E_SCENARIO)")
    group.addoption("--lab-keep", action="store_true", help="keep the lab after the e2e session")
    group.addoption("--lab-artifacts", default="artifacts", help="directory for e2e failure artifacts")
    group.addoption("--lab-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile value for e2e (repeatable), e.g. istio_version=1.7.3")
