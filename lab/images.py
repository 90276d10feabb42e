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

from lab.errors import CommandError, LabError, ValidationError
from lab.files import atomic_write
from lab.profile import ProfileBase as Profile
from lab.shell import Runner

PLATFORM = "linux/amd64"  # Istio 1.7 and kennethreitz/httpbin publish amd64 only (docs/sources.md#istio-images-amd64)
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


def pull_argv(image: str) -> list[str]:
    """`docker pull --platform linux/amd64 <image>` (Istio 1.7 and httpbin are amd64-only)."""
    return ["docker", "pull", "--platform", PLATFORM, image]


def inspect_argv(image: str) -> list[str]:
    """`docker image inspect` printing the first repo digest (fails when the host lacks the image)."""
    return ["docker", "image", "inspect", "--format", "{{index .RepoDigests 0}}", image]


# Docker Hub's answer when an address has used up its pulls (anonymous pulls are limited per address and hour):
# HTTP 429, error code `toomanyrequests` (Docker docs, "Docker Hub usage and limits"; the CLI prints both).
_RATE_LIMITED = re.compile(r"toomanyrequests|429 Too Many Requests", re.IGNORECASE)


def rate_limited(output: str) -> bool:
    """Whether a failed `docker pull` said the registry's pull rate limit was reached."""
    return bool(_RATE_LIMITED.search(output or ""))


def pull(runner: Runner, image: str, *, timeout: float, context: str) -> None:
    """`docker pull` of one image; a rate-limited pull is one line saying to `docker login`."""
    try:
        runner.run(pull_argv(image), timeout=timeout, context=context)
    except CommandError as err:
        if rate_limited(err.output):
            raise LabError(f"the registry refused to pull {image}: too many requests (Docker Hub limits anonymous "
                           "pulls per address); run `docker login` and run the lab again (images already pulled "
                           "are kept)") from err
        raise


def unrecorded_latest(profile: Profile, entries: dict[str, str]) -> list[str]:
    """The profile's `:latest` images (unpinned upstream tags) that `entries` (lock.json) has no digest for."""
    return [i for i in image_list(profile) if i.endswith(":latest") and i not in entries]


def pull_plan(profile: Profile) -> list[list[str]]:
    """The pulls done once on the host before loading into every cluster (empty when load_images is off:
    then each node pulls from the registry itself)."""
    if not profile.load_images:
        return []
    return [pull_argv(image) for image in image_list(profile)]


def present(runner: Runner, image: str) -> bool:
    """True if the host already has `image` (by tag)."""
    res = runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False, timeout=60,
                     context=f"look for {image}")
    return res.ok


def ensure_pulled(profile: Profile, runner: Runner) -> list[str]:
    """Pull the images the host lacks (once: a present tag is not pulled again, so a run keeps the digests it
    started with); returns those pulled."""
    pulled = []
    for argv in pull_plan(profile):
        image = argv[-1]
        if present(runner, image):
            continue
        pull(runner, image, timeout=900, context=f"pull {image}")
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
