"""Profiles as the engine sees them: the pinned versions, images and clusters of one lab, in one overridable record.

A scenario (lab/scenarios/<name>/) defines its own profile class on `ProfileBase` and its clusters on `ClusterBase`,
adding what only it needs (the addresses its ServiceEntries give remote services, say), and says through a few
class attributes and methods what the engine must know: its name (`scenario`), the images it runs, the kernel
modules its sidecars need in every node, the CPUs and host ports it takes. `apply_overrides` and `check` work on
any of them.

Nothing else in the lab hard-codes a version, an image, a cluster name or a subnet.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from lab.errors import UsageError
from lab.values import ascii_int, image_reference, v_version


@dataclass(frozen=True)
class ClusterBase:
    """One cluster of the topology. `role` says what the scenario runs there ("client" calls, "server" serves)."""

    name: str
    role: str
    pod_subnet: str
    service_subnet: str

    @property
    def context(self) -> str:
        # kind names the kubeconfig context "kind-" + cluster name (kind pkg/cluster/internal/kubeconfig).
        return f"kind-{self.name}"

    def host_ports(self) -> tuple[tuple[int, str], ...]:
        """(port, what it is for) on 127.0.0.1 that the cluster maps from the host; preflight checks they are free."""
        return ()


@dataclass(frozen=True)
class ProfileBase:
    """What every scenario's profile has. Subclasses are frozen dataclasses too, give `scenario` and may add fields
    (each a `--set` override unless listed in `FIXED`)."""

    name: str
    kind_version: str
    node_image: str  # always with @sha256 digest, as kind's release notes require
    kubectl_version: str  # within one minor of the nodes
    istio_version: str
    clusters: tuple[ClusterBase, ...]
    load_images: bool = True  # pull once on the host, `kind load` into every cluster

    scenario: ClassVar[str]  # the name of the scenario (its package's Scenario.name)
    FIXED: ClassVar[frozenset[str]] = frozenset({"name", "clusters", "images"})  # not overridable with --set
    # What a built lab cannot change in place (`lab up` with another value refuses: `make lab-down` first).
    REBUILD_ON: ClassVar[tuple[str, ...]] = ("node_image", "kind_version", "clusters")
    # Kernel modules every node must have for the scenario's sidecars (loaded through the node by lab.kind, checked on
    # the Docker host by lab.preflight), and who needs them, for messages.
    kernel_modules: ClassVar[tuple[str, ...]] = ()
    kernel_modules_for: ClassVar[str] = ""  # "Istio 1.7": "... the legacy iptables modules Istio 1.7 needs"
    # Every image the profile runs is published for linux/amd64 and linux/arm64, so preflight accepts an arm64
    # Docker host. A fact about the pinned images, not a choice: a class attribute, not a --set (Istio 1.7's images
    # are amd64-only).
    multi_arch_images: ClassVar[bool] = False

    @property
    def client(self) -> ClusterBase:
        return next(c for c in self.clusters if c.role == "client")

    @property
    def server(self) -> ClusterBase:
        return next(c for c in self.clusters if c.role == "server")

    @property
    def node_minor(self) -> int:
        return int(self.node_image.split(":v", 1)[1].split(".")[1])

    def image_refs(self) -> dict[str, str]:
        """Every image the lab pulls and loads, by role (e.g. "pilot" -> "docker.io/istio/pilot:1.7.8")."""
        raise NotImplementedError

    def cpu_need(self) -> tuple[int, int, str]:
        """(CPUs the Docker host needs, the peak CPU request in millicores on one node, where the sum is made)."""
        return 0, 0, ""

    def check(self) -> None:
        """The scenario's own validation, between the engine's checks of the node image and of kubectl's minor
        (`check` below); it checks the images too (`check_images`). Raises UsageError."""
        check_images(self)


P = TypeVar("P", bound=ProfileBase)


def version_key(version: str) -> tuple[int, ...]:
    """An Istio (or any x.y.z) version as a comparable tuple: "1.7.10" > "1.7.5"."""
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def overridable(profile: ProfileBase) -> set[str]:
    return {f.name for f in dataclasses.fields(profile)} - set(profile.FIXED)


def _image_keys(profile: ProfileBase) -> set[str]:
    images = getattr(profile, "images", None)
    if images is None or not dataclasses.is_dataclass(images):
        return set()
    return {f.name for f in dataclasses.fields(images)}


def apply_overrides(profile: P, overrides: dict[str, str] | None = None) -> P:
    """`profile` with `overrides` applied (`istio_version=1.7.3`, `images.sleep=...`), then checked."""
    changes: dict[str, Any] = {}  # field name -> value of that field's type
    image_changes: dict[str, str] = {}
    image_keys = _image_keys(profile)
    fields = overridable(profile)
    for key, raw in (overrides or {}).items():
        if key.startswith("images.") and image_keys:
            sub = key.split(".", 1)[1]
            if sub not in image_keys:
                raise UsageError(f"unknown image {sub!r}; known: {', '.join(sorted(image_keys))}")
            image_changes[sub] = raw
            continue
        if key not in fields:
            raise UsageError(f"cannot override {key!r}; overridable: {', '.join(sorted(fields))}")
        changes[key] = _coerce(key, raw, getattr(profile, key))
    if image_changes:
        changes["images"] = dataclasses.replace(getattr(profile, "images"), **image_changes)  # noqa: B009
    profile = dataclasses.replace(profile, **changes)
    check(profile)
    return profile


def parse_overrides(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(" \t"), value.strip(" \t")
        if not sep or not key:
            raise UsageError(f"override {item!r} is not KEY=VALUE (e.g. istio_version=1.7.3)")
        if not value:
            raise UsageError(f"override {item!r} has an empty value; leave --set {key}=... out to keep the default")
        if key in out and out[key] != value:
            raise UsageError(f"--set {key} given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


def _coerce(key: str, raw: str, current: object) -> object:
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{key} takes true or false, not {raw!r}")
    if isinstance(current, int):
        return ascii_int(raw, key)
    return raw


_NODE_IMAGE = re.compile(r"[^@\s]+:v[0-9]+\.[0-9]+\.[0-9]+@sha256:[0-9a-f]{64}", re.ASCII)


def check_images(p: ProfileBase) -> None:
    """Every image reference of the profile's `images` record is well-formed."""
    images = getattr(p, "images", None)
    if images is not None and dataclasses.is_dataclass(images) and not isinstance(images, type):
        for name, ref in dataclasses.asdict(images).items():
            image_reference(ref, f"images.{name}")


def check(p: ProfileBase) -> None:
    """What every profile must satisfy, then the scenario's own `p.check()`; raises UsageError."""
    v_version(p.kind_version, "kind_version")
    v_version(p.kubectl_version, "kubectl_version")
    if "@sha256:" not in p.node_image:
        raise UsageError(f"node_image {p.node_image!r} has no @sha256 digest; kind's release notes require one")
    if not _NODE_IMAGE.fullmatch(p.node_image):
        raise UsageError(f"node_image {p.node_image!r} is not NAME:vX.Y.Z@sha256:<64 hex digits> (kind's release "
                         "notes list them so; the tag gives the Kubernetes version)")
    image_reference(p.node_image, "node_image")
    p.check()
    kubectl_minor = int(p.kubectl_version.lstrip("v").split(".")[1])
    if abs(kubectl_minor - p.node_minor) > 1:
        raise UsageError(f"kubectl {p.kubectl_version} is more than one minor from the nodes (1.{p.node_minor})")
