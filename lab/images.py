"""Container images of a profile: the list (resolved tags), the pull-once-on-host plan, and the lock file.

Images are loaded and referenced by tag, never by digest (a tag-loaded image does not satisfy an `@sha256`
reference: ../shared/facts/recipes.md). `lock.json` records, per image, the repo digest a successful run used,
from `docker image inspect --format '{{index .RepoDigests 0}}'`.
"""

from __future__ import annotations

from pathlib import Path

from lab.profile import Profile
from lab.shell import Runner


def image_list(profile: Profile) -> list[str]:
    """Every image the lab runs, resolved for the profile's Istio version, in a stable order, no duplicates."""
    raise NotImplementedError


def pull_argv(image: str) -> list[str]:
    """`docker pull --platform linux/amd64 <image>` (Istio 1.7 and httpbin are amd64-only)."""
    raise NotImplementedError


def pull_plan(profile: Profile) -> list[list[str]]:
    """The pulls done once on the host before loading into every cluster (empty when load_images is off)."""
    raise NotImplementedError


def present(runner: Runner, image: str) -> bool:
    """True if the host already has `image` (by tag)."""
    raise NotImplementedError


def ensure_pulled(profile: Profile, runner: Runner) -> list[str]:
    """Pull the images the host lacks; returns those pulled."""
    raise NotImplementedError


def repo_digest(runner: Runner, image: str) -> str | None:
    """`name@sha256:...` of a host image, or None (e.g. a locally built image has no RepoDigests)."""
    raise NotImplementedError


def lock_entries(profile: Profile, runner: Runner) -> dict[str, str]:
    """image -> repo digest for every image of the profile present on the host."""
    raise NotImplementedError


def write_lock(path: Path, entries: dict[str, str], profile: Profile) -> None:
    """Write lock.json atomically: {"profile", "istio_version", "images": {image: digest}}."""
    raise NotImplementedError


def read_lock(path: Path) -> dict[str, str]:
    """image -> digest from lock.json ({} if absent); ValidationError if malformed."""
    raise NotImplementedError
