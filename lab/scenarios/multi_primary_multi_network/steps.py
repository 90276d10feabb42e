"""The multi-primary-multi-network scenario as steps: istio.io's "Install Multi-Primary on different networks" page
(istio/istio.io content/en/docs/setup/install/multicluster/multi-primary_multi-network/index.md), cluster by
cluster, on two kind clusters with MetalLB, then curl in cluster1 calling httpbin that runs only in cluster2.

Phases, in plan order: host (images, one root and an intermediate CA per cluster, MetalLB's manifest), clusters,
metallb (when the profile has it), control-plane (istio-system labelled with the network, cacerts, `istioctl
install`), eastwest (the gateway from gen-eastwest-gateway.sh, its address, the `*.local` AUTO_PASSTHROUGH Gateway),
remote-secrets (each cluster's API server for the other's istiod), apps (the `sample` namespace with injection in
both clusters, curl in the client cluster, httpbin in the server cluster only) and verify (the proof).

Run-time values are `Lookup` tokens (kubectl jsonpath) or this scenario's actions (actions.py): a cluster's
MetalLB slice (`docker network inspect kind`), the control-plane node's address on the kind network (the node's
InternalIP: kind v0.32.0 gives kubelet `node-ip` the node container's address on its network,
pkg/cluster/internal/create/actions/config/config.go NodeAddress from providers/docker/node.go IP(), the
`docker inspect` of the container), the curl pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lab import certs, probe
from lab import images as lab_images
from lab.errors import UsageError
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
    check_order,
    cluster_steps,
    kubectl,
    lookup,
    same_image,
)
from lab.scenarios.multi_primary_multi_network import istio, kindconfig, names
from lab.scenarios.multi_primary_multi_network.actions import (
    ApplyMetalLBPool,
    CreateRemoteSecret,
    DownloadPinned,
    InstallEastWest,
    pool_name,
)
from lab.scenarios.multi_primary_multi_network.names import SCENARIO
from lab.scenarios.multi_primary_multi_network.profiles import ClusterSpec, Profile
from lab.settings import TIMEOUTS
from lab.tokens import Context, File, Kubeconfig, Lookup

# --- istio.io's sections (the page's headings; the verify page's for the apps and the proof) -------------------
S_BEFORE = "Before you begin: kind clusters, images and certificates (before-you-begin, plug-in CA certificates)"
S_METALLB = "Before you begin: MetalLB, so the east-west gateways get addresses (multi-cluster-with-metallb)"
S_CONTROL_PLANE = "Set the default network / Configure the cluster as a primary"
S_EASTWEST = "Install the east-west gateway / Expose services"
S_DISCOVERY = "Enable Endpoint Discovery"
S_APPS = "Verify the installation: deploy curl and httpbin (httpbin in cluster2 only)"
S_VERIFY = "Verify the installation: verifying cross-cluster traffic"
S_UNINSTALL = "Cleanup (the lab's apps, namespaces and remote secrets; Istio and the clusters stay)"

PHASES = ("host", "clusters", "metallb", "control-plane", "eastwest", "remote-secrets", "apps", "verify")

SAMPLE_CURL = "samples/curl/curl.yaml"
SAMPLE_HTTPBIN = "samples/httpbin/httpbin.yaml"
# The images the 1.30.3 samples name (tests/data/istio-1.30.3/samples); the profile decides what runs.
SAMPLE_IMAGES = {names.CLIENT_APP: "docker.io/curlimages/curl:8.16.0",
                 names.SERVER_APP: "docker.io/mccutchen/go-httpbin:v2.15.0"}
SAMPLES = {names.CLIENT_APP: SAMPLE_CURL, names.SERVER_APP: SAMPLE_HTTPBIN}

# MetalLB's native manifest (config/manifests/metallb-native.yaml) as its install page applies it
# (website/content/installation/_index.md@v0.16.1: `kubectl apply -f https://raw.githubusercontent.com/metallb/
# metallb/<version>/config/manifests/metallb-native.yaml`). MetalLB publishes no checksum for it: the lab pins the
# sha256 of the file at each tag it knows (git show v0.16.1:config/manifests/metallb-native.yaml | sha256sum; tag
# v0.16.1 is commit 791dfcc63ced7a6b3e869131eae75e645150fff0). Its images are quay.io/metallb/controller and speaker
# at the tag (the profile's `images.metallb_*`; other images are swapped in like a sample's).
METALLB_MANIFEST_URL = ("https://raw.githubusercontent.com/metallb/metallb/{version}/config/manifests/"
                        "metallb-native.yaml")
METALLB_MANIFEST_SHA256 = {"v0.16.1": "bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b"}
METALLB_IMAGES = {"metallb_controller": "quay.io/metallb/controller:{version}",
                  "metallb_speaker": "quay.io/metallb/speaker:{version}"}

CONTROL_PLANE_ADDRESS = (("nodes", "-l", "node-role.kubernetes.io/control-plane"),
                         '{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
CACERTS_FILES = certs.CACERTS_FILES


def build(profile: Profile, paths: Paths | None = None) -> list[Step]:
    """Every step `lab up` runs, phase by phase and cluster by cluster, in an order that respects `needs`."""
    del paths
    images = profile.images.resolved(profile.istio_version)
    image_list = tuple(lab_images.image_list(profile))
    by_phase: dict[str, list[Step]] = {p: [] for p in PHASES}
    host = by_phase["host"]
    if profile.load_images:
        host.append(Step("host/images-pull", None, S_BEFORE, "pull the lab's images once on the host (docker pull)",
                         PullImages(image_list, lab_images.platform_for(profile)), phase="host"))
    # Always the lab's own CA: one root, one intermediate per cluster (istio.io plug-in CA certificates); a shared
    # root is what lets each cluster's sidecars trust the other's (the samples/certs of the 1.7 scenario are gone).
    host.append(Step("host/certs", None, S_BEFORE, "generate a shared root CA and one intermediate CA per cluster",
                     GenerateCerts(File("LAB_HOME", "certs"), tuple(c.name for c in profile.clusters)),
                     phase="host"))
    if profile.metallb:
        host.append(Step("host/metallb-manifest", None, S_METALLB,
                         f"MetalLB {profile.metallb_version} native manifest, sha256-checked",
                         DownloadPinned(*metallb_manifest(profile)), phase="host"))

    for c in profile.clusters:
        by_phase["clusters"] += cluster_steps(profile, c, image_list, kindconfig.config_yaml(profile, c), S_BEFORE)
        if profile.metallb:
            by_phase["metallb"] += _metallb_steps(profile, c, images)
        by_phase["control-plane"] += _control_plane_steps(profile, c, images)
        by_phase["eastwest"] += _eastwest_steps(profile, c)
        by_phase["remote-secrets"] += _remote_secret_steps(profile, c)
        by_phase["apps"] += _app_steps(profile, c, images)
    by_phase["verify"] += _verify_steps(profile)

    steps = [s for phase in PHASES for s in by_phase[phase]]
    # The proof comes last and needs every other step, so it runs only when everything is in place.
    steps[-1] = replace(steps[-1], needs=tuple(s.id for s in steps[:-1]))
    check_order(steps)
    return steps


def _base(profile: Profile, c: ClusterSpec) -> str:
    """The step after which a cluster has its images (what a first workload needs)."""
    return f"{c.name}/images-load" if profile.load_images else f"{c.name}/cluster"


def _rollout(c: ClusterSpec, namespace: str, kind_name: str, timeout: float = TIMEOUTS.rollout) -> Check:
    return Check(kubectl(c, "-n", namespace, "rollout", "status", kind_name, f"--timeout={int(timeout)}s"),
                 Expect(ExpectKind.EXIT0), timeout)


def _exists(c: ClusterSpec, *args: str) -> Check:
    return Check(kubectl(c, *args, "-o", "name"), Expect(ExpectKind.EXIT0), 0)


# --- MetalLB ----------------------------------------------------------------------------------------------------
def metallb_manifest(profile: Profile) -> tuple[str, str, File]:
    """(url, sha256, file) of MetalLB's native manifest at the profile's version; UsageError for an unpinned one."""
    version = profile.metallb_version
    if version not in METALLB_MANIFEST_SHA256:
        raise UsageError(f"metallb_version {version!r} has no pinned manifest sha256 (known: "
                         f"{', '.join(METALLB_MANIFEST_SHA256)}); use one of those or --set metallb=false")
    return (METALLB_MANIFEST_URL.format(version=version), METALLB_MANIFEST_SHA256[version],
            File("LAB_HOME", f"metallb/metallb-native-{version}.yaml"))


def _metallb_steps(profile: Profile, c: ClusterSpec, images: Mapping[str, str]) -> list[Step]:
    n = c.name
    _, _, file = metallb_manifest(profile)
    written = {k: v.format(version=profile.metallb_version) for k, v in METALLB_IMAGES.items()}
    swaps = tuple((written[k], images[k]) for k in METALLB_IMAGES if not same_image(written[k], images[k]))
    ns = names.METALLB_NS
    return [
        Step(f"{n}/metallb", n, S_METALLB, f"MetalLB {profile.metallb_version} (L2, native manifest)",
             Manifest(n, Sample(file, swaps)), needs=(_base(profile, c), "host/metallb-manifest"), phase="metallb",
             verify=_exists(c, "-n", ns, "deployment", "controller")),
        # MetalLB's own dev setup waits so before its pool (tasks.py layer2_dev_env): the webhook lives in the
        # controller.
        Step(f"{n}/metallb-ready", n, S_METALLB, "MetalLB controller Available (it serves the pool's webhook)",
             Check(kubectl(c, "wait", "--for=condition=Available", "deployment/controller", "-n", ns,
                           f"--timeout={int(TIMEOUTS.rollout)}s"), Expect(ExpectKind.EXIT0), TIMEOUTS.rollout),
             needs=(f"{n}/metallb",), phase="metallb"),
        Step(f"{n}/metallb-speaker", n, S_METALLB, "MetalLB speaker rolled out (it answers ARP for the addresses)",
             _rollout(c, ns, "daemonset/speaker"), needs=(f"{n}/metallb-ready",), phase="metallb"),
        Step(f"{n}/metallb-pool", n, S_METALLB, f"MetalLB pool {pool_name(n)}: {n}'s slice of the kind network",
             ApplyMetalLBPool(n, tuple(x.name for x in profile.clusters), pool_name(n)),
             needs=(f"{n}/metallb-speaker",), phase="metallb",
             verify=_exists(c, "-n", ns, "ipaddresspools.metallb.io", pool_name(n))),
    ]


# --- the control plane --------------------------------------------------------------------------------------------
def _control_plane_steps(profile: Profile, c: ClusterSpec, images: Mapping[str, str]) -> list[Step]:
    n = c.name
    overlay_file = File("LAB_HOME", f"istio/{n}.yaml")
    argv = istio.install_argv("istioctl", Kubeconfig(n), Context(n, c.context), [overlay_file],
                              readiness_timeout=TIMEOUTS.istio_readiness)
    label = names.NETWORK_LABEL.replace(".", "\\.")  # kubectl jsonpath: dots in a key are escaped
    return [
        Step(f"{n}/ns-istio-system", n, S_CONTROL_PLANE, f"namespace {names.ISTIO_NS} labelled "
             f"{names.NETWORK_LABEL}={c.network} (before istioctl, which leaves an existing one alone)",
             Manifest(n, Template(SCENARIO, "namespace-istio-system.yaml", {"NETWORK": c.network})),
             needs=(f"{n}/cluster",), phase="control-plane",
             verify=Check(kubectl(c, "get", "namespace", names.ISTIO_NS, "-o",
                                  f"jsonpath={{.metadata.labels.{label}}}"), Expect(ExpectKind.EQUALS, c.network), 0)),
        # istiod reads cacerts only when it starts (pilot/pkg/bootstrap/istio_ca.go): the secret comes first.
        Step(f"{n}/cacerts", n, S_CONTROL_PLANE, "secret cacerts from the lab's CA (ca-cert, ca-key, root-cert, "
             "cert-chain)",
             Manifest(n, SecretFromFiles("cacerts", names.ISTIO_NS,
                                         tuple(File("LAB_HOME", f"certs/{n}/{f}") for f in CACERTS_FILES))),
             needs=(f"{n}/ns-istio-system", "host/certs"), phase="control-plane",
             verify=_exists(c, "-n", names.ISTIO_NS, "secret", "cacerts")),
        Step(f"{n}/istio", n, S_CONTROL_PLANE,
             f"istioctl install Istio {profile.istio_version} as a primary: mesh {profile.mesh_id}, cluster {n}, "
             f"network {c.network}, DNS capture",
             Command(tuple(argv), writes=((overlay_file, istio.overlay_yaml(profile, c)),),
                     timeout=TIMEOUTS.istio_install),
             needs=(f"{n}/cacerts", _base(profile, c)), phase="control-plane",
             verify=Check(kubectl(c, "-n", names.ISTIO_NS, "get", "deployment", "istiod", "-o",
                                  "jsonpath={.spec.template.spec.containers[0].image}"),
                          Expect(ExpectKind.EQUALS, istio.pilot_image(dict(images))), 0)),
    ]


# --- the east-west gateway ---------------------------------------------------------------------------------------
def control_plane_address(c: ClusterSpec) -> Lookup:
    """The control-plane node's InternalIP: its container's address on the kind network (module docstring)."""
    args, jsonpath = CONTROL_PLANE_ADDRESS
    return lookup(c, *args, jsonpath=jsonpath, what=f"{c.name} control-plane address")


def _eastwest_steps(profile: Profile, c: ClusterSpec) -> list[Step]:
    n = c.name
    ns, gw = names.ISTIO_NS, names.EASTWEST_GATEWAY
    ew_file = File("LAB_HOME", f"istio/{n}-eastwest.yaml")
    argv = istio.install_argv("istioctl", Kubeconfig(n), Context(n, c.context), [ew_file],
                              readiness_timeout=TIMEOUTS.istio_readiness)
    # With MetalLB the gateway's address is MetalLB's: a second one in spec.externalIPs would be a second gateway
    # address for the network (istiod takes both, pilot/pkg/serviceregistry/kube/conversion.go@1.30.3:130-158), so
    # cluster1's sidecar would spread calls over both and a broken MetalLB would go unnoticed. Without MetalLB the
    # node's own address is the gateway's only one (kube-proxy forwards externalIP:15443 on that node).
    fallback = None if profile.metallb else control_plane_address(c)
    # `kubectl wait --for=jsonpath=<path>` without a value waits for the path to be there (kubectl wait's own
    # example: `--for=jsonpath='{.status.loadBalancer.ingress}' service/loadbalancer`); names.EASTWEST_ADDRESS then
    # reads the address.
    address = "jsonpath={.status.loadBalancer.ingress}" if profile.metallb else "jsonpath={.spec.externalIPs}"
    where = "MetalLB's address" if profile.metallb else "the node's address in spec.externalIPs"
    return [
        Step(f"{n}/eastwest", n, S_EASTWEST, f"istioctl install the east-west gateway on {c.network} "
             "(gen-eastwest-gateway.sh output)" + ("" if profile.metallb else ", spec.externalIPs = node address"),
             InstallEastWest(n, tuple(argv), ew_file, istio.eastwest_yaml(c), fallback, TIMEOUTS.istio_install),
             needs=(f"{n}/istio",), phase="eastwest",
             verify=_exists(c, "-n", ns, "deployment", gw)),
        Step(f"{n}/eastwest-ready", n, S_EASTWEST, "east-west gateway rolled out",
             _rollout(c, ns, f"deployment/{gw}"), needs=(f"{n}/eastwest",), phase="eastwest"),
        Step(f"{n}/eastwest-address", n, S_EASTWEST, f"east-west gateway Service has an address ({where})",
             Check(kubectl(c, "wait", "-n", ns, f"service/{gw}", f"--for={address}",
                           f"--timeout={int(TIMEOUTS.rollout)}s"), Expect(ExpectKind.EXIT0), TIMEOUTS.rollout),
             needs=(f"{n}/eastwest-ready", *((f"{n}/metallb-pool",) if profile.metallb else ())), phase="eastwest"),
        Step(f"{n}/expose-services", n, S_EASTWEST,
             f"Gateway {names.CROSS_NETWORK_GATEWAY}: every *.local service on {names.EASTWEST_TLS_PORT}, "
             "AUTO_PASSTHROUGH",
             Manifest(n, Template(SCENARIO, "expose-services.yaml", {})), needs=(f"{n}/istio",),
             phase="eastwest",
             verify=_exists(c, "-n", ns, "gateways.networking.istio.io", names.CROSS_NETWORK_GATEWAY)),
    ]


# --- endpoint discovery ---------------------------------------------------------------------------------------------
def _remote_secret_steps(profile: Profile, dst: ClusterSpec) -> list[Step]:
    steps = []
    for src in profile.clusters:
        if src.name == dst.name:
            continue
        secret = names.remote_secret_name(src.name)
        steps.append(Step(
            f"{dst.name}/remote-secret-{src.name}", dst.name, S_DISCOVERY,
            f"remote secret {secret}: {dst.name}'s istiod watches {src.name}'s API server at its control-plane "
            f"address:{names.API_SERVER_PORT}",
            CreateRemoteSecret(dst.name, src.name, src.context, control_plane_address(src)),
            needs=(f"{dst.name}/istio", f"{src.name}/istio"), phase="remote-secrets",
            verify=_exists(dst, "-n", names.ISTIO_NS, "secret", secret)))
    return steps


# --- the apps ---------------------------------------------------------------------------------------------------------
def apps_of(c: ClusterSpec) -> tuple[str, ...]:
    """curl in the client cluster, httpbin in the server cluster only (issue 11: a remote-only service)."""
    return (names.CLIENT_APP,) if c.role == "client" else (names.SERVER_APP,) if c.role == "server" else ()


def _sample(app: str, images: Mapping[str, str]) -> Sample:
    want, written = images[app], SAMPLE_IMAGES[app]
    return Sample(File("ISTIO_DIR", SAMPLES[app]), () if same_image(written, want) else ((written, want),))


def _app_steps(profile: Profile, c: ClusterSpec, images: Mapping[str, str]) -> list[Step]:
    n, ns = c.name, names.APP_NS
    # Injection must be on before the pods exist, and needs istiod's injector: after the install.
    steps = [Step(f"{n}/ns-{ns}", n, S_APPS, f"namespace {ns} labelled istio-injection=enabled",
                  Manifest(n, Template(SCENARIO, "namespace-sample.yaml", {"NAMESPACE": ns})),
                  needs=(f"{n}/istio",), phase="apps",
                  verify=Check(kubectl(c, "get", "namespace", ns, "-o",
                                       "jsonpath={.metadata.labels.istio-injection}"),
                               Expect(ExpectKind.EQUALS, "enabled"), 0))]
    for app in apps_of(c):
        steps.append(Step(f"{n}/{app}", n, S_APPS, f"{app} in {ns} ({SAMPLES[app]})",
                          Manifest(n, _sample(app, images), ns), needs=(f"{n}/ns-{ns}",), phase="apps",
                          verify=_exists(c, "-n", ns, "deployment", app)))
        steps.append(Step(f"{n}/{app}-ready", n, S_APPS, f"{app} in {ns} rolled out (with its sidecar)",
                          _rollout(c, ns, f"deployment/{app}"), needs=(f"{n}/{app}",), phase="apps"))
    return steps


# --- the proof -----------------------------------------------------------------------------------------------------
def client_pod(c: ClusterSpec) -> Lookup:
    # The newest Running pod: one being replaced is still listed as Running while it terminates.
    return lookup(c, "-n", names.APP_NS, "pod", "-l", f"app={names.CLIENT_APP}",
                  "--field-selector=status.phase=Running", "--sort-by=.metadata.creationTimestamp",
                  jsonpath="{.items[-1:].metadata.name}",
                  what=f"{names.CLIENT_APP} pod in {names.APP_NS}")


def proof_url() -> str:
    return f"http://{names.SERVER_HOST}:{names.SERVER_PORT}/headers"


def curl_check(c: ClusterSpec) -> Check:
    return Check(kubectl(c, "exec", "-n", names.APP_NS, client_pod(c), "-c", names.CLIENT_APP, "--",
                         *probe.curl_argv(proof_url())), Expect(ExpectKind.HTTP, "200"), TIMEOUTS.probe)


def _verify_steps(profile: Profile) -> list[Step]:
    client, server = profile.client, profile.server
    return [Step(f"{client.name}/curl-{names.SERVER_APP}", client.name, S_VERIFY,
                 f"curl {proof_url()} from {names.CLIENT_APP} in {client.name}/{names.APP_NS} = 200 (httpbin runs "
                 f"only in {server.name})", curl_check(client), phase="verify")]


# --- uninstall ------------------------------------------------------------------------------------------------------
def build_uninstall(profile: Profile, paths: Paths | None = None) -> list[Step]:
    """What the lab added on top of Istio: the apps, the `sample` namespaces, the remote secrets and the token
    Secret `istioctl create-remote-secret` made for them; deletions ignore what is already gone."""
    del paths
    ign = "--ignore-not-found"
    steps: list[Step] = []
    for c in profile.clusters:
        n = c.name
        for app in apps_of(c):
            steps.append(Step(f"{n}/uninstall-{app}", n, S_UNINSTALL, f"delete {app} in {names.APP_NS}",
                              Command(kubectl(c, "delete", "-n", names.APP_NS, "-f",
                                              File("ISTIO_DIR", SAMPLES[app]), ign))))
        steps.append(Step(f"{n}/uninstall-ns", n, S_UNINSTALL, f"delete namespace {names.APP_NS}",
                          Command(kubectl(c, "delete", "namespace", names.APP_NS, ign))))
        for src in profile.clusters:
            if src.name != n:
                secret = names.remote_secret_name(src.name)
                steps.append(Step(f"{n}/uninstall-remote-secret-{src.name}", n, S_UNINSTALL,
                                  f"delete remote secret {secret}",
                                  Command(kubectl(c, "delete", "-n", names.ISTIO_NS, "secret", secret, ign))))
        # istioctl create-remote-secret made this token Secret for the reader service account in the cluster
        # whose API server the others watch (remote_secret.go@1.30.3 tokenSecretName).
        steps.append(Step(f"{n}/uninstall-reader-token", n, S_UNINSTALL,
                          f"delete the reader token Secret {READER_TOKEN_SECRET}",
                          Command(kubectl(c, "delete", "-n", names.ISTIO_NS, "secret", READER_TOKEN_SECRET, ign))))
    ordered: list[Step] = []
    for s in steps:  # within a cluster, one after the other
        prev = [o.id for o in ordered if o.cluster == s.cluster]
        ordered.append(replace(s, needs=tuple(prev[-1:]), phase="uninstall"))
    return ordered


# istioctl/pkg/multicluster/remote_secret.go@1.30.3: tokenSecretName(istio-reader-service-account)
READER_TOKEN_SECRET = "istio-reader-service-account-istio-remote-secret-token"
