"""One handle on a running lab: per cluster the kubeconfig and context its provider made, a `kubernetes` client for
reads, watches and exec, and the kubectl binary for the commands `lab up` shows (docs/kube-api.md says which is used
where, and why).

Scenario-agnostic: it knows Kubernetes objects (pods, ConfigMaps, Secrets, Services, Deployments, custom objects),
not what a scenario calls them. The decisions are pure functions over typed objects (`rollout_status`,
`newest_running`, `exit_status`, `restart_patch`, `api_error`), tested offline; `ClusterHandle` is the thin layer that
calls the API. Every failure is one line of the lab's error family (lab.errors: ApiError, NotFoundError,
NotReadyError): what was asked of which cluster, the API's reason, what to do; never a traceback, never an object's
data (the API's message is left out for Secrets and cut short otherwise).
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import urllib3.exceptions
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import stream as k8s_stream
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lab.errors import ApiError, LabError, NotFoundError, NotReadyError, UnreachableError
from lab.kube import COREDNS_CONFIGMAP, Kubectl
from lab.settings import TIMEOUTS
from lab.shell import Runner

# kubectl's `rollout restart` sets this pod-template annotation to the time as RFC 3339
# (k8s.io/kubectl pkg/polymorphichelpers/objectrestarter.go defaultObjectRestarter, at v0.36.1) and sends the
# change as a strategic merge patch (pkg/cmd/rollout/rollout_restart.go).
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
# The exec protocol's channels (k8s.io/apimachinery pkg/util/remotecommand/constants.go; the client's ws_client).
STDOUT, STDERR, ERROR = 1, 2, 3
# What the error channel's metav1.Status says for a command that ran and exited non-zero
# (k8s.io/apimachinery pkg/util/remotecommand/constants.go NonZeroExitCodeReason, ExitCodeCauseType; read as
# k8s.io/client-go tools/remotecommand/v4.go errorDecoderV4 reads it).
NON_ZERO_EXIT = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"
_MESSAGE_CHARS = 200  # of an API message in an error line


@dataclass(frozen=True)
class Resource:
    """A namespaced custom resource as the API addresses it: group, version, plural (and the kind, for messages)."""

    group: str
    version: str
    plural: str
    kind: str


# Istio's networking kinds at the version both Istio 1.7 and current Istio serve (Istio 1.7.8's crd-all.gen.yaml:
# v1alpha3 served and stored; later releases keep serving it beside v1beta1 and v1).
SERVICE_ENTRY = Resource("networking.istio.io", "v1alpha3", "serviceentries", "ServiceEntry")
ENVOY_FILTER = Resource("networking.istio.io", "v1alpha3", "envoyfilters", "EnvoyFilter")
GATEWAY = Resource("networking.istio.io", "v1alpha3", "gateways", "Gateway")

# The cluster DNS's ConfigMap, from the one place that names it (lab.kube: `kubectl get` arguments).
COREDNS_NAMESPACE, COREDNS_NAME = COREDNS_CONFIGMAP[3], COREDNS_CONFIGMAP[1]


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container printed, and how it exited."""

    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class Readiness:
    """A Deployment's ready replicas against its wanted replicas, and its first container's image (`lab status`)."""

    ready: int
    wanted: int
    image: str

    @property
    def ok(self) -> bool:
        return self.wanted > 0 and self.ready == self.wanted

    def __str__(self) -> str:
        return f"{self.ready}/{self.wanted} ready ({self.image})"


# --- pure decisions -------------------------------------------------------------------------------------------------
def api_error(err: ApiException, doing: str, *, secret: bool = False) -> ApiError:
    """One line for a failed call: `doing` (e.g. "read configmap kube-system/coredns on kind-cluster1"), the HTTP
    status and the API's reason, its message cut short (none for a Secret: a Secret's validation message can quote
    its data), and what to do. 404 gives NotFoundError."""
    status = int(err.status or 0)
    reason = str(err.reason or "")
    message = ""
    body = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else err.body
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            reason = str(parsed.get("reason") or reason)
            message = str(parsed.get("message") or "")
    detail = "" if secret else " ".join(message.split())[:_MESSAGE_CHARS]
    what = f"{doing}: {status} {reason}".rstrip() + (f" ({detail})" if detail else "")
    if status == 404:
        return NotFoundError(f"{what}; is the lab up and built? (`make lab-status`, then `make lab-up`)",
                             status=status, reason=reason)
    if status in (401, 403):
        hint = "the lab's kubeconfig is not allowed to do this: check it (`make lab-status`)"
    elif status == 409:
        hint = "the object changed meanwhile or exists already: run the command again"
    elif status == 422:
        hint = "the API refused the object: check it against its schema"
    elif status == 0:  # the client's own failure (the exec websocket did not open)
        hint = "is the lab up? (`make lab-status`)"
    else:
        hint = "is the lab healthy? (`make lab-status`, `make lab-doctor`)"
    return ApiError(f"{what}; {hint}", status=status, reason=reason)


def rollout_status(deployment: k8s.V1Deployment) -> tuple[bool, str]:
    """(done, what kubectl would print) for a Deployment, decided as `kubectl rollout status` decides
    (k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go DeploymentStatusViewer.Status at v0.36.1). A rollout past
    its progress deadline is a LabError, as kubectl makes it an error."""
    meta = deployment.metadata or k8s.V1ObjectMeta()
    spec = deployment.spec
    status = deployment.status or k8s.V1DeploymentStatus()
    name = meta.name or "?"
    if (meta.generation or 0) > (status.observed_generation or 0):
        return False, "waiting for deployment spec update to be observed"
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            raise NotReadyError(f"deployment {meta.namespace}/{name} exceeded its progress deadline; look at its "
                                f"pods (`kubectl -n {meta.namespace} describe deployment {name}`)")
    updated = status.updated_replicas or 0
    wanted = spec.replicas if spec is not None and spec.replicas is not None else None
    if wanted is not None and updated < wanted:
        return False, f"{updated} out of {wanted} new replicas have been updated"
    if (status.replicas or 0) > updated:
        return False, f"{(status.replicas or 0) - updated} old replicas are pending termination"
    if (status.available_replicas or 0) < updated:
        return False, f"{status.available_replicas or 0} of {updated} updated replicas are available"
    return True, f"deployment {name} successfully rolled out"


def readiness(deployment: k8s.V1Deployment) -> Readiness:
    spec = deployment.spec
    containers = spec.template.spec.containers if spec and spec.template and spec.template.spec else []
    return Readiness(ready=(deployment.status.ready_replicas or 0) if deployment.status else 0,
                     wanted=spec.replicas if spec is not None and spec.replicas is not None else 1,
                     image=(containers[0].image or "") if containers else "")


def restart_patch(now: datetime) -> dict[str, Any]:
    """The strategic merge patch `kubectl rollout restart` sends: the pod template's restartedAt annotation."""
    stamp = now.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def _created(pod: k8s.V1Pod) -> datetime:
    stamp = pod.metadata.creation_timestamp if pod.metadata else None
    if stamp is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _is_ready(pod: k8s.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [] if pod.status else []))


def newest_running(pods: Iterable[k8s.V1Pod], *, ready: bool = False) -> k8s.V1Pod | None:
    """The newest pod that is Running and not being deleted (with `ready`, also Ready), or None.

    A pod being replaced stays Running through its grace period with its sidecar gone (the sample's sleep, PID 1,
    ignores SIGTERM; the pod carries a deletionTimestamp); a newer one may still be Pending (nothing to exec into yet).
    Newest by creationTimestamp, equal ones ordered by name so the choice is stable."""
    candidates = [p for p in pods
                  if p.status is not None and p.status.phase == "Running" and p.metadata is not None
                  and p.metadata.name and p.metadata.deletion_timestamp is None and (not ready or _is_ready(p))]
    return max(candidates, key=lambda p: (_created(p), p.metadata.name if p.metadata else "")) if candidates else None


def exit_status(message: str) -> int:
    """The exit code in the exec error channel's metav1.Status: 0 for Success, the ExitCode cause for a command that
    exited non-zero; anything else (the command did not start: no such container, executable not found) is an
    ApiError with the Status's message."""
    try:
        status = json.loads(message) if message.strip() else None
    except ValueError as err:
        raise ApiError(f"exec: the error channel held no status ({message[:80]!r})") from err
    if not isinstance(status, dict):
        raise ApiError("exec: the stream closed without a status on its error channel; is the pod running?")
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == NON_ZERO_EXIT:
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == EXIT_CODE_CAUSE:
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    break
        raise ApiError(f"exec: a non-zero exit without an exit code ({str(status.get('message'))[:120]})")
    raise ApiError(f"exec failed: {' '.join(str(status.get('message') or 'no message').split())[:_MESSAGE_CHARS]}")


def service_node_port(service: k8s.V1Service, port: int) -> int | None:
    """The nodePort of the Service's port `port` (the write-up's gateway 15443 lookup), or None."""
    for p in (service.spec.ports or []) if service.spec else []:
        if p.port == port and p.node_port:
            return int(p.node_port)
    return None


def load_balancer_address(service: k8s.V1Service) -> str | None:
    """The first LoadBalancer ingress address (IP, else host name) of a Service, or None while it has none."""
    lb = service.status.load_balancer if service.status else None
    for ingress in (lb.ingress or []) if lb else []:
        if ingress.ip or ingress.hostname:
            return str(ingress.ip or ingress.hostname)
    return None


def service_address(service: k8s.V1Service) -> str | None:
    """Where a Service is reached from outside its cluster, as istiod takes a gateway's address: its LoadBalancer
    ingress address, else its first `spec.externalIPs` entry; None while it has neither."""
    external = (service.spec.external_ips if service.spec else None) or []
    return load_balancer_address(service) or (str(external[0]) if external else None)


# --- the thin layer -------------------------------------------------------------------------------------------------
def _unreachable(err: Exception, doing: str, server: str) -> UnreachableError:
    why = str(getattr(err, "reason", "") or err).split(": ")[-1][:_MESSAGE_CHARS]
    return UnreachableError(f"{doing}: cannot reach the API server {server} ({why}); is the lab up? "
                            "(`make lab-status`)", server=server, why=why)


@dataclass
class ClusterHandle:
    """One cluster: its name, the kubeconfig file and context its provider wrote, and a `kubernetes` ApiClient built
    from them on first use (thread-safe; the scheduler runs clusters in parallel threads)."""

    name: str
    kubeconfig: Path
    context: str
    kubectl_binary: str = "kubectl"
    request_timeout: float = TIMEOUTS.api_request
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _api: k8s.ApiClient | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # --- the client -----------------------------------------------------------------------------------------------
    @property
    def api(self) -> k8s.ApiClient:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    def _connect(self) -> k8s.ApiClient:
        if not self.kubeconfig.is_file():
            raise LabError(f"{self.name}: kubeconfig {self.kubeconfig} does not exist; run `make lab-up` first "
                           "(or point LAB_HOME at the lab's directory)")
        try:
            # persist_config=False: the client never writes back into the lab's kubeconfig file.
            api: k8s.ApiClient = k8s_config.new_client_from_config(
                config_file=str(self.kubeconfig), context=self.context, persist_config=False)
            return api
        except (ConfigException, yaml.YAMLError, TypeError, AttributeError, ValueError) as err:
            # not YAML (YAMLError), or YAML that is no kubeconfig (the loader indexes what it read: TypeError,
            # AttributeError): the same one line as a kubeconfig without the context
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise LabError(f"{self.name}: kubeconfig {self.kubeconfig} cannot be used with context {self.context} "
                           f"({first[:_MESSAGE_CHARS]}); rebuild it with `make lab-up`") from err

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    def kubectl(self, runner: Runner) -> Kubectl:
        """kubectl on this cluster, for the commands `lab up` runs as the replayable plan shows them."""
        return Kubectl(runner, str(self.kubeconfig), self.context, binary=self.kubectl_binary)

    def call(self, doing: str, fn: Callable[[], Any], *, secret: bool = False) -> Any:
        """One API call with the handle's one-line errors (lab.cluster.api_error; an unreachable server names its
        address): the handle's own methods use it, and so do callers for what the handle has no method for."""
        where = f"{doing} on {self.context}"
        try:
            return fn()
        except ApiException as err:
            raise api_error(err, where, secret=secret) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise _unreachable(err, where, self.server) from None

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def json_of(self, obj: Any) -> Any:
        """A typed object as the API's JSON (camelCase keys; times ISO 8601 with their offset, +00:00 where the API
        writes Z): the shape `kubectl get -o json` prints, for the pure readers of that shape."""
        return self.api.sanitize_for_serialization(obj)

    def _optional(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except NotFoundError:
            return None

    # --- pods -----------------------------------------------------------------------------------------------------
    def pods(self, namespace: str | None, selector: str = "") -> list[k8s.V1Pod]:
        """The pods matching a label selector in `namespace` (None: every namespace)."""
        t = self.request_timeout
        if namespace is None:
            result = self.call(f"list pods {selector}".rstrip(), lambda: self.core.list_pod_for_all_namespaces(
                label_selector=selector or None, _request_timeout=t))
        else:
            result = self.call(f"list pods {selector} in {namespace}".replace("  ", " "),
                                lambda: self.core.list_namespaced_pod(namespace, label_selector=selector or None,
                                                                      _request_timeout=t))
        return list(result.items or [])

    def pod(self, namespace: str, name: str) -> k8s.V1Pod:
        pod: k8s.V1Pod = self.call(f"read pod {namespace}/{name}", lambda: self.core.read_namespaced_pod(
            name, namespace, _request_timeout=self.request_timeout))
        return pod

    def running_pod(self, namespace: str, selector: str, *, ready: bool = False) -> k8s.V1Pod:
        """The pod `newest_running` picks, or a LabError saying there is none."""
        pod = newest_running(self.pods(namespace, selector), ready=ready)
        if pod is None or pod.metadata is None or not pod.metadata.name:
            raise NotReadyError(f"no {'ready' if ready else 'running'} pod with {selector} in {namespace} on "
                                f"{self.context}; run `make lab-up` (or `make lab-status`)")
        return pod

    def pod_host_ip(self, namespace: str, selector: str) -> str | None:
        """The first matching pod's hostIP (the write-up's INGRESS_HOST lookup: `{.items[0].status.hostIP}`)."""
        items = self.pods(namespace, selector)
        return (items[0].status.host_ip or None) if items and items[0].status else None

    def logs(self, namespace: str, pod: str, container: str, *, tail: int = 500) -> str:
        text: str = self.call(f"read the log of {namespace}/{pod} ({container})",
                               lambda: self.core.read_namespaced_pod_log(
                                   pod, namespace, container=container, tail_lines=tail,
                                   _request_timeout=self.request_timeout))
        return text

    # --- ConfigMaps, Secrets, Services ------------------------------------------------------------------------------
    def configmap(self, namespace: str, name: str) -> k8s.V1ConfigMap:
        cm: k8s.V1ConfigMap = self.call(f"read configmap {namespace}/{name}",
                                         lambda: self.core.read_namespaced_config_map(
                                             name, namespace, _request_timeout=self.request_timeout))
        return cm

    def find_configmap(self, namespace: str, name: str) -> k8s.V1ConfigMap | None:
        found: k8s.V1ConfigMap | None = self._optional(lambda: self.configmap(namespace, name))
        return found

    def coredns(self) -> k8s.V1ConfigMap:
        """The cluster DNS's ConfigMap (kube-system/coredns); its data["Corefile"] is what the lab patches."""
        return self.configmap(COREDNS_NAMESPACE, COREDNS_NAME)

    def corefile(self) -> str:
        """The live Corefile; empty when the ConfigMap holds none."""
        return str((self.coredns().data or {}).get("Corefile", ""))

    def replace_configmap(self, cm: k8s.V1ConfigMap) -> k8s.V1ConfigMap:
        """Replace the ConfigMap whole (carrying the resourceVersion it was read with: a concurrent change is a 409)."""
        meta = cm.metadata or k8s.V1ObjectMeta()
        ns, name = meta.namespace or "default", meta.name or ""
        out: k8s.V1ConfigMap = self.call(f"replace configmap {ns}/{name}",
                                          lambda: self.core.replace_namespaced_config_map(
                                              name, ns, cm, _request_timeout=self.request_timeout))
        return out

    def secret(self, namespace: str, name: str) -> k8s.V1Secret | None:
        """The Secret, or None when it does not exist. Its data never reaches a message."""
        def read() -> k8s.V1Secret:
            s: k8s.V1Secret = self.call(f"read secret {namespace}/{name}", lambda: self.core.read_namespaced_secret(
                name, namespace, _request_timeout=self.request_timeout), secret=True)
            return s
        found: k8s.V1Secret | None = self._optional(read)
        return found

    def istiod_root(self, namespace: str) -> str | None:
        """The root a freshly started istiod in `namespace` serves: `cacerts`' root-cert.pem when that Secret has a
        signing key (pilot/pkg/bootstrap/istio_ca.go createIstioCA checks /etc/cacerts/ca-key.pem, at 1.7.8 and
        1.30.3), else its self-signed ca-cert.pem kept in `istio-ca-secret` (security/pkg/pki/ca/ca.go
        NewSelfSignedIstioCAOptions). None while neither is readable."""
        for name, key in (("cacerts", "root-cert.pem"), ("istio-ca-secret", "ca-cert.pem")):
            found = self.secret(namespace, name)
            data = (found.data if found is not None else None) or {}
            if name == "cacerts" and not data.get("ca-key.pem"):
                continue
            if data.get(key):
                return base64.b64decode(data[key]).decode()
        return None

    def put_secret(self, obj: Mapping[str, Any]) -> None:
        """Replace the Secret whole or create it when absent (the faults' `kubectl replace`/`create` of `cacerts`);
        without a resourceVersion the live one is used, as `put_object` does. Its data never reaches a message."""
        body = dict(obj)
        meta = dict(body.get("metadata") or {})
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        live = self.secret(ns, name)
        t = self.request_timeout
        if live is not None and not meta.get("resourceVersion"):
            meta["resourceVersion"] = live.metadata.resource_version if live.metadata else None
        body["metadata"] = meta
        typed: k8s.V1Secret = self.api.deserialize(json.dumps(body), "V1Secret", None)
        if live is None:
            self.call(f"create secret {ns}/{name}", lambda: self.core.create_namespaced_secret(
                ns, typed, _request_timeout=t), secret=True)
            return
        self.call(f"replace secret {ns}/{name}", lambda: self.core.replace_namespaced_secret(
            name, ns, typed, _request_timeout=t), secret=True)

    def delete_secret(self, namespace: str, name: str, *, timeout: float = TIMEOUTS.rollout) -> bool:
        """Delete the Secret and wait until it is gone (`kubectl delete secret --ignore-not-found --wait`). False
        when there was nothing to delete."""
        doing = f"delete secret {namespace}/{name}"
        try:
            self.call(doing, lambda: self.core.delete_namespaced_secret(
                name, namespace, _request_timeout=self.request_timeout), secret=True)
        except NotFoundError:
            return False
        deadline = self.clock() + timeout
        while self.secret(namespace, name) is not None:
            if self.clock() >= deadline:
                raise NotReadyError(f"{doing} on {self.context}: still there after {timeout:.0f}s (a finalizer?)")
            self.sleep(min(TIMEOUTS.poll_interval, max(0.0, deadline - self.clock())))
        return True

    def service(self, namespace: str, name: str) -> k8s.V1Service:
        svc: k8s.V1Service = self.call(f"read service {namespace}/{name}", lambda: self.core.read_namespaced_service(
            name, namespace, _request_timeout=self.request_timeout))
        return svc

    def namespace(self, name: str) -> k8s.V1Namespace:
        ns: k8s.V1Namespace = self.call(f"read namespace {name}", lambda: self.core.read_namespace(
            name, _request_timeout=self.request_timeout))
        return ns

    def services(self, namespace: str | None = None) -> list[k8s.V1Service]:
        """The Services in `namespace` (None: every namespace, like `kubectl get svc -A`)."""
        t = self.request_timeout
        if namespace is None:
            result = self.call("list services", lambda: self.core.list_service_for_all_namespaces(
                _request_timeout=t))
        else:
            result = self.call(f"list services in {namespace}", lambda: self.core.list_namespaced_service(
                namespace, _request_timeout=t))
        return list(result.items or [])

    def cluster_ip(self, namespace: str, name: str) -> str | None:
        """The Service's ClusterIP (the write-up's istiocoredns lookup), None when it has none."""
        svc = self.service(namespace, name)
        ip = svc.spec.cluster_ip if svc.spec else None
        return ip if ip and ip != "None" else None

    def node_port(self, namespace: str, name: str, port: int) -> int | None:
        return service_node_port(self.service(namespace, name), port)

    def load_balancer(self, namespace: str, name: str) -> str | None:
        return load_balancer_address(self.service(namespace, name))

    def service_address(self, namespace: str, name: str) -> str | None:
        """The Service's outside address (`service_address`: LoadBalancer ingress, else externalIPs), one read."""
        return service_address(self.service(namespace, name))

    # --- Deployments ------------------------------------------------------------------------------------------------
    def deployment(self, namespace: str, name: str) -> k8s.V1Deployment:
        dep: k8s.V1Deployment = self.call(f"read deployment {namespace}/{name}",
                                           lambda: self.apps.read_namespaced_deployment(
                                               name, namespace, _request_timeout=self.request_timeout))
        return dep

    def deployment_names(self, namespace: str) -> list[str]:
        result = self.call(f"list deployments in {namespace}", lambda: self.apps.list_namespaced_deployment(
            namespace, _request_timeout=self.request_timeout))
        return sorted(d.metadata.name for d in result.items or [] if d.metadata and d.metadata.name)

    def readiness(self, namespace: str, name: str) -> Readiness | None:
        """Ready replicas of a Deployment (`lab status`), None when it does not exist."""
        dep: k8s.V1Deployment | None = self._optional(lambda: self.deployment(namespace, name))
        return readiness(dep) if dep is not None else None

    def rollout_restart(self, namespace: str, name: str, *, now: datetime | None = None) -> None:
        """What `kubectl rollout restart deployment/NAME` does: refuse a paused Deployment, patch the pod template's
        restartedAt annotation (the Deployment controller then rolls the pods)."""
        dep = self.deployment(namespace, name)
        if dep.spec is not None and dep.spec.paused:
            raise LabError(f"deployment {namespace}/{name} on {self.context} is paused; resume it first "
                           f"(`kubectl -n {namespace} rollout resume deployment/{name}`)")
        patch = restart_patch(now or datetime.now(timezone.utc))
        self.call(f"restart deployment {namespace}/{name}", lambda: self.apps.patch_namespaced_deployment(
            name, namespace, patch, _content_type=STRATEGIC_MERGE, _request_timeout=self.request_timeout))

    def restart_and_wait(self, namespace: str, names: Sequence[str] | None = None) -> None:
        """`kubectl rollout restart` each Deployment (all of the namespace's when `names` is None), then wait for
        each rollout (`kubectl rollout status`, watched): restarted together, so they roll out side by side."""
        chosen = list(names) if names is not None else self.deployment_names(namespace)
        for name in chosen:
            self.rollout_restart(namespace, name)
        for name in chosen:
            self.wait_rollout(namespace, name)

    def wait_rollout(self, namespace: str, name: str, *, timeout: float = TIMEOUTS.rollout) -> str:
        """Wait until the Deployment is rolled out (`rollout_status`), watching it rather than polling; NotReadyError
        at the deadline with the last state seen. Returns kubectl's success line."""
        deadline = self.clock() + timeout
        dep = self.deployment(namespace, name)
        done, last = rollout_status(dep)
        version = dep.metadata.resource_version if dep.metadata else None
        while not done:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise NotReadyError(f"deployment {namespace}/{name} on {self.context}: not rolled out within "
                                    f"{timeout:.0f}s ({last}); look at it: `kubectl -n {namespace} describe "
                                    f"deployment {name}`")
            done, last, version = self._watch_rollout(namespace, name, version, remaining, last)
        return last

    def _watch_rollout(self, namespace: str, name: str, version: str | None, remaining: float,
                       last: str) -> tuple[bool, str, str | None]:
        """One watch of the Deployment from `version` for at most `remaining` seconds (the server ends it then)."""
        w = k8s_watch.Watch()
        doing = f"watch deployment {namespace}/{name} on {self.context}"
        events = w.stream(self.apps.list_namespaced_deployment, namespace, field_selector=f"metadata.name={name}",
                          resource_version=version, timeout_seconds=max(1, math.ceil(remaining)),
                          _request_timeout=remaining + self.request_timeout)
        try:
            for event in events:
                if event["type"] == "DELETED":
                    raise NotFoundError(f"{doing}: it was deleted; run `make lab-up` again")
                obj: k8s.V1Deployment = event["object"]
                version = obj.metadata.resource_version if obj.metadata else version
                done, last = rollout_status(obj)
                if done:
                    w.stop()
                    return True, last, version
        except ApiException as err:
            if err.status == 410:  # the version is too old to watch from: read the object again
                dep = self.deployment(namespace, name)
                done, last = rollout_status(dep)
                return done, last, dep.metadata.resource_version if dep.metadata else None
            raise api_error(err, doing) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise _unreachable(err, doing, self.server) from None
        finally:
            events.close()  # ends the stream now (its response is closed), not when the generator is collected
        return False, last, version

    # --- custom objects (ServiceEntry, EnvoyFilter, Gateway) ------------------------------------------------------
    def get_object(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.call(
            f"read {res.kind} {namespace}/{name}", lambda: self.custom.get_namespaced_custom_object(
                res.group, res.version, namespace, res.plural, name, _request_timeout=self.request_timeout))
        return obj

    def find_object(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._optional(lambda: self.get_object(res, namespace, name))
        return found

    def list_objects(self, res: Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        """The objects of a kind in `namespace` (None: every namespace, like `kubectl get -A`)."""
        t = self.request_timeout
        if namespace is None:
            result = self.call(f"list {res.kind} objects", lambda: self.custom.list_cluster_custom_object(
                res.group, res.version, res.plural, _request_timeout=t))
        else:
            result = self.call(f"list {res.kind} objects in {namespace}",
                                lambda: self.custom.list_namespaced_custom_object(
                                    res.group, res.version, namespace, res.plural, _request_timeout=t))
        items: list[dict[str, Any]] = list(result.get("items") or [])
        return items

    def put_object(self, res: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the object whole (so removed fields stay removed) or create it when absent, as the faults' `kubectl
        replace`/`create` does; without a resourceVersion the live one is used (as `kubectl replace` fetches it,
        k8s.io/cli-runtime pkg/resource/helper.go Helper.Replace)."""
        body = dict(obj)
        meta = dict(body.get("metadata") or {})
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        live = self.find_object(res, ns, name)
        if live is None:
            created: dict[str, Any] = self.call(
                f"create {res.kind} {ns}/{name}", lambda: self.custom.create_namespaced_custom_object(
                    res.group, res.version, ns, res.plural, body, _request_timeout=self.request_timeout))
            return created
        if not meta.get("resourceVersion"):
            meta["resourceVersion"] = (live.get("metadata") or {}).get("resourceVersion")
            body["metadata"] = meta
        replaced: dict[str, Any] = self.call(
            f"replace {res.kind} {ns}/{name}", lambda: self.custom.replace_namespaced_custom_object(
                res.group, res.version, ns, res.plural, name, body, _request_timeout=self.request_timeout))
        return replaced

    def delete_object(self, res: Resource, namespace: str, name: str, *, timeout: float = TIMEOUTS.rollout) -> bool:
        """Delete the object and wait until it is gone (`kubectl delete --ignore-not-found --wait`). False when there
        was nothing to delete."""
        doing = f"delete {res.kind} {namespace}/{name}"
        try:
            self.call(doing, lambda: self.custom.delete_namespaced_custom_object(
                res.group, res.version, namespace, res.plural, name, _request_timeout=self.request_timeout))
        except NotFoundError:
            return False
        deadline = self.clock() + timeout
        while self.find_object(res, namespace, name) is not None:  # finalizers may hold it for a while
            if self.clock() >= deadline:
                raise NotReadyError(f"{doing} on {self.context}: still there after {timeout:.0f}s (a finalizer?)")
            self.sleep(min(TIMEOUTS.poll_interval, max(0.0, deadline - self.clock())))
        return True

    # --- exec -------------------------------------------------------------------------------------------------------
    def exec(self, namespace: str, pod: str, container: str, argv: Sequence[str], *,
             timeout: float | None = None) -> ExecResult:
        """Run `argv` in the container (`kubectl exec -c CONTAINER -- ARGV`), return stdout, stderr and the exit code
        read from the error channel (`exit_status`). A command that could not start is an ApiError; one that runs
        past `timeout` a NotReadyError."""
        limit = timeout or self.request_timeout
        doing = f"exec {argv[0] if argv else '?'} in {namespace}/{pod} ({container}) on {self.context}"
        try:
            ws = k8s_stream.stream(self.core.connect_get_namespaced_pod_exec, pod, namespace, container=container,
                                   command=list(argv), stdin=False, stdout=True, stderr=True, tty=False,
                                   _preload_content=False, _request_timeout=limit)
        except ApiException as err:
            raise api_error(err, doing) from None
        try:
            ws.run_forever(timeout=limit)
            if ws.is_open():
                raise NotReadyError(f"{doing}: still running after {limit:.0f}s")
            out, err_text = ws.read_channel(STDOUT), ws.read_channel(STDERR)
            code = exit_status(ws.read_channel(ERROR))
        except ApiError as err:
            raise ApiError(f"{doing}: {err}", status=err.status, reason=err.reason) from None
        except (OSError, ValueError) as err:  # the socket broke, or a frame made no sense
            raise ApiError(f"{doing}: the stream broke ({str(err)[:_MESSAGE_CHARS]}); is the pod running?") from None
        finally:
            ws.close()
            # websocket-client's close() does nothing once the server's close frame has arrived (it is then no longer
            # "connected"), leaving the socket to the garbage collector: close it now.
            if ws.sock is not None:
                ws.sock.shutdown()
        return ExecResult(str(out), str(err_text), code)

    def envoy_admin(self, namespace: str, pod: str, path: str, *, container: str = "istio-proxy",
                    timeout: float | None = None) -> str:
        """GET `path` ("config_dump", "stats?filter=...") from the Envoy admin of the pod's proxy, through
        pilot-agent's admin proxy (`pilot-agent request GET PATH`, in every proxyv2 image, distroless too; Istio
        1.7.8 pilot/cmd/pilot-agent/request.go), by exec: the body is what it prints."""
        res = self.exec(namespace, pod, container, ["pilot-agent", "request", "GET", path], timeout=timeout)
        if not res.ok:
            tail = " | ".join(line for line in res.output.strip().splitlines()[-2:] if line.strip())
            raise ApiError(f"Envoy admin GET {path} in {namespace}/{pod} on {self.context}: pilot-agent exited "
                           f"{res.exit_code}" + (f": {tail[:_MESSAGE_CHARS]}" if tail else "")
                           + "; is its proxy running? (`make lab-doctor`)")
        return res.stdout


class KubeconfigSource(Protocol):
    """What a provider (lab.kind's Provider) says about a cluster: the kubeconfig file and the context in it."""

    def kubeconfig(self, cluster: Any) -> Path: ...

    def context(self, cluster: Any) -> str: ...


class _Cluster(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass
class LabHandle:
    """The lab: one ClusterHandle per cluster (by name), the clusters' roles, and the kubectl binary `lab up` runs."""

    clusters: dict[str, ClusterHandle]
    roles: dict[str, str]  # role ("client", "server") -> cluster name
    kubectl_binary: str = "kubectl"

    @classmethod
    def from_provider(cls, clusters: Iterable[_Cluster], provider: KubeconfigSource,
                      kubectl_binary: str = "kubectl") -> LabHandle:
        """Built from what the provider says, so the kubeconfig layout is written in one place (the provider)."""
        specs = list(clusters)
        return cls({c.name: ClusterHandle(c.name, Path(provider.kubeconfig(c)), provider.context(c), kubectl_binary)
                    for c in specs}, {c.role: c.name for c in specs}, kubectl_binary)

    def __getitem__(self, name: str) -> ClusterHandle:
        try:
            return self.clusters[name]
        except KeyError:
            raise LabError(f"no cluster {name} in this lab (it has {', '.join(self.clusters) or 'none'})") from None

    def by_role(self, role: str) -> ClusterHandle:
        if role not in self.roles:
            raise LabError(f"no {role} cluster in this lab (roles: {', '.join(self.roles) or 'none'})")
        return self[self.roles[role]]

    def close(self) -> None:
        for handle in self.clusters.values():
            handle.close()
