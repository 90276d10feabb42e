"""The thin layer over kubectl for one cluster: always names its kubeconfig and context explicitly.

`lab up` runs kubectl as the replayable plan shows it (lab.perform, the scenarios' actions); reads, waits and
probes go through the Kubernetes API instead (lab.cluster; docs/kube-api.md says which is used where). A Kubectl is
made from the lab's one handle (lab.cluster.ClusterHandle.kubectl), so its kubeconfig and context are the
provider's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.settings import TIMEOUTS
from lab.shell import Result, Runner


@dataclass(frozen=True)
class Query:
    """`kubectl get <args> -o jsonpath=<jsonpath>` and what the value is, for messages."""

    args: tuple[str, ...]
    jsonpath: str
    what: str


# The cluster DNS's ConfigMap (kubeadm's, as kind installs it); its `data.Corefile` is what the lab patches and reads.
COREDNS_CONFIGMAP = ("configmap", "coredns", "-n", "kube-system")  # `kubectl get` arguments


@dataclass
class Kubectl:
    runner: Runner
    kubeconfig: str
    context: str
    binary: str = "kubectl"

    def base(self) -> list[str]:
        return [self.binary, "--kubeconfig", self.kubeconfig, "--context", self.context]

    def run(self, *args: str, input: str | None = None, check: bool = True,  # noqa: A002
            timeout: float | None = None, context: str = "") -> Result:
        return self.runner.run([*self.base(), *args], input=input, check=check,
                               timeout=timeout or TIMEOUTS.command, context=context or self.context)

    def get_json(self, *args: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("get", *args, "-o", "json").stdout)
        return data

    def jsonpath(self, *args: str, path: str) -> str:
        return self.run("get", *args, "-o", f"jsonpath={path}").stdout.strip()

    def query(self, q: Query) -> str:
        """One of a scenario's run-time lookups (e.g. the istiocoredns ClusterIP of the 1.7 scenario's names)."""
        return self.jsonpath(*q.args, path=q.jsonpath)

    def apply(self, manifest: str, namespace: str | None = None) -> Result:
        ns = ["-n", namespace] if namespace else []
        return self.run("apply", *ns, "-f", "-", input=manifest)

    def exec(self, namespace: str, pod: str, container: str, argv: Sequence[str], check: bool = False,
             timeout: float | None = None) -> Result:
        return self.run("exec", "-n", namespace, pod, "-c", container, "--", *argv, check=check, timeout=timeout)


def read_coredns(k: Kubectl, *, context: str = "") -> dict[str, Any]:
    """The live kube-system/coredns ConfigMap (COREDNS_CONFIGMAP), as `kubectl get -o json` prints it: what `lab up`'s
    CoreDNS patch reads (the plan shows that command); code that only reads uses lab.cluster.ClusterHandle.coredns."""
    configmap: dict[str, Any] = json.loads(k.run("get", *COREDNS_CONFIGMAP, "-o", "json", context=context).stdout)
    return configmap


def corefile_of(configmap: Mapping[str, Any]) -> str:
    """The Corefile in a coredns ConfigMap read by `read_coredns`; empty when it holds none."""
    return str((configmap.get("data") or {}).get("Corefile", ""))
