"""Container images of a profile: the list (resolved tags), the pull-once-on-host plan, and the lock file.

Images are loaded and referenced by tag, never by digest (a tag-loaded image does not satisfy an `@sha256`
reference: docs/sources.md#kind-multiple-clusters). `lock.json` records, per image, the repo digest a successful run
used, from `docker image inspect --format '{{index .RepoDigests 0}}'`, so a later run can tell when an unpinned upstream
tag (the samples' `governmentpaas/curl-ssl`, `kennethreitz/httpbin`) moved.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import overload

from lab.errors import CommandError, LabError, PreflightError, ValidationError
from lab.files import atomic_write
from lab.profile import ProfileBase as Profile
from lab.shell import Runner
from lab.tokens import DockerPlatform, Token

PLATFORM = "linux/amd64"  # Istio 1.7 and kennethreitz/httpbin publish amd64 only (docs/sources.md#istio-images-amd64)
# What a profile with `multi_arch_images` runs on: every image it names is published for both (its profiles module
# says where), and preflight accepts exactly these two architectures for it (lab.preflight.docker_info_problems).
MULTI_ARCH_PLATFORMS = ("linux/amd64", "linux/arm64")
LOCK_VERSION = 1


def image_list(profile: Profile) -> list[str]:
    """Every image the lab runs, resolved for the profile's Istio version, in a stable order, no duplicates."""
    seen: list[str] = []
    for image in profile.image_refs().values():
        if "@" in image:
            raise ValidationError(f"image {image!r} names a digest; the lab loads by tag (a tag-loaded image does "
                                  f"not match an @sha256 reference): give a tag and let lock.json keep the digest")
        if image not in seen:
            seen.append(image)
    return seen


def platform_for(profile: Profile) -> Token:
    """The platform the lab pulls and saves the profile's images as: linux/amd64 for a profile with amd64-only images
    (Istio 1.7), the Docker engine's own (a `DockerPlatform` token, asked at run time and refused outside
    MULTI_ARCH_PLATFORMS) for one whose images are all multi-arch, so an arm64 host runs arm64 images."""
    return DockerPlatform(MULTI_ARCH_PLATFORMS) if profile.multi_arch_images else PLATFORM


# The engine's OS and architecture as Go names them (GOOS/GOARCH: `linux/amd64`, `linux/arm64`), the form
# `docker pull --platform` takes. docker/cli cli/command/system/version.go: `.Server` is the daemon's
# `types.Version`, whose `Os` and `Arch` the default template prints as the Engine's "OS/Arch"; without a
# reachable daemon `.Server` is nil and the command fails. `docker info`'s `Architecture` is `uname -m` instead
# (x86_64, aarch64), which is why preflight maps it and this does not use it (docs/sources.md#docker-engine-platform).
DOCKER_PLATFORM_ARGV = ["docker", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]

# containerd's platform parser (github.com/containerd/platforms database.go normalizeArch) reads these `uname -m`
# spellings as the Go names; the engine reports the Go names, but a compatible engine may not.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}


def parse_docker_platform(stdout: str) -> str:
    """`os/arch` from what DOCKER_PLATFORM_ARGV printed (`linux/arm64\n`), the architecture spelled as
    `docker pull --platform` reads it; LabError (one line) for anything that is not one OS/ARCH pair."""
    value = stdout.strip()
    m = re.fullmatch(r"([a-z0-9]+)/([a-z0-9_-]+)", value.lower())
    if not m:
        raise LabError(f"`{' '.join(DOCKER_PLATFORM_ARGV[:2])}` reported the Docker engine's platform as {value!r}, "
                       "not OS/ARCH: check that the Docker engine answers (`docker version`) and run the lab again")
    return f"{m[1]}/{_ARCH_ALIASES.get(m[2], m[2])}"


def platform_problem(platform: str, accepted: tuple[str, ...]) -> str | None:
    """Why the images cannot be pulled as the engine's `platform` (one line), or None when it is one of `accepted`:
    pulling another platform instead would run emulated or not at all (kind #2864: an image for another
    architecture imports into a node but is filtered out or fails to start)."""
    if platform in accepted:
        return None
    return (f"the Docker engine's platform is {platform}, and this profile's images are published for "
            f"{' and '.join(accepted)} only: run the lab on an x86_64 or arm64 Docker host (Apple Silicon with "
            "Docker Desktop is linux/arm64)")


def docker_platform(runner: Runner, accepted: tuple[str, ...]) -> str:
    """The engine's platform (`linux/amd64`, `linux/arm64`), asked once with DOCKER_PLATFORM_ARGV; PreflightError
    (one line) when the engine does not answer or its platform is not one of `accepted`."""
    res = runner.run(DOCKER_PLATFORM_ARGV, check=False, timeout=60, context="Docker engine platform")
    if not res.ok:
        tail = " | ".join(ln.strip() for ln in res.output.strip().splitlines()[-2:] if ln.strip())
        raise PreflightError(f"`docker version` failed ({tail or f'exit {res.returncode}'}), so the Docker engine's "
                             "platform is unknown: start Docker (or fix DOCKER_HOST) and run the lab again")
    platform = parse_docker_platform(res.stdout)
    problem = platform_problem(platform, accepted)
    if problem:
        raise PreflightError(problem)
    return platform


@overload
def pull_argv(image: str, platform: str) -> list[str]: ...
@overload
def pull_argv(image: str, platform: Token) -> list[Token]: ...
def pull_argv(image: str, platform: Token) -> list[str] | list[Token]:
    """`docker pull --platform <platform> <image>` (linux/amd64, or the engine's own for multi-arch images: no
    default, so no caller can pull amd64 by leaving it out)."""
    return ["docker", "pull", "--platform", platform, image]


def inspect_argv(image: str) -> list[str]:
    """`docker image inspect` printing the first repo digest (fails when the host lacks the image)."""
    return ["docker", "image", "inspect", "--format", "{{index .RepoDigests 0}}", image]


# Docker Hub's answer when an address has used up its pulls (anonymous pulls are limited per address and hour):
# HTTP 429, error code `toomanyrequests` (Docker docs, "Docker Hub usage and limits"; the CLI prints both).
_RATE_LIMITED = re.compile(r"toomanyrequests|429 Too Many Requests", re.IGNORECASE)


def rate_limited(output: str) -> bool:
    """Whether a failed `docker pull` said the registry's pull rate limit was reached."""
    return bool(_RATE_LIMITED.search(output or ""))


def pull(runner: Runner, image: str, *, platform: str, timeout: float, context: str) -> None:
    """`docker pull --platform <platform>` of one image; a rate-limited pull is one line saying to `docker login`."""
    try:
        runner.run(pull_argv(image, platform), timeout=timeout, context=context)
    except CommandError as err:
        if rate_limited(err.output):
            raise LabError(f"the registry refused to pull {image}: too many requests (Docker Hub limits anonymous "
                           "pulls per address); run `docker login` and run the lab again (images already pulled "
                           "are kept)") from err
        raise


def unrecorded_latest(profile: Profile, entries: dict[str, str]) -> list[str]:
    """The profile's `:latest` images (unpinned upstream tags) that `entries` (lock.json) has no digest for."""
    return [i for i in image_list(profile) if i.endswith(":latest") and i not in entries]


def pull_plan(profile: Profile, platform: str) -> list[list[str]]:
    """The pulls done once on the host, as `platform`, before loading into every cluster (empty when load_images is
    off: then each node pulls from the registry itself)."""
    if not profile.load_images:
        return []
    return [pull_argv(image, platform) for image in image_list(profile)]


def present(runner: Runner, image: str) -> bool:
    """True if the host already has `image` (by tag)."""
    res = runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False, timeout=60,
                     context=f"look for {image}")
    return res.ok


def ensure_pulled(profile: Profile, runner: Runner) -> list[str]:
    """Pull the images the host lacks (once: a present tag is not pulled again, so a run keeps the digests it
    started with); returns those pulled."""
    pulled: list[str] = []
    if not profile.load_images:
        return pulled
    wanted = platform_for(profile)
    platform = docker_platform(runner, wanted.accepted) if isinstance(wanted, DockerPlatform) else str(wanted)
    for argv in pull_plan(profile, platform):
        image = argv[-1]
        if present(runner, image):
            continue
        pull(runner, image, platform=platform, timeout=900, context=f"pull {image}")
        pulled.append(image)
    return pulled


def repo_digest(runner: Runner, image: str) -> str | None:
    """`name@sha256:...` of a host image, or None (absent, or built locally so it has no RepoDigests)."""
    try:
        res = runner.run(inspect_argv(image), check=False, timeout=60, context=f"digest of {image}")
    except CommandError:
        return None
    out = res.stdout.strip()
    return out if res.ok and "@sha256:" in out else None


def lock_entries(profile: Profile, runner: Runner) -> dict[str, str]:
    """image -> repo digest for every image of the profile present on the host."""
    entries = {}
    for image in image_list(profile):
        digest = repo_digest(runner, image)
        if digest:
            entries[image] = digest
    return entries


def write_lock(path: Path, entries: dict[str, str], profile: Profile) -> None:
    """Write lock.json atomically: {"version", "profile", "istio_version", "images": {image: digest}}."""
    doc = {"version": LOCK_VERSION, "profile": profile.name, "istio_version": profile.istio_version,
           "images": dict(sorted(entries.items()))}
    atomic_write(path, json.dumps(doc, indent=2) + "\n", mode=0o600)  # the mode mkstemp gave it before


def read_lock(path: Path) -> dict[str, str]:
    """image -> digest from lock.json ({} if absent); ValidationError if malformed."""
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise ValidationError(f"{path} is not JSON ({err}); delete it and rerun `lab up`") from err
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and "@sha256:" in v for k, v in images.items()):
        raise ValidationError(f"{path} has no valid 'images' map of image -> name@sha256:...; delete it and rerun")
    return images


def drift(old: dict[str, str], new: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Images whose digest changed between two locks: image -> (old digest, new digest)."""
    return {img: (old[img], new[img]) for img in sorted(old.keys() & new.keys()) if old[img] != new[img]}
