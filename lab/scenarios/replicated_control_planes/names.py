"""The scenario's fixed names and the write-up's run-time lookups, in one place.

These are not pins (versions and images live in lab.profile): they are the names the write-up and Istio 1.7's
charts and samples use, and the `kubectl get ... -o jsonpath=...` queries the write-up runs to learn values known
only at run time (docs/sources.md#istio-recipes-lookups). The plan renders them into `plan --shell` and the executor
runs them through `lab.kube.Kubectl.query`; the faults and the doctor ask the same of the API (lab.cluster:
`cluster_ip`, `pod_host_ip`, `node_port`) from the names below.
"""

from __future__ import annotations

from lab.kube import COREDNS_CONFIGMAP, Query  # noqa: F401  (re-exported: the scenario's lookups are Queries)

SCENARIO = "replicated-control-planes"  # the scenario's name, and its folder under manifests/
ISTIO_NS = "istio-system"
CLIENT_NS = "foo"  # sleep, in the client cluster (the write-up's cluster1)
SERVER_NS = "bar"  # httpbin (and a second sleep), in the server cluster (cluster2)
REMOTE_NAME = "httpbin"
REMOTE_PORT = 8000  # samples/httpbin/httpbin.yaml: Service port 8000 `http`
REMOTE_HOST = f"{REMOTE_NAME}.{SERVER_NS}.global"
# manifests/charts/gateways/istio-ingress/templates/preconfigured.yaml (istio/istio 1.7.x)
ENVOYFILTER = "istio-multicluster-ingressgateway"
# The EnvoyFilter above uses the working `typed_config` form from 1.7.5 on; 1.7.0-1.7.4 ship the legacy `config:`
# form that 1.7's Envoy ignores (istio/istio commit 3990ddff, PR #28283, istio#27909).
ENVOYFILTER_FIXED_IN = "1.7.5"
GATEWAY_SELECTOR = "istio=ingressgateway"
GATEWAY_SERVICE = "istio-ingressgateway"
GATEWAY_TLS_PORT = 15443
# The sidecar's Envoy keeps only the stats its bootstrap's stats_matcher includes: Istio 1.7.8
# tools/packaging/common/envoy_bootstrap.json (inclusion_list) filled by pkg/bootstrap/config.go getStatsOptions, whose
# only default is requiredEnvoyStatsMatcherInclusionPrefixes (cluster_manager, listener_manager, server,
# cluster.xds-grpc, ...). `ssl.fail_verify_error` (what lab doctor reads to tell a root-of-trust mismatch) is there
# only with this pod annotation (pilot/pkg/model/context.go BootstrapNodeMetadata.StatsInclusionSuffixes, passed by
# files/injection-template.yaml as ISTIO_METAJSON_ANNOTATIONS). The bootstrap is written when the pod starts, so
# the plan puts the annotation on the pod template of the clients (sleep), before their rollout is awaited.
FAIL_VERIFY_STAT = "ssl.fail_verify_error"
STATS_ANNOTATION = ("sidecar.istio.io/statsInclusionSuffixes", FAIL_VERIFY_STAT)  # (key, value)


ISTIOCOREDNS_SERVICE = "istiocoredns"  # in ISTIO_NS (manifests/charts/istiocoredns at 1.7.x)
KUBE_DNS_SERVICE = ("kube-system", "kube-dns")  # (namespace, name): kubeadm's cluster DNS Service, as kind installs it
ISTIOCOREDNS_IP = Query(("-n", ISTIO_NS, "service", ISTIOCOREDNS_SERVICE), "{.spec.clusterIP}",
                        "istiocoredns ClusterIP")
KUBE_DNS_IP = Query(("-n", KUBE_DNS_SERVICE[0], "service", KUBE_DNS_SERVICE[1]), "{.spec.clusterIP}",
                    "kube-dns ClusterIP")
# The write-up: INGRESS_HOST from the gateway pod's hostIP (on kind, the node's address on the `kind` network).
GATEWAY_NODE_IP = Query(("-n", ISTIO_NS, "pod", "-l", GATEWAY_SELECTOR), "{.items[0].status.hostIP}",
                        "gateway node IP")
GATEWAY_NODEPORT = Query(("-n", ISTIO_NS, "service", GATEWAY_SERVICE),
                         f"{{.spec.ports[?(@.port=={GATEWAY_TLS_PORT})].nodePort}}", "gateway 15443 nodePort")
