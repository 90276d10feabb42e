"""A fake two-cluster lab for executor tests: a RecordingRunner whose answers behave like kind/kubectl/istioctl.

It keeps just enough state to make ordering mistakes visible: a ServiceEntry applied before Istio's CRDs
exist is refused (as kubectl would: "no matches for kind"), an apply into a namespace that does not exist
fails, lookups are empty until the object they read exists, and the kube-system Corefile changes only when a
ConfigMap is applied. Failures can be injected per command.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.scenarios.replicated_control_planes.profiles import ClusterSpec, Images, Profile
from lab.scenarios.replicated_control_planes.steps import CLIENT_NS, SERVER_NS
from lab.shell import Result
from tests.support.recording import RecordingRunner

DATA = Path(__file__).resolve().parents[1] / "data"
ISTIO_DIR = DATA / "plan" / "istio-1.7.8"
START_COREFILE = (DATA / "corefile" / "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile").read_text()

_local = threading.local()


def ok(out: str = "") -> Result:
    return Result((), 0, out, "")


def fail(err: str, code: int = 1) -> Result:
    return Result((), code, "", err)


class LabRunner(RecordingRunner):
    """A RecordingRunner that also hands each command's stdin to its answer (through a thread-local)."""

    def run(self, argv, *, input=None, check=True, timeout=None, context="", env=None):  # noqa: A002
        _local.input = input
        return super().run(argv, input=input, check=check, timeout=timeout, context=context, env=env)


@dataclass
class FakeTools:
    kind: str = "kind"
    kubectl: str = "kubectl"
    istioctl: str = "istioctl"
    istio_dir: Path = ISTIO_DIR


@dataclass
class FakeCluster:
    exists: bool = False
    istio: bool = False
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (kind, namespace, name) -> object
    corefile: str = START_COREFILE
    coredns_restarts: int = 0
    node_id: str = ""  # what `docker ps --format {{.ID}}` would show for its node container
    istiod_image: str = ""  # what the installed istiod Deployment shows, from the files istioctl was given
    gateway_ip: str = ""  # the gateway pod's hostIP, when a test moves it (else 172.18.0.<2 + index>)


class FakeLab:
    """The state of the fake clusters, the runner that answers from it, and a provider over it."""

    def __init__(self, profile: Profile, home: Path) -> None:
        self.profile = profile
        self.home = home
        self.clusters = {c.name: FakeCluster() for c in profile.clusters}
        self.lock = threading.Lock()
        # Injected failures: (predicate on argv, how many times, result); checked before the normal answer.
        self.failures: list[list] = []
        self.on_call: Callable[[tuple[str, ...]], None] | None = None
        self.runner = LabRunner(answers={("kubectl",): self._kubectl, ("istioctl",): self._istioctl,
                                         ("docker",): self._docker, ("kind",): lambda argv: ok()})
        self.tools = FakeTools()
        self.provider = FakeProvider(self)

    # --- failure injection -------------------------------------------------------------------------------
    def fail_when(self, predicate: Callable[[tuple[str, ...]], bool], result: Result | BaseException,
                  times: int = 1) -> None:
        self.failures.append([predicate, times, result])

    def _injected(self, argv: tuple[str, ...]) -> Result | None:
        if self.on_call:
            self.on_call(argv)
        with self.lock:
            for entry in self.failures:
                predicate, times, result = entry
                if times > 0 and predicate(argv):
                    entry[1] -= 1
                    if isinstance(result, BaseException):
                        raise result
                    return result
        return None

    # --- docker / istioctl ---------------------------------------------------------------------------------
    def _docker(self, argv: tuple[str, ...]) -> Result:
        injected = self._injected(argv)
        if injected:
            return injected
        if argv[1:3] == ("image", "inspect") and "{{index .RepoDigests 0}}" in argv:
            name = argv[-1].rsplit(":", 1)[0]
            return ok(f"{name}@sha256:{'ab' * 32}\n")
        return ok()

    def _istioctl(self, argv: tuple[str, ...]) -> Result:
        injected = self._injected(argv)
        if injected:
            return injected
        cluster = self._cluster_of(argv)
        files = [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            return fail(f"Error: open {missing[0]}: no such file or directory")
        with self.lock:
            c = self.clusters[cluster]
            if not c.exists:
                return fail("Error: connection refused")
            c.istio = True
            c.istiod_image = self._istiod_image(files)
        return ok("✔ Installation complete\n")

    def _istiod_image(self, files: list[str]) -> str:
        # like the istio-discovery chart at 1.7.8 (templates/deployment.yaml): a `pilot.image` containing "/" is
        # the whole reference, any other is a name under the hub with the tag appended; without one, istioctl's
        # build-time hub/tag (the profile's default pilot image)
        image = None
        for f in files:
            for doc in yaml.safe_load_all(Path(f).read_text(encoding="utf-8")):
                image = ((((doc or {}).get("spec") or {}).get("values") or {}).get("pilot") or {}).get("image", image)
        default = Images().resolved(self.profile.istio_version)["pilot"]
        if image is None:
            return default
        if "/" in image:
            return image
        return f"{default.rsplit('/', 1)[0]}/{image}:{default.rsplit(':', 1)[1]}"

    def _cluster_of(self, argv: tuple[str, ...]) -> str:
        ctx = argv[argv.index("--context") + 1]
        return ctx.removeprefix("kind-")

    # --- kubectl -------------------------------------------------------------------------------------------
    def _kubectl(self, argv: tuple[str, ...]) -> Result:
        injected = self._injected(argv)
        if injected:
            return injected
        cluster = self._cluster_of(argv)
        rest = list(argv[argv.index("--context") + 2:])
        ns = None
        if "-n" in rest:
            i = rest.index("-n")
            ns = rest[i + 1]
            del rest[i:i + 2]
        with self.lock:
            c = self.clusters[cluster]
            if not c.exists:
                return fail("The connection to the server was refused")
            verb = rest[0]
            if verb == "apply":
                return self._apply(c, ns, _local.input or "")
            if verb == "get":
                return self._get(c, cluster, ns, rest[1:])
            if verb == "rollout":
                if rest[1] == "restart":
                    c.coredns_restarts += 1
                    return ok()
                name = rest[2].split("/", 1)[1]
                return ok("successfully rolled out\n") if self._deployment(c, ns or "default", name) \
                    else fail(f'Error from server (NotFound): deployments.apps "{name}" not found')
            if verb == "exec":
                return self._exec(c, cluster, rest)
            if verb == "patch":
                return self._patch(c, ns or "default", rest)
            if verb in ("wait", "delete"):
                if verb == "delete":
                    self._delete(c, ns, rest)
                return ok()
        return fail(f"fake kubectl: unexpected {rest}")

    def _deployment(self, c: FakeCluster, ns: str, name: str) -> bool:
        if ns == "kube-system" and name == "coredns":
            return True
        if ns == "istio-system":
            return c.istio
        return ("Deployment", ns, name) in c.objects

    def _apply(self, c: FakeCluster, ns: str | None, text: str) -> Result:
        out = []
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kind = doc["kind"]
            meta = doc["metadata"]
            obj_ns = meta.get("namespace") or ns or "default"
            if kind == "Namespace":
                obj_ns = ""
            elif kind == "ServiceEntry" and not c.istio:
                return fail('error: unable to recognize "STDIN": no matches for kind "ServiceEntry" in version '
                            '"networking.istio.io/v1alpha3"')
            elif obj_ns not in ("default", "kube-system") and ("Namespace", "", obj_ns) not in c.objects:
                return fail(f'Error from server (NotFound): namespaces "{obj_ns}" not found')
            if kind == "ConfigMap" and meta["name"] == "coredns" and obj_ns == "kube-system":
                c.corefile = doc["data"]["Corefile"]
            c.objects[(kind, obj_ns, meta["name"])] = doc
            out.append(f"{kind.lower()}/{meta['name']} configured")
        return ok("\n".join(out) + "\n")

    def _patch(self, c: FakeCluster, ns: str, rest: list[str]) -> Result:
        # only what the plan uses: `patch deployment NAME --type merge -p JSON` (RFC 7386 merge)
        kind, name = rest[1], rest[2]
        if kind != "deployment" or rest[rest.index("--type") + 1] != "merge":
            return fail(f"fake kubectl patch: unexpected {rest}")
        obj = c.objects.get(("Deployment", ns, name))
        if obj is None:
            return fail(f'Error from server (NotFound): deployments.apps "{name}" not found')
        _merge(obj, json.loads(rest[rest.index("-p") + 1]))
        return ok(f"deployment.apps/{name} patched\n")

    def _delete(self, c: FakeCluster, ns: str | None, rest: list[str]) -> None:
        if rest[1] == "ns":
            c.objects = {k: v for k, v in c.objects.items() if k[1] != rest[2] and k != ("Namespace", "", rest[2])}
        elif rest[1] == "serviceentry":
            c.objects.pop(("ServiceEntry", ns or "default", rest[2]), None)
        elif rest[1] == "-f":
            text = Path(rest[2]).read_text()
            for doc in yaml.safe_load_all(text):
                if doc:
                    c.objects.pop((doc["kind"], ns or "default", doc["metadata"]["name"]), None)

    def _get(self, c: FakeCluster, cluster: str, ns: str | None, args: list[str]) -> Result:
        out = args[args.index("-o") + 1] if "-o" in args else ""
        what = args[0]
        name = args[1] if len(args) > 1 and not args[1].startswith("-") else ""
        spec = self._spec(cluster)
        net = spec.service_subnet.rsplit(".", 1)[0]
        notfound = fail(f'Error from server (NotFound): {what} "{name}" not found')
        if what == "configmap" and name == "coredns":
            if out == "json":
                return ok(json.dumps({"metadata": {"name": "coredns", "namespace": "kube-system"},
                                      "data": {"Corefile": c.corefile}}))
            return ok(c.corefile)
        if what == "service":
            if name == "kube-dns":
                return ok(f"{net}.10")
            if not c.istio:
                return notfound
            if name == "istiocoredns":
                return ok(f"{net}.53")
            if name == "istio-ingressgateway":
                return ok(str(self.profile.gateway_node_port))
        if what == "pod":
            selector = args[args.index("-l") + 1]
            if selector == "istio=ingressgateway":
                default = f"172.18.0.{2 + [x.name for x in self.profile.clusters].index(cluster)}"
                return ok((c.gateway_ip or default) if c.istio else "")
            if selector == "app=sleep":
                return ok("sleep-5f4d7c9b8-x2x7q" if ("Deployment", ns, "sleep") in c.objects else "")
        if what == "namespace":
            if name == "istio-system" and c.istio:
                return ok("namespace/istio-system")
            obj = c.objects.get(("Namespace", "", name))
            if not obj:
                return notfound
            if "labels" in out:
                return ok((obj["metadata"].get("labels") or {}).get("istio-injection", ""))
            return ok(f"namespace/{name}")
        if what == "secret":
            return ok(f"secret/{name}") if ("Secret", ns, name) in c.objects else notfound
        if what == "deployment" and "readyReplicas" in out:
            if not self._deployment(c, ns or "default", name):
                return notfound
            image = c.istiod_image if name == "istiod" else f"docker.io/{name}:fake"
            return ok(f"1/1 {image}")
        if what.startswith("serviceentries") and "-A" in args:
            return ok("".join(f"{k[1]}/{k[2]} {o['spec']['hosts']} {o['spec']['addresses']} x\n"
                              for k, o in sorted(c.objects.items()) if k[0] == "ServiceEntry"))
        if what == "deployment" and "annotations" in out:
            obj = c.objects.get(("Deployment", ns, name))
            if obj is None:
                return notfound
            key = out.split(".annotations.", 1)[1].rstrip("}").replace("\\.", ".")
            return ok(((obj["spec"]["template"]["metadata"].get("annotations")) or {}).get(key, ""))
        if what == "deployment":
            if name == "istiod":
                return ok(c.istiod_image) if c.istio else notfound
            return ok(f"deployment.apps/{name}") if self._deployment(c, ns or "default", name) else notfound
        if what.startswith("serviceentries"):
            obj = c.objects.get(("ServiceEntry", ns, name))
            if obj and out == "json":
                return ok(json.dumps(obj))
            return ok(obj["spec"]["addresses"][0]) if obj else notfound
        return fail(f"fake kubectl get: unexpected {args}")

    def _exec(self, c: FakeCluster, cluster: str, rest: list[str]) -> Result:
        cmd = rest[rest.index("--") + 1:]
        spec = self._spec(cluster)
        ns = CLIENT_NS if spec.role == "client" else SERVER_NS
        se = c.objects.get(("ServiceEntry", ns, "httpbin-bar"))
        if cmd[0] == "nslookup":
            if not se or "global" not in c.corefile and cmd[-1].endswith(".10"):
                return Result((), 1, "** server can't find httpbin.bar.global: NXDOMAIN\n", "")
            return ok(f"Server:\t{cmd[-1]}\nAddress:\t{cmd[-1]}:53\n\nName:\thttpbin.bar.global\n"
                      f"Address: {se['spec']['addresses'][0]}\n")
        if cmd[0] == "sh":
            if not se:
                return ok("curl: (6) Could not resolve host: httpbin.bar.global\n"
                          "__LAB_HTTP_CODE__=000\n__LAB_CURL_EXIT__=6\n")
            return ok("HTTP/1.1 200 OK\nserver: envoy\n\n{\"headers\": {}}\n__LAB_HTTP_CODE__=200\n"
                      "__LAB_CURL_EXIT__=0\n")
        return fail(f"fake exec: unexpected {cmd}")

    def _spec(self, cluster: str) -> ClusterSpec:
        return next(c for c in self.profile.clusters if c.name == cluster)

    # --- views for assertions ------------------------------------------------------------------------------
    def commands(self, cluster: str | None = None) -> list[tuple[str, ...]]:
        calls = list(self.runner.calls)
        if cluster is None:
            return calls
        return [c for c in calls if f"kind-{cluster}" in c or f"--name={cluster}" in c
                or (c[:2] == ("kind", "load") and cluster in c)]


class FakeProvider:
    """The provider seam of lab.kind, over the fake clusters; its commands go through the same runner."""

    name = "kind"

    def __init__(self, lab: FakeLab) -> None:
        self.lab = lab
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.platforms: list[str] = []  # the platform of each load_images call

    def kubeconfig(self, cluster: ClusterSpec) -> Path:
        return self.lab.home / "kubeconfig" / cluster.name

    def context(self, cluster: ClusterSpec) -> str:
        return f"kind-{cluster.name}"

    def exists(self, cluster: ClusterSpec) -> bool:
        return self.lab.clusters[cluster.name].exists

    def create(self, cluster: ClusterSpec, config: str) -> None:
        assert config.startswith("kind: Cluster") or "kind: Cluster" in config, config[:80]
        path = self.kubeconfig(cluster)
        if self.exists(cluster) and path.is_file():
            return  # reused, as lab.kind's provider does
        self.lab.runner.run(["kind", "create", "cluster", f"--name={cluster.name}"])
        with self.lab.lock:
            self.lab.clusters[cluster.name].exists = True
            self.lab.clusters[cluster.name].node_id = f"{cluster.name}-node-{len(self.created) + 1}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# fake kubeconfig of {cluster.name}\n")
        self.created.append(cluster.name)

    def identity(self, cluster: ClusterSpec) -> str:
        c = self.lab.clusters[cluster.name]
        return c.node_id if c.exists else ""

    def verify(self, cluster: ClusterSpec) -> None:
        return None

    def delete(self, cluster: ClusterSpec) -> bool:
        if not self.exists(cluster):
            return False
        self.lab.runner.run(["kind", "delete", "cluster", f"--name={cluster.name}"])
        with self.lab.lock:
            self.lab.clusters[cluster.name] = FakeCluster()
        self.deleted.append(cluster.name)
        return True

    def load_images(self, cluster: ClusterSpec, images, platform: str) -> None:
        self.platforms.append(platform)
        for image in images:
            self.lab.runner.run(["kind", "load", "docker-image", "--name", cluster.name, image])


def _merge(target: dict, patch: dict) -> None:
    """JSON merge patch (RFC 7386), as `kubectl patch --type merge` sends it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
