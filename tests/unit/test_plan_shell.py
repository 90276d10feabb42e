"""Golden tests of `lab plan` and `lab plan --shell` (default profile and an override), and checks that the
script is bash a person can run: it parses (`bash -n`), and replayed against stand-in tools it runs every
step with the run-time values substituted.

Regenerate the goldens with `LAB_REGEN_GOLDEN=1 pytest tests/unit/test_plan_shell.py` and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import plan
from lab.cli import main
from lab.profile import load_profile

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
PATHS = plan.Paths(Path("/home/user/lab/.lab"), Path("/home/user/.cache/istio-multicluster-lab/istio-1.7.8"))
CASES = {
    "default": ("default", {}, False),
    "istio-1.7.3": ("default", {"istio_version": "1.7.3"}, False),
    "default-uninstall": ("default", {}, True),
    "writeup": ("writeup", {}, False),
}


def render(name: str, shell: bool) -> str:
    profile_name, overrides, uninstall = CASES[name]
    profile = load_profile(profile_name, overrides=overrides)
    paths = plan.Paths(PATHS.home, PATHS.istio_dir.with_name(f"istio-{profile.istio_version}"))
    steps = (plan.build_uninstall if uninstall else plan.build)(profile, paths)
    if not shell:
        return plan.render_text(steps)
    return plan.render_shell(steps, paths, title="lab uninstall" if uninstall else "lab up", unset=uninstall)


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("LAB_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path.name} changed; review and regenerate (see docstring)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_shell_script_matches_its_golden(name):
    check_golden(GOLDEN / f"plan-{name}.sh", render(name, shell=True))


@pytest.mark.parametrize("name", ["default", "istio-1.7.3"])
def test_plan_listing_matches_its_golden(name):
    check_golden(GOLDEN / f"plan-{name}.txt", render(name, shell=False))


def test_the_writeup_profile_checks_kind_3054_after_creating_each_node():
    script = render("writeup", True)
    assert script.count("kind #3054") == 4  # a comment and a message per cluster
    assert "docker exec cluster1-control-plane iptables-save -t nat" in script
    assert "kind #3054" not in render("default", True)


def test_the_override_changes_exactly_the_istio_version_dependent_lines():
    a = render("default", True).splitlines()
    b = render("istio-1.7.3", True).splitlines()
    changed = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert changed, "an override must show in the script"
    for x, y in changed:
        assert x.replace("1.7.8", "1.7.3") == y


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_script_is_valid_bash(name, tmp_path):
    script = tmp_path / "plan.sh"
    script.write_text(render(name, shell=True))
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_every_kubectl_and_istioctl_line_names_its_cluster():
    for line in render("default", True).splitlines():
        if line.startswith("#"):
            continue
        for m in re.finditer(r"\b(kubectl|istioctl) ", line):
            rest = line[m.end():m.end() + 200]
            assert re.search(r'--kubeconfig[ =]"\$KUBECONFIG_CLUSTER\d"', rest) or \
                re.search(r'--context "\$CTX_CLUSTER\d"', rest) or "install -f" in rest, line
    script = render("default", True)
    assert 'export CTX_CLUSTER1=kind-cluster1' in script and 'export CTX_CLUSTER2=kind-cluster2' in script
    assert "~/.kube" not in script.replace("never ~/.kube/config", "")


def test_runtime_values_are_jsonpath_substitutions_and_computed_values_call_the_lab_cli():
    script = render("default", True)
    for jsonpath in ("{.spec.clusterIP}", "{.items[0].status.hostIP}", "{.spec.ports[?(@.port==15443)].nodePort}"):
        assert f"-o 'jsonpath={jsonpath}')\"" in script
    assert "| python -m lab corefile patch --forward \"$(kubectl" in script
    assert "python -m lab serviceentry render --host httpbin.bar.global --vip 240.0.0.2" in script


def test_the_ca_key_is_never_in_the_script():
    script = render("default", True)
    assert "PRIVATE KEY" not in script
    assert '--from-file "$ISTIO_DIR/samples/certs/ca-key.pem"' in script


def test_cli_plan_shell_prints_the_same_script(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "cache"))
    assert main(["plan", "--shell", "--set", "istio_version=1.7.3"]) == 0
    out = capsys.readouterr().out
    profile = load_profile(overrides={"istio_version": "1.7.3"})
    paths = plan.Paths(tmp_path / "home", tmp_path / "cache" / "istio-1.7.3")
    assert out == plan.render_shell(plan.build(profile, paths), paths)
    assert not (tmp_path / "home").exists() and not (tmp_path / "cache").exists(), "plan creates nothing"


def test_cli_plan_rejects_a_bad_override_in_one_line(capsys):
    assert main(["plan", "--set", "istio_version=1.8.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab: error: istio_version '1.8.0'") and "\n" not in err


STAND_INS = {
    # Each tool logs its argv; kubectl answers the lookups the script makes, as a cluster would.
    "kubectl": r'''#!/usr/bin/env bash
echo "kubectl $*" >> "$LOG"
case "$*" in
  *"jsonpath={.data.Corefile}"*) printf '.:53 {\n    errors\n    forward . /etc/resolv.conf\n}\n' ;;
  *"istiocoredns -o jsonpath={.spec.clusterIP}"*) echo 10.255.10.53 ;;
  *"kube-dns -o jsonpath={.spec.clusterIP}"*) echo 10.255.10.10 ;;
  *"jsonpath={.items[0].status.hostIP}"*) echo 172.18.0.3 ;;
  *"nodePort}"*) echo 31443 ;;
  *"--sort-by=.metadata.creationTimestamp -o jsonpath={.items[-1:].metadata.name}"*) echo sleep-1 ;;
  *" apply "*) cat > /dev/null ;;
esac
''',
    "istioctl": '#!/usr/bin/env bash\necho "istioctl $*" >> "$LOG"\n',
    "kind": r'''#!/usr/bin/env bash
echo "kind $*" >> "$LOG"
case "$1 $2" in
  "get clusters") cat "$LOG.clusters" 2>/dev/null || true ;;
  "create cluster") echo "${3#--name=}" >> "$LOG.clusters" ;;
esac
''',
    "docker": '#!/usr/bin/env bash\necho "docker $*" >> "$LOG"\n',
}


@pytest.mark.parametrize("name", ["default", "default-uninstall"])
def test_the_script_replays_against_stand_in_tools(name, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool, body in STAND_INS.items():
        (bindir / tool).write_text(body)
        (bindir / tool).chmod(0o755)
    # `python -m lab` in the script is the lab's own CLI, as the person replaying it has it.
    (bindir / "python").write_text(f'#!/usr/bin/env bash\nexec {shutil.which(sys.executable) or sys.executable} "$@"\n')
    (bindir / "python").chmod(0o755)
    script = tmp_path / "plan.sh"
    script.write_text(render(name, shell=True))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log"),
           "LAB_HOME": str(tmp_path / "home"), "ISTIO_DIR": str(tmp_path / "istio"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    log = (tmp_path / "log").read_text()
    if name == "default":
        assert log.count("istioctl install") == 2
        # replaying again is safe: the clusters are reused, not created twice
        again = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "log").read_text().count("kind create cluster") == 2
        assert (tmp_path / "home" / "cluster1.Corefile").read_text().count("forward . 10.255.10.53:53") == 1
        assert "kubectl --kubeconfig" in log and "exec -n foo sleep-1 -c sleep" in log
    else:
        assert "delete ns foo" in log and "delete ns bar" in log
