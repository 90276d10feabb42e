"""The plan: the write-up's scenario as data, an ordered list of frozen steps per cluster, built from a profile.

`lab plan` prints it, `lab plan --shell` renders it as a bash script a person can replay, and `lab up`
(lab/executor.py) executes the same list. A step names its cluster, the write-up section it implements, what it
runs (a command, a manifest to apply, a check, or a named lab action with parameters) and the steps it needs, so
the executor can build both clusters in parallel wherever nothing orders them.

Values known only at run time (the istiocoredns ClusterIP, cluster2's gateway node IP and nodePort, the sleep
pod) are `Lookup` tokens: a kubectl jsonpath query that the executor runs and the shell script writes as
`$(kubectl ... -o jsonpath=...)`, the way the write-up does (jsonpaths: docs/sources.md#istio-recipes-lookups).
Paths are `File` tokens relative to `$LAB_HOME` or `$ISTIO_DIR`, so the plan itself does not depend on where
things live on this machine.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import Enum
from functools import singledispatch
from pathlib import Path
from typing import ClassVar

import yaml

from lab import certs, corefile, istio, kind, manifests, names, probe, serviceentry
from lab import images as lab_images
from lab.errors import ValidationError
from lab.profile import ClusterSpec, Profile
from lab.settings import TIMEOUTS
from lab.tokens import Concat, Context, File, Kubeconfig, Lookup, Token

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
# Why the clients carry this pod annotation: lab.names.STATS_ANNOTATION.
STATS_ANNOTATION = names.STATS_ANNOTATION
SHELL_BASES = ("LAB_HOME", "ISTIO_DIR")
# `kubectl apply` flags for Secrets that carry keys (see `_shell_manifest` and lab.executor.apply).
SERVER_SIDE_APPLY = ("--server-side", "--force-conflicts", "--field-manager=istio-multicluster-lab")


# --- argv tokens (lab/tokens.py) -------------------------------------------------------------------

def kubectl(cluster: ClusterSpec, *args: Token) -> tuple[Token, ...]:
    """argv of kubectl naming the cluster's own kubeconfig and context explicitly."""
    return ("kubectl", "--kubeconfig", Kubeconfig(cluster.name), "--context", Context(cluster.name, cluster.context),
            *args)


def lookup(cluster: ClusterSpec, *args: str, jsonpath: str, what: str) -> Lookup:
    return Lookup(cluster.name, cluster.context, tuple(args), jsonpath, what)


# --- what a step runs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """An argv to run. `writes` are files (path, text) written first; `timeout` bounds the command; `env` is added
    to its environment (the shell script writes it as `NAME=value command ...`)."""

    argv: tuple[Token, ...]
    writes: tuple[tuple[File, str], ...] = ()
    timeout: float = TIMEOUTS.command
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Text:
    """A manifest the plan renders itself (validated in tests against the real schemas)."""

    yaml: str


@dataclass(frozen=True)
class Sample:
    """A manifest from the Istio release, with image references replaced by the profile's choice."""

    file: File
    images: tuple[tuple[str, str], ...] = ()  # (as written in the sample, what the profile runs)


@dataclass(frozen=True)
class SecretFromFiles:
    """A generic Secret whose keys are file names and values the files' bytes, as `kubectl create secret
    generic --from-file` makes it. Rendered from the files at run time and sent on stdin: key material is
    never on a command line nor in the plan."""

    name: str
    namespace: str
    files: tuple[File, ...]


@dataclass(frozen=True)
class Manifest:
    """`kubectl apply` of a manifest on a cluster (apply semantics: re-running is safe)."""

    cluster: str
    source: Text | Sample | SecretFromFiles
    namespace: str | None = None


class ExpectKind(str, Enum):
    """What a check compares: the exit code, stdout, curl's HTTP status, or nslookup's addresses."""

    EXIT0 = "exit0"
    EQUALS = "equals"
    HTTP = "http"
    RESOLVES = "resolves"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Expect:
    """What a check waits for: `exit0`, `equals` (stdout), `http` (curl status), `resolves` (nslookup address)."""

    kind: ExpectKind
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ExpectKind(self.kind))  # a kind's name is refused unless it is one

    def describe(self) -> str:
        return {
            ExpectKind.EXIT0: "exit code 0",
            ExpectKind.EQUALS: f"output {self.value!r}",
            ExpectKind.HTTP: f"HTTP {self.value}",
            ExpectKind.RESOLVES: f"an A record {self.value}",
        }[self.kind]


@dataclass(frozen=True)
class Check:
    """A command whose result must meet `expect` within `timeout` seconds (polled; a single try if 0)."""

    argv: tuple[Token, ...]
    expect: Expect
    timeout: float = TIMEOUTS.rollout


# --- lab actions: what the executor does in-process and the shell script writes as equivalent commands --------
# One frozen dataclass per action. Three functions dispatch on the type (functools.singledispatch): `describe_action`
# and `shell_action` here, `perform` in lab/perform.py; an action type registers its implementation of each beside
# it, so the code that runs a plan never names an action.
@dataclass(frozen=True)
class Action:
    """A lab action. `name` is its name in `lab plan`; a `self_checking` action looks before it acts and changes
    nothing when all is in place, so it runs on every `lab up` (lab/perform.py)."""

    name: ClassVar[str]
    self_checking: ClassVar[bool] = False


@dataclass(frozen=True)
class CreateCluster(Action):
    """Create (or reuse) a kind cluster through the provider; `argv` and `config_text` are what it runs."""

    name: ClassVar[str] = "kind.create"
    self_checking: ClassVar[bool] = True
    cluster: str
    argv: tuple[Token, ...]
    config: File
    config_text: str
    node: str  # the node container (the legacy iptables modules are loaded through it)
    dns_check: str  # the node container to check for kind #3054, or ""


@dataclass(frozen=True)
class PullImages(Action):
    """`docker pull` each image the host does not have yet."""

    name: ClassVar[str] = "images.pull"
    images: tuple[str, ...]


@dataclass(frozen=True)
class LoadImages(Action):
    """`kind load docker-image` the images into a cluster (with the one-platform archive fallback)."""

    name: ClassVar[str] = "images.load"
    cluster: str
    images: tuple[str, ...]


@dataclass(frozen=True)
class GenerateCerts(Action):
    """A shared root CA in `out` and one intermediate CA per cluster (lab/certs.py)."""

    name: ClassVar[str] = "certs.generate"
    out: File
    clusters: tuple[str, ...]


@dataclass(frozen=True)
class PatchCoreDNS(Action):
    """Add (or replace) the `global` server block of the live Corefile, forwarding to `forward` (lab/corefile.py);
    `file` keeps the Corefile written."""

    name: ClassVar[str] = "coredns.patch"
    self_checking: ClassVar[bool] = True
    cluster: str
    forward: Lookup
    aaaa_guard: bool
    file: File


@dataclass(frozen=True)
class ApplyClientServiceEntry(Action):
    """The calling cluster's ServiceEntry for `service`.`service_namespace`.global (VIP `vip`), whose endpoint is
    the remote gateway at `address`:`port` (looked up at run time); re-applied when the live one differs."""

    name: ClassVar[str] = "serviceentry.client"
    self_checking: ClassVar[bool] = True
    cluster: str
    namespace: str
    service: str
    service_namespace: str
    vip: str
    address: Lookup
    port: Lookup


Run = Command | Manifest | Check | Action


@dataclass(frozen=True)
class Step:
    id: str  # "<cluster>/<name>" or "host/<name>"
    cluster: str | None
    section: str  # the write-up section this step implements
    title: str
    run: Run
    needs: tuple[str, ...] = ()
    phase: str = ""
    verify: Check | None = None  # a cheap check that the step's effect is in place (for fast re-runs)


def default_istio_dir(profile: Profile) -> Path:
    """Where `lab up` keeps the unpacked Istio release (lab.tools' cache); used for `lab plan` without downloading."""
    from lab import tools

    return tools.cache_dir() / f"istio-{profile.istio_version}"


@dataclass(frozen=True)
class Paths:
    """Where the lab keeps its state ($LAB_HOME) and where the Istio release is unpacked ($ISTIO_DIR)."""

    home: Path
    istio_dir: Path

    def resolve(self, f: File) -> Path:
        return (self.home if f.base == "LAB_HOME" else self.istio_dir) / f.rel


# --- building the plan ------------------------------------------------------------------------------------
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
            PullImages(image_list), phase="host"))
    if profile.cert_source == "generated":
        by_phase["host"].append(Step(
            "host/certs", None, S_CONTROL_PLANE, "generate a shared root CA and one intermediate CA per cluster",
            GenerateCerts(File("LAB_HOME", "certs"), tuple(c.name for c in clusters)), phase="host"))

    for c in clusters:
        by_phase["clusters"] += _cluster_steps(profile, c, image_list)
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


def _cluster_steps(profile: Profile, c: ClusterSpec, image_list: tuple[str, ...]) -> list[Step]:
    n = c.name
    config = File("LAB_HOME", f"kind/{n}.yaml")
    argv = tuple(kind.create_argv("kind", c, profile, config, Kubeconfig(n)))
    steps = [Step(
        f"{n}/cluster", n, S_REQUIREMENTS, f"kind create cluster {n} ({profile.node_image.split('@')[0]})",
        # Done by the provider (lab.kind: creation, then its checks); `argv` and `config_text` are what it
        # runs, for the plan and the shell script.
        CreateCluster(n, argv, config, kind.config_yaml(profile, c), kind.node_container(c),
                      kind.node_container(c) if kind.needs_dns_check(profile) else ""),
        phase="clusters")]
    if profile.load_images:
        steps.append(Step(
            f"{n}/images-load", n, S_REQUIREMENTS, f"load the images into {n} (kind load docker-image)",
            LoadImages(n, image_list),
            needs=(f"{n}/cluster", "host/images-pull"), phase="clusters"))
    return steps


def _cert_files(profile: Profile, c: ClusterSpec) -> tuple[File, ...]:
    if profile.cert_source == "generated":
        return tuple(File("LAB_HOME", f"certs/{c.name}/{f}") for f in CACERTS_FILES)
    # The write-up (and istio.io 1.7) uses the release's samples/certs for every cluster.
    return tuple(File("ISTIO_DIR", f"samples/certs/{f}") for f in CACERTS_FILES)


def namespace_manifest(name: str, labels: Mapping[str, str] | None = None) -> str:
    """manifests/replicated-control-planes/namespace.yaml; the labels (a varying mapping) are added in code."""
    obj = yaml.safe_load(manifests.render("namespace.yaml", NAME=name))
    if labels:
        obj["metadata"]["labels"] = dict(labels)
    return yaml.safe_dump(obj, sort_keys=False)


def _control_plane_steps(profile: Profile, c: ClusterSpec, images: Mapping[str, str]) -> list[Step]:
    n = c.name
    base = f"{n}/cluster" if not profile.load_images else f"{n}/images-load"
    cert_needs = ("host/certs",) if profile.cert_source == "generated" else ()
    steps = [
        Step(f"{n}/ns-istio-system", n, S_CONTROL_PLANE, "namespace istio-system",
             Manifest(n, Text(namespace_manifest("istio-system"))), needs=(f"{n}/cluster",), phase="control-plane",
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
        # istioctl 1.7 reads its readiness wait from the environment only (lab/istio.py); the lab's deadline is
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


def _query(c: ClusterSpec, q: names.Query, what: str | None = None) -> Lookup:
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
    return Sample(File("ISTIO_DIR", rel), () if _same_image(written, want) else ((written, want),))


def _same_image(a: str, b: str) -> bool:
    """Whether two references name the same image the way containerd normalises them (docker.io/library, :latest)."""
    return _normalise(a) == _normalise(b)


def _normalise(ref: str) -> str:
    name, digest = (ref.split("@", 1) + [""])[:2]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    return name + ("@" + digest if digest else "")


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
             Manifest(server.name, Text(serviceentry.to_yaml(serviceentry.render_server(REMOTE, server.vip))),
                      SERVER_NS),
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


def check_order(steps: Sequence[Step]) -> None:
    """Step ids are unique and every step's needs come before it (the executor relies on it)."""
    seen: set[str] = set()
    for s in steps:
        if s.id in seen:
            raise ValueError(f"duplicate step id {s.id}")
        unknown = [n for n in s.needs if n not in seen]
        if unknown:
            raise ValueError(f"step {s.id} needs {unknown}, which do not come before it")
        seen.add(s.id)


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


# --- rendering --------------------------------------------------------------------------------------------
def describe(run: Run) -> str:
    """One line saying what a step runs (for `lab plan`)."""
    if isinstance(run, Command):
        return _plain(run.argv)
    if isinstance(run, Check):
        return f"{_plain(run.argv)}  => expect {run.expect.describe()}"
    if isinstance(run, Manifest):
        src = run.source
        ns = f" -n {run.namespace}" if run.namespace else ""
        if isinstance(src, Text):
            kinds = [f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(src.yaml) if d]
            return f"kubectl apply{ns} ({', '.join(kinds)})"
        if isinstance(src, Sample):
            swap = "".join(f" with image {new}" for _, new in src.images)
            return f"kubectl apply{ns} -f ${src.file.base}/{src.file.rel}{swap}"
        return (f"kubectl create secret generic {src.name} -n {src.namespace} "
                + " ".join(f"--from-file=${f.base}/{f.rel}" for f in src.files) + " (applied)")
    return describe_action(run)


@singledispatch
def describe_action(action: Action) -> str:
    """One line for `lab plan`: by default the action's name and its fields."""
    params = ", ".join(f"{f.name}={_plain_value(getattr(action, f.name))}" for f in fields(action))
    return f"lab action {action.name}({params})"


@describe_action.register
def _(action: CreateCluster) -> str:
    return _plain(action.argv)


@describe_action.register
def _(action: PullImages) -> str:
    return f"docker pull (each missing one): {', '.join(action.images)}"


@describe_action.register
def _(action: LoadImages) -> str:
    return f"kind load docker-image --name {action.cluster}: {', '.join(action.images)}"


def _plain_value(v: object) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_plain_value(x) for x in v) + "]"
    if isinstance(v, (Kubeconfig, Context, File, Lookup, Concat)):
        return _plain((v,))
    return str(v)


def _plain(argv: Iterable[Token]) -> str:
    out = []
    for t in argv:
        if isinstance(t, Kubeconfig):
            out.append(f"$LAB_HOME/kubeconfig/{t.cluster}")
        elif isinstance(t, Context):
            out.append(t.name)
        elif isinstance(t, File):
            out.append(f"${t.base}/{t.rel}")
        elif isinstance(t, Lookup):
            out.append(f"<{t.what}>")
        elif isinstance(t, Concat):
            out.append("".join(_plain((p,)) for p in t.parts))
        else:
            out.append(t if re.fullmatch(r"[\w@%+=:,./{}\[\]?()'-]+", t) else shlex.quote(t))
    return " ".join(out)


def render_text(steps: Sequence[Step]) -> str:
    """`lab plan`: every step in order with its number, cluster, id, title and write-up section."""
    lines = []
    width = max(len(s.id) for s in steps)
    for i, s in enumerate(steps, 1):
        lines.append(f"{i:2d}. [{s.cluster or 'host'}] {s.id:<{width}}  {s.title}")
        lines.append(f"      write-up: {s.section}")
        lines.append(f"      runs:     {describe(s.run)}")
        if s.needs and s is not steps[-1]:
            lines.append(f"      after:    {', '.join(s.needs)}")
        elif s.needs:
            lines.append("      after:    every step above")
    return "\n".join(lines) + "\n"


def var_suffix(cluster: str) -> str:
    return re.sub(r"\W", "_", cluster.upper())


def _sh(t: Token) -> str:
    if isinstance(t, Kubeconfig):
        return f'"$KUBECONFIG_{var_suffix(t.cluster)}"'
    if isinstance(t, Context):
        return f'"$CTX_{var_suffix(t.cluster)}"'
    if isinstance(t, File):
        return f'"${t.base}/{t.rel}"'
    if isinstance(t, Lookup):
        inner = kubectl_for_lookup(t)
        return '"$(' + " ".join(_sh(x) for x in inner) + ')"'
    if isinstance(t, Concat):
        return "".join(_sh(p) for p in t.parts)
    return shlex.quote(t)


def kubectl_for_lookup(t: Lookup) -> tuple[Token, ...]:
    return ("kubectl", "--kubeconfig", Kubeconfig(t.cluster), "--context", Context(t.cluster, t.context), "get",
            *t.args, "-o", f"jsonpath={t.jsonpath}")


def _sh_argv(argv: Iterable[Token]) -> str:
    return " ".join(_sh(t) for t in argv)


def _heredoc(text: str) -> str:
    if not text.endswith("\n"):
        text += "\n"
    if "\nLAB_EOF\n" in "\n" + text:
        raise ValueError("manifest contains the heredoc delimiter")
    return f"<<'LAB_EOF'\n{text}LAB_EOF"


def _kubectl_of(cluster: str, contexts: Mapping[str, str]) -> tuple[Token, ...]:
    return ("kubectl", "--kubeconfig", Kubeconfig(cluster), "--context", Context(cluster, contexts[cluster]))


def _write_file(f: File, text: str) -> list[str]:
    parent = f.rel.rsplit("/", 1)[0] if "/" in f.rel else ""
    mk = [f'mkdir -p "${f.base}/{parent}"'] if parent else []
    return [*mk, f"cat > {_sh(f)} {_heredoc(text)}"]


def _shell_lines(step: Step, contexts: Mapping[str, str]) -> list[str]:
    run = step.run
    if isinstance(run, Command):
        lines: list[str] = []
        for f, text in run.writes:
            lines += _write_file(f, text)
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in run.env)
        return lines + [env + _sh_argv(run.argv)]
    if isinstance(run, Check):
        return [f"# expect: {run.expect.describe()}", _sh_argv(run.argv)]
    if isinstance(run, Manifest):
        k = _kubectl_of(run.cluster, contexts)
        ns = ("-n", run.namespace) if run.namespace else ()
        src = run.source
        if isinstance(src, Text):
            return [f"{_sh_argv((*k, 'apply', *ns, '-f', '-'))} {_heredoc(src.yaml)}"]
        if isinstance(src, Sample):
            if not src.images:
                return [_sh_argv((*k, "apply", *ns, "-f", src.file))]
            seds = " ".join(f"-e {shlex.quote(_sed_image(old, new))}" for old, new in src.images)
            return [f"sed {seds} {_sh(src.file)} | {_sh_argv((*k, 'apply', *ns, '-f', '-'))}"]
        files = [x for f in src.files for x in ("--from-file", f)]
        create = (*k, "-n", src.namespace, "create", "secret", "generic", src.name, *files,
                  "--dry-run=client", "-o", "yaml")
        # Server-side apply: a client-side apply would copy the CA key into the
        # kubectl.kubernetes.io/last-applied-configuration annotation, readable by anyone who can read the Secret's
        # metadata. SERVER_SIDE_APPLY stores only field ownership.
        return [f"{_sh_argv(create)} | {_sh_argv((*k, 'apply', *SERVER_SIDE_APPLY, '-f', '-'))}"]
    return shell_action(run, contexts)


def _sed_image(old: str, new: str) -> str:
    if re.search(r"[|&\\\s]", old + new):
        raise ValidationError(f"image reference {new!r} has characters the lab cannot put in a sed expression")
    return f"s|image: {re.escape(old)}$|image: {new}|"


@singledispatch
def shell_action(action: Action, contexts: Mapping[str, str]) -> list[str]:
    """The shell script's lines for a lab action: plain commands that do what the executor does."""
    raise TypeError(f"no shell form for lab action {action.name}")


@shell_action.register
def _(action: CreateCluster, contexts: Mapping[str, str]) -> list[str]:
    cluster = action.cluster
    k = _kubectl_of(cluster, contexts)
    # the provider runs this argv (kind waits for nothing by default); the lab waits for the node.
    # Re-runnable like the lab: an existing cluster of that name is reused. (No `grep -q`: exiting early
    # could SIGPIPE kind, and with pipefail the cluster would be created a second time.)
    lines = [*_write_file(action.config, action.config_text),
             f"kind get clusters | grep -x {shlex.quote(cluster)} >/dev/null || "
             f"{_sh_argv(action.argv)}",
             _sh_argv((*k, "wait", "--for=condition=Ready", "node", "--all",
                       f"--timeout={int(TIMEOUTS.kind_create)}s"))]
    # As the provider does after creating the node (lab.kind load_xtables_modules): Istio 1.7's istio-init
    # needs the legacy iptables modules, which a pod's network namespace cannot load on demand.
    modprobe = " ".join(shlex.quote(a) for a in kind.modprobe_argv(action.node))
    lines += [f"{modprobe} \\",
              f"  || {{ echo 'cannot load the legacy iptables modules Istio 1.7 needs: run `sudo modprobe -a "
              f"{' '.join(istio.XTABLES_MODULES)}` on the Docker host' >&2; exit 1; }}"]
    node = action.dns_check
    if node:
        # kind #3054 (node images before kind v0.18): Docker's DNS DNAT rules in the node lose `--dport 53`
        # on hosts with iptables 1.8.8+ in nf_tables mode; lab.kind.dns_dnat_problem is the lab's check.
        lines += ["# kind #3054: in nodes before kind v0.18, Docker's DNS DNAT rules must still carry --dport 53",
                  f"if docker exec {shlex.quote(node)} iptables-save -t nat | grep -e '-A DOCKER_OUTPUT' "
                  "| grep -e '-j DNAT' | grep -qv -e '--dport 53'; then",
                  f"  echo 'kind #3054: DNS DNAT rules in {node} lost --dport 53; use the default profile' >&2",
                  "  exit 1", "fi"]
    return lines


@shell_action.register
def _(action: PullImages, contexts: Mapping[str, str]) -> list[str]:
    return [_sh_argv(lab_images.pull_argv(i)) for i in action.images]


@shell_action.register
def _(action: LoadImages, contexts: Mapping[str, str]) -> list[str]:
    return _shell_images_load(action.cluster, action.images)


@shell_action.register
def _(action: GenerateCerts, contexts: Mapping[str, str]) -> list[str]:
    clusters = shlex.quote(",".join(action.clusters))
    # The one step that needs the lab's Python (profile cert_source=generated only; the header says so).
    return [f"python3 -m lab certs generate --out {_sh(action.out)} --clusters {clusters}"]


def _shell_images_load(cluster: str, images: Sequence[str]) -> list[str]:
    """What lab.kind.KindProvider.load_images does, per image: `kind load docker-image`, and when that fails (Docker
    29's containerd image store and multi-platform images, kind #3795/#4066) the one-platform archive fallback."""
    archive = File("LAB_HOME", f"tmp/image-{cluster}.tar")
    spec = ClusterSpec(cluster, "", "", "", 0, "")
    lines = ['mkdir -p "$LAB_HOME/tmp"',
             f"# if `kind load docker-image` fails (kind #3795), save the {kind.PLATFORM} image and load the archive"]
    for image in images:
        load = _sh_argv(kind.load_argv("kind", spec, image))
        fallback = " && ".join(_sh_argv(a) for a in kind.archive_load_argvs("kind", spec, image, archive))
        lines.append(f"{load} \\\n  || {{ {fallback} && rm -f {_sh(archive)}; }}")
    return lines


# The variables the script's lookups export, named as in the write-up ("暴露cluster2的网关地址").
GLOBAL_FORWARD_VAR = "ISTIOCOREDNS_IP"
INGRESS_HOST_VAR, INGRESS_PORT_VAR = "INGRESS_HOST", "INGRESS_PORT"


@shell_action.register
def _shell_coredns_patch(run: PatchCoreDNS, contexts: Mapping[str, str]) -> list[str]:
    """The Corefile change as plain commands: read the live Corefile, drop a `global:53` block a previous run added,
    append the lab's block (lab/corefile.py render_block), write the ConfigMap back.

    What lab/corefile.py does more (the lab's own run): it replaces a `global` block in place, understands every
    spelling of the zone and refuses Corefiles it cannot patch safely. The sed range below removes only a block
    written as the lab writes it (`global:53 {` at the start of a line up to the first `}` alone on a line)."""
    cluster = run.cluster
    k = _kubectl_of(cluster, contexts)
    f = run.file
    forward = run.forward
    live = File(f.base, f.rel + ".live")
    var = GLOBAL_FORWARD_VAR
    block = corefile.render_block("192.0.2.53", aaaa_guard=run.aaaa_guard)
    placeholder = "forward . 192.0.2.53:53"
    if block.count(placeholder) != 1 or "$" in block or "`" in block or "\\" in block:
        raise ValueError("the Corefile block cannot be written as a shell heredoc")
    block = block.replace(placeholder, f"forward . ${{{var}}}:{corefile.PORT}")
    read = _sh_argv((*k, "-n", "kube-system", "get", "configmap", "coredns", "-o", "jsonpath={.data.Corefile}"))
    write = _sh_argv((*k, "-n", "kube-system", "create", "configmap", "coredns", "--from-file")) \
        + f' Corefile={_sh(f)} --dry-run=client -o yaml | {_sh_argv((*k, "apply", "-f", "-"))}'
    # (plain assignments: under `set -e` a failing lookup stops the script, `export X=$(...)` would hide it)
    return [
        f"{var}={_sh(forward)}",
        f': "${{{var}:?{forward.what} is not known yet}}"',
        f"{read} > {_sh(live)}",
        f"[ -s {_sh(live)} ] || {{ echo 'the live Corefile of {cluster} is empty: is this the right cluster?' >&2; "
        "exit 1; }",
        f"# drop the `{corefile.ZONE}:{corefile.PORT}` block an earlier run appended, keep every other line as it is",
        f"sed '/^{corefile.ZONE}:{corefile.PORT} {{$/,/^}}$/d' {_sh(live)} > {_sh(f)}",
        f'[ -z "$(tail -c 1 {_sh(f)})" ] || echo >> {_sh(f)}  # end the last line before appending',
        f"cat >> {_sh(f)} <<LAB_EOF\n{block}\nLAB_EOF",
        write,
    ]


def serviceentry_heredoc(svc: serviceentry.RemoteService, vip: str) -> str:
    """The calling cluster's ServiceEntry (lab/serviceentry.py render_client) with its endpoint written as
    `${INGRESS_HOST}` and `${INGRESS_PORT}`, for an unquoted heredoc (the write-up's own form)."""
    host, port = "192.0.2.1", 1  # stand-ins (TEST-NET-1, port 1) replaced by the variables below
    text = serviceentry.to_yaml(serviceentry.render_client(svc, vip, host, port))
    swaps = ((f"- address: {host}\n", f"- address: ${{{INGRESS_HOST_VAR}}}\n"),
             (f"{svc.port_name}: {port}\n", f"{svc.port_name}: ${{{INGRESS_PORT_VAR}}}\n"))
    for old, new in swaps:
        if text.count(old) != 1:
            raise ValueError(f"the ServiceEntry has no single {old.strip()!r} to fill in")
        text = text.replace(old, new)
    if re.search(r"[`\\]|\$(?!\{INGRESS_(HOST|PORT)\})", text):
        raise ValueError("the ServiceEntry cannot be written as a shell heredoc")
    return text


@shell_action.register
def _shell_serviceentry_client(run: ApplyClientServiceEntry, contexts: Mapping[str, str]) -> list[str]:
    k = _kubectl_of(run.cluster, contexts)
    address, port = run.address, run.port
    svc = serviceentry.RemoteService(run.service, run.service_namespace)
    text = serviceentry_heredoc(svc, run.vip)
    return [
        f"# the write-up's INGRESS_HOST (the gateway pod's node) and, as its ServiceEntry says, the gateway's "
        f"{names.GATEWAY_TLS_PORT} nodePort",
        f"{INGRESS_HOST_VAR}={_sh(address)}",
        f"{INGRESS_PORT_VAR}={_sh(port)}",
        f': "${{{INGRESS_HOST_VAR}:?{address.what} is not known yet}}" "${{{INGRESS_PORT_VAR}:?{port.what} is not '
        'known yet}"',
        f"export {INGRESS_HOST_VAR} {INGRESS_PORT_VAR}",
        f"{_sh_argv((*k, 'apply', '-n', run.namespace, '-f', '-'))} <<LAB_EOF\n{text}LAB_EOF",
    ]


def contexts_of(steps: Iterable[Step]) -> dict[str, str]:
    """cluster -> context, from the Context tokens the steps carry (in first-seen order)."""
    out: dict[str, str] = {}

    def visit(v: object) -> None:
        if isinstance(v, Context):
            out.setdefault(v.cluster, v.name)
        elif isinstance(v, Lookup):
            out.setdefault(v.cluster, v.context)
        elif isinstance(v, tuple):
            for x in v:
                visit(x)
        elif is_dataclass(v):
            for f in fields(v):
                visit(getattr(v, f.name))

    for s in steps:
        visit(s.run)
    return out


def render_shell(steps: Sequence[Step], paths: Paths | None = None, *, title: str = "lab up",
                 unset: bool = False) -> str:
    """The plan as a bash script a person can replay by hand, top to bottom (the lab runs clusters in parallel)."""
    contexts = contexts_of(steps)
    home = str(paths.home) if paths else ".lab"
    istio_dir = str(paths.istio_dir) if paths else "istio"
    lines = [
        "#!/usr/bin/env bash",
        f"# {title}, as commands a person can replay (generated by `python -m lab plan --shell`).",
        "# Needs kind, kubectl, istioctl (the profile's versions; `make lab-up` downloads them), docker, sed, tail.",
        "# Every kubectl/istioctl names its cluster: the lab's own kubeconfig files, never ~/.kube/config.",
        *_python_note(steps),
        "set -euo pipefail",
        f"export LAB_HOME=\"${{LAB_HOME:-{_dq(home)}}}\"",
        f"export ISTIO_DIR=\"${{ISTIO_DIR:-{_dq(istio_dir)}}}\"",
    ]
    for cluster, ctx in contexts.items():
        v = var_suffix(cluster)
        lines.append(f'export CTX_{v}={shlex.quote(ctx)}')
        lines.append(f'export KUBECONFIG_{v}="$LAB_HOME/kubeconfig/{cluster}"')
    if contexts:
        # The write-up reads both contexts from one kubectl config; this merged view serves ad-hoc commands.
        joined = ":".join(f"$KUBECONFIG_{var_suffix(c)}" for c in contexts)
        lines.append(f'export KUBECONFIG="{joined}"')
    lines.append('mkdir -p "$LAB_HOME/kubeconfig"')
    section = None
    for i, s in enumerate(steps, 1):
        lines.append("")
        if s.section != section:
            lines.append(f"# === {s.section}")
            section = s.section
        lines.append(f"# {i}. [{s.cluster or 'host'}] {s.id}: {s.title}")
        lines += _shell_lines(s, contexts)
    if unset:
        names = [f"{p}_{var_suffix(c)}" for c in contexts for p in ("CTX", "KUBECONFIG")]
        lines += ["", "# the write-up's last line: forget the variables this script exported",
                  "unset " + " ".join([*names, "KUBECONFIG"])]
    return "\n".join(lines) + "\n"


def _python_note(steps: Sequence[Step]) -> list[str]:
    if any(isinstance(s.run, GenerateCerts) for s in steps):
        return ["# Runs no Python except `python3 -m lab certs generate` (cert_source=generated): run the script from",
                "# the repository's root with its virtual environment active (`. .venv/bin/activate`)."]
    return ["# Runs no Python: every value it computes (the Corefile, the ServiceEntry) is written by plain commands."]


def _dq(text: str) -> str:
    return re.sub(r'(["\\$`])', r"\\\1", text)


def to_json(steps: Sequence[Step]) -> str:
    """The plan as JSON (for tools): id, cluster, section, title, phase, needs and a one-line description."""
    return json.dumps([{"id": s.id, "cluster": s.cluster, "section": s.section, "title": s.title, "phase": s.phase,
                        "needs": list(s.needs), "runs": describe(s.run)} for s in steps], ensure_ascii=False,
                      indent=2) + "\n"
