"""Timeouts and poll intervals in one place (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    kind_create: float = 300.0
    istio_install: float = 420.0
    rollout: float = 300.0
    coredns_restart: float = 120.0
    # istiocoredns plugin re-reads ServiceEntries every 5 s; kube-dns and istiocoredns each cache 30 s.
    dns_converge: float = 90.0
    probe: float = 120.0
    gateway_config: float = 120.0  # a change on cluster2 until its gateway's config dump shows it
    command: float = 600.0
    poll_interval: float = 2.0


TIMEOUTS = Timeouts()
