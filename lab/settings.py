"""Timeouts and poll intervals in one place (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    kind_create: float = 300.0
    # istioctl 1.7's own wait per component (WAIT_FOR_RESOURCES_TIMEOUT; the Istio 1.7 scenario's istio.py says
    # why not the flag).
    istio_readiness: float = 300.0
    rollout: float = 300.0
    coredns_restart: float = 120.0
    # istiocoredns plugin re-reads ServiceEntries every 5 s; kube-dns and istiocoredns each cache 30 s.
    dns_converge: float = 90.0
    probe: float = 120.0
    gateway_config: float = 120.0  # a change on cluster2 until its gateway's config dump shows it
    command: float = 600.0
    api_request: float = 30.0  # one Kubernetes API call of lab.cluster (a watch: its own deadline plus this)
    poll_interval: float = 2.0

    @property
    def istio_install(self) -> float:
        """The outer deadline of one `istioctl install`: every wait istioctl 1.7 may do, one after the other, plus
        a margin, so the lab never kills istioctl inside one of its own waits
        (the Istio 1.7 scenario's istio.py explains the waits)."""
        return ISTIOCTL_CRD_WAIT + ISTIOCTL_WAIT_LEVELS * self.istio_readiness + ISTIOCTL_APPLY_MARGIN


# istioctl 1.7.8 operator/pkg/helmreconciler: up to 60 s for CRDs (wait.go cRDPollTimeout), then one readiness wait
# per level of the component tree Base -> Pilot -> {gateways, addons} (common.go ComponentDependencies).
ISTIOCTL_CRD_WAIT = 60.0
ISTIOCTL_WAIT_LEVELS = 3
ISTIOCTL_APPLY_MARGIN = 120.0  # rendering, applying, webhook and CRD round trips around the waits


TIMEOUTS = Timeouts()
