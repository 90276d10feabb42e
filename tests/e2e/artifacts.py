"""What the e2e suite saves when a test fails: per cluster, the state a person needs to see why, for the scenario
under test.

Layout: <artifacts>/<test-name>/<cluster>/<file>. Every item is collected on its own; one that cannot be read is
written as a `.error` file with the reason, so a broken lab still yields everything else. The items are the kubectl
commands a person would type (so the files read as they would) and Envoy admin paths read through the lab's handle.
No Secret's data is ever written: the remote secrets hold a kubeconfig with a token, so only their names are listed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.kube import Kubectl
from lab.scenarios.multi_primary_multi_network import names as mp
from lab.scenarios.replicated_control_planes.names import CLIENT_NS, ISTIO_NS, SCENARIO, SERVER_NS

log = logging.getLogger("tests.e2e")


def safe_name(nodeid: str) -> str:
    """A directory name for a test id.

    `tests/e2e/test_faults.py::test_x[vip-loopback]` -> `test_faults.test_x-vip-loopback`."""
    name = nodeid.split("/")[-1].replace(".py::", ".").replace("::", ".")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


Item = tuple[str, list[str], str | None]


def plan(role: str, scenario: str = SCENARIO) -> list[Item]:
    """(file name, kubectl args or [namespace, selector], None or an Envoy admin path) for a cluster with `role` in
    a lab of `scenario`."""
    if scenario == mp.SCENARIO:
        return _plan_multi_primary(role)
    app_ns = CLIENT_NS if role == "client" else SERVER_NS
    items: list[Item] = [
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


def _plan_multi_primary(role: str) -> list[Item]:
    ns, ist = mp.APP_NS, mp.ISTIO_NS
    app = mp.CLIENT_APP if role == "client" else mp.SERVER_APP
    items: list[Item] = [
        ("pods.txt", ["get", "pods", "--all-namespaces", "-o", "wide"], None),
        ("events.txt", ["get", "events", "--all-namespaces", "--sort-by=.lastTimestamp"], None),
        # the network label on istio-system and the injection label on sample
        ("namespaces.txt", ["get", "namespaces", "--show-labels"], None),
        ("services.yaml", ["get", "services", "-n", ist, "-o", "yaml"], None),  # the east-west gateway's address
        ("services-sample.txt", ["get", "services", "-n", ns, "-o", "wide"], None),
        ("gateways.yaml", ["get", "gateways.networking.istio.io", "--all-namespaces", "-o", "yaml"], None),
        # names only: the Secrets themselves hold the other cluster's kubeconfig with a token
        ("remote-secrets.txt", ["get", "secrets", "-n", ist, "-l", mp.REMOTE_SECRET_LABEL], None),
        ("servicecidrs.txt", ["get", "servicecidrs.networking.k8s.io"], None),
        ("istiod.log", ["logs", "-n", ist, "deployment/istiod", "--tail=2000"], None),
        ("eastwestgateway.log", ["logs", "-n", ist, f"deployment/{mp.EASTWEST_GATEWAY}", "--tail=2000"], None),
        (f"{app}-istio-proxy.log", ["logs", "-n", ns, f"deployment/{app}", "-c", "istio-proxy", "--tail=2000"],
         None),
        ("kube-dns.log", ["logs", "-n", "kube-system", "deployment/coredns", "--tail=500"], None),
        # MetalLB's controller assigns the gateway's address (config/manifests/metallb-native.yaml@v0.16.1)
        ("metallb-controller.log", ["logs", "-n", mp.METALLB_NS, "deployment/controller", "--tail=500"], None),
    ]
    envoys = [(app, ns, f"app={app}"), ("eastwestgateway", ist, mp.EASTWEST_SELECTOR)]
    for name, namespace, selector in envoys:
        items.append((f"{name}-config_dump.json", [namespace, selector], "config_dump"))
        items.append((f"{name}-clusters.json", [namespace, selector], "clusters?format=json"))
        items.append((f"{name}-stats.txt", [namespace, selector], "stats"))
    return items


def collect(out: Path, kubectl: Kubectl, role: str, admin: Callable[[str, str, str], str], *,
            scenario: str = SCENARIO) -> list[Path]:
    """Write everything `plan(role, scenario)` names under `out`; `admin(namespace, selector, path)` reads an Envoy
    admin path. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for filename, args, admin_path in plan(role, scenario):
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
    """Everything `plan` names for the session's scenario, for every cluster of a tests.e2e.session.LabSession,
    under base/<cluster>/."""
    for cluster in session.profile.clusters:
        def admin(ns: str, selector: str, path: str, cluster=cluster) -> str:
            return session.envoy_admin(cluster, ns, selector, path)

        try:
            collect(base / cluster.name, session.kubectl[cluster.name], cluster.role, admin,
                    scenario=session.profile.scenario)
        except OSError as err:  # a full disk must not hide the test's own failure
            log.warning("could not write artifacts under %s: %s", base, err)
    return base
