"""Why the plan annotates the sleep pods: a real Envoy with Istio 1.7.8's sidecar stats matcher.

Istio 1.7.8 writes the sidecar bootstrap's `stats_config.stats_matcher.inclusion_list` from
tools/packaging/common/envoy_bootstrap.json: prefix `reporter=`, the prefixes of pkg/bootstrap/config.go
`requiredEnvoyStatsMatcherInclusionPrefixes` (plus any from the `sidecar.istio.io/statsInclusionPrefixes` annotation),
a suffix per entry of the `sidecar.istio.io/statsInclusionSuffixes` annotation, and prefix `component`. Here the same
matcher runs in a real Envoy with an outbound TLS cluster like the one cluster1's sidecar has for httpbin.bar.global:
without the suffix `lab doctor` cannot read `ssl.fail_verify_error`; with the plan's annotation it can.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from lab.scenarios.replicated_control_planes import doctor
from lab.scenarios.replicated_control_planes import steps as rcp_steps
from tests.support.envoy import free_port, run_envoy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples" / "root-cert.pem"
CLUSTER = "outbound|8000||httpbin.bar.global"
# Istio 1.7.8 pkg/bootstrap/config.go requiredEnvoyStatsMatcherInclusionPrefixes
REQUIRED_PREFIXES = ("cluster_manager", "listener_manager", "http_mixer_filter", "tcp_mixer_filter", "server",
                     "cluster.xds-grpc", "wasm")


def sidecar_like(suffixes: tuple[str, ...]) -> dict:
    patterns = [{"prefix": "reporter="}, *({"prefix": p} for p in REQUIRED_PREFIXES),
                *({"suffix": s} for s in suffixes), {"prefix": "component"}]
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "outbound_.8000_._.httpbin.bar.global",
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": str(ROOT)}}}}}
    return {
        "stats_config": {"stats_matcher": {"inclusion_list": {"patterns": patterns}}},
        "static_resources": {"clusters": [{
            "name": CLUSTER, "type": "STATIC", "connect_timeout": "1s", "transport_socket": tls,
            "load_assignment": {"cluster_name": CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": free_port()}}}}]}]}}]},
    }


def stats_text(envoy) -> str:
    return requests.get(f"{envoy.admin}/stats", params={"filter": "ssl.fail_verify_error"}, timeout=5).text


def test_without_the_annotation_the_sidecar_hides_ssl_fail_verify_error(envoy_path):
    with run_envoy(sidecar_like(())) as envoy:
        text = stats_text(envoy)
    assert "fail_verify_error" not in text
    assert doctor.fail_verify_errors(text, "httpbin.bar.global") is None


def test_with_the_plan_s_annotation_the_counter_is_there_for_the_doctor(envoy_path):
    key, value = rcp_steps.STATS_ANNOTATION
    assert key == "sidecar.istio.io/statsInclusionSuffixes"
    with run_envoy(sidecar_like(tuple(value.split(",")))) as envoy:
        text = stats_text(envoy)
    assert f"cluster.{CLUSTER}.ssl.fail_verify_error: 0" in text
    assert doctor.fail_verify_errors(text, "httpbin.bar.global") == 0
