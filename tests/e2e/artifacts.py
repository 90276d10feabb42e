"""What the e2e suite saves when a test fails: per cluster, the state a person needs to see why.

Layout: <artifacts>/<test-name>/<cluster>/<file>. Every item is collected on its own; one that cannot be read is
written as a `.error` file with the reason, so a broken lab still yields everything else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.kube import Kubectl
from lab.scenarios.replicated_control_planes.faults import CLIENT_NS, ISTIO_NS, SERVER_NS

log = logging.getLogger("tests.e2e")


def safe_name(nodeid: str) -> str:
    """A directory name for a test id.

    `tests/e2e/test_faults.py::test_x[vip-loopback]` -> `test_faults.test_x-vip-loopback`."""
    name = nodeid.split("/")[-1].replace(".py::", ".").replace("::", ".")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def plan(role: str) -> list[tuple[str, list[str], str | None]]:
    """(file name, kubectl args, or None for an Envoy admin path) for a cluster with `role`."""
    app_ns = CLIENT_NS if role == "client" else SERVER_NS
    items: list[tuple[str, list[str], str | None]] = [
        ("pods.txt", ["get", "pods", "--all-namespaces", "-o", "wide"], None),
        ("events.txt", ["get", "events", "--all-namespaces", "--sort-by=.lastTimestamp"], None),
        ("serviceentries.yaml", ["get", "serviceentries.networking.istio.io", "--all-namespaces", "-o", "yaml"], None),
        ("envoyfilters.yaml", ["get", "envoyfilters.networking.istio.io", "--all-namespaces", "-o", "yaml"], None),
        ("coredns-configmap.yaml", ["get", "configmap", "coredns", "-n", "kube-system", "-o", "yaml"], None),
        ("istiocoredns-configmap.yaml", ["get", "configmap", "coredns", "-n", ISTIO_NS, "-o", "yaml"], None),
        ("istiod.log", ["logs", "-n", ISTIO_NS, "deployment/istiod", "--tail=2000"], None),
        # both containers of istiocoredns (manifests/charts/istiocoredns/templates/deployment.yaml)
        ("istiocoredns-coredns.log", ["logs", "-n", ISTIO_NS, "deployment/istiocoredns", "-c", "coredns",
                                      "--tail=2000"], None),
        ("istiocoredns-plugin.log", ["logs", "-n", ISTIO_NS, "deployment/istiocoredns", "-c", "istio-coredns-plugin",
                                     "--tail=2000"], None),
        ("kube-dns.log", ["logs", "-n", "kube-system", "deployment/coredns", "--tail=500"], None),
        ("gateway.log", ["logs", "-n", ISTIO_NS, "deployment/istio-ingressgateway", "--tail=2000"], None),
        (f"sleep-{app_ns}-istio-proxy.log", ["logs", "-n", app_ns, "deployment/sleep", "-c", "istio-proxy",
                                             "--tail=2000"], None),
    ]
    envoys = [("sleep", app_ns, "app=sleep")]
    if role == "server":
        items.append(("httpbin-istio-proxy.log", ["logs", "-n", SERVER_NS, "deployment/httpbin", "-c", "istio-proxy",
                                                  "--tail=2000"], None))
        envoys += [("httpbin", SERVER_NS, "app=httpbin"), ("gateway", ISTIO_NS, "istio=ingressgateway")]
    for name, ns, selector in envoys:
        items.append((f"{name}-config_dump.json", [ns, selector], "config_dump"))
        items.append((f"{name}-stats.txt", [ns, selector], "stats"))
    return items


def collect(out: Path, kubectl: Kubectl, role: str, admin: Callable[[str, str, str], str]) -> list[Path]:
    """Write everything `plan(role)` names under `out`; `admin(namespace, selector, path)` reads an Envoy admin
    path. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for filename, args, admin_path in plan(role):
        target = out / filename
        try:
            if admin_path is None:
                res = kubectl.run(*args, check=False)
                text = res.stdout if res.ok else res.output
            else:
                text = admin(args[0], args[1], admin_path)
        except LabError as err:
            target = out / (filename + ".error")
            text = str(err)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def dump_lab(session: Any, base: Path) -> Path:
    """Everything `plan` names, for every cluster of a tests.e2e.session.LabSession, under base/<cluster>/."""
    for cluster in session.profile.clusters:
        def admin(ns: str, selector: str, path: str, cluster=cluster) -> str:
            return session.envoy_admin(cluster, ns, selector, path)

        try:
            collect(base / cluster.name, session.kubectl[cluster.name], cluster.role, admin)
        except OSError as err:  # a full disk must not hide the test's own failure
            log.warning("could not write artifacts under %s: %s", base, err)
    return base
