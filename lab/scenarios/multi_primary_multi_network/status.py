"""What `lab status` shows of the multi-primary-multi-network scenario in one cluster (read-only)."""

from __future__ import annotations

from lab.kube import Kubectl
from lab.scenarios.multi_primary_multi_network import names
from lab.scenarios.multi_primary_multi_network.profiles import ClusterSpec


def rows(k: Kubectl, c: ClusterSpec) -> list[tuple[str, bool, str]]:
    """istiod, the east-west gateway and its address (server), the remote secret (client), the apps."""
    def ready(ns: str, deploy: str) -> tuple[bool, str]:
        res = k.run("-n", ns, "get", "deployment", deploy, "-o",
                    "jsonpath={.status.readyReplicas}/{.spec.replicas}", check=False)
        if not res.ok:
            return False, "absent"
        got, _, want = res.stdout.strip().partition("/")
        return bool(got) and got == want, f"{res.stdout.strip()} ready"

    out = [("istiod", *ready(names.ISTIO_NS, "istiod"))]
    if c.role == "server":
        out.append((names.EASTWEST_GATEWAY, *ready(names.ISTIO_NS, names.EASTWEST_GATEWAY)))
        res = k.run("-n", names.ISTIO_NS, "get", "service", names.EASTWEST_GATEWAY, "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip} {.spec.externalIPs[0]}", check=False)
        addr = res.stdout.split()[0] if res.ok and res.stdout.split() else ""
        out.append(("east-west gateway address", bool(addr), addr or "<pending>"))
        out.append((f"{names.SERVER_APP} in {names.APP_NS}", *ready(names.APP_NS, names.SERVER_APP)))
    else:
        sec = names.remote_secret_name("cluster2")
        res = k.run("-n", names.ISTIO_NS, "get", "secret", sec, "-o", "name", check=False)
        out.append(("remote secret", res.ok, sec if res.ok else "absent"))
        out.append((f"{names.CLIENT_APP} in {names.APP_NS}", *ready(names.APP_NS, names.CLIENT_APP)))
    return out
