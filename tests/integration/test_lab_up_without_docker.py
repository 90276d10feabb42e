"""`lab up` on a machine without a Docker engine (like CI's): one clear line, a non-zero exit within seconds, no
traceback, and nothing created (no $LAB_HOME, no lock, no kubeconfig, no tool cache, no ~/.kube)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _docker_engine_up() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


needs_no_engine = pytest.mark.skipif(_docker_engine_up(), reason="a Docker engine is reachable here: "
                                     "`lab up` would really build the lab")


def _run(argv: list[str], tmp_path: Path, path: str | None = None) -> tuple[subprocess.CompletedProcess, float]:
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "LAB_HOME": str(tmp_path / "home"), "LAB_CACHE": str(tmp_path / "cache"),
           "HOME": str(tmp_path / "user"), "PYTHONPATH": str(REPO)}
    env.pop("KUBECONFIG", None)
    if path is not None:
        env["PATH"] = path
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work, timeout=60)
    return res, time.monotonic() - t0


def _assert_one_line_and_nothing_created(res: subprocess.CompletedProcess, seconds: float, tmp_path: Path) -> str:
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""
    assert seconds < 15, f"took {seconds:.1f}s"
    for created in ("home", "cache", "user"):
        assert not (tmp_path / created).exists(), f"{created} was created"
    assert list((tmp_path / "work").iterdir()) == [], "nothing in the working directory (.lab, .pytest-kind)"
    return lines[0]


@needs_no_engine
def test_lab_up_without_a_docker_engine_says_so_in_one_line_and_creates_nothing(tmp_path):
    res, seconds = _run([sys.executable, "-m", "lab", "up"], tmp_path)
    line = _assert_one_line_and_nothing_created(res, seconds, tmp_path)
    assert line.startswith("lab: error: ")
    assert "docker" in line.lower()
    if shutil.which("docker"):
        assert "engine is not reachable" in line and "start Docker" in line


def test_lab_up_without_the_docker_cli_says_so_in_one_line_and_creates_nothing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res, seconds = _run([sys.executable, "-m", "lab", "up"], tmp_path, path=str(empty))
    line = _assert_one_line_and_nothing_created(res, seconds, tmp_path)
    assert line.startswith("lab: error: ") and "docker" in line.lower()


@needs_no_engine
def test_make_lab_up_shows_the_same_line(tmp_path):
    stamp = REPO / ".venv" / ".installed"
    if not shutil.which("make") or not stamp.exists() or \
            stamp.stat().st_mtime < (REPO / "pyproject.toml").stat().st_mtime:
        pytest.skip("make lab-up would first (re)build .venv (`make venv`); not done from inside the tests")
    env = {**os.environ, "LAB_HOME": str(tmp_path / "home"), "LAB_CACHE": str(tmp_path / "cache")}
    t0 = time.monotonic()
    res = subprocess.run(["make", "-s", "-C", str(REPO), "lab-up"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode != 0
    assert time.monotonic() - t0 < 30
    lab_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("lab: ")]
    assert len(lab_lines) == 1 and "docker" in lab_lines[0].lower(), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "home").exists() and not (tmp_path / "cache").exists()


def test_output_piped_into_a_reader_that_stops_early_is_not_a_traceback():
    # `python -m lab plan --shell | head -1`: the reader closes the pipe while the lab is still writing. Closing
    # our end before the child writes makes that certain (the child's write then fails with EPIPE).
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lab", "plan", "--shell"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
