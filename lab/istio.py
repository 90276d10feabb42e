"""Istio install inputs: the release URL, the multicluster values file, the lab's overlay, the install argv.

Owns the IstioOperator overlay passed as the second `-f` to `istioctl install` (../shared/facts/recipes.md):
a NodePort ingress gateway with all four default ports repeated (Istio 1.7.8 manifests/profiles/default.yaml) and a
fixed nodePort on `tls` 15443, without touching the gateway's `env` (that would drop ISTIO_META_ROUTER_MODE=sni-dnat);
`values.global.imagePullPolicy: IfNotPresent` so `kind load`-ed images are used; `meshConfig.accessLogFile:
/dev/stdout` so Envoy response flags are visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.profile import Profile

# Relative to the extracted release (release-builder 1.7 ships manifests/examples; facts/istio-1.7.md §2).
VALUES_FILE = Path("manifests/examples/multicluster/values-istio-multicluster-gateways.yaml")


def release_url(version: str, arch: str = "linux-amd64") -> str:
    """GitHub release asset URL of `istio-<version>-<arch>.tar.gz`."""
    raise NotImplementedError


def overlay(profile: Profile) -> dict:
    """The IstioOperator overlay (see module docstring)."""
    raise NotImplementedError


def overlay_yaml(profile: Profile) -> str:
    """`overlay(profile)` as YAML text."""
    raise NotImplementedError


def values_file(istio_dir: Path) -> Path:
    """The release's values-istio-multicluster-gateways.yaml; ValidationError if it is missing."""
    raise NotImplementedError


def install_argv(istioctl: Path | str, kubeconfig: Path | str, context: str, files: Sequence[Path | str],
                 readiness_timeout: str | None = None) -> list[str]:
    """`istioctl install -f <file>... --skip-confirmation --kubeconfig <k> --context <c>` (flags of 1.7.8)."""
    raise NotImplementedError
