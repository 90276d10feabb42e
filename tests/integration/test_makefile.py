"""The Makefile's bootstrap on a Python without ensurepip (Debian/Ubuntu without python3-venv): one line naming the
package to install, a non-zero exit, and no half-made virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]


def _python_without_ensurepip(tmp_path: Path) -> Path:
    # What Debian's python3 without python3-venv does: ensurepip cannot be imported, the rest of Python works.
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/bash\n"
                    "case \"$*\" in *ensurepip*) echo \"ModuleNotFoundError: No module named 'ensurepip'\" >&2; "
                    "exit 1;; esac\n"
                    f"exec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    return fake


def test_make_without_python3_venv_names_the_package_and_creates_no_venv(tmp_path):
    venv = tmp_path / "venv"
    res = subprocess.run(["make", "-s", "venv", f"PYTHON={_python_without_ensurepip(tmp_path)}", f"VENV={venv}"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    ours = [ln for ln in res.stderr.splitlines() if ln.startswith("make: ") and "***" not in ln]
    assert len(ours) == 1, res.stderr
    assert "sudo apt install python3-venv" in ours[0]
    assert f"python{sys.version_info[0]}.{sys.version_info[1]}-venv" in ours[0]
    assert not venv.exists()
