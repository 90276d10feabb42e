"""Golden tests of `lab plan` and `lab plan --shell` (default profile and an override), and checks that the
script is bash a person can run: it parses (`bash -n`), and replayed against stand-in tools it runs every
step with the run-time values substituted.

Regenerate the goldens with `LAB_REGEN_GOLDEN=1 pytest tests/unit/test_plan_shell.py` and review the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import images as lab_images
from lab import kind, plan
from lab.cli import main
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, serviceentry
from lab.scenarios.replicated_control_planes import steps as rcp_steps
from lab.shell import Result
from tests.support.recording import RecordingRunner

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
PATHS = plan.Paths(Path("/home/user/lab/.lab"), Path("/home/user/.cache/istio-multicluster-lab/istio-1.7.8"),
                   Path("/home/user/lab"))
REPO = Path(__file__).resolve().parents[2]
CASES = {
    "default": ("default", {}, False),
    "istio-1.7.3": ("default", {"istio_version": "1.7.3"}, False),
    "default-uninstall": ("default", {}, True),
    "writeup": ("writeup", {}, False),
}


def render(name: str, shell: bool) -> str:
    profile_name, overrides, uninstall = CASES[name]
    profile = load_profile(profile_name, overrides=overrides)
    paths = plan.Paths(PATHS.home, PATHS.istio_dir.with_name(f"istio-{profile.istio_version}"), PATHS.repo)
    steps = (rcp_steps.build_uninstall if uninstall else rcp_steps.build)(profile, paths)
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


@pytest.mark.parametrize("name", ["default", "istio-1.7.3"])
def test_plan_json_matches_its_golden(name):
    # the goldens were written by the lab before its actions were typed (commit 0b7da49): `lab plan --json` is the same
    profile_name, overrides, _ = CASES[name]
    profile = load_profile(profile_name, overrides=overrides)
    paths = plan.Paths(PATHS.home, PATHS.istio_dir.with_name(f"istio-{profile.istio_version}"), PATHS.repo)
    check_golden(GOLDEN / f"plan-{name}.json", plan.to_json(rcp_steps.build(profile, paths)))


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


def test_runtime_values_are_jsonpath_substitutions_as_the_write_up_writes_them():
    script = render("default", True)
    for jsonpath in ("{.spec.clusterIP}", "{.items[0].status.hostIP}", "{.spec.ports[?(@.port==15443)].nodePort}"):
        assert f"-o 'jsonpath={jsonpath}')\"" in script
    # the write-up's variables, from the write-up's lookups, exported before the ServiceEntry that uses them
    host = script.index('INGRESS_HOST="$(kubectl --kubeconfig "$KUBECONFIG_CLUSTER2" --context "$CTX_CLUSTER2" get '
                        "-n istio-system pod -l istio=ingressgateway -o 'jsonpath={.items[0].status.hostIP}')\"")
    port = script.index('INGRESS_PORT="$(kubectl --kubeconfig "$KUBECONFIG_CLUSTER2" --context "$CTX_CLUSTER2" get '
                        "-n istio-system service istio-ingressgateway -o "
                        "'jsonpath={.spec.ports[?(@.port==15443)].nodePort}')\"")
    heredoc = script.index("  - address: ${INGRESS_HOST}\n    ports:\n      http1: ${INGRESS_PORT}\n")
    assert host < port < heredoc


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_script_runs_no_python(name):
    commands = [ln for ln in render(name, shell=True).splitlines() if not ln.lstrip().startswith("#")]
    assert not [ln for ln in commands if re.search(r"\bpython", ln)]


def test_only_generated_certificates_need_the_labs_python_and_the_header_says_so():
    profile = load_profile(overrides={"cert_source": "generated"})
    script = plan.render_shell(rcp_steps.build(profile, PATHS), PATHS)
    commands = [ln for ln in script.splitlines() if re.search(r"\bpython", ln) and not ln.startswith("#")]
    assert commands == ['python3 -m lab certs generate --out "$LAB_HOME/certs" --clusters cluster1,cluster2']
    header = script.split("set -euo pipefail", 1)[0]
    assert "python3 -m lab certs generate" in header and "Runs no Python except" in header


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
    assert out == plan.render_shell(rcp_steps.build(profile, paths), paths)
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
  *" apply -n foo -f -"*) cat > "$LOG.serviceentry-foo" ;;
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
    script = tmp_path / "plan.sh"
    script.write_text(render(name, shell=True))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log"),
           "LAB_HOME": str(tmp_path / "home"), "ISTIO_DIR": str(tmp_path / "istio"), "LAB_REPO": str(REPO),
           "PYTHONPATH": str(REPO)}
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
        # the heredoc, filled from the stand-in lookups, is the object the lab itself applies
        applied = yaml.safe_load((tmp_path / "log.serviceentry-foo").read_text())
        svc = serviceentry.RemoteService("httpbin", "bar")
        assert applied == serviceentry.render_client(svc, "240.0.0.2", "172.18.0.3", 31443)
    else:
        assert "delete ns foo" in log and "delete ns bar" in log


def _step_lines(profile_name: str, step_id: str) -> list[str]:
    steps = rcp_steps.build(load_profile(profile_name), PATHS)
    (step,) = [s for s in steps if s.id == step_id]
    return plan._shell_lines(step, plan.contexts_of(steps))


@pytest.mark.parametrize("step_id", ["cluster1/ns-istio-system", "cluster2/serviceentry"])
def test_the_scripts_envsubst_line_applies_the_object_the_lab_applies(step_id, tmp_path):
    # the real envsubst on the real file in $LAB_REPO; kubectl keeps what it is given on stdin
    steps = rcp_steps.build(load_profile(), PATHS)
    (step,) = [s for s in steps if s.id == step_id]
    assert isinstance(step.run.source, plan.Template)
    fake = 'kubectl() { cat > "$OUT"; }\n'
    script = "set -euo pipefail\n" + fake + "\n".join(plan._shell_lines(step, plan.contexts_of(steps))) + "\n"
    env = {"PATH": os.environ["PATH"], "LAB_REPO": str(REPO), "OUT": str(tmp_path / "applied"),
           "KUBECONFIG_CLUSTER1": "k", "CTX_CLUSTER1": "c", "KUBECONFIG_CLUSTER2": "k", "CTX_CLUSTER2": "c"}
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    applied = (tmp_path / "applied").read_text()
    assert yaml.safe_load(applied) == yaml.safe_load(step.run.source.yaml)
    assert applied.endswith(step.run.source.yaml)  # the file's header comments, then the lab's object byte for byte


@pytest.mark.parametrize(("vector", "passes"), [("minikube-15573_fedora36-ok.rules", True),
                                                ("minikube-15573_fedora37-broken.rules", False),
                                                ("kind-2326_container-on-kind-network.iptables-save", True)])
def test_the_shell_3054_check_agrees_with_the_python_one(vector, passes):
    lines = _step_lines("writeup", "cluster1/cluster")
    first = next(i for i, ln in enumerate(lines) if ln.startswith("if docker exec"))
    check = "\n".join(lines[first:lines.index("fi", first) + 1])
    rules = Path(__file__).resolve().parents[1] / "data" / "kind" / "iptables" / vector
    script = check.replace("docker exec cluster1-control-plane iptables-save -t nat", f"cat {rules}")
    assert (subprocess.run(["bash", "-c", script], capture_output=True).returncode == 0) is passes
    assert (kind.dns_dnat_problem(rules.read_text()) is None) is passes


def _corefile_vectors() -> list[Path]:
    """The real Corefiles the lab's own patch accepts (templates and refused shapes are
    lab/scenarios/replicated_control_planes/corefile.py's tests)."""
    out = []
    for path in sorted((Path(__file__).resolve().parents[1] / "data" / "corefile").glob("*.Corefile")):
        text = path.read_text(encoding="utf-8")
        try:
            corefile.patch(text, "10.255.10.53")
        except corefile.CorefileError:
            continue
        out.append(path)
    return out


def _replay_corefile_step(tmp_path: Path, live: str, aaaa_guard: bool = True) -> str:
    """The script's Corefile commands under bash, with kubectl answering the live Corefile and the ClusterIP."""
    steps = rcp_steps.build(load_profile(overrides={} if aaaa_guard else {"aaaa_guard": "false"}), PATHS)
    (step,) = [s for s in steps if s.id == "cluster1/coredns-global"]
    (tmp_path / "live").write_text(live, encoding="utf-8")
    fake = ("kubectl() { case \"$*\" in *'jsonpath={.data.Corefile}'*) cat \"$LIVE\" ;; "
            "*'istiocoredns -o jsonpath={.spec.clusterIP}'*) printf 10.255.10.53 ;; *) cat > /dev/null ;; esac; }\n")
    script = "set -euo pipefail\n" + fake + "\n".join(plan._shell_lines(step, plan.contexts_of(steps))) + "\n"
    env = {"PATH": os.environ["PATH"], "LAB_HOME": str(tmp_path), "LIVE": str(tmp_path / "live"),
           "KUBECONFIG_CLUSTER1": "k", "CTX_CLUSTER1": "c"}
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return (tmp_path / "cluster1.Corefile").read_text(encoding="utf-8")


@pytest.mark.parametrize("vector", _corefile_vectors(), ids=lambda p: p.name)
def test_the_scripts_corefile_commands_make_what_the_labs_patch_makes(vector, tmp_path):
    live = vector.read_text(encoding="utf-8")
    got = _replay_corefile_step(tmp_path, live)
    want = corefile.patch(live, "10.255.10.53")
    if corefile.global_block(live) is None:
        # byte for byte: the block appended after the untouched live Corefile; a heredoc always ends its last line,
        # where the lab keeps a Corefile that had no final newline without one
        assert got == (want if live.endswith("\n") else want + "\n")
    else:
        # A `global` block already there: the lab replaces it in place, the script drops it and appends its own.
        # Same server blocks, same `global` block, everything else untouched.
        assert corefile.global_block(got) == corefile.global_block(want)
        assert corefile.unpatch(got).strip() == corefile.unpatch(want).strip()


def test_replaying_the_scripts_corefile_commands_twice_changes_nothing(tmp_path):
    live = (Path(__file__).resolve().parents[1] / "data" / "corefile" /
            "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile").read_text(encoding="utf-8")
    once = _replay_corefile_step(tmp_path, live)
    assert _replay_corefile_step(tmp_path, once) == once == corefile.patch(once, "10.255.10.53")


def test_the_scripts_corefile_commands_leave_out_the_aaaa_guard_when_the_profile_does(tmp_path):
    live = "{.:53 {\n    forward . /etc/resolv.conf\n}\n"[1:]
    assert _replay_corefile_step(tmp_path, live, aaaa_guard=False) == corefile.patch(live, "10.255.10.53",
                                                                                       aaaa_guard=False)


def test_the_script_loads_each_image_with_the_same_docker_29_fallback_as_lab_up(tmp_path):
    lines = _step_lines("default", "cluster1/images-load")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # kind load docker-image fails as with Docker 29's containerd image store (kind #3795); the rest succeeds
    (bindir / "kind").write_text('#!/usr/bin/env bash\necho "kind $*" >> "$LOG"\n'
                                 '[ "$1 $2" != "load docker-image" ] || { echo "ctr: content digest not found" >&2; '
                                 'exit 1; }\n')
    (bindir / "docker").write_text('#!/usr/bin/env bash\necho "docker $*" >> "$LOG"\n')
    for tool in ("kind", "docker"):
        (bindir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log"),
           "LAB_HOME": str(tmp_path / "home")}
    res = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(lines)], capture_output=True, text=True,
                         env=env)
    assert res.returncode == 0, res.stderr
    shell_calls = [tuple(ln.split()) for ln in (tmp_path / "log").read_text().splitlines()]
    # what lab up runs (lab.kind.KindProvider.load_images) for the same images, with the same failure
    runner = RecordingRunner(answers={("kind", "load", "docker-image"): Result(("kind",), 1, "", "ctr: not found")})
    tools = type("T", (), {"kind": "kind", "kubectl": "kubectl"})()
    provider = kind.KindProvider(load_profile(), tmp_path / "state", tools, runner)
    images = lab_images.image_list(load_profile())
    provider.load_images(load_profile().clusters[0], images, "linux/amd64")

    def shape(call: tuple[str, ...]) -> tuple[str, ...]:  # the archive's path differs (a temporary directory)
        return tuple("ARCHIVE" if a.endswith(".tar") else a for a in call)

    assert [shape(c) for c in shell_calls] == [shape(c) for c in runner.calls]
    assert sum(c[:3] == ("docker", "image", "save") for c in shell_calls) == len(images)
