"""CPU on one kind node: what every pod the lab schedules requests, at rest and at the fault suite's worst moment,
and from that the CPUs preflight asks of the Docker host.

A kind node is a container that sees all of the Docker host's CPUs and no more, and the scheduler places a pod only
where the sum of requests still fits the node's allocatable CPU (kind reserves nothing, so allocatable = the host's
CPU count). A pod that does not fit stays Pending: a rollout that surges a new istiod next to the old one would wait
for ever on a host that is too small.

Requests per pod (millicores), all on the one control-plane node of each cluster:
- Kubernetes (kubeadm static pods, Kubernetes 1.19 and 1.21): kube-apiserver 250m, kube-controller-manager 200m,
  kube-scheduler 100m (cmd/kubeadm/app/phases/controlplane/manifests.go ComponentResources), etcd 100m
  (cmd/kubeadm/app/phases/etcd/local.go); CoreDNS 100m per replica, 2 replicas (kubeadm's CoreDNS Deployment);
  kindnet 100m (kind v0.20.0 pkg/build/nodeimage/const_cni.go). kube-proxy and local-path-provisioner request none.
- Istio: lab/scenarios/replicated_control_planes/istio.py (chart defaults and the lab's overlay). The samples' sleep and
httpbin containers request
  nothing (Istio 1.7.8 samples/sleep/sleep.yaml, samples/httpbin/httpbin.yaml); each injected pod's request is its
  sidecar's.
- Surges during the fault suite: istiod and the gateways roll out with maxSurge 100% (profiles/default.yaml
  components.*.k8s.strategy), so a restart or a reinstall runs a second pod of each next to the first; the sample
  Deployments use Kubernetes' default maxSurge 25%, which rounds up to one extra pod. The peak counts every surge at
  once (a restart of istiod, the gateways and every workload of a cluster, as the certificate faults and the
  reinstall do), while the old pods still hold their requests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from lab.scenarios.replicated_control_planes import istio

# kubeadm's control plane, CoreDNS and kind's CNI on one node (sources in the module docstring).
KUBERNETES_CPU_M = {"kube-apiserver": 250, "kube-controller-manager": 200, "kube-scheduler": 100, "etcd": 100,
                    "coredns": 2 * 100, "kindnet": 100}
# The injected workloads per cluster role (lab/plan.py: sleep in the client's foo; httpbin and a sleep in bar).
WORKLOADS = {"client": ("sleep",), "server": ("httpbin", "sleep")}


def pods(role: str, cpu: Mapping[str, int] = istio.LAB_CPU_M) -> dict[str, int]:
    """pod -> CPU request (m) of one cluster at rest, with `cpu` the Istio requests (the lab's, or the charts')."""
    out = dict(KUBERNETES_CPU_M)
    out["istiod"] = cpu["istiod"]
    out["istio-ingressgateway"] = cpu["gateway"]
    # enabled by the multicluster values file; the lab's overlay leaves it as the profile sets it
    # (lab/scenarios/replicated_control_planes/istio.py)
    out["istio-egressgateway"] = istio.CHART_CPU_M["gateway"]
    out["istiocoredns"] = istio.CHART_CPU_M["istiocoredns"]
    for app in WORKLOADS[role]:
        out[app] = cpu["proxy"]
    return out


def peak(role: str, cpu: Mapping[str, int] = istio.LAB_CPU_M) -> int:
    """The most CPU (m) one cluster's pods request at once: at rest plus a surge pod of istiod, both gateways and
    every workload (module docstring)."""
    rest = pods(role, cpu)
    surging = ("istiod", "istio-ingressgateway", "istio-egressgateway", *WORKLOADS[role])
    return sum(rest.values()) + sum(rest[name] for name in surging)


def min_cpus(cpu: Mapping[str, int] = istio.LAB_CPU_M) -> int:
    """The CPUs each kind node needs, so the Docker host's minimum: the busier cluster's peak, rounded up."""
    return math.ceil(max(peak(role, cpu) for role in WORKLOADS) / 1000)
