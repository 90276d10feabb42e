"""The cluster provider seam, and its kind implementation: the only module that knows about kind.

Owns: the `Provider` protocol the plan and executor work against ("a cluster with a kubeconfig and a context"),
the kind v1alpha4 Cluster config (`render_config`), and `KindProvider`, a thin layer over
`pytest_kind.KindCluster` (GPL-3.0: used as a dependency, never copied) plus the docker/kind commands it lacks:
label-confirmed deletion, image loading with the Docker 29 fallback, node IP lookup and the kind #3054 DNS check.

Field sources: kind `pkg/apis/config/v1alpha4/types.go` at v0.17.0 and v0.20.0 (yaml/json tags; kind decodes the
config strictly, `pkg/internal/apis/config/encoding/load.go` yamlUnmarshalStrict, so an unknown key is an error);
Istio 1.7.8 `prow/config/trustworthy-jwt.yaml` (kubeadm patch for Kubernetes < 1.20);
docs/sources.md#kind-config-v1alpha4, docs/sources.md#kind-multiple-clusters, docs/sources.md#istio-kubernetes-support.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, overload, runtime_checkable

from lab.errors import CommandError, PreflightError
from lab.files import atomic_write
from lab.kube import Kubectl
from lab.profile import ClusterBase as ClusterSpec
from lab.profile import ProfileBase as Profile
from lab.retry import NotYet, poll
from lab.settings import TIMEOUTS
from lab.shell import Runner
from lab.tokens import Token, arg, joined

log = logging.getLogger("lab.kind")

API_VERSION = "kind.x-k8s.io/v1alpha4"
# kind labels every node container with its cluster name (kind pkg/cluster/internal/providers/docker/constants.go
# `clusterLabelKey`, same at v0.17.0 and v0.20.0); `kind get clusters` lists clusters by this label.
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
# kind's node containers join this Docker network (kind pkg/cluster/internal/providers/docker/network.go).
DOCKER_NETWORK = "kind"



@runtime_checkable
class Provider(Protocol):
    """What the executor needs from a cluster provider (exactly what it calls). Nothing outside the provider module
    knows more."""

    name: str  # recorded in state.json with each cluster the lab creates
    # The wait between the provider's own polls (node Ready); the executor sets one that an interrupt cuts short.
    sleep: Callable[[float], None] | None

    def kubeconfig(self, cluster: ClusterSpec) -> Path:
        """The kubeconfig file the lab uses for `cluster` (never the user's ~/.kube/config)."""
        ...

    def context(self, cluster: ClusterSpec) -> str:
        """The context name inside that kubeconfig."""
        ...

    def exists(self, cluster: ClusterSpec) -> bool:
        """True if the cluster exists and this provider can prove it made it."""
        ...

    def create(self, cluster: ClusterSpec, config: str) -> None:
        """Create the cluster from the kind config text `config` (idempotent: an existing one is reused) and wait
        until its node is Ready."""
        ...

    def verify(self, cluster: ClusterSpec) -> None:
        """Provider-specific checks after creation; raises PreflightError with one line on a known breakage."""
        ...

    def identity(self, cluster: ClusterSpec) -> str:
        """What tells this instance of the cluster from another one of the same name ("" if none exists)."""
        ...

    def delete(self, cluster: ClusterSpec) -> bool:
        """Delete the cluster if it is confirmed to be ours; returns whether something was deleted."""
        ...

    def load_images(self, cluster: ClusterSpec, images: Sequence[str], platform: str) -> None:
        """Make host images (by tag, pulled as `platform`) available on the cluster's nodes without a registry
        pull."""
        ...


class KindTools(Protocol):
    """The binaries KindProvider runs (lab.tools.Tools has them)."""

    @property
    def kind(self) -> Path: ...

    @property
    def kubectl(self) -> Path: ...


def needs_dns_check(profile: Profile) -> bool:
    """Node images from kind < v0.18.0 lack the kind #3054 fix (kind PR #3121, released in v0.18.0)."""
    return _semver(profile.kind_version) < (0, 18, 0)


def _semver(version: str) -> tuple[int, int, int]:
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def create_argv(kind: Path | str, cluster: ClusterSpec, profile: Profile, config: Path | Token,
                kubeconfig: Path | Token) -> list[Token]:
    """`kind create cluster` argv, as pytest_kind's KindCluster.create runs it (written out for the shell plan).

    No `--wait` (KindCluster passes none; kind's default is 0s): the lab waits for node Ready itself, with a
    deadline, which is what kind's waitforready action polls too (pkg/cluster/internal/create/actions/waitforready).
    """
    return [str(kind), "create", "cluster", f"--name={cluster.name}", joined("--kubeconfig=", arg(kubeconfig)),
            f"--image={profile.node_image}", "--config", arg(config)]


def node_container(cluster: ClusterSpec) -> str:
    """The node container name: `<cluster>-control-plane` (kind names nodes `<cluster>-<role>`)."""
    return f"{cluster.name}-control-plane"


def dns_dnat_problem(iptables_save: str, node: str = "the node") -> str | None:
    """kind #3054 check on `iptables-save -t nat` output from inside a node: None when Docker's embedded-DNS DNAT
    rules (chain DOCKER_OUTPUT) still carry `--dport 53`, else a one-line explanation of what broke and what to do.

    kind's entrypoint rewrites these rules with `iptables-save | sed | iptables-restore`; with the host on iptables
    1.8.8+ in nf_tables mode the pre-v0.18 node iptables drops `--dport 53`, so every TCP/UDP packet the node sends is
    DNATed to Docker's DNS (kind #3054; fixed in images/base/files/usr/local/bin/entrypoint by kind PR #3121).
    """
    rules = [ln for ln in iptables_save.splitlines()
             if ln.startswith("-A DOCKER_OUTPUT ") and "-j DNAT" in ln]
    if not rules:
        log.warning("%s: no DOCKER_OUTPUT DNAT rules found in iptables-save; cannot check kind #3054", node)
        return None
    bad = [ln for ln in rules if not re.search(r"--dport 53(\s|$)", ln)]
    if not bad:
        return None
    return (f"{node}: Docker's DNS DNAT rules lost '--dport 53' ({bad[0].strip()!r}): this host's iptables 1.8.8+ "
            f"(nf_tables) breaks node images older than kind v0.18 (kind issue #3054), so DNS and all traffic from "
            f"the node fail; use the default profile (kind v0.20.0, Kubernetes 1.21), or run `lab down` and switch "
            f"the host to iptables-legacy")


ClusterFactory = Callable[..., Any]
# Serialises KindCluster construction and the clean-up of its ./.pytest-kind folder across parallel cluster threads.
_CWD_LOCK = threading.Lock()


def _default_factory(**kwargs: Any) -> Any:
    from pytest_kind import KindCluster  # imported late: pytest_kind reads KIND_VERSION/KUBECTL_VERSION at import

    return KindCluster(**kwargs)


class KindProvider:
    """`Provider` on kind, built on pytest_kind.KindCluster with explicit kind/kubectl/kubeconfig paths.

    pytest_kind.KindCluster always creates `./.pytest-kind/<name>/` in the current directory when constructed,
    even with explicit paths (it then writes nothing there). The lab never changes directory (clusters are created
    in parallel threads), so it removes that folder again when it is empty. KindCluster.create/delete run kind
    through `subprocess` themselves; their CalledProcessError is turned into the lab's CommandError.
    """

    name = "kind"

    def __init__(self, profile: Profile, state_dir: Path, tools: KindTools, runner: Runner, *,
                 cluster_factory: ClusterFactory = _default_factory,
                 sleep: Callable[[float], None] | None = None) -> None:
        """`tools` is a lab.tools.Tools; `state_dir` holds kubeconfig/<cluster> and kind/<cluster>.yaml.
        `sleep` is the wait between polls (lab.retry.poll); the executor sets it to one an interrupt cuts short."""
        self.profile = profile
        self.state_dir = Path(state_dir)
        self.tools = tools
        self.runner = runner
        self._factory = cluster_factory
        self.sleep = sleep

    # --- names and paths -------------------------------------------------------------------------------------
    def kubeconfig(self, cluster: ClusterSpec) -> Path:
        return self.state_dir / "kubeconfig" / cluster.name

    def context(self, cluster: ClusterSpec) -> str:
        # kind names the context "kind-" + cluster name (pkg/cluster/internal/kubeconfig/internal/kubeconfig).
        return f"kind-{cluster.name}"

    def config_path(self, cluster: ClusterSpec) -> Path:
        return self.state_dir / "kind" / f"{cluster.name}.yaml"

    def node_container(self, cluster: ClusterSpec) -> str:
        return node_container(cluster)

    def kubectl(self, cluster: ClusterSpec) -> Kubectl:
        return Kubectl(self.runner, str(self.kubeconfig(cluster)), self.context(cluster), str(self.tools.kubectl))

    # --- lifecycle -------------------------------------------------------------------------------------------
    def _containers(self, cluster: ClusterSpec) -> list[str]:
        res = self.runner.run(["docker", "ps", "-a", "--filter", f"label={CLUSTER_LABEL}={cluster.name}",
                               "--format", "{{.Names}}"], timeout=30, context=f"{cluster.name}: find kind nodes")
        return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]

    def exists(self, cluster: ClusterSpec) -> bool:
        return bool(self._containers(cluster))

    def identity(self, cluster: ClusterSpec) -> str:
        """The IDs of the cluster's node containers (sorted, comma-joined; "" if none). kind's label names the
        cluster, not the instance: a cluster deleted and re-created under the same name has new container IDs."""
        res = self.runner.run(["docker", "ps", "-a", "--filter", f"label={CLUSTER_LABEL}={cluster.name}",
                               "--format", "{{.ID}}"], timeout=30, context=f"{cluster.name}: kind node IDs")
        return ",".join(sorted(ln.strip() for ln in res.stdout.splitlines() if ln.strip()))

    def _kind_cluster(self, cluster: ClusterSpec) -> Any:
        leftover = Path(".pytest-kind") / cluster.name
        with _CWD_LOCK:
            existed = leftover.exists()
            parent_existed = leftover.parent.exists()
            try:
                kc = self._factory(name=cluster.name, kubeconfig=self.kubeconfig(cluster),
                                   image=self.profile.node_image, kind_path=Path(self.tools.kind),
                                   kubectl_path=Path(self.tools.kubectl))
            except OSError as err:  # KindCluster mkdirs ./.pytest-kind/<name> in the current directory
                raise PreflightError(f"cannot create {leftover} in {Path.cwd()} ({err.strerror}): run the lab from a "
                                     "directory you can write to (the repository's root)") from err
            if not existed:
                for folder in (leftover, leftover.parent) if not parent_existed else (leftover,):
                    try:
                        folder.rmdir()  # only succeeds when empty
                    except OSError:
                        break
        return kc

    def _clear_kubeconfig_lock(self, cluster: ClusterSpec) -> None:
        """Remove `<kubeconfig>.lock` left by a kind that was killed while writing the lab's kubeconfig.

        kind takes that lock with O_CREATE|O_EXCL around every kubeconfig write and removes it afterwards
        (pkg/cluster/internal/kubeconfig/internal/kubeconfig/lock.go, the client-go convention; same at v0.17.0 and
        v0.20.0), and installs no signal handler: after a Ctrl-C at the wrong moment every later `kind create`,
        `kind export kubeconfig` and `kind delete` fails with "failed to lock config file". The file is the lab's
        own, one per cluster, and the provider runs only under the lab's lock, so no live kind holds it."""
        lock = self.kubeconfig(cluster).with_name(self.kubeconfig(cluster).name + ".lock")
        if lock.exists():
            log.info("%s: removing %s left by an interrupted kind", cluster.name, lock)
            lock.unlink(missing_ok=True)

    def create(self, cluster: ClusterSpec, config_text: str) -> None:
        config = self.config_path(cluster)
        config.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(config, config_text)
        kubeconfig = self.kubeconfig(cluster)
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self._clear_kubeconfig_lock(cluster)
        existed = self.exists(cluster)
        if not existed:
            kc = self._kind_cluster(cluster)
            try:
                kc.create(config_file=config)
            except subprocess.CalledProcessError as err:
                raise CommandError([str(a) for a in err.cmd], err.returncode, _text(err.output),
                                   f"{cluster.name}: kind create cluster") from err
        if existed or not kubeconfig.is_file() or kubeconfig.stat().st_size == 0:
            # A reused cluster (interrupted run): pytest_kind does not rewrite its kubeconfig, so export it.
            self.runner.run([str(self.tools.kind), "export", "kubeconfig", "--name", cluster.name,
                             "--kubeconfig", str(kubeconfig)], timeout=60,
                            context=f"{cluster.name}: export kubeconfig")
        self.wait_ready(cluster)

    def wait_ready(self, cluster: ClusterSpec, timeout: float = TIMEOUTS.kind_create) -> None:
        kubectl = self.kubectl(cluster)

        def ready() -> None:
            res = kubectl.run("get", "nodes", "-o",
                              'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")]'
                              '.status}{"\\n"}{end}', check=False, timeout=30)
            if not res.ok:
                raise NotYet(res.output.strip().splitlines()[-1] if res.output.strip() else "kubectl failed")
            if not node_ready(res.stdout):
                raise NotYet(f"nodes not Ready: {res.stdout.strip() or 'none listed'}")

        poll(ready, timeout=timeout, what=f"{cluster.name}: node Ready", sleep=self.sleep)

    def verify(self, cluster: ClusterSpec) -> None:
        self.load_modules(cluster)
        if not needs_dns_check(self.profile):
            return
        node = self.node_container(cluster)
        res = self.runner.run(["docker", "exec", node, "iptables-save", "-t", "nat"], timeout=30,
                              context=f"{cluster.name}: kind #3054 check")
        problem = dns_dnat_problem(res.stdout, node)
        if problem:
            raise PreflightError(problem)

    def load_modules(self, cluster: ClusterSpec) -> None:
        """Load the kernel modules the profile's sidecars need (`kernel_modules`, which the scenario's profile sets:
        an old istio-init needs the legacy iptables ones) from inside the node: it is
        privileged and has kmod and the host's /lib/modules (read-only) at both kind versions the lab
        pins (kind images/base/Dockerfile installs kmod; pkg/cluster/internal/providers/docker/provision.go runs
        nodes with --privileged and --volume /lib/modules:/lib/modules:ro)."""
        modules = self.profile.kernel_modules
        if not modules:
            return
        node = self.node_container(cluster)
        res = self.runner.run(modprobe_argv(node, modules), check=False, timeout=60,
                              context=f"{cluster.name}: load the legacy iptables modules")
        if res.ok:
            return
        loaded = self.runner.run(["docker", "exec", node, "cat", "/proc/modules"], check=False, timeout=30,
                                 context=f"{cluster.name}: loaded kernel modules")
        problem = xtables_problem(node, res.output, loaded.stdout if loaded.ok else "", modules,
                                  self.profile.kernel_modules_for)
        if problem:
            raise PreflightError(problem)
        log.info("%s: modprobe failed (%s) but the modules are loaded already", cluster.name, res.output.strip())

    def delete(self, cluster: ClusterSpec) -> bool:
        if not self.exists(cluster):
            log.info("%s: no container labelled %s=%s; nothing to delete", cluster.name, CLUSTER_LABEL,
                     cluster.name)
            return False
        self._clear_kubeconfig_lock(cluster)
        kc = self._kind_cluster(cluster)
        try:
            kc.delete()
        except subprocess.CalledProcessError as err:
            raise CommandError([str(a) for a in err.cmd], err.returncode, _text(err.output),
                               f"{cluster.name}: kind delete cluster") from err
        self.kubeconfig(cluster).unlink(missing_ok=True)
        return True

    def load_images(self, cluster: ClusterSpec, images: Sequence[str], platform: str) -> None:
        for image in images:
            try:
                self.runner.run(load_argv(self.tools.kind, cluster, image), timeout=TIMEOUTS.command,
                                context=f"{cluster.name}: kind load {image}")
            except CommandError as first:
                # Docker 29's containerd image store breaks `kind load docker-image` for multi-arch images
                # (kind #4066): save just the one platform and load the archive (kind PR #4247).
                log.info("%s: kind load docker-image %s failed (%s); loading a %s archive instead",
                         cluster.name, image, first, platform)
                try:
                    self._load_archive(cluster, image, platform)
                except CommandError as second:
                    # Say both: before Docker 28 `docker image save` has no --platform (docs.docker.com reference for
                    # docker image save: "API 1.48+"), and that error alone would
                    # hide why `kind load docker-image` failed in the first place.
                    first_tail = " | ".join(ln for ln in first.output.strip().splitlines()[-2:] if ln.strip())
                    raise CommandError(second.argv, second.returncode, second.output,
                                       f"{cluster.name}: `kind load docker-image {image}` failed "
                                       f"({first_tail or f'exit {first.returncode}'}), and so did its "
                                       f"{platform} archive fallback (kind #4066)") from first

    def _load_archive(self, cluster: ClusterSpec, image: str, platform: str) -> None:
        scratch = self.state_dir / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            archive = Path(tmp) / "image.tar"
            for argv in archive_load_argvs(self.tools.kind, cluster, image, archive, platform):
                self.runner.run(argv, timeout=TIMEOUTS.command, context=f"{cluster.name}: load {image} archive")

    def node_ip(self, cluster: ClusterSpec) -> str:
        res = self.runner.run(node_ip_argv(cluster), timeout=30, context=f"{cluster.name}: node IP")
        ip = res.stdout.strip()
        if not ip:
            raise PreflightError(f"{self.node_container(cluster)} has no address on the Docker network "
                                 f"'{DOCKER_NETWORK}': run `lab down` and `lab up` again")
        return ip


def load_argv(kind: Path | str, cluster: ClusterSpec, image: str) -> list[str]:
    """`kind load docker-image --name <cluster> <image>` (by tag; kind pkg/cmd/kind/load/docker-image)."""
    return [str(kind), "load", "docker-image", "--name", cluster.name, image]


@overload
def archive_load_argvs(kind: Path | str, cluster: ClusterSpec, image: str, archive: Path | str,
                       platform: str) -> list[list[str]]: ...
@overload
def archive_load_argvs(kind: Path | str, cluster: ClusterSpec, image: str, archive: Path | Token,
                       platform: Token) -> list[list[Token]]: ...
def archive_load_argvs(kind: Path | str, cluster: ClusterSpec, image: str, archive: Path | Token,
                       platform: Token) -> list[list[str]] | list[list[Token]]:
    """The kind #4066 fallback: save the one platform the lab pulled (linux/amd64, or the engine's own for multi-arch
    images), then `kind load image-archive` it (strings for the provider, tokens for the plan). kind v0.32.0 imports
    an archive with `ctr images import --all-platforms` (pkg/cluster/nodeutils/util.go LoadImageArchive), which needs
    every manifest the archive's index names: a one-platform save names only the one the host has (docs/platform.md
    "Images")."""
    return [["docker", "image", "save", "--platform", platform, "-o", arg(archive), image],
            [str(kind), "load", "image-archive", "--name", cluster.name, arg(archive)]]


def modprobe_argv(node: str, modules: Sequence[str]) -> list[str]:
    """`modprobe -a` (every argument a module; without -a the rest would be the first module's parameters)."""
    return ["docker", "exec", node, "modprobe", "-a", *modules]


def xtables_problem(node: str, modprobe_output: str, proc_modules: str, modules: Sequence[str],
                    needed_by: str) -> str | None:
    """After a failed `modprobe`: None if every module is loaded anyway (/proc/modules as seen in the node, which is
    the host kernel's), else the one line saying what to run."""
    loaded = {ln.split()[0].replace("-", "_") for ln in proc_modules.splitlines() if ln.strip()}
    missing = [m for m in modules if m.replace("-", "_") not in loaded]
    if not missing:
        return None
    why = " | ".join(ln.strip() for ln in modprobe_output.strip().splitlines()[-2:] if ln.strip()) or "no output"
    return (f"{node}: cannot load the legacy iptables modules {', '.join(missing)} that {needed_by}'s sidecars need "
            f"(modprobe: {why}); run `sudo modprobe -a {' '.join(modules)}` on the Docker host (Docker "
            f"Desktop: in its VM) and run the lab again; a kernel without legacy xtables cannot run {needed_by}'s "
            "sidecars at all")


def node_ip_argv(cluster: ClusterSpec) -> list[str]:
    """`docker inspect` of the node's address on the `kind` network (what Istio's kind scripts use)."""
    return ["docker", "inspect", "-f", f"{{{{ .NetworkSettings.Networks.{DOCKER_NETWORK}.IPAddress }}}}",
            node_container(cluster)]


def node_ready(jsonpath_out: str) -> bool:
    """True when every `<node>=<Ready status>` line says True (and there is at least one)."""
    lines = [ln.strip() for ln in jsonpath_out.splitlines() if ln.strip()]
    return bool(lines) and all(ln.rpartition("=")[2] == "True" for ln in lines)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def make_provider(profile: Profile, state_dir: Path, tools: KindTools, runner: Runner) -> Provider:
    """The provider the lab uses for `profile`. Today always kind; a provider for existing clusters would be chosen
    here, and nothing else in the lab would change."""
    return KindProvider(profile, state_dir, tools, runner)
