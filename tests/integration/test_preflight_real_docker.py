"""Preflight with the real docker client on a host without an engine (this project's CI): fails fast, one line."""

from __future__ import annotations

import shutil
import time

import pytest

from lab import preflight
from lab.errors import PreflightError
from lab.scenario import load_profile
from lab.shell import Runner

pytestmark = pytest.mark.integration


def test_preflight_without_a_docker_engine_fails_within_seconds_with_one_line():
    if shutil.which("docker") is None:
        pytest.skip("no docker client here; the missing-client path is covered in tests/unit/test_preflight.py")
    if Runner().run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=15).ok:
        pytest.skip("a Docker engine is reachable here; this test is for hosts without one")
    start = time.monotonic()
    with pytest.raises(PreflightError) as err:
        preflight.require(load_profile("default"), Runner())
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert msg.startswith("the Docker engine is not reachable (") and "start Docker" in msg
    assert "\n" not in msg
