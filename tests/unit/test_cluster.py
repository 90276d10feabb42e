"""lab/cluster.py offline: the pure decisions (kubectl's rollout rule, the exec error channel, the restart patch, the
newest running pod, one line per API error) and the handle against a fake API server on 127.0.0.1
(tests/support/fake_apiserver.py) serving the objects of tests/data/kubeapi/ (API reference shapes)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from lab import cluster
from lab.cluster import (
    SERVICE_ENTRY,
    ClusterHandle,
    LabHandle,
    api_error,
    exit_status,
    newest_running,
    restart_patch,
    rollout_status,
)
from lab.errors import ApiError, LabError, NotFoundError, NotReadyError
from lab.scenario import load_profile
from tests.support.fake_apiserver import ExecScript, exit_code_status, not_found, running, status

DATA = Path(__file__).resolve().parents[1] / "data" / "kubeapi"
SECRET_VALUE = "c2VjcmV0LWNhLWtleS1ieXRlcw=="  # what must never reach a message


def vector(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def deployment(**status_fields: object) -> k8s.V1Deployment:
    obj = vector("deployment-rolling.json")
    obj["status"] = {**obj["status"], **status_fields}
    return k8s.V1Deployment.from_dict(obj)


# --- rollout_status: kubectl's DeploymentStatusViewer ---------------------------------------------------------------
def test_a_rolled_out_deployment_is_done():
    done, line = rollout_status(k8s.V1Deployment.from_dict(vector("deployment-ready.json")))
    assert done and line == "deployment sleep successfully rolled out"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"observedGeneration": 1}, "waiting for deployment spec update to be observed"),
    ({"updatedReplicas": 0}, "0 out of 1 new replicas have been updated"),
    ({"replicas": 2, "updatedReplicas": 1}, "1 old replicas are pending termination"),
    ({"replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}, "0 of 1 updated replicas are available"),
])
def test_a_rollout_in_progress_says_what_it_waits_for_as_kubectl_does(fields, expected):
    done, line = rollout_status(deployment(**fields))
    assert not done and line == expected


def test_a_rollout_past_its_progress_deadline_is_an_error():
    cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "sleep-7d9f" has timed out progressing.'}
    with pytest.raises(NotReadyError, match="exceeded its progress deadline"):
        rollout_status(deployment(conditions=[cond]))


# --- the exec error channel -----------------------------------------------------------------------------------------
def test_exit_status_reads_success_and_the_exit_code_cause():
    assert exit_status(json.dumps({"metadata": {}, "status": "Success"})) == 0
    assert exit_status(json.dumps(exit_code_status(7))) == 7


@pytest.mark.parametrize("message", [
    "",  # the stream closed without a status
    "not json",
    json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": []}}),
    json.dumps({"status": "Failure", "reason": "InternalError",
                "message": 'container "sleep" not found in pod "sleep-1"'}),
])
def test_an_exec_that_did_not_run_is_an_api_error_not_an_exit_code(message):
    with pytest.raises(ApiError):
        exit_status(message)


# --- small pure rules -----------------------------------------------------------------------------------------------
def test_restart_patch_is_kubectls_restarted_at_annotation_in_rfc3339():
    patch = restart_patch(datetime(2026, 12, 2, 7, 30, 5, 123456, tzinfo=timezone.utc))
    assert patch == {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-12-02T07:30:05Z"}}}}}


def _pod(name: str, created: str, phase: str = "Running", deleting: str | None = None,
         ready: bool = True) -> k8s.V1Pod:
    obj = vector("pod-sleep.json")
    obj["metadata"] = {**obj["metadata"], "name": name, "creationTimestamp": created}
    if deleting:
        obj["metadata"]["deletionTimestamp"] = deleting
    obj["status"] = {**obj["status"], "phase": phase,
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return k8s.V1Pod.from_dict(obj)


def test_newest_running_skips_pods_being_deleted_and_pending_ones():
    pods = [_pod("old", "2026-11-25T19:00:00Z", deleting="2026-11-25T20:30:00Z"),
            _pod("current", "2026-11-25T20:00:00Z"),
            _pod("next", "2026-11-25T20:29:00Z", phase="Pending")]
    assert newest_running(pods).metadata.name == "current"
    assert newest_running([_pod("b", "2026-11-25T20:00:00Z"), _pod("a", "2026-11-25T20:00:00Z")]).metadata.name == "b"
    assert newest_running([_pod("x", "2026-11-25T20:00:00Z", ready=False)], ready=True) is None
    assert newest_running([]) is None


def test_newest_running_takes_the_latest_creation_time_not_the_list_order():
    pods = [_pod("sleep-z", "2026-11-25T09:59:59Z"), _pod("sleep-a", "2026-11-25T10:00:00Z"),
            _pod("sleep-m", "2026-11-24T23:00:00Z")]
    assert newest_running(pods).metadata.name == "sleep-a"


def test_newest_running_orders_equal_creation_times_by_name_whatever_the_list_order():
    a, b = _pod("sleep-a", "2026-11-25T10:00:00Z"), _pod("sleep-b", "2026-11-25T10:00:00Z")
    assert newest_running([a, b]).metadata.name == newest_running([b, a]).metadata.name == "sleep-b"


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed", "Unknown"])
def test_newest_running_is_none_when_no_pod_is_running(phase):
    assert newest_running([_pod("sleep-a", "2026-11-25T10:00:00Z", phase=phase)]) is None


def test_newest_running_is_none_when_the_only_running_pod_is_being_deleted():
    assert newest_running([_pod("sleep-a", "2026-11-25T10:00:00Z", deleting="2026-11-25T10:05:00Z")]) is None


def test_api_errors_are_one_line_with_the_reason_and_what_to_do():
    err = ApiException(status=404, reason="Not Found")
    err.body = json.dumps(not_found("configmaps", "coredns"))
    line = str(api_error(err, "read configmap kube-system/coredns on kind-cluster1"))
    assert isinstance(api_error(err, "x"), NotFoundError)
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("read configmap kube-system/coredns on kind-cluster1: 404 NotFound")
    assert '"coredns" not found' in line and "make lab-up" in line


def test_a_secrets_api_message_never_reaches_the_error_line():
    err = ApiException(status=422, reason="Unprocessable Entity")
    err.body = json.dumps(status(422, "Invalid", f'Secret "cacerts" is invalid: data[ca-key.pem]: {SECRET_VALUE}'))
    line = str(api_error(err, "replace secret istio-system/cacerts", secret=True))
    assert SECRET_VALUE not in line and "422 Invalid" in line


# --- the handle against the fake API server -------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path):
    with running() as server:
        server.put("/api/v1", "configmaps", vector("configmap-coredns.json"))
        server.put("/api/v1", "services", vector("service-gateway-nodeport.json"))
        server.put("/api/v1", "pods", vector("pod-sleep.json"))
        server.put("/apis/apps/v1", "deployments", vector("deployment-rolling.json"))
        server.put("/apis/networking.istio.io/v1alpha3", "serviceentries", vector("serviceentry.json"))
        server.put("/api/v1", "secrets", vector("secret-cacerts.json"))
        yield server


@pytest.fixture
def handle(api, tmp_path):
    h = ClusterHandle("cluster1", api.kubeconfig(tmp_path / "kubeconfig"), "kind-fake")
    yield h
    h.close()


def test_reads_return_typed_objects(handle):
    cm = handle.coredns()
    assert isinstance(cm, k8s.V1ConfigMap) and "kubernetes cluster.local" in handle.corefile()
    pod = handle.running_pod("foo", "app=sleep")
    assert isinstance(pod, k8s.V1Pod) and pod.metadata.name == "sleep-854565cb79-6hdfj"
    assert handle.pod_host_ip("foo", "app=sleep") == "172.18.0.3"
    assert handle.node_port("istio-system", "istio-ingressgateway", 15443) == 31443
    assert handle.cluster_ip("istio-system", "istio-ingressgateway") == "10.96.14.5"
    assert handle.load_balancer("istio-system", "istio-ingressgateway") is None
    assert handle.deployment_names("foo") == ["sleep"]
    assert str(handle.readiness("foo", "sleep")) == "0/1 ready (curlimages/curl)"
    assert handle.readiness("foo", "nothing") is None


def test_a_selector_with_no_running_pod_is_one_lab_error(handle):
    with pytest.raises(NotReadyError, match="no running pod with app=httpbin in bar on kind-fake"):
        handle.running_pod("bar", "app=httpbin")


def test_the_client_sends_the_kubeconfigs_token_and_the_selector(api, handle):
    handle.pods("foo", "app=sleep")
    req = api.requests[-1]
    assert req.path == "/api/v1/namespaces/foo/pods" and req.query["labelSelector"] == ["app=sleep"]
    assert req.headers.get("authorization") == "Bearer fake-token"


def test_a_missing_object_is_not_found_with_the_cluster_named(handle):
    with pytest.raises(NotFoundError) as err:
        handle.configmap("kube-system", "nope")
    assert str(err.value).startswith("read configmap kube-system/nope on kind-fake: 404 NotFound")
    assert handle.find_configmap("kube-system", "nope") is None
    assert handle.find_object(SERVICE_ENTRY, "foo", "nope") is None


def test_a_secret_is_read_typed_and_missing_is_none(handle):
    assert handle.secret("istio-system", "cacerts").data["ca-key.pem"] == SECRET_VALUE
    assert handle.secret("istio-system", "nope") is None


def test_a_failed_secret_call_carries_no_secret_data(api, handle):
    api.fail("GET", "/api/v1/namespaces/istio-system/secrets/cacerts", 500,
             status(500, "InternalError", f"etcd said: {SECRET_VALUE}"))
    with pytest.raises(ApiError) as err:
        handle.secret("istio-system", "cacerts")
    assert SECRET_VALUE not in str(err.value) and "500 InternalError" in str(err.value)


def test_replace_configmap_sends_the_whole_object_with_its_version(api, handle):
    cm = handle.coredns()
    cm.data["Corefile"] += "global:53 {\n    errors\n}\n"
    handle.replace_configmap(cm)
    req = api.requests[-1]
    assert req.method == "PUT" and req.body["metadata"]["resourceVersion"] == cm.metadata.resource_version
    assert "global:53" in handle.corefile()


def test_a_stale_replace_is_a_conflict_line(api, handle):
    cm = handle.coredns()
    api.put("/api/v1", "configmaps", vector("configmap-coredns.json"))  # someone else changed it
    with pytest.raises(ApiError, match="409 Conflict.*run the command again"):
        handle.replace_configmap(cm)


def test_custom_objects_list_put_and_delete(api, handle):
    [se] = handle.list_objects(SERVICE_ENTRY)
    assert se["spec"]["hosts"] == ["httpbin.bar.global"]
    assert handle.list_objects(SERVICE_ENTRY, "bar") == []
    se["spec"].pop("addresses")  # a whole replace keeps the removal
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        se["metadata"].pop(key, None)
    handle.put_object(SERVICE_ENTRY, se)
    assert "addresses" not in handle.get_object(SERVICE_ENTRY, "foo", "httpbin-bar")["spec"]
    assert api.requests[-2].method == "PUT" and api.requests[-2].body["metadata"]["resourceVersion"]
    assert handle.delete_object(SERVICE_ENTRY, "foo", "httpbin-bar") is True
    assert handle.delete_object(SERVICE_ENTRY, "foo", "httpbin-bar") is False
    handle.put_object(SERVICE_ENTRY, se)  # absent: created
    assert api.requests[-1].method == "POST" and handle.find_object(SERVICE_ENTRY, "foo", "httpbin-bar")


def test_rollout_restart_patches_the_template_annotation_as_kubectl_does(api, handle):
    handle.rollout_restart("foo", "sleep", now=datetime(2026, 12, 2, 7, 0, 0, tzinfo=timezone.utc))
    req = api.requests[-1]
    assert req.method == "PATCH" and req.headers["Content-Type"] == "application/strategic-merge-patch+json"
    live = handle.deployment("foo", "sleep")
    assert live.spec.template.metadata.annotations[cluster.RESTARTED_AT] == "2026-12-02T07:00:00Z"


def test_a_paused_deployment_is_not_restarted(api, handle):
    obj = vector("deployment-rolling.json")
    obj["spec"]["paused"] = True
    api.put("/apis/apps/v1", "deployments", obj)
    with pytest.raises(LabError, match="is paused; resume it first"):
        handle.rollout_restart("foo", "sleep")
    assert api.requests[-1].method == "GET"


def test_wait_rollout_follows_the_watch_until_done(api, handle):
    progressing = vector("deployment-rolling.json")
    progressing["status"].update(updatedReplicas=1, replicas=1, availableReplicas=0)
    api.watch_events.put(("MODIFIED", progressing))
    api.watch_events.put(("MODIFIED", vector("deployment-ready.json")))
    started = time.monotonic()
    assert handle.wait_rollout("foo", "sleep", timeout=20) == "deployment sleep successfully rolled out"
    assert time.monotonic() - started < 5  # the watch's event ends it, not a poll interval or the deadline
    watch = [r for r in api.requests if r.query.get("watch") == ["true"]]
    assert len(watch) == 1 and watch[0].query["fieldSelector"] == ["metadata.name=sleep"]
    assert watch[0].query["resourceVersion"]  # from the read before it: no event is missed in between


def test_wait_rollout_stops_at_its_deadline_with_the_last_state(api, handle):
    started = time.monotonic()
    with pytest.raises(NotReadyError, match=r"not rolled out within 2s \(0 out of 1 new replicas have been updated\)"):
        handle.wait_rollout("foo", "sleep", timeout=2)
    assert 1.5 < time.monotonic() - started < 8


def test_wait_rollout_on_a_deleted_deployment_says_so(api, handle):
    api.watch_events.put(("DELETED", vector("deployment-rolling.json")))
    with pytest.raises(NotFoundError, match="it was deleted"):
        handle.wait_rollout("foo", "sleep", timeout=10)


def test_exec_returns_stdout_stderr_and_the_exit_code(api, handle):
    api.exec_scripts.append(ExecScript(stdout="HTTP/1.1 200 OK\n", stderr="* Connected\n"))
    api.exec_scripts.append(ExecScript(stderr="curl: (6) Could not resolve host\n", status=exit_code_status(6)))
    ok = handle.exec("foo", "sleep-1", "sleep", ["curl", "-sv", "http://httpbin.bar.global:8000/headers"])
    assert (ok.stdout, ok.stderr, ok.exit_code, ok.ok) == ("HTTP/1.1 200 OK\n", "* Connected\n", 0, True)
    failed = handle.exec("foo", "sleep-1", "sleep", ["curl", "http://nowhere"])
    assert failed.exit_code == 6 and not failed.ok and "Could not resolve host" in failed.output
    req = [r for r in api.requests if r.path.endswith("/exec")][0]
    assert req.path == "/api/v1/namespaces/foo/pods/sleep-1/exec"
    assert req.query["container"] == ["sleep"] and req.query["command"][0] == "curl"


def test_an_exec_that_cannot_start_is_one_api_error(api, handle):
    api.exec_scripts.append(ExecScript(status={"metadata": {}, "status": "Failure", "reason": "InternalError",
                                               "message": 'container "nope" not found in pod "sleep-1"'}))
    with pytest.raises(ApiError, match=r'exec curl in foo/sleep-1 \(nope\) on kind-fake: exec failed: container '
                                       r'"nope" not found'):
        handle.exec("foo", "sleep-1", "nope", ["curl"])


def test_an_exec_past_its_timeout_is_not_ready(api, handle):
    api.exec_scripts.append(ExecScript(stdout="partial", hang=3))
    with pytest.raises(NotReadyError, match="still running after 1s"):
        handle.exec("foo", "sleep-1", "sleep", ["sleep", "60"], timeout=1)


def test_envoy_admin_runs_pilot_agent_request_and_returns_the_body(api, handle):
    api.exec_scripts.append(ExecScript(stdout='{"configs": []}'))
    api.exec_scripts.append(ExecScript(stderr="connection refused\n", status=exit_code_status(1)))
    assert json.loads(handle.envoy_admin("istio-system", "gw-1", "config_dump")) == {"configs": []}
    req = [r for r in api.requests if r.path.endswith("/exec")][-1]
    assert req.query["command"] == ["pilot-agent", "request", "GET", "config_dump"]
    assert req.query["container"] == ["istio-proxy"]
    with pytest.raises(ApiError, match="pilot-agent exited 1: connection refused"):
        handle.envoy_admin("istio-system", "gw-1", "stats")


def test_an_unreachable_api_server_is_one_line(tmp_path):
    with running() as server:
        path = server.kubeconfig(tmp_path / "kubeconfig")
    h = ClusterHandle("cluster1", path, "kind-fake", request_timeout=2)  # the server is gone
    with pytest.raises(ApiError, match=r"read configmap kube-system/coredns on kind-fake: cannot reach the API "
                                       r"server http://127\.0\.0\.1:\d+ .*is the lab up"):
        h.coredns()


def test_a_missing_kubeconfig_or_context_is_one_line(tmp_path, api):
    with pytest.raises(LabError, match="does not exist; run `make lab-up` first"):
        ClusterHandle("cluster1", tmp_path / "none", "kind-fake").coredns()
    path = api.kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(LabError, match="cannot be used with context kind-other"):
        ClusterHandle("cluster1", path, "kind-other").coredns()


def test_the_kubeconfig_file_is_never_rewritten(api, tmp_path, handle):
    before = handle.kubeconfig.read_bytes()
    handle.coredns()
    assert handle.kubeconfig.read_bytes() == before


# --- the lab handle -------------------------------------------------------------------------------------------------
class _Provider:
    def __init__(self, home: Path) -> None:
        self.home = home

    def kubeconfig(self, c):
        return self.home / "kubeconfig" / c.name

    def context(self, c):
        return f"kind-{c.name}"


def test_the_lab_handle_takes_paths_and_contexts_from_the_provider(tmp_path):
    profile = load_profile("default")
    lab = LabHandle.from_provider(profile.clusters, _Provider(tmp_path), "/cache/kubectl")
    client = lab.by_role("client")
    assert client.name == profile.client.name and client.context == f"kind-{profile.client.name}"
    assert client.kubeconfig == tmp_path / "kubeconfig" / profile.client.name
    assert lab.by_role("server").name == profile.server.name
    assert client.kubectl(runner=None).base()[:2] == ["/cache/kubectl", "--kubeconfig"]
    with pytest.raises(LabError, match="no cluster nope in this lab"):
        lab["nope"]
    with pytest.raises(LabError, match="no remote cluster"):
        lab.by_role("remote")


# --- added for the faults: a whole Secret put and a waited delete, an object as the API's JSON ------------------
def test_put_secret_replaces_with_the_live_version_or_creates_and_keeps_data_out_of_messages(api, handle):
    obj = vector("secret-cacerts.json")
    for key in ("resourceVersion", "uid", "creationTimestamp"):
        obj["metadata"].pop(key, None)
    obj["data"] = {"root-cert.pem": "b3RoZXIgcm9vdA=="}  # a whole replace: ca-key.pem goes
    handle.put_secret(obj)
    put = api.requests[-1]
    assert put.method == "PUT" and put.body["metadata"]["resourceVersion"] and put.body["data"] == obj["data"]
    assert set(handle.secret("istio-system", "cacerts").data) == {"root-cert.pem"}
    assert handle.delete_secret("istio-system", "cacerts") is True
    assert handle.delete_secret("istio-system", "cacerts") is False
    handle.put_secret(obj)  # absent: created
    assert api.requests[-1].method == "POST" and handle.secret("istio-system", "cacerts") is not None
    api.fail("PUT", "/api/v1/namespaces/istio-system/secrets/cacerts", 422,
             status(422, "Invalid", f"data[ca-key.pem]: {SECRET_VALUE} is not valid"))
    with pytest.raises(ApiError) as err:
        handle.put_secret(obj)
    assert "replace secret istio-system/cacerts" in str(err.value) and SECRET_VALUE not in str(err.value)


def test_json_of_is_the_apis_json_as_kubectl_prints_it(handle):
    pod = handle.running_pod("foo", "app=sleep")
    data = handle.json_of(pod)
    stamp = vector("pod-sleep.json")["metadata"]["creationTimestamp"]  # "...Z": the same instant, as +00:00
    assert datetime.fromisoformat(data["metadata"]["creationTimestamp"]) == datetime.fromisoformat(
        stamp.replace("Z", "+00:00"))
    assert data["status"]["hostIP"] == "172.18.0.3" and data["metadata"]["labels"]["app"] == "sleep"


@pytest.mark.parametrize("text", ["\x00garbage", "garbage", "- a\n- list\n", "clusters: 3\ncontexts: x\n"])
def test_a_kubeconfig_that_is_no_kubeconfig_is_one_line_not_a_traceback(tmp_path, text):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(LabError, match=r"^cluster1: kubeconfig .* cannot be used with context kind-fake \(.+\); "
                                       r"rebuild it with `make lab-up`$"):
        ClusterHandle("cluster1", path, "kind-fake").coredns()


def test_service_address_is_the_load_balancer_address_else_the_first_external_ip():
    def svc(ingress=None, external=None):
        return k8s.V1Service(spec=k8s.V1ServiceSpec(external_ips=external),
                             status=k8s.V1ServiceStatus(load_balancer=k8s.V1LoadBalancerStatus(ingress=ingress)))

    lb = [k8s.V1LoadBalancerIngress(ip="172.18.255.200")]
    assert cluster.service_address(svc(lb, ["172.18.0.3"])) == "172.18.255.200"
    assert cluster.service_address(svc(None, ["172.18.0.3", "172.18.0.4"])) == "172.18.0.3"
    assert cluster.service_address(svc([k8s.V1LoadBalancerIngress(hostname="gw.example")])) == "gw.example"
    assert cluster.service_address(svc()) is None and cluster.service_address(k8s.V1Service()) is None
