"""The replicated-control-planes scenario as steps: the write-up's sections, cluster by cluster, from a profile.

`build` is what `lab up` runs and `lab plan` shows (the engine's lab/plan.py renders it as text, a replayable bash
script or JSON); `build_uninstall` is the write-up's last section. Values known only at run time (the istiocoredns
ClusterIP, cluster2's gateway node IP and nodePort, the sleep pod) are `Lookup` tokens: a kubectl jsonpath query
that the executor runs and the shell script writes as `$(kubectl ... -o jsonpath=...)`, the way the write-up does
(jsonpaths: docs/sources.md#istio-recipes-lookups).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import yaml

from lab import certs, manifests, probe
from lab import images as lab_images
from lab.kube import Query
from lab.plan import (
    Check,
    Command,
    Expect,
    ExpectKind,
    GenerateCerts,
    Manifest,
    Paths,
    PullImages,
    Sample,
    SecretFromFiles,
    Step,
    Template,
    Text,
    check_order,
    cluster_steps,
    kubectl,
    lookup,
    same_image,
)
from lab.scenarios.replicated_control_planes import istio, kindconfig, names, serviceentry
from lab.scenarios.replicated_control_planes.actions import ApplyClientServiceEntry, PatchCoreDNS
from lab.scenarios.replicated_control_planes.names import SCENARIO
from lab.scenarios.replicated_control_planes.profiles import ClusterSpec, Profile
from lab.settings import TIMEOUTS
from lab.tokens import Context, File, Kubeconfig, Lookup

# --- the write-up's sections (the headings of "Istio多集群(1)-多控制面", docs/design.md) ------------------------
S_REQUIREMENTS = "要求 (Requirements: kubernetes clusters)"
S_CONTROL_PLANE = "在每个集群中部署Istio控制面 (Deploy the Istio control plane in each cluster)"
S_DNS = "配置DNS (Configure DNS)"
S_APPS = "配置用例服务 (Configure the example services)"
S_GATEWAY = "暴露cluster2的网关地址 (Expose cluster2's gateway address)"
S_SERVICEENTRY = "配置应用服务: ServiceEntry (Configure application services: the ServiceEntry)"
S_DNS_CHECK = "配置DNS: 判断DNS解析是否正确 (Configure DNS: check the resolution)"
S_VERIFY = "校验可以通过sleep服务访问httpbin服务 (Verify that sleep reaches httpbin)"
S_UNINSTALL = "卸载 (Uninstall)"

# Phases group steps for the executor's summary; the plan order is phase by phase.
PHASES = ("host", "clusters", "control-plane", "dns", "apps", "serviceentries", "verify")

# The scenario's names (the write-up and the Istio samples); not pins, so they live here and not in the profile.
CLIENT_NS = names.CLIENT_NS
SERVER_NS = names.SERVER_NS
REMOTE = serviceentry.RemoteService(names.REMOTE_NAME, SERVER_NS, names.REMOTE_PORT)
SE_NAME = REMOTE.resource_name  # the write-up's ServiceEntry name in both clusters: httpbin-bar
SAMPLE_SLEEP = "samples/sleep/sleep.yaml"
SAMPLE_HTTPBIN = "samples/httpbin/httpbin.yaml"
# The images the 1.7.x samples name (unpinned upstream); the profile decides what actually runs.
SAMPLE_IMAGES = {"sleep": "governmentpaas/curl-ssl", "httpbin": "docker.io/kennethreitz/httpbin"}
CACERTS_FILES = certs.CACERTS_FILES
# Why the clients carry this pod annotation: lab.scenarios.replicated_control_planes.names.STATS_ANNOTATION.
STATS_ANNOTATION = names.STATS_ANNOTATION
NAMESPACE_TEMPLATE = "namespace.yaml"


def build(profile: Profile, paths: Paths | None = None) -> list[Step]:
    """Every step `lab up` runs, in an order that respects `needs` (phase by phase, cluster by cluster).

    `paths` is accepted for symmetry with the renderers; the steps refer to files through `File` tokens.
    """
    del paths
    steps: list[Step] = []
    images = profile.images.resolved(profile.istio_version)
    image_list = tuple(lab_images.image_list(profile))
    clusters = profile.clusters
    by_phase: dict[str, list[Step]] = {p: [] for p in PHASES}

    if profile.load_images:
        # kind load wants the image in the host's Docker first; pull once, load into every cluster
        # (docs/sources.md#kind-multiple-clusters).
        by_phase["host"].append(Step(
            "host/images-pull", None, S_REQUIREMENTS, "pull the lab's images once on the host (docker pull)",
            PullImages(image_list, lab_images.platform_for(profile)), phase="host"))
    if profile.cert_source == "generated":
        by_phase["host"].append(Step(
            "host/certs", None, S_CONTROL_PLANE, "generate a shared root CA and one intermediate CA per cluster",
            GenerateCerts(File("LAB_HOME", "certs"), tuple(c.name for c in clusters)), phase="host"))

    for c in clusters:
        by_phase["clusters"] += cluster_steps(profile, c, image_list, kindconfig.config_yaml(profile, c),
                                              S_REQUIREMENTS)
        by_phase["control-plane"] += _control_plane_steps(profile, c, images)
        by_phase["dns"] += _dns_steps(profile, c)
        by_phase["apps"] += _app_steps(profile, c, images)
    by_phase["serviceentries"] += _serviceentry_steps(profile)
    by_phase["verify"] += _verify_steps(profile)

    for phase in PHASES:
        steps += by_phase[phase]
    # The proof comes last and needs every other step, so it runs only when everything is in place.
    steps[-1] = replace(steps[-1], needs=tuple(s.id for s in steps[:-1]))
    check_order(steps)
    return steps


def _cert_files(profile: Profile, c: ClusterSpec) -> tuple[File, ...]:
    if profile.cert_source == "generated":
        return tuple(File("LAB_HOME", f"certs/{c.name}/{f}") for f in CACERTS_FILES)
    # The write-up (and istio.io 1.7) uses the release's samples/certs for every cluster.
    return tuple(File("ISTIO_DIR", f"samples/certs/{f}") for f in CACERTS_FILES)


def namespace_manifest(name: str, labels: Mapping[str, str] | None = None) -> str:
    """manifests/replicated-control-planes/namespace.yaml; the labels (a varying mapping) are added in code."""
    obj = yaml.safe_load(manifests.render(NAMESPACE_TEMPLATE, SCENARIO, NAME=name))
    if labels:
        obj["metadata"]["labels"] = dict(labels)
    return yaml.safe_dump(obj, sort_keys=False)


def _control_plane_steps(profile: Profile, c: ClusterSpec, images: Mapping[str, str]) -> list[Step]:
    n = c.name
    base = f"{n}/cluster" if not profile.load_images else f"{n}/images-load"
    cert_needs = ("host/certs",) if profile.cert_source == "generated" else ()
    steps = [
        Step(f"{n}/ns-istio-system", n, S_CONTROL_PLANE, "namespace istio-system",
             # no labels: the file as it is (the script fills it with envsubst)
             Manifest(n, Template(SCENARIO, NAMESPACE_TEMPLATE, {"NAME": "istio-system"})), needs=(f"{n}/cluster",),
             phase="control-plane",
             verify=Check(kubectl(c, "get", "namespace", "istio-system", "-o", "name"), Expect(ExpectKind.EXIT0), 0)),
        # istiod reads cacerts only when it starts (pilot/pkg/bootstrap/istio_ca.go): the secret comes first.
        Step(f"{n}/cacerts", n, S_CONTROL_PLANE, "secret cacerts (ca-cert, ca-key, root-cert, cert-chain)",
             Manifest(n, SecretFromFiles("cacerts", "istio-system", _cert_files(profile, c))),
             needs=(f"{n}/ns-istio-system", *cert_needs), phase="control-plane",
             verify=Check(kubectl(c, "-n", "istio-system", "get", "secret", "cacerts", "-o", "name"),
                          Expect(ExpectKind.EXIT0), 0)),
    ]
    overlay = istio.overlay_yaml(profile)
    values = File("ISTIO_DIR", "manifests/examples/multicluster/values-istio-multicluster-gateways.yaml")
    # one file per cluster: both clusters install in parallel and must not write the same file at once
    overlay_file = File("LAB_HOME", f"istio-overlay-{n}.yaml")
    argv = tuple(istio.install_argv("istioctl", Kubeconfig(n), Context(n, c.context), [values, overlay_file]))
    steps.append(Step(
        f"{n}/istio", n, S_CONTROL_PLANE,
        f"istioctl install Istio {profile.istio_version} (values-istio-multicluster-gateways.yaml + lab overlay)",
        # istioctl 1.7 reads its readiness wait from the environment only
        # (lab/scenarios/replicated_control_planes/istio.py); the lab's deadline is
        # derived from it, so istioctl is never killed inside one of its own waits.
        Command(argv, writes=((overlay_file, overlay),), timeout=istio.install_timeout(TIMEOUTS.istio_readiness),
                env=tuple(istio.install_env(TIMEOUTS.istio_readiness).items())),
        needs=(f"{n}/cacerts", base), phase="control-plane",
        verify=Check(kubectl(c, "-n", "istio-system", "get", "deployment", "istiod",
                             "-o", "jsonpath={.spec.template.spec.containers[0].image}"),
                     Expect(ExpectKind.EQUALS, istio.chart_image(images["pilot"])), 0)))
    if c.role == "server":
        steps.append(Step(
            f"{n}/gateway", n, S_GATEWAY, "ingress gateway ready, its 15443 nodePort as the profile fixed it",
            Check(kubectl(c, "-n", "istio-system", "get", "service", "istio-ingressgateway", "-o",
                          "jsonpath={.spec.ports[?(@.port==15443)].nodePort}"),
                  Expect(ExpectKind.EQUALS, str(profile.gateway_node_port)), TIMEOUTS.rollout),
            needs=(f"{n}/istio",), phase="control-plane"))
        steps.append(Step(
            f"{n}/gateway-ready", n, S_GATEWAY, "ingress gateway deployment rolled out",
            _rollout(c, "istio-system", "istio-ingressgateway"), needs=(f"{n}/gateway",), phase="control-plane"))
    return steps


def _rollout(c: ClusterSpec, namespace: str, deployment: str, timeout: float = TIMEOUTS.rollout) -> Check:
    return Check(kubectl(c, "-n", namespace, "rollout", "status", f"deployment/{deployment}",
                         f"--timeout={int(timeout)}s"), Expect(ExpectKind.EXIT0), timeout)


def _query(c: ClusterSpec, q: Query, what: str | None = None) -> Lookup:
    return lookup(c, *q.args, jsonpath=q.jsonpath, what=what or q.what)


def istiocoredns_ip(c: ClusterSpec) -> Lookup:
    return _query(c, names.ISTIOCOREDNS_IP)


def kubedns_ip(c: ClusterSpec) -> Lookup:
    return _query(c, names.KUBE_DNS_IP)


def _dns_steps(profile: Profile, c: ClusterSpec) -> list[Step]:
    n = c.name
    return [
        Step(f"{n}/istiocoredns", n, S_DNS, "istiocoredns (installed by Istio) is ready",
             _rollout(c, "istio-system", "istiocoredns"), needs=(f"{n}/istio",), phase="dns"),
        # Read the live Corefile and add (or replace) the `global` server block: never paste the docs' copy,
        # CoreDNS 1.7+ exits on its `upstream` option (docs/sources.md#coredns-upstream-option).
        Step(f"{n}/coredns-global", n, S_DNS, "CoreDNS: forward the `global` zone to istiocoredns",
             PatchCoreDNS(n, istiocoredns_ip(c), profile.aaaa_guard, File("LAB_HOME", f"{n}.Corefile")),
             needs=(f"{n}/istiocoredns",), phase="dns"),
        # The write-up: after the apply CoreDNS may not pick the change up; restart its pods.
        Step(f"{n}/coredns-restart", n, S_DNS, "restart CoreDNS",
             Command(kubectl(c, "-n", "kube-system", "rollout", "restart", "deployment/coredns")),
             needs=(f"{n}/coredns-global",), phase="dns"),
        Step(f"{n}/coredns-ready", n, S_DNS, "CoreDNS rolled out",
             _rollout(c, "kube-system", "coredns", TIMEOUTS.coredns_restart), needs=(f"{n}/coredns-restart",),
             phase="dns"),
    ]


def _sample(rel: str, app: str, images: Mapping[str, str]) -> Sample:
    want = images[app]
    written = SAMPLE_IMAGES[app]
    return Sample(File("ISTIO_DIR", rel), () if same_image(written, want) else ((written, want),))


def _app_steps(profile: Profile, c: ClusterSpec, images: Mapping[str, str]) -> list[Step]:
    n = c.name
    ns = CLIENT_NS if c.role == "client" else SERVER_NS
    # Injection must be on before the pods exist: the label is on the namespace object itself, and the
    # namespace needs Istio's injector (istiod) running, so apps come after the install.
    steps = [Step(f"{n}/ns-{ns}", n, S_APPS, f"namespace {ns} labelled istio-injection=enabled",
                  Manifest(n, Text(namespace_manifest(ns, {"istio-injection": "enabled"}))),
                  needs=(f"{n}/istio",), phase="apps",
                  verify=Check(kubectl(c, "get", "namespace", ns, "-o",
                                       "jsonpath={.metadata.labels.istio-injection}"),
                               Expect(ExpectKind.EQUALS, "enabled"), 0))]
    apps = [("httpbin", SAMPLE_HTTPBIN)] if c.role == "server" else []
    apps.append(("sleep", SAMPLE_SLEEP))  # the write-up also runs a sleep in cluster2's bar
    for app, rel in apps:
        steps.append(Step(f"{n}/{app}", n, S_APPS, f"{app} in {ns} ({rel})",
                          Manifest(n, _sample(rel, app, images), ns), needs=(f"{n}/ns-{ns}",), phase="apps",
                          verify=Check(kubectl(c, "-n", ns, "get", "deployment", app, "-o", "name"),
                                       Expect(ExpectKind.EXIT0), 0)))
    key, value = STATS_ANNOTATION
    patch = istio.stats_annotation_patch()
    steps.append(Step(
        f"{n}/sleep-stats", n, S_APPS, f"sleep in {ns}: pod annotation {key}={value} (for lab doctor)",
        # A merge patch of the pod template, not an edit of the release's sample: `kubectl apply` of the sample
        # later keeps it (it is not in the last-applied annotation), and the shell script replays it as is.
        Command(kubectl(c, "-n", ns, "patch", "deployment", "sleep", "--type", "merge", "-p", patch)),
        needs=(f"{n}/sleep",), phase="apps",
        verify=Check(kubectl(c, "-n", ns, "get", "deployment", "sleep", "-o",
                             "jsonpath={.spec.template.metadata.annotations." + key.replace(".", "\\.") + "}"),
                     Expect(ExpectKind.EQUALS, value), 0)))
    for app, _ in apps:
        after = f"{n}/sleep-stats" if app == "sleep" else f"{n}/{app}"
        steps.append(Step(f"{n}/{app}-ready", n, S_APPS, f"{app} in {ns} rolled out (with its sidecar)",
                          _rollout(c, ns, app), needs=(after,), phase="apps"))
    return steps


def gateway_address(server: ClusterSpec) -> Lookup:
    # The node IP of the gateway pod on the shared `kind` Docker network (the write-up's INGRESS_HOST).
    return _query(server, names.GATEWAY_NODE_IP, f"{server.name} gateway node IP")


def gateway_node_port(server: ClusterSpec) -> Lookup:
    return _query(server, names.GATEWAY_NODEPORT, f"{server.name} gateway 15443 nodePort")


def _serviceentry_steps(profile: Profile) -> list[Step]:
    client, server = profile.client, profile.server

    def se_vip(c: ClusterSpec, ns: str) -> Check:
        return Check(kubectl(c, "-n", ns, "get", "serviceentries.networking.istio.io", SE_NAME, "-o",
                             "jsonpath={.spec.addresses[0]}"), Expect(ExpectKind.EQUALS, c.vip), 0)

    steps = [
        Step(f"{client.name}/serviceentry", client.name, S_SERVICEENTRY,
             f"ServiceEntry {REMOTE.host} in {CLIENT_NS}: VIP {client.vip}, endpoint {server.name}'s gateway node "
             "IP and 15443 nodePort",
             ApplyClientServiceEntry(client.name, CLIENT_NS, REMOTE.name, REMOTE.namespace, client.vip,
                                     gateway_address(server), gateway_node_port(server)),
             needs=(f"{client.name}/ns-{CLIENT_NS}", f"{server.name}/gateway-ready"), phase="serviceentries",
             verify=se_vip(client, CLIENT_NS)),
        # The write-up's own finding: without it the gateway could not resolve httpbin.bar.global (true only
        # where the gateway EnvoyFilter is broken, 1.7.0-1.7.4: docs/sources.md#gateway-envoyfilter); kept as written.
        Step(f"{server.name}/serviceentry", server.name, S_SERVICEENTRY,
             f"ServiceEntry {REMOTE.host} in {SERVER_NS}: VIP {server.vip}, endpoint {REMOTE.local_host}",
             # the file as it is (its namespace is kubectl's -n): the script fills it with envsubst
             Manifest(server.name, Template(SCENARIO, serviceentry.SERVER_TEMPLATE,
                                            serviceentry.server_vars(REMOTE, server.vip)), SERVER_NS),
             needs=(f"{server.name}/ns-{SERVER_NS}",), phase="serviceentries",
             verify=se_vip(server, SERVER_NS)),
    ]
    return steps


def sleep_pod(c: ClusterSpec, namespace: str) -> Lookup:
    # The write-up's SLEEP_POD: the newest Running pod. A pod being deleted keeps phase Running until its containers
    # stop, and the sample's sleep (`/bin/sleep` as PID 1 ignores SIGTERM) takes its whole 30 s grace period, while
    # its sidecar drains and exits within seconds; `rollout status` does not wait for it (terminating pods are not
    # counted). After the `sleep-stats` rollout the old pod is still listed: take the newest, not `.items[0]`.
    return lookup(c, "-n", namespace, "pod", "-l", "app=sleep", "--field-selector=status.phase=Running",
                  "--sort-by=.metadata.creationTimestamp", jsonpath="{.items[-1:].metadata.name}",
                  what=f"sleep pod in {namespace}")


def curl_check(c: ClusterSpec, namespace: str) -> Check:
    url = f"{REMOTE.host}:{REMOTE.port}/headers"
    return Check(kubectl(c, "exec", "-n", namespace, sleep_pod(c, namespace), "-c", "sleep", "--",
                         *probe.curl_argv(url)), Expect(ExpectKind.HTTP, "200"), TIMEOUTS.probe)


def _verify_steps(profile: Profile) -> list[Step]:
    client, server = profile.client, profile.server
    cn, sn = client.name, server.name
    all_client = (f"{cn}/serviceentry", f"{cn}/sleep-ready", f"{cn}/coredns-ready")
    steps = []
    for dns, name in ((istiocoredns_ip(client), "istiocoredns"), (kubedns_ip(client), "kube-dns")):
        steps.append(Step(
            f"{cn}/nslookup-{name}", cn, S_DNS_CHECK,
            f"nslookup -type=a {REMOTE.host} through {name} answers {client.vip}",
            # nslookup takes the server as its last argument (lab/probe.py nslookup_argv)
            Check((*kubectl(client, "exec", "-n", CLIENT_NS, sleep_pod(client, CLIENT_NS), "-c", "sleep", "--",
                            *probe.nslookup_argv(REMOTE.host)), dns), Expect(ExpectKind.RESOLVES, client.vip),
                  TIMEOUTS.dns_converge),
            needs=all_client, phase="verify"))
    steps.append(Step(
        f"{sn}/curl", sn, S_VERIFY, f"curl {REMOTE.host}:{REMOTE.port}/headers from sleep in {sn}/{SERVER_NS} = 200",
        curl_check(server, SERVER_NS),
        needs=(f"{sn}/serviceentry", f"{sn}/sleep-ready", f"{sn}/httpbin-ready", f"{sn}/coredns-ready"),
        phase="verify"))
    # The proof, last: it needs every other step (so the executor runs it only when all is in place).
    steps.append(Step(
        f"{cn}/curl", cn, S_VERIFY, f"curl {REMOTE.host}:{REMOTE.port}/headers from sleep in {cn}/{CLIENT_NS} = 200",
        curl_check(client, CLIENT_NS), needs=(), phase="verify"))
    return steps


# --- uninstall (the write-up's last section) ----------------------------------------------------------------
def build_uninstall(profile: Profile, paths: Paths | None = None) -> list[Step]:
    """The write-up's uninstall section, cluster by cluster; deletions ignore what is already gone."""
    del paths
    client, server = profile.client, profile.server
    ign = "--ignore-not-found"
    steps = [
        Step(f"{client.name}/uninstall-sleep", client.name, S_UNINSTALL, f"delete sleep in {CLIENT_NS}",
             Command(kubectl(client, "delete", "-n", CLIENT_NS, "-f", File("ISTIO_DIR", SAMPLE_SLEEP), ign))),
        Step(f"{client.name}/uninstall-serviceentry", client.name, S_UNINSTALL,
             f"delete ServiceEntry {SE_NAME} in {CLIENT_NS}",
             Command(kubectl(client, "delete", "-n", CLIENT_NS, "serviceentry", SE_NAME, ign))),
        Step(f"{client.name}/uninstall-ns", client.name, S_UNINSTALL, f"delete namespace {CLIENT_NS}",
             Command(kubectl(client, "delete", "ns", CLIENT_NS, ign))),
        Step(f"{server.name}/uninstall-httpbin", server.name, S_UNINSTALL, f"delete httpbin in {SERVER_NS}",
             Command(kubectl(server, "delete", "-n", SERVER_NS, "-f", File("ISTIO_DIR", SAMPLE_HTTPBIN), ign))),
        # Not in the write-up's list, but the lab (like the write-up's body) also put these in cluster2's bar.
        Step(f"{server.name}/uninstall-sleep", server.name, S_UNINSTALL, f"delete sleep in {SERVER_NS}",
             Command(kubectl(server, "delete", "-n", SERVER_NS, "-f", File("ISTIO_DIR", SAMPLE_SLEEP), ign))),
        Step(f"{server.name}/uninstall-serviceentry", server.name, S_UNINSTALL,
             f"delete ServiceEntry {SE_NAME} in {SERVER_NS}",
             Command(kubectl(server, "delete", "-n", SERVER_NS, "serviceentry", SE_NAME, ign))),
        Step(f"{server.name}/uninstall-ns", server.name, S_UNINSTALL, f"delete namespace {SERVER_NS}",
             Command(kubectl(server, "delete", "ns", SERVER_NS, ign))),
    ]
    ordered: list[Step] = []
    for s in steps:  # within a cluster, in the write-up's order
        prev = [o.id for o in ordered if o.cluster == s.cluster]
        ordered.append(replace(s, needs=tuple(prev[-1:]), phase="uninstall"))
    return ordered
