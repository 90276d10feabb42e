"""Istio 1.30 install inputs of the multi-primary-multi-network scenario: the control-plane overlay, the east-west
gateway file, and the argv of `istioctl install` and `istioctl create-remote-secret` (istioctl 1.30.3).

The overlay is manifests/multi-primary-multi-network/istio-overlay.yaml (meshID, clusterName, network, DNS capture)
plus what varies with the profile's images, set here in code:

- `spec.hub` and `spec.tag`, always. The charts leave them empty (manifests/charts/istio-control/istio-discovery/
  values.yaml@1.30.3: `hub: ""`, `tag: ""`) and the source tree's profile says `registry.istio.io/testing` / `latest`
  (manifests/profiles/default.yaml@1.30.3); what an istioctl binary installs by default is its build's
  `pkg/version.buildHub` and `buildVersion` (operator/pkg/render/manifest.go@1.30.3 hubTagOverlay, applied over the
  profile and under the user's files in MergeInputs). Those are ldflags: common/scripts/report_build_info.sh@1.30.3
  defaults HUB to `registry.istio.io/release`, and istio/release-builder builds releases with HUB=docker.io/istio and
  VERSION=<release> (release/build.sh DOCKER_HUB, pkg/util/command.go StandardEnv). The lab writes both, from the
  profile's pilot and proxyv2 images, so what runs is what the lab pulled and loaded whatever binary installs it.
  `spec.hub`/`spec.tag` become values.global.hub/tag (manifest.go translateIstioOperatorToHelm); istiod renders
  `<hub>/pilot:<tag>` (istio-discovery templates/deployment.yaml) and the injector `<hub>/proxyv2:<tag>` for sidecars
  and for the east-west gateway, whose Deployment says `image: auto` (gateways/istio-ingress templates/
  injected-deployment.yaml, `injectionTemplate: gateway`).
- an image that is not `<hub>/pilot:<tag>` or `<hub>/proxyv2:<tag>` (an `images.*` override) is given whole:
  `values.pilot.image`, `values.global.proxy.image` and `proxy_init.image`; the charts take a value with "/" as the
  whole reference (the templates above: `contains "/"`).

`istioctl install` flags (operator/cmd/mesh/install.go@1.30.3): `-f` (repeatable), `--skip-confirmation/-y`,
`--readiness-timeout` (default 300s, honoured in 1.30: install.go passes it as the installer's WaitTimeout, which
operator/pkg/install/install.go applies per component, Base, then Pilot, then the gateways), `--set` (repeatable,
paths of operator/pkg/values/map.go SetPath: `key.[0]`, `key.[name:foo]`); `--kubeconfig` and `--context` are
istioctl's root flags (istioctl/pkg/cli/option.go@1.30.3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import yaml

from lab import manifests
from lab.errors import ValidationError
from lab.scenarios.multi_primary_multi_network import names
from lab.scenarios.multi_primary_multi_network.names import SCENARIO
from lab.tokens import Token, arg, joined

if TYPE_CHECKING:
    from pathlib import Path

    from lab.scenarios.multi_primary_multi_network.profiles import ClusterSpec, Profile

OVERLAY_TEMPLATE = "istio-overlay.yaml"
EASTWEST_TEMPLATE = "eastwest-gateway.yaml"
# The east-west gateway's Service ports are fixed by gen-eastwest-gateway.sh; its address without MetalLB is set with
# this `--set` path (map.go SetPath: the list element whose `name` is the gateway, then the first externalIPs entry).
EXTERNAL_IPS_SET = f"components.ingressGateways.[name:{names.EASTWEST_GATEWAY}].k8s.service.externalIPs.[0]="

_REF = re.compile(r"(?P<hub>[^@\s]+)/(?P<name>[^/:@\s]+):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", re.ASCII)


def hub_and_tag(images: dict[str, str]) -> tuple[str, str] | None:
    """(hub, tag) of the profile's proxyv2 image, else of its pilot image, when one is `<hub>/<name>:<tag>` with the
    release's own name; None when neither is (then both are given whole, `image_values`)."""
    for role, name in (("proxyv2", "proxyv2"), ("pilot", "pilot")):
        m = _REF.fullmatch(images[role])
        if m and m["name"] == name:
            return m["hub"], m["tag"]
    return None


def image_values(images: dict[str, str]) -> dict[str, Any]:
    """`values` naming each Istio image whole where `<hub>/<name>:<tag>` (spec.hub, spec.tag) would not render it."""
    ht = hub_and_tag(images)
    values: dict[str, Any] = {}
    if ht is None or images["pilot"] != f"{ht[0]}/pilot:{ht[1]}":
        values["pilot"] = {"image": _whole(images["pilot"])}
    if ht is None or images["proxyv2"] != f"{ht[0]}/proxyv2:{ht[1]}":
        ref = _whole(images["proxyv2"])
        values["global"] = {"proxy": {"image": ref}, "proxy_init": {"image": ref}}
    return values


def _whole(ref: str) -> str:
    # A value without "/" would be read as a name under the hub (the templates' `contains "/"`): spell Docker's own
    # default for it, which names the image Docker pulled and kind loaded.
    return ref if "/" in ref else f"docker.io/library/{ref}"


def pilot_image(images: dict[str, str]) -> str:
    """The image istiod's Deployment shows after the install (what the plan's check compares)."""
    ht = hub_and_tag(images)
    if ht is not None and images["pilot"] == f"{ht[0]}/pilot:{ht[1]}":
        return images["pilot"]
    return _whole(images["pilot"])


def overlay(profile: Profile, cluster: ClusterSpec) -> dict[str, Any]:
    """The control-plane IstioOperator for `cluster` (the template plus hub, tag and image overrides)."""
    obj: dict[str, Any] = yaml.safe_load(manifests.render(
        OVERLAY_TEMPLATE, SCENARIO, MESH_ID=profile.mesh_id, CLUSTER_NAME=cluster.name, NETWORK=cluster.network))
    images = profile.images.resolved(profile.istio_version)
    ht = hub_and_tag(images)
    spec = obj["spec"]
    if ht is not None:
        # spec.hub/spec.tag first, as istio.io's own examples order the IstioOperator spec
        obj["spec"] = spec = {"hub": ht[0], "tag": ht[1], **spec}
    manifests.merge(spec["values"], image_values(images))
    return obj


def overlay_yaml(profile: Profile, cluster: ClusterSpec) -> str:
    header = ("# lab overlay: the -f of `istioctl install` for this cluster (lab/scenarios/multi_primary_multi_network/"
              "istio.py says where each field comes from)\n")
    return header + yaml.safe_dump(overlay(profile, cluster), sort_keys=False)


def eastwest_yaml(cluster: ClusterSpec) -> str:
    """manifests/multi-primary-multi-network/eastwest-gateway.yaml for the cluster's network, as the file istioctl
    reads (the template's body: gen-eastwest-gateway.sh's output)."""
    return manifests.render(EASTWEST_TEMPLATE, SCENARIO, NETWORK=cluster.network)


def install_argv(istioctl: str, kubeconfig: Path | Token, context: Token, files: Sequence[Path | Token], *,
                 readiness_timeout: float) -> list[Token]:
    """`istioctl install -y -f <file>... --readiness-timeout <n>s --kubeconfig <k> --context <c>` (flags in the
    module docstring; the externalIPs fallback appends its `--set` at run time, actions.py)."""
    if not files:
        raise ValueError("istioctl install needs at least one -f file")
    argv: list[Token] = [istioctl, "install", "-y"]
    for f in files:
        argv += ["-f", arg(f)]
    argv += [f"--readiness-timeout={int(readiness_timeout)}s", "--kubeconfig", arg(kubeconfig), "--context", context]
    return argv


def api_server_url(address: str) -> str:
    """https://<control-plane container IP>:6443, the API server as the other cluster's istiod reaches it."""
    return f"https://{address}:{names.API_SERVER_PORT}"


def remote_secret_argv(istioctl: str, kubeconfig: Path | Token, context: Token, cluster: str,
                       server: Token) -> list[Token]:
    """`istioctl create-remote-secret --kubeconfig <k> --context <c> --name=<cluster> --server=<url>`: a Secret
    istio-remote-secret-<cluster> (istio-system, label istio/multiCluster=true) holding a kubeconfig for the
    cluster's API server at `server`, with the token of istio-reader-service-account
    (istioctl/pkg/multicluster/remote_secret.go@1.30.3: flags `--name`, `--server`, `--type` default remote).
    Without `--server` the kubeconfig's own server is used, which kind writes as https://127.0.0.1:<port>: an
    address that means the other cluster's own node from inside it (istio#31081)."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", cluster, re.ASCII):
        raise ValidationError(f"cluster name {cluster!r} is not a DNS-1123 label; create-remote-secret refuses it")
    return [istioctl, "create-remote-secret", "--kubeconfig", arg(kubeconfig), "--context", context,
            f"--name={cluster}", joined("--server=", server)]
