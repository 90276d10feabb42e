"""Istio install inputs: the release URL, the multicluster values file, the lab's overlay, the install argv.

Owns the IstioOperator overlay passed as the second `-f` to `istioctl install` (../shared/facts/recipes.md):
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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from lab.errors import PreflightError
from lab.profile import Images, Profile

# Relative to the extracted release (release-builder 1.7 ships manifests/examples; facts/istio-1.7.md §2).
VALUES_FILE = Path("manifests/examples/multicluster/values-istio-multicluster-gateways.yaml")
GATEWAY = "istio-ingressgateway"
TLS_PORT = 15443

# Istio 1.7.8 manifests/profiles/default.yaml, ingress gateway service ports (name, port, targetPort).
DEFAULT_GATEWAY_PORTS = (
    ("status-port", 15021, 15021),
    ("http2", 80, 8080),
    ("https", 443, 8443),
    ("tls", TLS_PORT, TLS_PORT),
)


def release_url(version: str, arch: str = "linux-amd64") -> str:
    """GitHub release asset URL of `istio-<version>-<arch>.tar.gz` (release-builder 1.7 pkg/build/archive.go)."""
    return f"https://github.com/istio/istio/releases/download/{version}/istio-{version}-{arch}.tar.gz"


def gateway_ports(node_port: int) -> list[dict]:
    """The four default gateway ports, with `nodePort` fixed on `tls` (15443) only; the others get random ones."""
    ports = []
    for name, port, target in DEFAULT_GATEWAY_PORTS:
        entry: dict = {"name": name, "port": port, "targetPort": target}
        if port == TLS_PORT:
            entry["nodePort"] = node_port
        ports.append(entry)
    return ports


def image_values(profile: Profile) -> dict:
    """`values` that make the install run the profile's Istio images where they differ from what istioctl renders by
    default (an `images.*` override); {} for the default images, which istioctl's own hub/tag already names.

    Istio 1.7.8 charts use a value as the whole image reference when it contains "/":
    istio-discovery templates/deployment.yaml (`pilot.image`), files/injection-template.yaml (`global.proxy.image`,
    `global.proxy_init.image`), gateways/istio-{ingress,egress} templates/deployment.yaml (`global.proxy.image`);
    istiocoredns templates/deployment.yaml renders `coreDNSImage:coreDNSTag` and `coreDNSPluginImage` as given.
    Field names per operator/pkg/apis/istio/v1alpha1/values_types.proto (PilotConfig, ProxyConfig, ProxyInitConfig,
    IstioCorednsConfig)."""
    chosen = profile.images.resolved(profile.istio_version)
    default = Images().resolved(profile.istio_version)
    changed = {k: v for k, v in chosen.items() if v != default.get(k)}
    values: dict = {}
    if "pilot" in changed:
        values["pilot"] = {"image": chart_image(changed["pilot"])}
    if "proxyv2" in changed:
        ref = chart_image(changed["proxyv2"])
        values["global"] = {"proxy": {"image": ref}, "proxy_init": {"image": ref}}
    coredns: dict = {}
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


def _merge(into: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def overlay(profile: Profile) -> dict:
    """The IstioOperator overlay (see module docstring)."""
    values = _merge({"global": {"imagePullPolicy": "IfNotPresent"}}, image_values(profile))
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "spec": {
            "meshConfig": {"accessLogFile": "/dev/stdout"},
            "components": {
                "ingressGateways": [
                    {
                        "name": GATEWAY,
                        "enabled": True,
                        "k8s": {"service": {"type": "NodePort", "ports": gateway_ports(profile.gateway_node_port)}},
                    }
                ]
            },
            "values": values,
        },
    }


def overlay_yaml(profile: Profile) -> str:
    """`overlay(profile)` as YAML text."""
    header = "# lab overlay: second -f to istioctl install (see lab/istio.py for the source of each field)\n"
    return header + yaml.safe_dump(overlay(profile), sort_keys=False)


def values_file(istio_dir: Path) -> Path:
    """The release's values-istio-multicluster-gateways.yaml; PreflightError if it is missing."""
    path = istio_dir / VALUES_FILE
    if not path.is_file():
        raise PreflightError(f"{path} is missing: the Istio release in {istio_dir} is incomplete; "
                             f"delete it from the cache and rerun")
    return path


def install_argv(istioctl: Path | str, kubeconfig: Path | str, context: str, files: Sequence[Path | str],
                 readiness_timeout: str | None = None) -> list[str]:
    """`istioctl install -f <file>... --skip-confirmation --kubeconfig <k> --context <c>` (flags of 1.7.8).

    Flags per Istio 1.7.8 `operator/cmd/mesh/install.go`: `--filename/-f` (repeatable, later files overlay earlier
    ones), `--kubeconfig/-c`, `--context`, `--skip-confirmation/-y`, `--readiness-timeout` (default 300s).
    Note `operator/cmd/mesh/shared.go` BuildClientConfig silently falls back to the default kubeconfig when the
    given file is missing or empty, so callers must pass an existing, non-empty kubeconfig.
    """
    if not files:
        raise ValueError("istioctl install needs at least one -f file")
    argv = [str(istioctl), "install"]
    for f in files:
        argv += ["-f", str(f)]
    argv += ["--skip-confirmation", "--kubeconfig", str(kubeconfig), "--context", context]
    if readiness_timeout:
        argv += ["--readiness-timeout", readiness_timeout]
    return argv
