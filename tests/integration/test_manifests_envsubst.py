"""manifests/README.md's promise: a script can fill the template files with `sed` and `envsubst` directly."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lab import manifests
from lab.scenarios.replicated_control_planes.names import SCENARIO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("envsubst") is None, reason="needs envsubst (GNU gettext)")]


@pytest.mark.parametrize("name", manifests.names(SCENARIO))
def test_envsubst_renders_each_file_as_the_renderer_does(name):
    # Drop the header (up to the first empty line), fill the variables from the environment.
    values = {v: f"v-{v.lower().replace('_', '-')}" for v in manifests.variables(name, SCENARIO)}
    body = subprocess.run(["sed", "1,/^$/d", str(manifests.folder(SCENARIO) / name)], check=True, capture_output=True,
                          text=True).stdout
    out = subprocess.run(["envsubst"], input=body, check=True, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], **values})
    assert out.stdout == manifests.render(name, SCENARIO, **values)
