"""The e2e suite's view of a running lab: built or reused through the same code as `lab up`, with kubectl per
cluster, probes, config dumps, and a health flag that a failed fault restore clears.

Test-only: the suite's fixtures (tests/e2e/conftest.py) create one `LabSession` per pytest session.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.kube import Kubectl
from lab.probe import CurlResult, Prober, envoy_admin
from lab.scenarios.replicated_control_planes.faults import CLIENT_NS, ISTIO_NS, PROBE_URL, SERVER_NS, LabHandle
from lab.scenarios.replicated_control_planes.profiles import ClusterSpec, Profile
from lab.shell import Runner
from lab.state import lab_home

log = logging.getLogger("tests.e2e")


def docker_problem(runner: Runner, timeout: float = 20.0) -> str | None:
    """None when the Docker daemon answers; otherwise one line saying what was tried and what failed."""
    argv = ["docker", "info", "--format", "{{.ServerVersion}}"]
    tried = "`docker info`"
    try:
        res = runner.run(argv, check=False, timeout=timeout, context="e2e preflight")
    except LabError as err:  # docker missing (PreflightError) or timed out (CommandError)
        return f"Docker is not reachable: {tried} failed: {err}"
    if res.ok and res.stdout.strip():
        return None
    lines = [ln.strip() for ln in res.output.splitlines() if ln.strip()]
    why = lines[-1] if lines else f"exit code {res.returncode}"
    return f"Docker is not reachable: {tried} failed: {why}"


@dataclass
class LabSession:
    profile: Profile
    runner: Runner
    artifacts: Path
    keep: bool
    workdir: Path  # scratch for the faults (another root's CA keys): never under the uploaded artifacts
    overrides: dict[str, str] = field(default_factory=dict)  # --lab-set, passed on to `lab up`
    home: Path = field(default_factory=lab_home)  # $LAB_HOME, default ./.lab (lab.state)
    tools: Any = None  # lab.tools.Tools
    provider: Any = None  # the executor's cluster provider: kubeconfig and context per cluster
    kubectl: dict[str, Kubectl] = field(default_factory=dict)
    handle: LabHandle | None = None
    created: bool = False  # this session built the lab (so it may take it down)
    healthy: bool = False
    why_unhealthy: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    # --- building ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        from lab import executor

        t0 = time.monotonic()
        hooks = executor.Hooks()
        self.tools = hooks.tools(self.profile, self.runner)
        self.provider = hooks.provider(self.profile, self.home, self.tools, self.runner)
        self._connect()
        if self.check():
            log.info("reusing the healthy lab in %s", self.home)
        else:
            log.info("no healthy lab (%s): building it as `lab up` does", self.why_unhealthy)
            self.created = not self._kubeconfigs_exist()
            self.rebuild()
        self.timings["start"] = time.monotonic() - t0

    def _connect(self) -> None:
        kubectl_bin = str(self.tools.kubectl) if self.tools is not None else "kubectl"
        self.kubectl = {c.name: Kubectl(self.runner, str(self.kubeconfig(c)), self.context(c), binary=kubectl_bin)
                        for c in self.profile.clusters}
        self.handle = LabHandle(profile=self.profile, kubectl=self.kubectl, workdir=self.workdir,
                                istioctl=getattr(self.tools, "istioctl", None),
                                istio_dir=getattr(self.tools, "istio_dir", None))

    def kubeconfig(self, cluster: ClusterSpec) -> Path:
        if self.provider is not None:
            return Path(self.provider.kubeconfig(cluster))
        return self.home / "kubeconfig" / cluster.name  # lab.state's layout

    def context(self, cluster: ClusterSpec) -> str:
        return self.provider.context(cluster) if self.provider is not None else cluster.context

    def _kubeconfigs_exist(self) -> bool:
        return all(self.kubeconfig(c).exists() for c in self.profile.clusters)

    def rebuild(self) -> None:
        """`lab up` (idempotent: repairs what is missing); if the lab is still unhealthy, down and up again."""
        from lab import executor

        executor.up(self.profile, home=self.home, overrides=self.overrides, runner=self.runner)
        self._connect()
        if self.check():
            return
        log.warning("lab still unhealthy after `lab up` (%s): recreating it", self.why_unhealthy)
        executor.down(home=self.home, runner=self.runner)
        executor.up(self.profile, home=self.home, overrides=self.overrides, runner=self.runner)
        self.created = True
        self._connect()
        if not self.check():
            raise LabError(f"the lab is not healthy after a rebuild: {self.why_unhealthy}")

    def stop(self) -> None:
        if self.created and not self.keep:
            from lab import executor

            executor.down(home=self.home, runner=self.runner)

    def ensure_healthy(self) -> None:
        if not self.healthy:
            self.rebuild()

    def mark_unhealthy(self, why: str) -> None:
        self.healthy = False
        self.why_unhealthy = why

    # --- checking ----------------------------------------------------------------------------------------------
    def check(self) -> bool:
        """Healthy = both kubeconfigs exist, istiod runs the profile's Istio version in both clusters, and the
        write-up's call from cluster1's sleep returns 200."""
        self.healthy = False
        if not self._kubeconfigs_exist():
            self.why_unhealthy = f"no kubeconfigs under {self.home / 'kubeconfig'}"
            return False
        try:
            for c in self.profile.clusters:
                image = self.kubectl[c.name].jsonpath("deployment", "istiod", "-n", ISTIO_NS,
                                                      path="{.spec.template.spec.containers[0].image}")
                if not image.endswith(":" + self.profile.istio_version):
                    self.why_unhealthy = f"{c.name} runs istiod {image or '(none)'}, not {self.profile.istio_version}"
                    return False
            res = self.call(self.profile.client, CLIENT_NS, PROBE_URL)
        except LabError as err:
            self.why_unhealthy = str(err)
            return False
        if not res.ok:
            self.why_unhealthy = f"the call to {PROBE_URL} from cluster1 gave {res.status} (curl exit {res.exit_code})"
            return False
        self.healthy = True
        self.why_unhealthy = ""
        return True

    # --- probes ------------------------------------------------------------------------------------------------
    def prober(self, cluster: ClusterSpec) -> Prober:
        return Prober(self.kubectl[cluster.name])

    def sleep_pod(self, cluster: ClusterSpec, namespace: str) -> str:
        return self.prober(cluster).pod(namespace, "app=sleep")

    def call(self, cluster: ClusterSpec, namespace: str, url: str, *, method: str = "GET",
             extra: tuple[str, ...] = ()) -> CurlResult:
        prober = self.prober(cluster)
        return prober.curl(namespace, prober.pod(namespace, "app=sleep"), url, method=method, extra=extra)

    def config_dump(self, cluster: ClusterSpec, namespace: str, selector: str) -> dict:
        """The Envoy /config_dump of a pod's istio-proxy (lab.probe.envoy_admin: pilot-agent's admin proxy)."""
        return json.loads(self.envoy_admin(cluster, namespace, selector, "config_dump"))

    def envoy_admin(self, cluster: ClusterSpec, namespace: str, selector: str, path: str) -> str:
        k = self.kubectl[cluster.name]
        return envoy_admin(k, namespace, Prober(k).pod(namespace, selector), path)


__all__ = ["LabSession", "docker_problem", "lab_home", "CLIENT_NS", "SERVER_NS", "ISTIO_NS"]
