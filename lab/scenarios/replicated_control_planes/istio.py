"""Istio install inputs: the release URL, the multicluster values file, the lab's overlay, the install argv.

Owns the IstioOperator overlay passed as the second `-f` to `istioctl install` (docs/sources.md#istio-install-overlay),
written out as manifests/replicated-control-planes/istio-overlay.yaml:
- a NodePort ingress gateway with all four default ports repeated and a fixed nodePort on `tls` 15443. Port names
  and targetPorts are those of Istio 1.7.8 `manifests/profiles/default.yaml` (components.ingressGateways[0].k8s.
  service.ports); lists in an overlay replace the profile's list, so all four must be repeated.
  `operator/pkg/translate/translate.go` applies `k8s.service` onto the rendered Service's spec, and
  `manifests/charts/gateways/istio-ingress/templates/service.yaml` renders every key of each port (so `nodePort`).
- the gateway's `k8s.env` is NOT set: nothing in it needs changing. ISTIO_META_ROUTER_MODE=sni-dnat (which gives the
  gateway the outbound_.<port>_._.<host> clusters AUTO_PASSTHROUGH needs) comes from the gateway chart's values.yaml
  (`gateways.istio-ingressgateway.env`), and a `k8s.env` list is patched onto the rendered container by name
  (operator/pkg/translate/translate.go `K8S.Env`), so even an overlay env list would not drop it (observed with
  istioctl 1.7.8 and 1.7.0: tests/upstream/test_istioctl.py).
- `values.global.imagePullPolicy: IfNotPresent`: the injection template defaults to `Always`
  (`manifests/charts/istio-control/istio-discovery/files/injection-template.yaml`), which would re-pull images that
  `kind load` already put on the nodes.
- `meshConfig.accessLogFile: /dev/stdout`: only the demo profile turns access logs on, and Envoy's response flags
  (UF, NR, ...) exist only there.
- lower CPU requests (`LAB_CPU_M`) for istiod (`components.pilot.k8s.resources`), the ingress gateway
  (`components.ingressGateways[].k8s.resources`) and the sidecars (`values.global.proxy.resources`), so that
  one cluster and its fault suite fit in a 2-CPU kind node (lab/scenarios/replicated_control_planes/capacity.py does the
  sums). Requests only decide
  scheduling; the limits stay the profile's. Memory requests stay the charts'. Field paths: `KubernetesResourcesSpec
  .resources` (tests/data/istio-1.7.8/istiooperator-fields.json), which operator/pkg/translate/translate.go writes
  onto the component's container; gateways merge by `name` (operator/pkg/util/merge_iop.go patchMergeKey), so the
  profile's other gateway settings stay. The egress gateway keeps its 100m: the overlay never touches what the
  multicluster values file sets (it enables that gateway), and the sums fit with it.

The install waits: istioctl 1.7 waits for each component's resources, Base, then Pilot, then the gateways and
addons in parallel (operator/pkg/helmreconciler/common.go ComponentDependencies), each up to WAIT_FOR_RESOURCES_TIMEOUT
(default 300 s), after up to 60 s for the CRDs (helmreconciler/wait.go). Its `--readiness-timeout` flag is parsed but
NOT used at 1.7.0-1.7.8: NewHelmReconciler (helmreconciler/reconciler.go) overwrites opts.WaitTimeout with that
environment variable or its 300 s default. So the lab sets the variable, and derives its own outer timeout from it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import yaml

from lab import manifests
from lab.errors import PreflightError
from lab.scenarios.replicated_control_planes import names
from lab.scenarios.replicated_control_planes.names import SCENARIO
from lab.settings import TIMEOUTS
from lab.tokens import Token, arg

if TYPE_CHECKING:
    from lab.scenarios.replicated_control_planes.profiles import Profile

# Relative to the extracted release (release-builder 1.7 ships manifests/examples; docs/sources.md#istio-release).
VALUES_FILE = Path("manifests/examples/multicluster/values-istio-multicluster-gateways.yaml")
GATEWAY = "istio-ingressgateway"
TLS_PORT = 15443

OVERLAY_TEMPLATE = "istio-overlay.yaml"  # manifests/replicated-control-planes/: the overlay as a file
# the pod annotation lab doctor needs (lab.scenarios.replicated_control_planes.names.STATS_ANNOTATION)
STATS_PATCH_TEMPLATE = "sleep-stats-patch.yaml"


# CPU requests in millicores. Chart defaults at Istio 1.7.8: istiod 500m (manifests/charts/istio-control/
# istio-discovery/values.yaml pilot.resources, not overridden by profiles/default.yaml), each gateway 100m and each
# sidecar 100m (profiles/default.yaml components.*Gateways k8s.resources, values.global.proxy.resources), istiocoredns
# 10m per container (global.defaultResources, istiocoredns templates/deployment.yaml), istio-init 10m (an init
# container: it does not add to the pod's request, which is the larger of it and the sum of the containers).
CHART_CPU_M = {"istiod": 500, "gateway": 100, "proxy": 100, "istiocoredns": 20}
# The lab's: enough to schedule; a lab's traffic is a few requests a second.
LAB_CPU_M = {"istiod": 100, "gateway": 50, "proxy": 50}
# istioctl 1.7's per-component wait, read from the environment (see the module docstring); 300 s is its default.
READINESS_ENV = "WAIT_FOR_RESOURCES_TIMEOUT"
# The kernel modules istio-init's `iptables-restore` (1.6.1, legacy xtables only: proxyv2 1.7.x is built FROM
# istio/base, Ubuntu bionic, docker/Dockerfile.base) needs for the rules tools/istio-iptables writes: the nat table,
# REDIRECT, and the owner match (`-m owner --uid-owner 1337`). In a pod's network namespace the kernel does not load
# them on demand (istio#23009, #28897, #33498: "unable to initialize table 'nat'").
XTABLES_MODULES = ("ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner")


def install_timeout(readiness: float) -> float:
    """The lab's deadline for one `istioctl install` whose readiness wait is `readiness` (lab.settings)."""
    return dataclasses.replace(TIMEOUTS, istio_readiness=readiness).istio_install


def install_env(readiness: float) -> dict[str, str]:
    """The environment that sets istioctl 1.7's per-component readiness wait (Go duration syntax)."""
    return {READINESS_ENV: f"{int(readiness)}s"}


def image_values(profile: Profile) -> dict[str, Any]:
    """`values` that make the install run the profile's Istio images where they differ from what istioctl renders by
    default (an `images.*` override); {} for the default images, which istioctl's own hub/tag already names.

    Istio 1.7.8 charts use a value as the whole image reference when it contains "/":
    istio-discovery templates/deployment.yaml (`pilot.image`), files/injection-template.yaml (`global.proxy.image`,
    `global.proxy_init.image`), gateways/istio-{ingress,egress} templates/deployment.yaml (`global.proxy.image`);
    istiocoredns templates/deployment.yaml renders `coreDNSImage:coreDNSTag` and `coreDNSPluginImage` as given.
    Field names per operator/pkg/apis/istio/v1alpha1/values_types.proto (PilotConfig, ProxyConfig, ProxyInitConfig,
    IstioCorednsConfig)."""
    chosen = profile.images.resolved(profile.istio_version)
    from lab.scenarios.replicated_control_planes.profiles import Images

    default = Images().resolved(profile.istio_version)
    changed = {k: v for k, v in chosen.items() if v != default.get(k)}
    values: dict[str, Any] = {}
    if "pilot" in changed:
        values["pilot"] = {"image": chart_image(changed["pilot"])}
    if "proxyv2" in changed:
        ref = chart_image(changed["proxyv2"])
        values["global"] = {"proxy": {"image": ref}, "proxy_init": {"image": ref}}
    coredns: dict[str, Any] = {}
    if "coredns" in changed:
        name, tag = _split_tag(changed["coredns"])
        coredns.update(coreDNSImage=name, coreDNSTag=tag)
    if "coredns_plugin" in changed:
        coredns["coreDNSPluginImage"] = changed["coredns_plugin"]
    if coredns:
        values["istiocoredns"] = coredns
    return values


def chart_image(ref: str) -> str:
    """The reference an Istio image override is installed as, and so what its Deployment then shows.

    The charts read a value without "/" as a name under the hub with their tag appended (`<hub>/<value>:<tag>`,
    istio-discovery templates/deployment.yaml at 1.7.8), so a bare override ("pilot:1.7.8-custom") is written out
    with Docker's own default, docker.io/library/<name>, which names the same image Docker pulled and kind loaded.
    The plan's istiod check compares against this same function's result: any other spelling would never match
    and every `lab up` would reinstall Istio.
    """
    return ref if "/" in ref else f"docker.io/library/{ref}"


def _split_tag(ref: str) -> tuple[str, str]:
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def overlay(profile: Profile) -> dict[str, Any]:
    """The IstioOperator overlay (manifests/replicated-control-planes/istio-overlay.yaml; see the module docstring),
    with the profile's image overrides merged into its `values` (a varying set of keys, so that part is code)."""
    obj: dict[str, Any] = yaml.safe_load(manifests.render(
        OVERLAY_TEMPLATE, SCENARIO, GATEWAY_NODE_PORT=profile.gateway_node_port, ISTIOD_CPU_M=LAB_CPU_M["istiod"],
        GATEWAY_CPU_M=LAB_CPU_M["gateway"], PROXY_CPU_M=LAB_CPU_M["proxy"]))
    manifests.merge(obj["spec"]["values"], image_values(profile))
    return obj


def stats_annotation_patch() -> str:
    """The merge patch that puts lab.scenarios.replicated_control_planes.names.STATS_ANNOTATION on a Deployment's pod
    template, as compact JSON
    (manifests/replicated-control-planes/sleep-stats-patch.yaml)."""
    key, value = names.STATS_ANNOTATION
    return json.dumps(yaml.safe_load(manifests.render(STATS_PATCH_TEMPLATE, SCENARIO, ANNOTATION=key, VALUE=value)),
                      separators=(",", ":"))


def overlay_yaml(profile: Profile) -> str:
    """`overlay(profile)` as YAML text."""
    header = ("# lab overlay: second -f to istioctl install (see lab/scenarios/replicated_control_planes/istio.py for "
              "the source of each field)\n")
    return header + yaml.safe_dump(overlay(profile), sort_keys=False)


def values_file(istio_dir: Path) -> Path:
    """The release's values-istio-multicluster-gateways.yaml; PreflightError if it is missing."""
    path = istio_dir / VALUES_FILE
    if not path.is_file():
        raise PreflightError(f"{path} is missing: the Istio release in {istio_dir} is incomplete; "
                             f"delete it from the cache and rerun")
    return path


@overload
def install_argv(istioctl: Path | str, kubeconfig: Path | str, context: str, files: Sequence[Path | str],
                 readiness_timeout: str | None = None) -> list[str]: ...
@overload
def install_argv(istioctl: Path | str, kubeconfig: Path | Token, context: Token, files: Sequence[Path | Token],
                 readiness_timeout: str | None = None) -> list[Token]: ...
def install_argv(istioctl: Path | str, kubeconfig: Path | Token, context: Token, files: Sequence[Path | Token],
                 readiness_timeout: str | None = None) -> list[str] | list[Token]:
    """`istioctl install -f <file>... --skip-confirmation --kubeconfig <k> --context <c>` (flags of 1.7.8).

    Flags per Istio 1.7.8 `operator/cmd/mesh/install.go`: `--filename/-f` (repeatable, later files overlay earlier
    ones), `--kubeconfig/-c`, `--context`, `--skip-confirmation/-y`, `--readiness-timeout` (default 300s, but parsed
    and then ignored by 1.7.x: set the wait with `install_env` instead, see the module docstring).
    Note `operator/cmd/mesh/shared.go` BuildClientConfig silently falls back to the default kubeconfig when the
    given file is missing or empty, so callers must pass an existing, non-empty kubeconfig.
    """
    if not files:
        raise ValueError("istioctl install needs at least one -f file")
    argv: list[Token] = [str(istioctl), "install"]
    for f in files:
        argv += ["-f", arg(f)]
    argv += ["--skip-confirmation", "--kubeconfig", arg(kubeconfig), "--context", context]
    if readiness_timeout:
        argv += ["--readiness-timeout", readiness_timeout]
    return argv
