"""Pure helpers of the e2e suite, for both scenarios (tested offline in tests/unit/test_e2e_helpers.py).

- `Target`: what the suite needs to know of a scenario to call into a running lab of it (the client pod, the URL of
  its proof), one per scenario (`TARGETS`), and the pytest marker that selects its tests (`marker_of`).
- `skip_reason`: why a test of one scenario does not run against a lab of another.
- `parse_xfcc` / `header_values` / `spiffe_id` (from lab/xfcc.py, which the doctor reads them with too): the
  X-Forwarded-Client-Cert header as Envoy writes it, and a request header as kennethreitz/httpbin (a string) or
  go-httpbin (a list) echoes it.
- `cluster_endpoints`: the endpoints of one Envoy cluster in the admin's `/clusters?format=json`.
- `gateway_addresses`: the addresses istiod takes from an east-west gateway Service.
- `sidecarless_pod`: a pod of the client image that the injector leaves alone.
- `settled_class` (lab.catalogue's): poll a classified probe until it is stable; `observation`: the line a fault
  run appends to observed.jsonl.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from lab.catalogue import settled_class as settled_class  # one poll for the catalogues and the suite
from lab.scenarios.multi_primary_multi_network import names as mp
from lab.scenarios.replicated_control_planes import names as rcp
from lab.xfcc import header_values as header_values
from lab.xfcc import parse_xfcc as parse_xfcc
from lab.xfcc import spiffe_id as spiffe_id  # (these three: lab/xfcc.py, re-exported for the suite)


# --- the scenarios ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A scenario as the suite calls into it: the client pod its proof runs in, and that proof's URL."""

    scenario: str  # the scenario's name (lab.scenario), as --lab-scenario takes it
    istio_ns: str
    client_ns: str  # the client pod's namespace in the client cluster
    client_selector: str
    client_container: str  # the container curl runs in
    probe_url: str  # the proof `lab up` ends with

    @property
    def marker(self) -> str:
        return marker_of(self.scenario)


def marker_of(scenario: str) -> str:
    """The pytest marker of a scenario's tests: its name as an identifier (`-m multi_primary_multi_network`)."""
    return scenario.replace("-", "_")


TARGETS: dict[str, Target] = {t.scenario: t for t in (
    # the write-up's check: sleep in cluster1's foo calls httpbin.bar.global:8000/headers
    Target(rcp.SCENARIO, rcp.ISTIO_NS, rcp.CLIENT_NS, "app=sleep", "sleep",
           f"http://{rcp.REMOTE_HOST}:{rcp.REMOTE_PORT}/headers"),
    # issue 11's proof: curl in cluster1's sample calls httpbin.sample.svc.cluster.local:8000/headers
    Target(mp.SCENARIO, mp.ISTIO_NS, mp.APP_NS, f"app={mp.CLIENT_APP}", mp.CLIENT_APP,
           f"http://{mp.SERVER_HOST}:{mp.SERVER_PORT}/headers"),
)}

MARKERS: dict[str, str] = {marker_of(name): name for name in TARGETS}  # marker -> scenario


def target_of(scenario: str) -> Target:
    if scenario not in TARGETS:
        raise KeyError(f"the e2e suite has no tests for scenario {scenario!r} (it knows {', '.join(TARGETS)})")
    return TARGETS[scenario]


def skip_reason(test_scenario: str, under_test: str, profile: str) -> str | None:
    """None when a test of `test_scenario` runs against the lab of `profile` (of scenario `under_test`); otherwise
    the one line pytest shows: which scenario is under test and how to select the test's own."""
    if test_scenario == under_test:
        return None
    return (f"a {test_scenario} test; the scenario under test is {under_test} (profile {profile}): run with "
            f"--lab-scenario {test_scenario} (or -m {marker_of(under_test)} to leave these out)")


# --- what the client's Envoy and the gateway Service hold ----------------------------------------------------
def cluster_endpoints(clusters: Mapping[str, Any], name: str) -> list[tuple[str, int]] | None:
    """(address, port) of every host of the Envoy cluster `name` in the admin's `/clusters?format=json`
    (envoy.admin.v3.Clusters: cluster_statuses[].name, host_statuses[].address.socket_address), or None when there is
    no such cluster."""
    for status in clusters.get("cluster_statuses") or []:
        if status.get("name") != name:
            continue
        out = []
        for host in status.get("host_statuses") or []:
            sock = (host.get("address") or {}).get("socket_address") or {}
            out.append((str(sock.get("address", "")), int(sock.get("port_value", 0))))
        return out
    return None


def cluster_names(clusters: Mapping[str, Any]) -> list[str]:
    return [str(s.get("name")) for s in clusters.get("cluster_statuses") or []]


def gateway_addresses(service: Any) -> list[str]:
    """The addresses istiod makes a network's gateway of, from the gateway's typed V1Service: its LoadBalancer
    ingress IPs (else host names), then its spec.externalIPs (pilot/pkg/serviceregistry/kube/conversion.go@1.30.3
    lines 130-157), each once."""
    out: list[str] = []
    spec, status = service.spec, service.status
    lb = status.load_balancer if status is not None else None
    if spec is not None and spec.type == "LoadBalancer":
        for ingress in (lb.ingress or []) if lb is not None else []:
            if ingress.ip or ingress.hostname:
                out.append(str(ingress.ip or ingress.hostname))
    for ip in (spec.external_ips or []) if spec is not None else []:
        out.append(str(ip))
    return list(dict.fromkeys(out))


# --- a pod without a sidecar ------------------------------------------------------------------------------------
NO_SIDECAR_NAME = "lab-e2e-no-sidecar"
# The injector skips a pod whose sidecar.istio.io/inject annotation (or label, which wins) is "false"
# (pkg/kube/inject/inject.go@1.30.3 injectRequired, lines 223-231), even in a namespace labelled for injection.
INJECT_ANNOTATION = "sidecar.istio.io/inject"


def sidecarless_pod(namespace: str, image: str, container: str, *, name: str = NO_SIDECAR_NAME) -> dict[str, Any]:
    """The client's image as a pod that the injector leaves without a sidecar: the same lookup as from the client,
    but with no DNS proxy on the way. It only sleeps (as samples/curl/curl.yaml@1.30.3's container does) and goes
    at once when deleted."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name},
                     "annotations": {INJECT_ANNOTATION: "false"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "containers": [{"name": container, "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/sleep", "infinity"]}],
        },
    }


def pod_containers(pod: Any) -> list[str]:
    """The container names of a typed V1Pod (init containers not counted)."""
    return [c.name for c in (pod.spec.containers or [])] if pod.spec is not None else []


def observation(profile: Any, fault_id: str, stage: str, expected: str, seen: str | None, history: Sequence[str],
                evidence: Sequence[str], day: date) -> dict[str, Any]:
    """What one fault run saw, as a line of <artifacts>/observed.jsonl (the catalogue's `observed=` is corrected from
    these): the scenario and Istio version, the expected and the observed class (None: no stable class), every
    class in order and the classifier's evidence."""
    return {"scenario": profile.scenario, "fault": fault_id, "stage": stage, "istio_version": profile.istio_version,
            "expected": expected, "observed": seen, "history": list(history), "evidence": list(evidence),
            "date": day.isoformat()}
