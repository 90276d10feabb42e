"""The multi-primary-multi-network fault catalogue (lab/scenarios/multi_primary_multi_network/faults.py): its data,
the docs table generated from it, and every inject/restore against two fake API servers (one per cluster,
tests/support/fake_apiserver.py), checking the objects changed and put back, and that saved secrets stay out of
the logs."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from lab import catalogue
from lab.classify import CLASSES
from lab.cluster import ClusterHandle, LabHandle
from lab.errors import ApiError, LabError, NotFoundError
from lab.scenarios.multi_primary_multi_network import faults
from lab.scenarios.multi_primary_multi_network.faults import FAULTS, Expectation, FaultLab
from lab.scenarios.multi_primary_multi_network.profiles import ISTIO_RELEASES, PROFILES
from tests.support.fake_apiserver import ExecScript, running, status

DOCS = Path(__file__).resolve().parents[2] / "docs" / "multi-primary-faults.md"
PROFILE = PROFILES["multi-primary"]
TOKEN = "remote-reader-token-value-never-logged"  # what must never reach a log line
GOOD_SERVER = "https://172.18.0.3:6443"
CORE, APPS = "/api/v1", "/apis/apps/v1"
ISTIO_NET = "/apis/networking.istio.io/v1alpha3"


# --- data ---------------------------------------------------------------------------------------------------------
def test_ids_are_unique_and_every_fault_can_break_and_heal():
    assert len({f.id for f in FAULTS}) == len(FAULTS) == 8
    for fault in FAULTS:
        assert callable(fault.inject) and callable(fault.restore) and fault.inject is not fault.restore, fault.id
        assert fault.cluster in ("client", "server") and fault.breaks, fault.id
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", fault.id), fault.id
        assert fault.settle > 0 and fault.timeout > 0, fault.id


@pytest.mark.parametrize("version", ISTIO_RELEASES)
def test_every_fault_expects_exactly_one_valid_class_for_every_1_30_release(version):
    for fault in FAULTS:
        exp = faults.expectation(fault, version)
        assert exp.covers(version) and exp.cls in CLASSES, fault.id
        assert 0 < exp.confidence <= 100, fault.id


def test_every_expectation_cites_the_1_30_3_source_and_the_docs_section():
    for fault in FAULTS:
        for exp in fault.expectations:
            assert re.search(r"@1\.30\.3:\d+", exp.why) or "envoyproxy/envoy" in exp.why, fault.id
            assert faults.DOC in exp.why, fault.id


def test_the_classes_are_those_the_docs_reason_out():
    assert {f.id: f.expected_for("1.30.3").cls for f in FAULTS} == {
        "no-remote-secret": "dns-failure",
        "remote-secret-loopback": "dns-failure",
        "network-label-missing": "timeout",
        "eastwest-no-address": "timeout",
        "no-auto-passthrough-gateway": "upstream-connect-failure",
        "root-ca-mismatch": "upstream-tls-failure",
        "dns-capture-off": "dns-failure",
        "shared-service-subnet": "connection-reset",
    }
    assert not any(f.needs_reinstall for f in FAULTS)


def test_a_version_outside_every_range_is_refused_with_the_fault_named():
    with pytest.raises(LabError, match="no-remote-secret: 0 expectations cover Istio 1.31.0"):
        faults.expectation(faults.BY_ID["no-remote-secret"], "1.31.0")
    both = (Expectation("1.30.0-1.30.2", "ok", 50, "a"), Expectation("1.30.2-1.30.3", "ok", 50, "b"))
    with pytest.raises(LabError, match="2 expectations cover Istio 1.30.2"):
        catalogue.pick(both, "1.30.2", "x")


# --- the table ------------------------------------------------------------------------------------------------------
GOLDEN = """\
| id | cluster | how it breaks the lab | expected on 1.30.3 | slow lane |
|---|---|---|---|---|
| `no-remote-secret` | client | delete cluster2's remote secret (istio-system/istio-remote-secret-cluster2) in cluster1 | `dns-failure` (85%) |  |
| `remote-secret-loopback` | client | cluster2's remote secret in cluster1 with server `https://127.0.0.1:<port>` (istio#31081), put in after the good one was deleted | `dns-failure` (80%) |  |
| `network-label-missing` | server | remove topology.istio.io/network from cluster2's istio-system namespace and from httpbin's pods | `timeout` (60%) |  |
| `eastwest-no-address` | server | cluster2's east-west gateway Service without an address (MetalLB pool that does not exist, externalIPs removed): EXTERNAL-IP `<pending>` | `timeout` (65%) |  |
| `no-auto-passthrough-gateway` | server | delete the `*.local` AUTO_PASSTHROUGH Gateway cross-network-gateway in cluster2 | `upstream-connect-failure` (75%) |  |
| `root-ca-mismatch` | server | cluster2's cacerts from another root, then restart istiod, the east-west gateway and httpbin | `upstream-tls-failure` (75%) |  |
| `dns-capture-off` | client | ISTIO_META_DNS_CAPTURE false for cluster1's curl (pod annotation proxy.istio.io/config) | `dns-failure` (90%) |  |
| `shared-service-subnet` | client | cluster2's service range added to cluster1 (ServiceCIDR) and a TCP Service without endpoints on httpbin's cluster2 ClusterIP:8000 (istio#32819) | `connection-reset` (55%) |  |
"""  # noqa: E501


def test_catalogue_table_is_the_golden_text():
    assert faults.catalogue_table() == GOLDEN


def test_with_catalogue_table_replaces_only_what_is_between_the_markers():
    text = f"# T\n\nbefore\n{faults.TABLE_BEGIN}\n| stale |\n{faults.TABLE_END}\nafter\n"
    out = faults.with_catalogue_table(text)
    assert out == f"# T\n\nbefore\n{faults.TABLE_BEGIN}\n{GOLDEN}{faults.TABLE_END}\nafter\n"
    assert faults.with_catalogue_table(out) == out


@pytest.mark.parametrize("text", ["no markers\n", f"{faults.TABLE_END}\n{faults.TABLE_BEGIN}\n",
                                  f"{faults.TABLE_BEGIN}\n{faults.TABLE_BEGIN}\n{faults.TABLE_END}\n"])
def test_with_catalogue_table_needs_one_begin_then_one_end(text):
    with pytest.raises(LabError, match="the fault table needs exactly one line"):
        faults.with_catalogue_table(text)


def test_the_docs_table_is_current():
    text = DOCS.read_text()
    assert faults.with_catalogue_table(text) == text, (
        "docs/multi-primary-faults.md's fault table is stale: run `python -m lab faults table --scenario "
        "multi-primary-multi-network --write docs/multi-primary-faults.md`")


# --- pure helpers ---------------------------------------------------------------------------------------------------
def _kubeconfig(server: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "cluster2",
                           "clusters": [{"name": "cluster2", "cluster": {"server": server,
                                                                          "certificate-authority-data": "Q0E="}}],
                           "users": [{"name": "cluster2", "user": {"token": TOKEN}}],
                           "contexts": [{"name": "cluster2", "context": {"cluster": "cluster2", "user": "cluster2"}}]})


def _remote_secret() -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "istio-remote-secret-cluster2", "namespace": "istio-system",
                         "labels": {"istio/multiCluster": "true"},
                         "annotations": {"networking.istio.io/cluster": "cluster2"}},
            "data": {"cluster2": base64.b64encode(_kubeconfig(GOOD_SERVER).encode()).decode()}}


def test_loopback_secret_rewrites_only_the_server_and_leaves_its_input_alone():
    secret = _remote_secret()
    before = json.dumps(secret, sort_keys=True)
    bad = faults.loopback_secret(secret, 40123)
    assert json.dumps(secret, sort_keys=True) == before
    assert faults.kubeconfig_servers(bad) == ["https://127.0.0.1:40123"]
    config = yaml.safe_load(base64.b64decode(bad["data"]["cluster2"]))
    assert config["users"][0]["user"]["token"] == TOKEN and config["clusters"][0]["cluster"][
        "certificate-authority-data"] == "Q0E="
    assert bad["metadata"] == secret["metadata"]


def test_a_broken_remote_secret_is_one_line_without_its_content():
    secret = _remote_secret()
    secret["data"]["cluster2"] = base64.b64encode(b"{}: [").decode()
    with pytest.raises(LabError) as err:
        faults.loopback_secret(secret, 1)
    assert "key cluster2 is not a kubeconfig" in str(err.value) and "[" not in str(err.value)
    with pytest.raises(LabError, match="holds no kubeconfig"):
        faults.loopback_secret({"data": {}}, 1)


def test_clusterz_is_read_as_cluster_id_to_status():
    text = json.dumps([{"id": "cluster1", "secretName": "", "syncStatus": "synced"},
                       {"id": "cluster2", "secretName": "istio-system/istio-remote-secret-cluster2",
                        "syncStatus": "timeout"}]) + "\n"
    assert faults.remote_clusters(text) == {"cluster1": "synced", "cluster2": "timeout"}
    with pytest.raises(ValueError, match="not JSON"):
        faults.remote_clusters("404 page not found")


def test_shared_subnet_objects_put_a_tcp_service_on_the_remote_cluster_ip():
    cidr, svc = faults.shared_subnet_objects("10.255.20.0/24", "10.255.20.17")
    assert cidr == {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                    "metadata": {"name": "lab-shared-subnet"}, "spec": {"cidrs": ["10.255.20.0/24"]}}
    assert svc["spec"] == {"clusterIP": "10.255.20.17", "ports": [{"name": "tcp", "port": 8000, "protocol": "TCP"}]}
    assert "selector" not in svc["spec"] and svc["metadata"] == {"name": "lab-collider", "namespace": "sample"}


def test_the_dns_capture_annotation_is_proxy_config_yaml():
    assert yaml.safe_load(faults.DNS_CAPTURE_OFF) == {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "false"}}


# --- against two fake API servers -----------------------------------------------------------------------------------
def _deployment(ns: str, name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": "x"}]}}},
            # observed far ahead: a restart's generation bump still reads as rolled out (no watch needed)
            "status": {"observedGeneration": 1000, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                       "availableReplicas": 1}}


def _pod(ns: str, name: str, app: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-12-02T10:00:00Z",
                         "labels": {"app": app, **(labels or {})}},
            "spec": {"containers": [{"name": app, "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def _namespace(name: str, network: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"topology.istio.io/network": network}}}


def _secret(name: str, data: dict[str, bytes]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "istio-system"},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


ROOT = b"-----BEGIN CERTIFICATE-----\nshared-root\n-----END CERTIFICATE-----\n"
CLUSTERZ_WITH = json.dumps([{"id": "cluster1", "syncStatus": "synced"},
                            {"id": "cluster2", "secretName": "istio-system/istio-remote-secret-cluster2",
                             "syncStatus": "synced"}])
CLUSTERZ_WITHOUT = json.dumps([{"id": "cluster1", "syncStatus": "synced"}])
CLUSTERZ_SYNCING = json.dumps([{"id": "cluster1", "syncStatus": "synced"},
                               {"id": "cluster2", "syncStatus": "syncing"}])


class Lab:
    """Two fake clusters, and a sleep that plays the controllers a real lab has (MetalLB, istiod's root publisher)."""

    def __init__(self, c1, c2, tmp_path: Path) -> None:
        self.c1, self.c2 = c1, c2
        h1 = ClusterHandle("cluster1", c1.kubeconfig(tmp_path / "kc1", context="kind-cluster1"), "kind-cluster1")
        h2 = ClusterHandle("cluster2", c2.kubeconfig(tmp_path / "kc2", context="kind-cluster2"), "kind-cluster2")
        self.handle = LabHandle({"cluster1": h1, "cluster2": h2}, {"client": "cluster1", "server": "cluster2"})
        self.sleeps: list[float] = []
        self.fault_lab = FaultLab(PROFILE, self.handle, tmp_path / "work", sleep=self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        svc = self.c2.get(CORE, "istio-system", "services", "istio-eastwestgateway")
        if svc is not None:  # MetalLB: no address from a pool that does not exist
            pool = (svc["metadata"].get("annotations") or {}).get("metallb.io/address-pool")
            ingress = [] if pool == faults.NO_SUCH_POOL else [{"ip": "172.18.255.250"}]
            self.c2.put(CORE, "services", {**svc, "status": {"loadBalancer": {"ingress": ingress}}})
        cacerts = self.c2.get(CORE, "istio-system", "secrets", "cacerts")
        if cacerts is not None:  # istiod publishes its root into every namespace
            for ns in ("istio-system", "sample"):
                root = base64.b64decode(cacerts["data"]["root-cert.pem"]).decode()
                self.c2.put(CORE, "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "istio-ca-root-cert", "namespace": ns},
                                                 "data": {"root-cert.pem": root}})

    def snapshot(self) -> dict:
        def strip(store):
            out = {}
            for key, obj in store.objects.items():
                obj = json.loads(json.dumps(obj))
                obj["metadata"].pop("resourceVersion", None)
                obj["metadata"].pop("generation", None)
                out[key] = obj
            return out
        return {"cluster1": strip(self.c1), "cluster2": strip(self.c2)}

    def close(self) -> None:
        self.handle.close()


@pytest.fixture
def lab(tmp_path):
    with running() as c1, running() as c2:
        c1.put(CORE, "namespaces", _namespace("istio-system", "network1"))
        c1.put(CORE, "secrets", _remote_secret())
        c1.put(CORE, "pods", _pod("istio-system", "istiod-1", "istiod"))
        c1.put(CORE, "pods", _pod("sample", "curl-1", "curl"))
        c1.put(APPS, "deployments", _deployment("sample", "curl"))
        c2.put(CORE, "namespaces", _namespace("istio-system", "network2"))
        c2.put(CORE, "pods", _pod("sample", "httpbin-1", "httpbin", {"topology.istio.io/network": "network2"}))
        for ns, name in (("istio-system", "istiod"), ("istio-system", "istio-eastwestgateway"),
                         ("sample", "httpbin")):
            c2.put(APPS, "deployments", _deployment(ns, name))
        c2.put(CORE, "services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system",
                         "labels": {"topology.istio.io/network": "network2"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.255.20.9", "externalIPs": ["172.18.0.4"],
                     "ports": [{"name": "tls", "port": 15443, "targetPort": 15443}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.250"}]}}})
        c2.put(CORE, "services", {"apiVersion": "v1", "kind": "Service",
                                  "metadata": {"name": "httpbin", "namespace": "sample"},
                                  "spec": {"clusterIP": "10.255.20.17", "ports": [{"name": "http", "port": 8000}]}})
        c2.put(ISTIO_NET, "gateways", {
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "cross-network-gateway", "namespace": "istio-system", "uid": "u-1",
                         "creationTimestamp": "2026-12-02T10:00:00Z"},
            "spec": {"selector": {"istio": "eastwestgateway"},
                     "servers": [{"port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                                  "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": ["*.local"]}]}})
        c2.put(CORE, "secrets", _secret("cacerts", {"ca-cert.pem": b"int", "ca-key.pem": b"key",
                                                    "cert-chain.pem": b"chain", "root-cert.pem": ROOT}))
        c2.put(CORE, "secrets", _secret("istio-ca-secret", {"ca-cert.pem": b"self-signed"}))
        for ns in ("istio-system", "sample"):
            c2.put(CORE, "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "istio-ca-root-cert", "namespace": ns},
                                        "data": {"root-cert.pem": ROOT.decode()}})
        lab = Lab(c1, c2, tmp_path)
        yield lab
        lab.close()


def _methods(server, method: str) -> list[str]:
    return [r.path for r in server.requests if r.method == method]


def test_no_remote_secret_deletes_it_waits_for_istiod_and_puts_it_back(lab, caplog):
    caplog.set_level(logging.DEBUG)
    before = lab.snapshot()
    lab.c1.exec_scripts += [ExecScript(stdout=CLUSTERZ_WITHOUT), ExecScript(stdout=CLUSTERZ_WITH)]
    fault = faults.BY_ID["no-remote-secret"]
    fault.inject(lab.fault_lab)
    assert lab.c1.get(CORE, "istio-system", "secrets", "istio-remote-secret-cluster2") is None
    assert _methods(lab.c1, "DELETE") == ["/api/v1/namespaces/istio-system/secrets/istio-remote-secret-cluster2"]
    execs = [r for r in lab.c1.requests if r.path.endswith("/exec")]
    assert execs[0].path == "/api/v1/namespaces/istio-system/pods/istiod-1/exec"
    assert execs[0].query["command"] == ["pilot-discovery", "request", "GET", "/debug/clusterz"]
    assert execs[0].query["container"] == ["discovery"]
    assert lab.snapshot()["cluster2"] == before["cluster2"]
    fault.restore(lab.fault_lab)
    after = lab.snapshot()
    key = (CORE, "istio-system", "secrets", "istio-remote-secret-cluster2")
    assert after["cluster1"][key] == before["cluster1"][key]
    assert after == before and lab.fault_lab.saved == {}
    assert TOKEN not in caplog.text and _remote_secret()["data"]["cluster2"] not in caplog.text


def test_remote_secret_loopback_replaces_the_server_after_a_deletion_and_restores(lab, caplog):
    caplog.set_level(logging.DEBUG)
    before = lab.snapshot()
    # inject: gone after the deletion, then the bad one added; restore: gone again, then the good one synced
    lab.c1.exec_scripts += [ExecScript(stdout=CLUSTERZ_WITHOUT), ExecScript(stdout=CLUSTERZ_SYNCING),
                            ExecScript(stdout=CLUSTERZ_WITHOUT), ExecScript(stdout=CLUSTERZ_SYNCING),
                            ExecScript(stdout=CLUSTERZ_WITH)]
    fault = faults.BY_ID["remote-secret-loopback"]
    fault.inject(lab.fault_lab)
    live = lab.c1.get(CORE, "istio-system", "secrets", "istio-remote-secret-cluster2")
    port = int(lab.c2.url.rsplit(":", 1)[1])
    assert faults.kubeconfig_servers(live) == [f"https://127.0.0.1:{port}"]
    assert live["metadata"]["labels"] == {"istio/multiCluster": "true"}
    # deleted first (an in-place replacement keeps the working cluster), then created
    writes = [(r.method, r.path) for r in lab.c1.requests if r.method in ("DELETE", "POST", "PUT")]
    assert writes == [("DELETE", "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-cluster2"),
                      ("POST", "/api/v1/namespaces/istio-system/secrets")]
    fault.restore(lab.fault_lab)
    assert lab.snapshot() == before and lab.fault_lab.saved == {}
    assert lab.sleeps  # the restore waited for `synced` through the lab's sleep
    assert TOKEN not in caplog.text and "certificate-authority-data" not in caplog.text


def test_restore_after_a_failed_inject_puts_the_saved_secret_back(lab, caplog):
    caplog.set_level(logging.DEBUG)
    before = lab.snapshot()
    path = "/api/v1/namespaces/istio-system/secrets/istio-remote-secret-cluster2"
    lab.c1.fail("DELETE", path, 500, status(500, "InternalError", f"etcd: {TOKEN}"))
    fault = faults.BY_ID["remote-secret-loopback"]
    with pytest.raises(ApiError) as err:
        fault.inject(lab.fault_lab)
    assert TOKEN not in str(err.value) and "500 InternalError" in str(err.value)
    assert "remote-secret" in lab.fault_lab.saved  # saved before anything was changed
    del lab.c1.errors[("DELETE", path)]
    lab.c1.exec_scripts.append(ExecScript(stdout=CLUSTERZ_WITH))
    fault.restore(lab.fault_lab)
    assert lab.snapshot() == before and lab.fault_lab.saved == {}
    assert TOKEN not in caplog.text


def test_restore_without_a_saved_secret_changes_nothing(lab):
    before = lab.snapshot()
    faults.BY_ID["no-remote-secret"].restore(lab.fault_lab)
    assert lab.snapshot() == before and not [r for r in lab.c1.requests if r.method != "GET"]


def test_inject_without_the_remote_secret_is_one_line(lab):
    del lab.c1.objects[(CORE, "istio-system", "secrets", "istio-remote-secret-cluster2")]
    with pytest.raises(NotFoundError, match="no secret istio-system/istio-remote-secret-cluster2 on kind-cluster1"):
        faults.BY_ID["no-remote-secret"].inject(lab.fault_lab)


def test_network_label_missing_unlabels_the_namespace_and_httpbins_pods(lab):
    fault = faults.BY_ID["network-label-missing"]
    fault.inject(lab.fault_lab)
    ns = lab.c2.get(CORE, "", "namespaces", "istio-system")
    pod = lab.c2.get(CORE, "sample", "pods", "httpbin-1")
    assert "topology.istio.io/network" not in ns["metadata"]["labels"]
    assert pod["metadata"]["labels"] == {"app": "httpbin"}
    assert lab.c1.get(CORE, "", "namespaces", "istio-system")["metadata"]["labels"] == {
        "topology.istio.io/network": "network1"}
    fault.restore(lab.fault_lab)
    assert lab.c2.get(CORE, "", "namespaces", "istio-system")["metadata"]["labels"] == {
        "topology.istio.io/network": "network2"}
    dep = lab.c2.get(APPS, "sample", "deployments", "httpbin")
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
    assert lab.fault_lab.saved == {}


def test_eastwest_no_address_waits_for_pending_and_restores_the_address(lab):
    before = lab.snapshot()
    fault = faults.BY_ID["eastwest-no-address"]
    fault.inject(lab.fault_lab)
    svc = lab.c2.get(CORE, "istio-system", "services", "istio-eastwestgateway")
    assert svc["metadata"]["annotations"] == {"metallb.io/address-pool": "lab-no-such-pool"}
    assert "externalIPs" not in svc["spec"] and svc["status"]["loadBalancer"]["ingress"] == []
    assert svc["spec"]["type"] == "LoadBalancer"  # still a LoadBalancer: MetalLB's status is what is gone
    fault.restore(lab.fault_lab)
    svc = lab.c2.get(CORE, "istio-system", "services", "istio-eastwestgateway")
    assert svc["spec"]["externalIPs"] == ["172.18.0.4"] and "metallb.io/address-pool" not in (
        svc["metadata"].get("annotations") or {})
    assert lab.snapshot()["cluster2"][(CORE, "istio-system", "services", "istio-eastwestgateway")]["spec"] == \
        before["cluster2"][(CORE, "istio-system", "services", "istio-eastwestgateway")]["spec"]
    assert lab.fault_lab.saved == {}


def test_no_auto_passthrough_gateway_deletes_waits_renews_and_restores(lab):
    fault = faults.BY_ID["no-auto-passthrough-gateway"]
    spec = lab.c2.get(ISTIO_NET, "istio-system", "gateways", "cross-network-gateway")["spec"]
    fault.inject(lab.fault_lab)
    assert lab.c2.get(ISTIO_NET, "istio-system", "gateways", "cross-network-gateway") is None
    assert faults.XDS_PUSH in lab.sleeps
    curl = lab.c1.get(APPS, "sample", "deployments", "curl")
    assert "kubectl.kubernetes.io/restartedAt" in curl["spec"]["template"]["metadata"]["annotations"]
    fault.restore(lab.fault_lab)
    back = lab.c2.get(ISTIO_NET, "istio-system", "gateways", "cross-network-gateway")
    assert back["spec"] == spec and "uid" not in back["metadata"]
    assert back["apiVersion"] == "networking.istio.io/v1alpha3"
    assert lab.fault_lab.saved == {}


def test_root_ca_mismatch_puts_another_root_and_restores_the_shared_one(lab, caplog):
    caplog.set_level(logging.DEBUG)
    before = lab.snapshot()
    fault = faults.BY_ID["root-ca-mismatch"]
    fault.inject(lab.fault_lab)
    cacerts = lab.c2.get(CORE, "istio-system", "secrets", "cacerts")
    new_root = base64.b64decode(cacerts["data"]["root-cert.pem"])
    assert new_root != ROOT and b"BEGIN CERTIFICATE" in new_root
    assert sorted(cacerts["data"]) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    assert lab.c2.get(CORE, "istio-system", "secrets", "istio-ca-secret") is None
    for ns, name in (("istio-system", "istiod"), ("istio-system", "istio-eastwestgateway"), ("sample", "httpbin")):
        dep = lab.c2.get(APPS, ns, "deployments", name)
        assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"], name
    # istiod (restarted first) had published the new root before the workloads were restarted
    patches = [r.path for r in lab.c2.requests if r.method == "PATCH"]
    assert patches[0].endswith("/deployments/istiod")
    fault.restore(lab.fault_lab)
    key = (CORE, "istio-system", "secrets", "cacerts")
    assert lab.snapshot()["cluster2"][key] == before["cluster2"][key]
    assert lab.fault_lab.saved == {}
    assert base64.b64encode(b"key").decode() not in caplog.text


def test_dns_capture_off_annotates_curls_template_and_removes_it(lab):
    fault = faults.BY_ID["dns-capture-off"]
    fault.inject(lab.fault_lab)
    tpl = lab.c1.get(APPS, "sample", "deployments", "curl")["spec"]["template"]["metadata"]
    assert tpl["annotations"] == {"proxy.istio.io/config": '{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"false"}}'}
    fault.restore(lab.fault_lab)
    tpl = lab.c1.get(APPS, "sample", "deployments", "curl")["spec"]["template"]["metadata"]
    assert "proxy.istio.io/config" not in (tpl.get("annotations") or {})


def test_shared_service_subnet_creates_and_deletes_the_range_and_the_collider(lab):
    before = lab.snapshot()
    fault = faults.BY_ID["shared-service-subnet"]
    fault.inject(lab.fault_lab)
    cidr = lab.c1.get("/apis/networking.k8s.io/v1", "", "servicecidrs", "lab-shared-subnet")
    svc = lab.c1.get(CORE, "sample", "services", "lab-collider")
    assert cidr["spec"]["cidrs"] == [PROFILE.server.service_subnet]
    assert svc["spec"]["clusterIP"] == "10.255.20.17"
    fault.restore(lab.fault_lab)
    assert lab.snapshot() == before and lab.fault_lab.saved == {}
    faults.BY_ID["shared-service-subnet"].restore(lab.fault_lab)  # again: nothing left to delete, no error


# --- the probe ------------------------------------------------------------------------------------------------------
BODY = ("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote "
        "connection failure")
CURL_503 = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-length: {len(BODY)}\r\ncontent-type: text/plain\r\n"
            f"server: envoy\r\n\r\n{BODY}\n__LAB_HTTP_CODE__=503\n__LAB_CURL_EXIT__=0\n")
# The shape of the line a real Envoy 1.40 writes in Istio 1.30.3's EnvoyTextLogFormat for this failure
# (tests/integration/test_mpmn_root_mismatch_envoy.py): details and transport reason with spaces as `_`, the reset
# reason and the TLS error joined by `|`; UF,URX because the sidecar's default route retries a connect failure
# twice (pilot/pkg/networking/core/route/retry/retry.go@1.30.3:36-37).
TLS_LOG = ('[2026-12-02T10:00:00.000Z] "GET /headers HTTP/1.1" 503 UF,URX upstream_reset_before_response_started'
           '{remote_connection_failure|TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED'
           ':verify_cert_failed:_X509_verify_cert:_certificate_verification_error_at_depth_2:_self_signed_certificate'
           '_in_certificate_chain:TLS_error_end} - "TLS_error:|268435581:SSL_routines:OPENSSL_internal:'
           'CERTIFICATE_VERIFY_FAILED:verify_cert_failed:_X509_verify_cert:_certificate_verification_error_at_depth_2:'
           '_self_signed_certificate_in_certificate_chain:TLS_error_end" 0 121 30 - "-" "curl/8.16.0" "id" '
           '"httpbin.sample.svc.cluster.local:8000" "172.18.255.250:15443" '
           'outbound|8000||httpbin.sample.svc.cluster.local - 10.255.20.17:8000 10.10.0.7:40000 - default\n')


def test_probe_class_reads_the_sidecars_access_log_to_tell_a_certificate_failure(lab):
    log_path = "/api/v1/namespaces/sample/pods/curl-1/log"
    lab.c1.exec_scripts.append(ExecScript(stdout=CURL_503))
    lab.c1.logs[("sample", "curl-1", "istio-proxy")] = TLS_LOG  # served as text/plain, as the API server does
    cls, evidence = faults.probe_class(lab.fault_lab)
    assert cls == "upstream-tls-failure", evidence
    assert lab.sleeps == [faults.ACCESS_LOG_FLUSH]  # Envoy flushes its access log once a second
    req = [r for r in lab.c1.requests if r.path.endswith("/exec")][-1]
    assert req.path == "/api/v1/namespaces/sample/pods/curl-1/exec" and req.query["container"] == ["curl"]
    assert faults.PROBE_URL in req.query["command"][-1]
    logs = [r for r in lab.c1.requests if r.path == log_path][-1]
    assert logs.query["container"] == ["istio-proxy"]
    # the same body with no access log (accessLogFile unset) is only a connect failure
    lab.c1.exec_scripts.append(ExecScript(stdout=CURL_503))
    lab.c1.logs[("sample", "curl-1", "istio-proxy")] = ""
    assert faults.probe_class(lab.fault_lab)[0] == "upstream-connect-failure"


def test_restore_and_heal_reports_a_failed_restore_and_reraises(lab):
    heard: list[str] = []

    def broken(_lab):
        raise LabError("boom")

    fault = faults.Fault(id="demo", cluster="client", breaks="demo", expectations=(), inject=broken, restore=broken)
    with pytest.raises(LabError, match="boom"):
        faults.restore_and_heal(lab.fault_lab, fault, lambda: "ok", on_failure=heard.append)
    assert heard == ["restore of demo failed: LabError: boom"]


def test_restore_and_heal_waits_for_ok(lab):
    seen = iter(["dns-failure", "ok", "ok", "ok"])
    fault = faults.Fault(id="demo", cluster="client", breaks="demo", expectations=(), inject=lambda _l: None,
                         restore=lambda _l: None, settle=0.0, timeout=60.0)
    history: list[str] = []
    faults.restore_and_heal(lab.fault_lab, fault, lambda: next(seen), history=history)
    assert history == ["dns-failure", "ok", "ok", "ok"]
