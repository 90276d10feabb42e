"""Bad input to every subcommand, through the real CLI in a subprocess (issue 12, issue 8 item 19).

Each case of the battery is one row: the command, what is set up first (files, state, stand-in tools), the exit
code, and a regex on the ONE line the command writes to stderr. Every run has a temporary HOME whose
`.kube/config` must be byte-identical afterwards, its own LAB_HOME and LAB_CACHE, and a PATH holding only the
case's stand-in tools (so nothing reaches a real docker, kind or kubectl, or the network).

`test_every_command_*` walk the commands the parser has (a new command must be added to COMMANDS, so it gets the
generic cases too): standard output closed or on a full disk, standard input closed, outputs that cannot be
written. `test_two_concurrent_ups...` and `test_sigint...` run `lab up` with stand-in tools
(tests/support/standin_up.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.cli import leaf_commands

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SAMPLES = DATA / "certs" / "istio-1.7.8-samples"
COREFILE = DATA / "corefile" / "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile"
DUMP = DATA / "envoy_config_dump" / "istio-secrets-only-ROOTCA.config_dump.json"
CURL = DATA / "http_failures" / "handbook-envoy_curl-v-503-no-healthy-upstream.curl.txt"
KIND_NETWORK = DATA / "docker-network" / "kuadrant-operator-pr418.json"
KUBECONFIG_BYTES = b"# the user's own kubeconfig: the lab must never touch it\n"

pytestmark = pytest.mark.integration


# --- running the CLI -------------------------------------------------------------------------------------------
@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


_WRAP = {
    None: 'exec "$@"',
    "close-stdout": 'exec "$@" >&-',
    "close-stdin": 'exec "$@" <&-',
    "full-stdout": 'exec "$@" >/dev/full',
}


def lab(tmp: Path, *argv: str, stdin: bytes = b"", redirect: str | None = None, env: dict | None = None,
        timeout: float = 120) -> Run:
    """`python -m lab ARGV` with a temporary HOME, LAB_HOME, LAB_CACHE and a PATH of stand-ins only."""
    home = prepare(tmp)
    kubeconfig = home / ".kube" / "config"
    full_env = {"HOME": str(home), "LAB_HOME": str(tmp / "lab"), "LAB_CACHE": str(tmp / "cache"),
                "PATH": str(tmp / "bin"), "PYTHONPATH": str(REPO), "LANG": "C.UTF-8", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    res = subprocess.run(["/bin/bash", "-c", _WRAP[redirect], "lab", sys.executable, "-m", "lab", *argv],
                         input=stdin, capture_output=True, env=full_env, cwd=tmp, timeout=timeout)
    assert kubeconfig.read_bytes() == KUBECONFIG_BYTES, "~/.kube/config was changed"
    assert sorted(p.name for p in (home / ".kube").iterdir()) == ["config"], "something was written to ~/.kube"
    out, err = res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err + out, err
    return Run(res.returncode, out, err)


def prepare(tmp: Path) -> Path:
    """The temporary HOME with the user's kubeconfig, and the (empty) directory of stand-in tools."""
    home = tmp / "user"
    (home / ".kube").mkdir(parents=True, exist_ok=True)
    if not (home / ".kube" / "config").exists():
        (home / ".kube" / "config").write_bytes(KUBECONFIG_BYTES)
    (tmp / "bin").mkdir(exist_ok=True)
    return home


def one_line(run: Run, code: int, pattern: str) -> str:
    assert run.code == code, (run.code, run.stderr)
    assert len(run.lines) == 1, run.stderr
    assert re.search(pattern, run.lines[0]), (pattern, run.lines[0])
    return run.lines[0]


# --- set-ups -----------------------------------------------------------------------------------------------------
def write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return setup


def mkdir(*rels: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for rel in rels:
            (tmp / rel).mkdir(parents=True, exist_ok=True)
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)
    return setup


def state(doc: object) -> Callable[[Path], None]:
    return write("lab/state.json", doc if isinstance(doc, str) else json.dumps(doc, indent=2, sort_keys=True))


def good_state(**changes: object) -> dict:
    doc: dict = {"format": 1, "profile": {"name": "default", "overrides": {}, "fingerprint": "x"},
                 "clusters": {"cluster1": {"provider": "kind", "created_by_lab": True, "status": "created"},
                              "cluster2": {"provider": "kind", "created_by_lab": True, "status": "created"}},
                 "steps": {}}
    doc.update(changes)
    return doc


def standin(name: str, body: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / "bin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    return setup


GOOD_STATE_TEXT = json.dumps(good_state(), indent=2, sort_keys=True)
DEEP = b"[" * 100_000 + b"]" * 100_000


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    line: str | None  # a regex on the one stderr line; None: nothing on stderr
    setup: Callable[[Path], None] | None = None
    stdin: bytes = b""
    env: dict = field(default_factory=dict)
    # `certs check` reports what is wrong with the material as `problem:` lines on stdout (its documented output)
    on_stdout: bool = False


def se(*extra: str, host: str = "httpbin.bar.global", vip: str = "240.0.0.2",
       endpoint: str = "172.18.0.3:31443") -> tuple[str, ...]:
    args = ["serviceentry", "render", *extra]
    if host:
        args += ["--host", host]
    if vip:
        args += ["--vip", vip]
    if endpoint:
        args += ["--endpoint", endpoint]
    return tuple(args)


def plan_set(*sets: str) -> tuple[str, ...]:
    return ("plan", *[x for s in sets for x in ("--set", s)])


CASES = [
    # --- --set: keys, forms and values (through `plan`, which reads them as `up` does) --------------------------
    Case("set-no-equals", plan_set("istio_version"), 2, r"'istio_version' is not KEY=VALUE"),
    Case("set-empty-key", plan_set("=1.7.3"), 2, r"is not KEY=VALUE"),
    Case("set-empty-value", plan_set("istio_version="), 2, r"has an empty value"),
    Case("set-twice", plan_set("istio_version=1.7.3", "istio_version=1.7.5"), 2, r"--set istio_version given twice"),
    Case("set-unknown-key", plan_set("foo=1"), 2, r"cannot override 'foo'"),
    Case("set-unknown-image", plan_set("images.nope=x"), 2, r"unknown image 'nope'"),
    Case("set-istio-1.8", plan_set("istio_version=1.8.0"), 2, r"istio_version '1\.8\.0' is not a 1\.7\.x release"),
    Case("set-istio-unknown-patch", plan_set("istio_version=1.7.99999999999"), 2,
         r"1\.7\.99999999999 is an unknown 1\.7 release; known: 1\.7\.0 to 1\.7\.8"),
    Case("set-istio-unicode-digit", plan_set("istio_version=1.7.\u0663"), 2, r"is not a 1\.7\.x release"),
    Case("set-kubectl-text", plan_set("kubectl_version=abc"), 2, r"kubectl_version 'abc' is not a version"),
    Case("set-kubectl-vfoo", plan_set("kubectl_version=vfoo.bar"), 2, r"'vfoo\.bar' is not a version of the form"),
    Case("set-kubectl-skew", plan_set("kubectl_version=v1.25.3"), 2, r"more than one minor from the nodes"),
    Case("set-kind-path", plan_set("kind_version=../../../etc"), 2, r"kind_version '\.\./\.\./\.\./etc' is not a ver"),
    Case("set-node-image-no-version", plan_set("node_image=foo@sha256:abc"), 2, r"is not NAME:vX\.Y\.Z@sha256"),
    Case("set-node-image-no-digest", plan_set("node_image=kindest/node:v1.21.14"), 2, r"has no @sha256 digest"),
    Case("set-port-unicode-digits", plan_set("gateway_node_port=\uff13\uff11\uff14\uff14\uff13"), 2,
         r"gateway_node_port .* is not a whole number in ASCII digits"),
    Case("set-port-text", plan_set("gateway_node_port=high"), 2, r"'high' is not a whole number"),
    Case("set-port-outside-nodeports", plan_set("gateway_node_port=443"), 2, r"outside the NodePort range"),
    Case("set-bool-text", plan_set("load_images=maybe"), 2, r"load_images takes true or false"),
    Case("set-cert-source", plan_set("cert_source=vault"), 2, r"cert_source 'vault' must be"),
    Case("set-image-space", plan_set("images.pilot=docker.io/istio/pi lot:1.7.8"), 2,
         r"images\.pilot .* is not an image reference"),
    Case("set-image-empty", plan_set("images.sleep="), 2, r"has an empty value"),
    Case("unknown-profile", ("plan", "--profile", "nope"), 2, r"unknown profile 'nope'"),
    # --- command-line forms ------------------------------------------------------------------------------------
    Case("unknown-command", ("frobnicate",), 2, r"invalid choice: 'frobnicate'"),
    Case("missing-required-option", ("serviceentry", "render", "--host", "a.b.global"), 2,
         r"the following arguments are required: --vip, --endpoint"),
    Case("unknown-option", ("plan", "--nope"), 2, r"unrecognized arguments: --nope"),
    # --- serviceentry: VIPs, ports, hosts, endpoints ------------------------------------------------------------
    Case("vip-multicast", se(vip="224.0.0.1"), 2, r"VIP '224\.0\.0\.1' refused: multicast"),
    Case("vip-loopback", se(vip="127.0.0.2"), 2, r"refused: loopback"),
    Case("vip-broadcast", se(vip="255.255.255.255"), 2, r"refused: the limited broadcast address"),
    Case("vip-ipv6", se(vip="fd00::2"), 2, r"refused: IPv6"),
    Case("vip-cidr", se(vip="240.0.0.0/24"), 2, r"refused: CIDR notation"),
    Case("vip-text", se(vip="vip"), 2, r"refused: not an IPv4 address"),
    Case("vip-outside-class-e", se(vip="10.0.0.2"), 2, r"refused: outside 240\.0\.0\.0/4"),
    Case("vip-twice", se("--vip", "240.0.0.3"), 2, r"--vip given twice"),
    Case("port-0", se("--port", "0"), 2, r"argument --port: port 0 is outside 1-65535"),
    Case("port-65536", se("--port", "65536"), 2, r"port 65536 is outside 1-65535"),
    Case("port-text", se("--port", "http"), 2, r"port 'http' is not a whole number"),
    Case("port-unicode", se("--port", "\uff18\uff10\uff10\uff10"), 2, r"is not a whole number in ASCII digits"),
    Case("host-not-global", se(host="httpbin.bar.svc.cluster.local"), 2,
         r"is not of the form <name>\.<namespace>\.global"),
    Case("host-garbage", se(host="not a host!"), 2, r"is not of the form <name>\.<namespace>\.global"),
    Case("endpoint-multicast", se(endpoint="224.0.0.5:31443"), 2,
         r"endpoint address 224\.0\.0\.5 refused: a multicast"),
    Case("endpoint-loopback", se(endpoint="127.0.0.1:31443"), 2, r"endpoint address 127\.0\.0\.1 refused"),
    Case("endpoint-port-unicode", se(endpoint="172.18.0.3:\uff13\uff11"), 2, r"is not a number in ASCII digits"),
    Case("endpoint-port-0", se(endpoint="172.18.0.3:0"), 2, r"endpoint port 0 is not a port number"),
    Case("endpoint-twice", se("--endpoint", "172.18.0.4:31443"), 2, r"--endpoint given twice"),
    # --- configdump ------------------------------------------------------------------------------------------------
    Case("configdump-port-0", ("configdump", "--port", "0", str(DUMP)), 2, r"port 0 is outside 1-65535"),
    Case("configdump-port-70000", ("configdump", "--port", "70000", str(DUMP)), 2, r"port 70000 is outside"),
    Case("configdump-bad-host", ("configdump", "--host", "not a host!", str(DUMP)), 2, r"is not a DNS host name"),
    Case("configdump-missing-file", ("configdump", "{t}/nope.json"), 2, r"cannot read .*/nope\.json: No such file"),
    Case("configdump-empty", ("configdump", "{t}/empty.json"), 2, r"empty\.json is not JSON", write("empty.json", "")),
    Case("configdump-truncated", ("configdump", "{t}/cut.json"), 2, r"cut\.json is not JSON",
         write("cut.json", DUMP.read_bytes()[:200])),
    Case("configdump-not-a-dump", ("configdump", "{t}/list.json"), 2, r"is JSON but not an Envoy config dump",
         write("list.json", "[1, 2]")),
    Case("configdump-nested-100000", ("configdump", "{t}/deep.json"), 2, r"deep\.json is nested too deeply",
         write("deep.json", DEEP)),
    Case("configdump-nested-stdin", ("configdump", "-"), 2, r"standard input is nested too deeply", stdin=DEEP),
    Case("configdump-directory", ("configdump", "{t}"), 2, r"cannot read .*: Is a directory"),
    # --- classify ----------------------------------------------------------------------------------------------
    Case("exit-code-negative", ("classify", "--exit-code", "-1", str(CURL)), 2, r"exit code -1 is outside 0-255"),
    Case("exit-code-huge", ("classify", "--exit-code", "99999", str(CURL)), 2,
         r"exit code 99999 is outside 0-255 \(see"),
    Case("exit-code-text", ("classify", "--exit-code", "seven", str(CURL)), 2, r"'seven' is not a whole number"),
    Case("classify-dev-zero", ("classify", "/dev/zero"), 2, r"/dev/zero is larger than 64 MiB"),
    Case("classify-huge-stdin", ("classify",), 2, r"standard input is larger than 64 MiB",
         stdin=b"x" * (64 * 1024 * 1024 + 1)),
    Case("classify-not-utf8", ("classify", "{t}/latin1.txt"), 2, r"latin1\.txt is not UTF-8 text",
         write("latin1.txt", b"curl: (7) \xe9chec\n")),
    Case("classify-access-log-missing", ("classify", str(CURL), "--access-log", "{t}/no.log"), 2,
         r"cannot read .*/no\.log: No such file"),
    # --- corefile --------------------------------------------------------------------------------------------------
    Case("corefile-nul", ("corefile", "patch", "--forward", "10.96.0.53", "{t}/nul.Corefile"), 2,
         r"Corefile line 2: a NUL byte", write("nul.Corefile", b".:53 {\n    errors\x00\n}\n")),
    Case("corefile-nul-unpatch", ("corefile", "unpatch"), 2, r"a NUL byte", stdin=b".:53 {\x00}\n"),
    Case("corefile-forward-not-ip", ("corefile", "patch", "--forward", "istiocoredns", str(COREFILE)), 2,
         r"forward target 'istiocoredns' is not an IP literal"),
    Case("corefile-empty", ("corefile", "patch", "--forward", "10.96.0.53"), 2, r"has no server block", stdin=b""),
    Case("corefile-truncated", ("corefile", "patch", "--forward", "10.96.0.53"), 2, r"Corefile line \d+",
         stdin=COREFILE.read_bytes()[:-3] + b' "unclosed\n'),
    Case("corefile-binary", ("corefile", "unpatch", "/bin/bash"), 2, r"/bin/bash is not UTF-8 text"),
    # --- faults table --write ----------------------------------------------------------------------------------
    Case("faults-table-write-missing", ("faults", "table", "--write", "{t}/nope.md"), 2,
         r"cannot read .*/nope\.md: No such file or directory"),
    Case("faults-table-write-no-markers", ("faults", "table", "--write", "{t}/f"), 1,
         r"the fault table needs exactly one line .*\(found 0 and 0\)", write("f", "no markers here\n")),
    # --- certs -------------------------------------------------------------------------------------------------
    Case("certs-out-in-proc", ("certs", "generate", "--out", "/proc/lab-x", "--clusters", "c1"), 1,
         r"cannot write the CA material to /proc/lab-x: No such file or directory; "),  # the path once
    Case("certs-out-under-a-file", ("certs", "generate", "--out", "{t}/f/x", "--clusters", "c1"), 1,
         r"cannot write the CA material to .*/f/x: .*Not a directory", write("f", "")),
    Case("certs-out-a-file", ("certs", "generate", "--out", "{t}/f", "--clusters", "c1"), 2,
         r"exists and is not a directory", write("f", "")),
    Case("certs-root-cert-a-directory", ("certs", "generate", "--out", "{t}/o", "--clusters", "c1"), 1,
         r"root-cert\.pem: Is a directory", mkdir("o/root-cert.pem", "o/root-key.pem")),
    Case("certs-bad-cluster-name", ("certs", "generate", "--out", "{t}/o", "--clusters", "Bad_Name"), 2, r"Bad_Name"),
    Case("certs-check-not-dirs", ("certs", "check", "{t}/a", "{t}/b"), 2, r"is not a directory: pass two directories"),
    # a key that cannot be read (as root, chmod 000 does not stop a read; /proc/self/mem fails every read at 0)
    Case("certs-check-key-unreadable", ("certs", "check", "{t}/a", str(SAMPLES)), 1,
         r"^problem: cannot read .*/a/ca-key\.pem: Input/output error; check its permissions",
         both(write("a/ca-cert.pem", (SAMPLES / "ca-cert.pem").read_bytes()),
              write("a/root-cert.pem", (SAMPLES / "root-cert.pem").read_bytes()),
              write("a/cert-chain.pem", (SAMPLES / "cert-chain.pem").read_bytes()),
              lambda t: (t / "a" / "ca-key.pem").symlink_to("/proc/self/mem")), on_stdout=True),
    # --- the lab's state directory, state.json and the lock ------------------------------------------------------
    Case("no-lab-status", ("status",), 1, r"^lab: error: no lab in .*/lab \(no state\.json there\)"),
    Case("no-lab-uninstall", ("uninstall",), 1, r"^lab: error: no lab in .*/lab \(no state\.json there\)"),
    Case("no-lab-doctor", ("doctor",), 1, r"^lab: error: no lab in /.*/lab \(no state\.json there\)"),
    Case("no-lab-down", ("down",), 0, r"^lab: note: no lab in .*/lab \(no state\.json there\).*nothing to delete"),
    Case("home-a-file-status", ("status", "--home", "{t}/f"), 1, r"^lab: error: .*/f is a file, not a lab directory",
         write("f", "")),
    Case("home-a-file-down", ("down", "--home", "{t}/f"), 0, r"^lab: note: .*/f is a file, not a lab directory",
         write("f", "")),
    Case("lab-home-no-such-user-status", ("status",), 2, r"LAB_HOME '~nosuchuser/x': Could not determine home",
         env={"LAB_HOME": "~nosuchuser/x"}),
    Case("lab-home-no-such-user-plan", ("plan",), 2, r"LAB_HOME '~nosuchuser/x'", env={"LAB_HOME": "~nosuchuser/x"}),
    Case("lab-home-a-file-up", ("up", "--home", "{t}/f"), 2, r"state directory .*/f is a file", write("f", "")),
    Case("lab-home-under-a-file-up", ("up",), 2, r"would be under .*/f, which is a file",
         write("f", ""), env={"LAB_HOME": "{t}/f/lab"}),
    Case("lab-home-in-proc-up", ("up", "--home", "/proc/lab-x"), 2, r"/proc/lab-x cannot be created"),
    Case("state-not-json", ("status",), 1, r"state\.json is damaged \(not readable JSON.*move it aside",
         state("{not json")),
    Case("state-truncated-names-clusters", ("status",), 1,
         r"recorded the kind cluster\(s\) cluster1, cluster2.*kind delete cluster --name cluster1; "
         r"kind delete cluster --name cluster2", state(GOOD_STATE_TEXT[: GOOD_STATE_TEXT.index('"steps"')])),
    Case("state-binary", ("down",), 1, r"state\.json is damaged.*no cluster name can be read",
         state("\x00\xff\xfe garbage")),
    Case("state-future-format", ("status",), 1, r"damaged \(format 2 is not 1", state(good_state(format=2))),
    Case("state-clusters-a-list", ("down",), 1, r"`clusters` is a list, not an object",
         state(good_state(clusters=["cluster1"]))),
    Case("state-cluster-record-a-string", ("status",), 1, r"the record of cluster cluster1 is a str",
         state(good_state(clusters={"cluster1": "yes"}))),
    Case("state-profile-a-string", ("uninstall",), 1, r"`profile` is a str, not an object.*cluster1, cluster2",
         state(good_state(profile="default"))),
    Case("state-cluster-name-a-path", ("down",), 1, r"cluster name '\.\./\.\./x' is not a kind cluster name",
         state(good_state(clusters={"../../x": {"created_by_lab": True}}))),
    Case("state-override-no-longer-valid", ("status",), 1,
         r"the profile recorded in .*state\.json no longer loads \(istio_version 1\.7\.99 is an unknown",
         state(good_state(profile={"name": "default", "overrides": {"istio_version": "1.7.99"}}))),
    Case("lock-a-directory", ("down",), 1, r"lock is a directory, not the lab's lock file",
         both(state(good_state(clusters={})), mkdir("lab/lock"))),
    Case("lock-binary-is-stale", ("down",), 0, None,
         both(state(good_state(clusters={})), write("lab/lock", b"\xff\xfe\x00binary"))),
    Case("lock-stale-dead-pid", ("down",), 0, None,
         both(state(good_state(clusters={})), write("lab/lock", "999999999\nup\n"))),
    # --- read-only commands never download ---------------------------------------------------------------------
    Case("status-tools-not-cached", ("status",), 1,
         r"kind v0\.20\.0, kubectl v1\.21\.14, the Istio 1\.7\.8 release: not on PATH or in the cache .*downloads "
         r"nothing", state(good_state())),
    # the doctor reads through the API client: a kubeconfig that is not one is the handle's own line
    Case("doctor-garbage-kubeconfig", ("doctor",), 1, r"cluster1: kubeconfig .*/lab/kubeconfig/cluster1 cannot be "
         r"used with context kind-cluster1 \(.+\); rebuild it with `make lab-up`$",
         both(state(good_state()), write("lab/kubeconfig/cluster1", "\x00garbage"),
              write("lab/kubeconfig/cluster2", "garbage"), standin("kubectl", "echo 'garbage {'\n"))),
    Case("doctor-no-kubectl", ("doctor", "--home", "{t}/lab"), 1, r"kubectl v1\.21\.14 is neither on PATH nor in the "
         r"lab's cache .*downloads nothing",
         both(state(good_state()), write("lab/kubeconfig/cluster1", ""), write("lab/kubeconfig/cluster2", ""))),
    Case("doctor-unknown-profile", ("doctor", "--profile", "nope"), 2, r"unknown profile 'nope'",
         state(good_state())),
]


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{t}", str(tmp))


def test_the_battery_has_at_least_forty_classes():
    assert len({c.id for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_an_exit_code(case: Case, tmp_path: Path):
    prepare(tmp_path)
    if case.setup:
        case.setup(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    run = lab(tmp_path, *[_fill(a, tmp_path) for a in case.argv], stdin=case.stdin,
              env={k: _fill(v, tmp_path) for k, v in case.env.items()})
    if case.on_stdout:
        assert run.code == case.code and len(run.lines) <= 1, (run.code, run.stderr)
        found = [ln for ln in run.stdout.splitlines() if re.search(case.line or "", ln)]
        assert len(found) == 1, run.stdout
    elif case.line is None:
        assert run.code == case.code and run.lines == [], (run.code, run.stderr)
    else:
        line = one_line(run, case.code, case.line)
        assert line.startswith(("lab: error: ", "lab: note: ")), line
    if case.code != 0:
        # refused: nothing was created (no state directory, no cache, no half-written output)
        after = sorted(str(p) for p in tmp_path.rglob("*"))
        assert after == before, sorted(set(after) ^ set(before))


def test_v_after_the_subcommand_is_accepted(tmp_path):
    run = lab(tmp_path, "plan", "-v")
    assert run.code == 0 and run.stdout.startswith(" 1. [host]"), run.stderr


def test_the_doctor_takes_home_like_every_command_and_its_old_name_still(tmp_path):
    for flag in ("--home", "--lab-home"):
        one_line(lab(tmp_path, "doctor", flag, str(tmp_path / "elsewhere")), 1, r"no lab in .*/elsewhere \(")


def test_the_top_level_help_says_what_the_tool_does(tmp_path):
    run = lab(tmp_path, "--help")
    # the engine's own line names no scenario (`lab scenarios` lists them)
    assert run.code == 0 and "Build and diagnose an Istio multicluster lab on two kind clusters" in run.stdout
    assert "For developers" not in run.stdout


# --- the generic cases, applied to every command the parser has ---------------------------------------------------
def _corefile(tmp: Path) -> None:
    (tmp / "in.Corefile").write_bytes(COREFILE.read_bytes())


# command -> (argv, reads standard input, prints on stdout when it succeeds, set-up)
COMMANDS: dict[tuple[str, ...], tuple[tuple[str, ...], bool, bool]] = {
    ("plan",): (("plan",), False, True),
    ("up",): (("up",), False, True),
    ("down",): (("down",), False, False),
    ("status",): (("status",), False, True),
    ("uninstall",): (("uninstall",), False, True),
    ("doctor",): (("doctor",), False, True),
    ("certs", "generate"): (("certs", "generate", "--out", "{t}/out/certs", "--clusters", "c1"), False, True),
    ("certs", "check"): (("certs", "check", str(SAMPLES), str(SAMPLES)), False, True),
    ("corefile", "patch"): (("corefile", "patch", "--forward", "10.96.0.53"), True, True),
    ("corefile", "unpatch"): (("corefile", "unpatch"), True, True),
    ("serviceentry", "render"): (se(), False, True),
    ("classify",): (("classify", "--exit-code", "7"), True, True),
    ("configdump",): (("configdump", "-"), True, True),
    ("faults", "table"): (("faults", "table"), False, True),
    ("scenarios",): (("scenarios",), False, True),
    ("metallb-pool",): (("metallb-pool", "--cluster", "cluster1", "--clusters", "cluster1,cluster2"), True, True),
}
STDIN = {("corefile", "patch"): COREFILE.read_bytes(), ("corefile", "unpatch"): COREFILE.read_bytes(),
         ("classify",): CURL.read_bytes(), ("configdump",): DUMP.read_bytes(),
         ("metallb-pool",): KIND_NETWORK.read_bytes()}


def test_every_command_is_in_the_generic_table():
    assert sorted(leaf_commands()) == sorted(COMMANDS), "add the new command to COMMANDS (and to the battery)"


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_every_command_with_stdout_closed_says_so_in_one_line(command, tmp_path):
    argv, _, _ = COMMANDS[command]
    run = lab(tmp_path, *[_fill(a, tmp_path) for a in argv], stdin=STDIN.get(command, b""), redirect="close-stdout")
    one_line(run, 2, r"^lab: error: standard output is closed")
    assert not (tmp_path / "out").exists() and not (tmp_path / "lab").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_every_command_with_stdout_on_a_full_disk_says_so_in_one_line(command, tmp_path):
    argv, _, prints = COMMANDS[command]
    ok = lab(tmp_path / "ok", *[_fill(a, tmp_path / "ok") for a in argv], stdin=STDIN.get(command, b""))
    run = lab(tmp_path, *[_fill(a, tmp_path) for a in argv], stdin=STDIN.get(command, b""), redirect="full-stdout")
    if ok.code == 0 and prints:
        notes = [ln for ln in ok.lines if ln.startswith("lab: note: ")]  # `certs check` on the samples says one
        assert run.lines[:len(notes)] == notes
        one_line(Run(run.code, run.stdout, "\n".join(run.lines[len(notes):])), 1,
                 r"^lab: error: cannot write standard output: No space left on device")
    else:  # the command fails (no lab, no Docker) before it prints: the same one line as without /dev/full
        assert (run.code, run.lines) == (ok.code, [ln.replace(str(tmp_path / "ok"), str(tmp_path))
                                                    for ln in ok.lines])


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_every_command_with_stdin_closed(command, tmp_path):
    argv, reads, _ = COMMANDS[command]
    run = lab(tmp_path, *[_fill(a, tmp_path) for a in argv], redirect="close-stdin")
    if reads:
        one_line(run, 2, r"^lab: error: standard input is closed \(`<&-`\): pass FILE, or pipe the input in")
    else:
        assert len(run.lines) <= 1 and all(ln.startswith("lab: ") for ln in run.lines), run.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_every_command_with_unwritable_outputs(command, tmp_path):
    # every place the lab may write is under a regular file: the state directory, the tools cache, --out
    (tmp_path / "blocker").write_text("")
    argv = [a.replace("{t}/out", "{t}/blocker") for a in COMMANDS[command][0]]
    env = {"LAB_HOME": str(tmp_path / "blocker" / "lab"), "LAB_CACHE": str(tmp_path / "blocker" / "cache"),
           "XDG_CACHE_HOME": str(tmp_path / "blocker")}
    run = lab(tmp_path, *[_fill(a, tmp_path) for a in argv], stdin=STDIN.get(command, b""), env=env)
    assert len(run.lines) <= 1, run.stderr
    if run.code != 0:
        assert run.lines and run.lines[0].startswith("lab: error: "), run.stderr
    if command in {("up",), ("certs", "generate")}:
        assert run.code != 0 and "blocker" in run.lines[0], run.lines
    assert (tmp_path / "blocker").read_text() == ""


# --- lab up with stand-in tools: two at once, and SIGINT to the lab's pid mid-step ---------------------------------
DOCKER_STANDIN = """\
case "$1 $2" in
  "image inspect") exit 1 ;;
  pull*) echo $$ > "$PULL_PID"; exec sleep 60 ;;
esac
exit 0
"""


def _start_up(tmp: Path) -> subprocess.Popen:
    standin("docker", DOCKER_STANDIN)(tmp)
    (tmp / "user" / ".kube").mkdir(parents=True, exist_ok=True)
    (tmp / "user" / ".kube" / "config").write_bytes(KUBECONFIG_BYTES)
    env = {"HOME": str(tmp / "user"), "PATH": f"{tmp / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "PULL_PID": str(tmp / "pull.pid"), "LAB_CACHE": str(tmp / "cache")}
    return subprocess.Popen([sys.executable, "-m", "tests.support.standin_up", str(tmp / "lab")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_concurrent_ups_and_sigint_to_the_labs_pid_mid_step_ends_its_children(tmp_path):
    first = _start_up(tmp_path)
    try:
        pull = _wait_for(tmp_path / "pull.pid", first)  # the first run is inside its `docker pull` step
        # a second `lab up` on the same lab is refused in one line, and changes nothing
        second = _start_up(tmp_path)
        out2, err2 = second.communicate(timeout=60)
        assert second.returncode == 1 and out2 == "", err2
        assert re.fullmatch(rf"lab: error: another lab run holds .*/lab/lock \(pid {first.pid}, `lab up`\); wait for "
                            r"it to finish or stop it, then try again\n", err2), err2
        # SIGINT to the lab's own pid (not its process group, which a terminal's Ctrl-C would reach)
        os.kill(first.pid, signal.SIGINT)
        out, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130, err
    assert [ln for ln in err.splitlines() if ln.strip()] == ["lab: interrupted; re-run the same command to continue"]
    assert "Traceback" not in err + out
    assert not _alive(pull), "the `docker pull` child still runs"
    assert not (tmp_path / "lab" / "lock").exists(), "the lock is released"
    json.loads((tmp_path / "lab" / "state.json").read_text())  # whole, not half-written
    assert (tmp_path / "user" / ".kube" / "config").read_bytes() == KUBECONFIG_BYTES


def test_make_plan_prints_only_the_script(tmp_path):
    # `make plan > lab.sh`: make's own echo of the recipe must not come before the shebang
    import shutil

    stamp = REPO / ".venv" / ".installed"
    if not shutil.which("make") or not stamp.exists() or \
            stamp.stat().st_mtime < (REPO / "pyproject.toml").stat().st_mtime:
        pytest.skip("make plan would first (re)build .venv (`make venv`); not done from inside the tests")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # not `make -s`'s
    env.update(LAB_HOME=str(tmp_path / "lab"), LAB_CACHE=str(tmp_path / "cache"))
    res = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "plan"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("#!"), res.stdout[:200]
