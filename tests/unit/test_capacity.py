"""lab.scenarios.replicated_control_planes.capacity: the CPU one kind node must have, summed from the requests of the
pods the lab schedules."""

from __future__ import annotations

from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import capacity, istio


def _cpu_m(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def test_the_sums_use_what_the_overlay_really_installs():
    spec = istio.overlay(load_profile())["spec"]
    installed = {
        "istiod": spec["components"]["pilot"]["k8s"]["resources"]["requests"]["cpu"],
        "gateway": spec["components"]["ingressGateways"][0]["k8s"]["resources"]["requests"]["cpu"],
        "proxy": spec["values"]["global"]["proxy"]["resources"]["requests"]["cpu"],
    }
    assert {k: _cpu_m(v) for k, v in installed.items()} == istio.LAB_CPU_M
    pods = capacity.pods("server")
    assert pods["istiod"] == _cpu_m(installed["istiod"]) and pods["httpbin"] == _cpu_m(installed["proxy"])


def test_with_the_charts_requests_a_2_cpu_node_cannot_take_the_certificate_faults_istiod_surge():
    # cluster2 at rest with Istio 1.7.8's own requests: about 1.9 CPU; the surge istiod (500m) does not fit in 2
    rest = sum(capacity.pods("server", istio.CHART_CPU_M).values())
    assert 1800 <= rest <= 2000
    assert rest + istio.CHART_CPU_M["istiod"] > 2000
    assert capacity.min_cpus(istio.CHART_CPU_M) == 3


def test_with_the_labs_requests_both_clusters_and_every_surge_fit_in_2_cpus():
    for role in capacity.WORKLOADS:
        assert capacity.peak(role) <= 2000, role
    assert capacity.min_cpus() == 2


def test_the_peak_adds_a_surge_pod_for_istiod_the_gateways_and_each_workload():
    rest = capacity.pods("server")
    surge = sum(rest[pod] for pod in ("istiod", "istio-ingressgateway", "istio-egressgateway", "httpbin", "sleep"))
    assert capacity.peak("server") == sum(rest.values()) + surge
    assert capacity.peak("server") > capacity.peak("client")  # cluster2 runs two workloads
