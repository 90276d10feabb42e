"""Doing one step of the plan: the run-time context (`Env`), a command, a manifest, a check, and the lab actions.

`execute` does a step's command, manifest or check; `perform` (one `functools.singledispatch` registration per action
type of lab.plan) does a lab action in-process, returning whether it changed something. The pure pieces (manifest
rendering, judging a check's result, comparing a ServiceEntry) are module functions tested offline; everything that
touches a cluster goes through the runner, the provider (lab.kind) or lab.kube.Kubectl, whose kubeconfig and context
come from the lab's one handle (lab.cluster.LabHandle, built from the provider). lab.scheduler decides when a step
runs; lab.executor holds the commands.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import singledispatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yaml

from lab import certs, probe
from lab import images as lab_images
from lab.cluster import LabHandle
from lab.errors import LabError, NotReadyError, PreflightError, UsageError
from lab.files import atomic_write
from lab.kube import Kubectl
from lab.plan import (
    SERVER_SIDE_APPLY,
    Action,
    Check,
    Command,
    CreateCluster,
    Expect,
    ExpectKind,
    GenerateCerts,
    LoadImages,
    Manifest,
    Paths,
    PullImages,
    Sample,
    SecretFromFiles,
    Step,
    Template,
    Text,
    kubectl_for_lookup,
)
from lab.profile import ClusterBase as ClusterSpec
from lab.profile import ProfileBase as Profile
from lab.retry import NotYet, poll
from lab.settings import TIMEOUTS
from lab.shell import Result, Runner
from lab.state import State
from lab.tokens import Context, DockerPlatform, File, Kubeconfig, Lookup, Token

if TYPE_CHECKING:
    from lab.kind import Provider
    from lab.tools import Tools

T = TypeVar("T")

# --- pure helpers ---------------------------------------------------------------------------------------------
def secret_manifest(name: str, namespace: str, files: Mapping[str, bytes]) -> str:
    """lab.certs.secret_object (what `kubectl create secret generic NAME --from-file=...` makes) as YAML."""
    return yaml.safe_dump(certs.secret_object(name, namespace, files), sort_keys=False)


def sample_manifest(text: str, images: Iterable[tuple[str, str]]) -> str:
    """A sample manifest with `image: <old>` lines replaced by `image: <new>` (what the shell plan's sed does)."""
    for old, new in images:
        text, count = re.subn(rf"(?m)^(\s*-?\s*)image: {re.escape(old)}$", rf"\g<1>image: {new}", text)
        if count == 0:
            raise LabError(f"the sample manifest has no `image: {old}` line to replace; is the Istio release right?")
    return text


def coredns_configmap(live: Mapping[str, Any], corefile_text: str) -> str:
    """The live kube-system/coredns ConfigMap with its Corefile replaced (other keys kept), for `kubectl apply`."""
    data = dict(live.get("data") or {})
    data["Corefile"] = corefile_text
    meta = live.get("metadata") or {}
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": meta.get("name", "coredns"), "namespace": meta.get("namespace", "kube-system")},
           "data": data}
    return yaml.safe_dump(obj, sort_keys=False)


def judge(expect: Expect, result: Result) -> str | None:
    """None if `result` meets `expect`, else the reason (shown when the deadline passes)."""
    if expect.kind is ExpectKind.EXIT0:
        return None if result.ok else f"exit {result.returncode}: {_tail(result.output)}"
    if expect.kind is ExpectKind.EQUALS:
        got = result.stdout.strip()
        if not result.ok:
            return f"exit {result.returncode}: {_tail(result.output)}"
        return None if got == expect.value else f"got {got!r}, expected {expect.value!r}"
    if expect.kind is ExpectKind.HTTP:
        curl = probe.parse_curl(result.output, result.returncode)
        if curl.status == int(expect.value):
            return None
        return f"HTTP {curl.status or '-'} (curl exit {curl.exit_code}): {_tail(curl.output)}"
    if expect.kind is ExpectKind.RESOLVES:
        found = probe.parse_nslookup(result.stdout)
        return None if expect.value in found else f"answers {found or 'none'}: {_tail(result.output)}"
    raise ValueError(f"unknown expectation {expect.kind}")


def _tail(text: str, lines: int = 2) -> str:
    return " | ".join(x.strip() for x in text.strip().splitlines()[-lines:] if x.strip()) or "(no output)"


# --- the run-time context -----------------------------------------------------------------------------------
@dataclass
class Env:
    """Everything a step needs at run time. Tests build one with a RecordingRunner and a fake provider."""

    profile: Profile
    paths: Paths
    runner: Runner
    tools: Tools
    provider: Provider
    state: State
    out: TextIO = field(default_factory=lambda: sys.stdout)
    sleep: Callable[[float], None] | None = None  # for lab.retry.poll; tests pass a no-op
    clock: Callable[[], float] = time.monotonic
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # set on interrupt: waits end at once
    _lab: LabHandle | None = field(default=None, init=False, repr=False)
    _lab_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # The engine's platform (a DockerPlatform token), asked once per run: both clusters' loads save what was pulled.
    _docker_platform: str | None = field(default=None, init=False, repr=False)
    _platform_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def cluster(self, name: str) -> ClusterSpec:
        for c in self.profile.clusters:
            if c.name == name:
                return c
        raise LabError(f"cluster {name} is not in profile {self.profile.name}")

    @property
    def lab(self) -> LabHandle:
        """The one handle on the lab, from the provider (the kubeconfig and context of each cluster come only from
        it) and the kubectl of the tools."""
        with self._lab_lock:
            if self._lab is None:
                self._lab = LabHandle.from_provider(self.profile.clusters, self.provider, str(self.tools.kubectl))
            return self._lab

    def kubectl(self, cluster: str) -> Kubectl:
        """kubectl on `cluster`, for the commands `lab up` runs as the replayable plan shows them."""
        return self.lab[self.cluster(cluster).name].kubectl(self.runner)

    def say(self, line: str) -> None:
        with self._print_lock:
            print(line, file=self.out, flush=True)

    def resolve(self, token: Token) -> str:
        """A token's value now (a Lookup runs kubectl; an empty answer is 'not yet')."""
        if isinstance(token, str):
            return token
        if isinstance(token, Kubeconfig):
            return str(self.provider.kubeconfig(self.cluster(token.cluster)))
        if isinstance(token, Context):
            return self.provider.context(self.cluster(token.cluster))
        if isinstance(token, File):
            return str(self.paths.resolve(token))
        if isinstance(token, DockerPlatform):
            return self.docker_platform(token)
        if isinstance(token, Lookup):
            argv = self.argv(kubectl_for_lookup(token))
            res = self.runner.run(argv, check=False, timeout=TIMEOUTS.command, context=token.what)
            value = res.stdout.strip()
            if not res.ok or not value:
                raise NotYet(f"{token.what} not known yet ({_tail(res.output) if not res.ok else 'empty'})")
            return value
        raise TypeError(f"unknown token {token!r}")

    def docker_platform(self, token: DockerPlatform) -> str:
        """The engine's platform, asked once (lab.images.docker_platform: PreflightError, one line, outside
        `token.accepted`)."""
        with self._platform_lock:
            if self._docker_platform is None:
                self._docker_platform = lab_images.docker_platform(self.runner, token.accepted)
            platform = self._docker_platform
        problem = lab_images.platform_problem(platform, token.accepted)
        if problem:
            raise PreflightError(problem)
        return platform

    def argv(self, tokens: Sequence[Token]) -> list[str]:
        argv = [self.resolve(t) for t in tokens]
        binaries = {"kind": self.tools.kind, "kubectl": self.tools.kubectl, "istioctl": self.tools.istioctl}
        if argv and argv[0] in binaries:
            argv[0] = str(binaries[argv[0]])
        return argv

    def poll(self, fn: Callable[[], T], *, timeout: float, what: str) -> T:
        return poll(fn, timeout=timeout, what=what, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        # A wait between attempts that an interrupt (Ctrl-C in the main thread) cuts short in every branch.
        if self.sleep is not None:
            self.sleep(seconds)
            interrupted = self.stop.is_set()
        else:
            interrupted = self.stop.wait(seconds)
        if interrupted:
            raise KeyboardInterrupt


# --- running one step ---------------------------------------------------------------------------------------
def run_check(env: Env, check: Check, what: str, *, once: bool = False) -> Result:
    """Run a check until it passes (polled up to its timeout), or once. Returns the passing result."""

    def attempt() -> Result:
        res = env.runner.run(env.argv(check.argv), check=False, timeout=max(check.timeout, TIMEOUTS.command),
                             context=what)
        reason = judge(check.expect, res)
        if reason:
            raise NotYet(reason)
        return res

    if once or check.timeout <= 0:
        try:
            return attempt()
        except NotYet as err:
            raise NotReadyError(f"{what}: {err}") from err
    return env.poll(attempt, timeout=check.timeout, what=what)


def render_manifest(env: Env, m: Manifest) -> tuple[str, list[str]]:
    """(manifest text, strings to redact) for a Manifest step."""
    src = m.source
    if isinstance(src, (Text, Template)):
        return src.yaml, []
    if isinstance(src, Sample):
        return sample_manifest(env.paths.resolve(src.file).read_text(encoding="utf-8"), src.images), []
    assert isinstance(src, SecretFromFiles)
    files: dict[str, bytes] = {}
    for f in src.files:
        path = env.paths.resolve(f)
        try:
            files[path.name] = path.read_bytes()
        except OSError as err:
            raise LabError(f"cannot read {path} for secret {src.name} ({err.strerror}); "
                           "is the Istio release complete (or run `python -m lab certs generate`)?") from err
    text = secret_manifest(src.name, src.namespace, files)
    secrets = [v.decode("utf-8", "replace") for k, v in files.items() if "key" in k]
    secrets += [base64.b64encode(v).decode() for k, v in files.items() if "key" in k]
    return text, secrets


def apply(env: Env, cluster: str, text: str, namespace: str | None, what: str,
          redact: Sequence[str] = ()) -> Result:
    runner = dataclasses.replace(env.runner, redact=[*env.runner.redact, *redact]) if redact else env.runner
    ns = ["-n", namespace] if namespace else []
    # Manifests with secrets go server-side, so that no last-applied-configuration annotation copies the key.
    mode = list(SERVER_SIDE_APPLY) if redact else []
    k = env.kubectl(cluster)
    return runner.run([*k.base(), "apply", *mode, *ns, "-f", "-"], input=text, timeout=TIMEOUTS.command,
                      context=what)


def execute(env: Env, step: Step, *, forced: bool = False) -> bool:
    """Do the step. Returns False when it found everything already in place (nothing changed). `forced`: a step it
    needs changed in this run, so a self-checking action acts even when its own check finds nothing to do."""
    run = step.run
    what = step.id
    if isinstance(run, Command):
        for f, text in run.writes:
            atomic_write(env.paths.resolve(f), text)
        argv = env.poll(lambda: env.argv(run.argv), timeout=TIMEOUTS.rollout, what=f"{what}: run-time values") \
            if any(isinstance(t, Lookup) for t in run.argv) else env.argv(run.argv)
        env.runner.run(argv, timeout=run.timeout, context=what, env=dict(run.env) or None)
        return True
    if isinstance(run, Manifest):
        text, redact = render_manifest(env, run)
        apply(env, run.cluster, text, run.namespace, what, redact)
        return True
    if isinstance(run, Check):
        res = run_check(env, run, f"{what} ({step.title})")
        if run.expect.kind is ExpectKind.HTTP:
            curl = probe.parse_curl(res.output, res.returncode)
            env.state.set_probe({"step": step.id, "status": curl.status, "curl_exit": curl.exit_code,
                                 "ok": curl.ok})
        return False
    return perform(run, env, step, forced)


@singledispatch
def perform(action: Action, env: Env, step: Step, forced: bool) -> bool:
    """Do a lab action in-process; True if it changed something. `forced`: see `execute`."""
    raise LabError(f"{step.id}: unknown lab action {action.name}")


@perform.register
def _kind_create(run: CreateCluster, env: Env, step: Step, forced: bool) -> bool:
    spec = env.cluster(run.cluster)
    existed = env.provider.exists(spec)
    if existed and not env.state.owns_cluster(spec.name):
        raise UsageError(
            f"a kind cluster named {spec.name} exists that this lab did not create (not in {env.state.path}); "
            f"delete it (`kind delete cluster --name {spec.name}`) or use another LAB_HOME")
    recorded = (env.state.clusters.get(spec.name) or {}).get("identity")
    if existed and recorded and env.provider.identity(spec) != recorded:
        raise UsageError(
            f"the kind cluster {spec.name} is not the one this lab created (its node containers changed: it was "
            f"deleted and created again outside the lab); `make lab-down` forgets it without deleting it, then "
            f"delete it yourself (`kind delete cluster --name {spec.name}`) or use another LAB_HOME")
    if existed and (env.state.clusters.get(spec.name) or {}).get("status") == "creating":
        # Our creation never finished: kind installs no signal handler (no os/signal in kind v0.20.0's tree), so
        # a `kind create cluster` stopped by Ctrl-C leaves its node containers behind, kubeadm perhaps half-run,
        # and kind deletes them itself only when it fails on its own (pkg/cluster/internal/create/create.go,
        # unless --retain). Reusing such a node would wait for a Ready that may never come: start again.
        env.say(f"  {spec.name:<9} a creation of this cluster did not finish last time; deleting it to start again")
        env.provider.delete(spec)
        existed = False
    if not existed:
        # Recorded before creating: a creation interrupted half-way still counts as the lab's (`lab down`).
        env.state.cluster_intent(spec.name, env.provider.name)
    # The provider reuses an existing cluster (rewriting its kubeconfig if needed) and waits for its node.
    env.provider.create(spec, run.config_text)
    # Created and Ready: from here on a re-run reuses it (a failing provider check below is reported again on the
    # next run, not "fixed" by creating the same node once more).
    env.state.cluster_created(spec.name, Path(env.provider.kubeconfig(spec)), env.provider.context(spec),
                              env.provider.identity(spec))
    env.provider.verify(spec)
    return not existed


@perform.register
def _images_pull(run: PullImages, env: Env, step: Step, forced: bool) -> bool:
    pulled = False
    platform = env.resolve(run.platform)
    for image in run.images:
        if not lab_images.present(env.runner, image):
            lab_images.pull(env.runner, image, platform=platform, timeout=TIMEOUTS.command,
                            context=f"{step.id}: {image}")
            pulled = True
    return pulled


@perform.register
def _images_load(run: LoadImages, env: Env, step: Step, forced: bool) -> bool:
    env.provider.load_images(env.cluster(run.cluster), list(run.images), env.resolve(run.platform))
    return True


@perform.register
def _certs_generate(run: GenerateCerts, env: Env, step: Step, forced: bool) -> bool:
    certs.generate(env.paths.resolve(run.out), list(run.clusters))
    return True


