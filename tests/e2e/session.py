"""The e2e suite's view of a running lab, for either scenario: built or reused through the same code as `lab up`,
read through the lab's one handle (lab.cluster.LabHandle, from the provider's kubeconfig and context: readiness,
pods, exec, Envoy admin), with kubectl per cluster only for the commands a person would type (the artifacts, the
write-up's own lookups), the scenario's fault lab, and a health flag that a failed fault restore clears.

Test-only: the suite's fixtures (tests/e2e/conftest.py) create one `LabSession` per pytest session.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.cluster import ClusterHandle, LabHandle
from lab.errors import LabError
from lab.kube import Kubectl
from lab.probe import CurlResult, NslookupResult, curl_argv, nslookup_argv, parse_curl, parse_nslookup
from lab.scenarios.replicated_control_planes.names import CLIENT_NS, ISTIO_NS, SERVER_NS
from lab.shell import Runner
from lab.state import lab_home
from lab.tools import Tools
from tests.e2e.helpers import Target, target_of

log = logging.getLogger("tests.e2e")

ISTIOD = "istiod"  # the control plane's Deployment in both scenarios (istio-discovery chart, 1.7.8 and 1.30.3)
EXEC_TIMEOUT = 60.0  # curl's own --max-time is 10 s (lab.probe.curl_argv)
MPMN_FAULTS = "lab.scenarios.multi_primary_multi_network.faults"


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


def mpmn_faults() -> ModuleType | None:
    """The multi-primary-multi-network scenario's fault catalogue, or None in a checkout without it."""
    try:
        return importlib.import_module(MPMN_FAULTS)
    except ModuleNotFoundError as err:
        if err.name != MPMN_FAULTS:
            raise
        return None


@dataclass
class LabSession:
    profile: Any  # the profile under test, of either scenario (lab.scenario.load_profile)
    runner: Runner
    artifacts: Path
    keep: bool
    workdir: Path  # scratch for the faults (another root's CA keys): never under the uploaded artifacts
    overrides: dict[str, str] = field(default_factory=dict)  # --lab-set, passed on to `lab up`
    home: Path = field(default_factory=lab_home)  # $LAB_HOME, default ./.lab (lab.state)
    tools: Tools | None = None  # from `start` (the executor's hooks)
    provider: Any = None  # the executor's cluster provider: the only source of kubeconfig and context per cluster
    handle: LabHandle | None = None  # the lab's one handle
    kubectl: dict[str, Kubectl] = field(default_factory=dict)  # for the commands a person would type
    fault_lab: Any = None  # what the scenario's faults act on (its faults module's FaultLab)
    created: bool = False  # this session built the lab (so it may take it down)
    healthy: bool = False
    why_unhealthy: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> Target:
        return target_of(self.profile.scenario)

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

    @property
    def kubectl_binary(self) -> str:
        return str(self.tools.kubectl) if self.tools is not None else "kubectl"

    def _connect(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = LabHandle.from_provider(self.profile.clusters, self.provider, self.kubectl_binary)
        self.kubectl = {c.name: self.handle[c.name].kubectl(self.runner) for c in self.profile.clusters}
        self.fault_lab = self._fault_lab()

    def _fault_lab(self) -> Any:
        """The scenario's fault lab (its faults module's FaultLab) on the session's own handle: one API client per
        cluster, closed with the session (`stop`, or the next `_connect`)."""
        if self.profile.scenario == "replicated-control-planes":
            from lab.scenarios.replicated_control_planes import faults

            catalogue: ModuleType | None = faults
        else:
            catalogue = mpmn_faults()
        if catalogue is None:
            return None
        tools = self.tools  # None only before `start` (the unit tests connect to a fake lab without it)
        return catalogue.FaultLab(self.profile, self.handle, self.workdir,
                                  istioctl=tools.istioctl if tools is not None else None,
                                  istio_dir=tools.istio_dir if tools is not None else None)

    def kubeconfig(self, cluster: Any) -> Path:
        return Path(self.provider.kubeconfig(cluster))

    def context(self, cluster: Any) -> str:
        return str(self.provider.context(cluster))

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
        if self.handle is not None:
            self.handle.close()
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
        scenario's proof (from cluster1's client pod) returns 200."""
        self.healthy = False
        if not self._kubeconfigs_exist():
            where = sorted({str(self.kubeconfig(c).parent) for c in self.profile.clusters})
            self.why_unhealthy = f"no kubeconfigs under {', '.join(where)}"
            return False
        target = self.target
        try:
            for c in self.profile.clusters:
                ready = self.cluster(c).readiness(target.istio_ns, ISTIOD)
                image = ready.image if ready is not None else ""
                if not image.endswith(":" + self.profile.istio_version):
                    self.why_unhealthy = f"{c.name} runs istiod {image or '(none)'}, not {self.profile.istio_version}"
                    return False
            res = self.call(self.profile.client, target.client_ns, target.probe_url)
        except LabError as err:
            self.why_unhealthy = str(err)
            return False
        if not res.ok:
            self.why_unhealthy = (f"the call to {target.probe_url} from {self.profile.client.name} gave {res.status} "
                                  f"(curl exit {res.exit_code})")
            return False
        self.healthy = True
        self.why_unhealthy = ""
        return True

    # --- reading and probing, through the handle -------------------------------------------------------------------
    def cluster(self, cluster: Any) -> ClusterHandle:
        if self.handle is None:
            raise LabError("the e2e session is not connected to a lab")
        return self.handle[cluster.name]

    def pod(self, cluster: Any, namespace: str, selector: str) -> str:
        """The newest running pod with `selector` (lab.cluster.newest_running: not one being replaced)."""
        found = self.cluster(cluster).running_pod(namespace, selector)
        return str(found.metadata.name)

    def _client(self, selector: str | None, container: str | None) -> tuple[str, str]:
        target = self.target
        return selector or target.client_selector, container or target.client_container

    def sleep_pod(self, cluster: Any, namespace: str) -> str:
        return self.pod(cluster, namespace, self.target.client_selector)

    def call(self, cluster: Any, namespace: str, url: str, *, method: str = "GET", extra: tuple[str, ...] = (),
             selector: str | None = None, container: str | None = None) -> CurlResult:
        """curl `url` from the client pod (the scenario's: sleep, or curl) in `namespace` of `cluster`."""
        selector, container = self._client(selector, container)
        h = self.cluster(cluster)
        pod = self.pod(cluster, namespace, selector)
        res = h.exec(namespace, pod, container, curl_argv(url, method=method, extra=extra), timeout=EXEC_TIMEOUT)
        return parse_curl(res.stdout, res.exit_code, stderr=res.stderr)

    def call_in(self, cluster: Any, namespace: str, pod: str, container: str, url: str) -> CurlResult:
        res = self.cluster(cluster).exec(namespace, pod, container, curl_argv(url), timeout=EXEC_TIMEOUT)
        return parse_curl(res.stdout, res.exit_code, stderr=res.stderr)

    def nslookup(self, cluster: Any, namespace: str, pod: str, name: str, server: str | None = None, *,
                 container: str | None = None) -> NslookupResult:
        res = self.cluster(cluster).exec(namespace, pod, container or self.target.client_container,
                                         nslookup_argv(name, server), timeout=EXEC_TIMEOUT)
        return NslookupResult(parse_nslookup(res.stdout), res.exit_code, res.output)

    def config_dump(self, cluster: Any, namespace: str, selector: str) -> dict:
        """The Envoy /config_dump of a pod's istio-proxy (pilot-agent's admin proxy, through the handle's exec)."""
        return json.loads(self.envoy_admin(cluster, namespace, selector, "config_dump"))

    def envoy_admin(self, cluster: Any, namespace: str, selector: str, path: str) -> str:
        h = self.cluster(cluster)
        return h.envoy_admin(namespace, self.pod(cluster, namespace, selector), path, timeout=EXEC_TIMEOUT)


__all__ = ["LabSession", "docker_problem", "mpmn_faults", "lab_home", "CLIENT_NS", "SERVER_NS", "ISTIO_NS"]
