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
    group.addoption("--lab-profile", default="default", help="lab profile for e2e tests (default, writeup)")
    group.addoption("--lab-keep", action="store_true", help="keep the lab after the e2e session")
    group.addoption("--lab-artifacts", default="artifacts", help="directory for e2e failure artifacts")
    group.addoption("--lab-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile value for e2e (repeatable), e.g. istio_version=1.7.3")
