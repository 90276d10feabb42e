"""What `lab status` shows of the replicated-control-planes scenario in one cluster (read-only)."""

from __future__ import annotations

import re

from lab.errors import CommandError, LabError
from lab.kube import Kubectl, corefile_of, read_coredns
from lab.scenarios.replicated_control_planes import corefile, names
from lab.scenarios.replicated_control_planes.profiles import ClusterSpec


def rows(k: Kubectl, c: ClusterSpec) -> list[tuple[str, bool, str]]:
    """`lab status` for one cluster: istiod, istiocoredns, the CoreDNS `global` block, the apps, the ServiceEntries."""
    def ready(ns: str, deploy: str) -> tuple[bool, str]:
        res = k.run("-n", ns, "get", "deployment", deploy, "-o",
                    "jsonpath={.status.readyReplicas}/{.spec.replicas} {.spec.template.spec.containers[0].image}",
                    check=False)
        if not res.ok:
            return False, "absent"
        counts, _, image = res.stdout.strip().partition(" ")
        got, _, want = counts.partition("/")
        return bool(got) and got == want, f"{counts} ready ({image})"

    rows: list[tuple[str, bool, str]] = []
    rows.append(("istiod", *ready("istio-system", "istiod")))
    rows.append(("istiocoredns", *ready("istio-system", "istiocoredns")))
    try:
        text: str | None = corefile_of(read_coredns(k))
    except CommandError:
        text = None
    block = None
    if text is not None:
        try:
            block = corefile.global_block(text)
        except LabError as err:
            block = None
            rows.append(("kube-system CoreDNS global block", False, str(err)))
    fwd = re.search(r"forward \. (\S+)", block or "")
    rows.append(("kube-system CoreDNS global block", block is not None,
                 f"forward to {fwd.group(1)}" if fwd else "missing"))
    apps = ([(names.CLIENT_NS, "sleep")] if c.role == "client"
            else [(names.SERVER_NS, names.REMOTE_NAME), (names.SERVER_NS, "sleep")])
    for ns, app in apps:
        rows.append((f"{app} in {ns}", *ready(ns, app)))
    se = k.run("get", "serviceentries.networking.istio.io", "-A", "-o",
               "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.spec.hosts} "
               "{.spec.addresses} {.spec.endpoints[*].address}:{.spec.endpoints[*].ports}{\"\\n\"}{end}",
               check=False)
    entries = [line for line in se.stdout.splitlines() if line.strip()] if se.ok else []
    rows.append(("ServiceEntries", bool(entries), "; ".join(entries) or "none"))
    return rows
