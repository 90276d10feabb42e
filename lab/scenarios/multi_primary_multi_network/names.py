"""The multi-primary-multi-network scenario's fixed names: not pins (versions and images live in profiles.py), but
the names istio.io's "Install Multi-Primary on different networks" page, the 1.30 samples and the lab use.

Sources: istio/istio.io content/en/docs/setup/install/multicluster/multi-primary_multi-network/index.md (mesh1,
network1/network2, cluster1/cluster2, the east-west gateway's labels and Service), content/en/docs/setup/install/
multicluster/verify/index.md (the `sample` namespace, curl in one cluster and helloworld in both: here httpbin runs in
cluster2 only), istio/istio samples/curl/curl.yaml and samples/httpbin/httpbin.yaml at 1.30.3.
"""

from __future__ import annotations

from lab.kube import Query

SCENARIO = "multi-primary-multi-network"  # the scenario's name, and its folder under manifests/
ISTIO_NS = "istio-system"
APP_NS = "sample"  # the same namespace name in both clusters (istio.io's verify page)
CLIENT_APP = "curl"  # samples/curl/curl.yaml@1.30.3: ServiceAccount, Service and Deployment `curl`, container `curl`
SERVER_APP = "httpbin"  # samples/httpbin/httpbin.yaml@1.30.3: Service port 8000 `http`, targetPort 8080
SERVER_PORT = 8000
SERVER_HOST = f"{SERVER_APP}.{APP_NS}.svc.cluster.local"  # an ordinary name: the sidecar's DNS proxy answers it
SERVICE_HOSTS = "*.svc.cluster.local"  # every service's name, in either cluster (`lab configdump`'s default query)
MESH_ID = "mesh1"
NETWORK_LABEL = "topology.istio.io/network"
# gen-eastwest-gateway.sh@1.30.3 (manifests/multi-primary-multi-network/eastwest-gateway.yaml)
EASTWEST_GATEWAY = "istio-eastwestgateway"  # the component's name: its Deployment and Service
EASTWEST_SELECTOR = "istio=eastwestgateway"
EASTWEST_TLS_PORT = 15443
CROSS_NETWORK_GATEWAY = "cross-network-gateway"  # samples/multicluster/expose-services.yaml@1.30.3
# `istioctl create-remote-secret --name <cluster>` names the Secret istio-remote-secret-<cluster> in istio-system
# and labels it istio/multiCluster=true (istioctl/pkg/multicluster/remote_secret.go@1.30.3).
REMOTE_SECRET_PREFIX = "istio-remote-secret-"
REMOTE_SECRET_LABEL = "istio/multiCluster=true"
METALLB_NS = "metallb-system"
API_SERVER_PORT = 6443  # the control-plane container's API server port on the kind network (kind v0.32.0)


def remote_secret_name(cluster: str) -> str:
    return REMOTE_SECRET_PREFIX + cluster


# Run-time lookups (kubectl jsonpath), as `lab plan --shell` writes them and the executor runs them.
EASTWEST_ADDRESS = Query(("-n", ISTIO_NS, "service", EASTWEST_GATEWAY),
                         "{.status.loadBalancer.ingress[0].ip}", "east-west gateway address")
