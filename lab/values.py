"""Checks for the plain values users type (numbers, versions, image references): refused at the edge, so that
nothing unchecked reaches a path, a manifest or a subprocess. Pure functions; each raises a one-line UsageError.

Python's `int()` and `str.isdigit()` accept far more than a person means by a number ("３１４４３", "1_000",
" 8 ", "٣"), so every number goes through `ascii_int`.
"""

from __future__ import annotations

import re

from lab.errors import UsageError

_ASCII_INT = re.compile(r"-?[0-9]+")
# `v1.21.14`, `v0.20.0` (kind, kubectl): a leading v, three ASCII numbers, no suffix.
_V_VERSION = re.compile(r"v(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")
# An image reference as the distribution reference grammar writes it (github.com/distribution/reference,
# regexp.go): [host[:port]/]path[:tag][@sha256:<64 hex>], path components of lower-case letters, digits and
# separators, a tag of at most 128 word characters, '.' and '-'.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
_IMAGE = re.compile(rf"{_HOST}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?",
                    re.ASCII)


def ascii_int(text: str, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """`text` as a whole number written in ASCII digits, within [lo, hi] when given."""
    raw = text.strip(" \t")
    if not _ASCII_INT.fullmatch(raw):
        raise UsageError(f"{what} {text!r} is not a whole number in ASCII digits")
    value = int(raw)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UsageError(f"{what} {value} is outside {lo}-{hi}")
    return value


def v_version(text: str, what: str) -> str:
    """A `vX.Y.Z` version (kind, kubectl); it becomes part of a download URL and of a cache file name."""
    if not _V_VERSION.fullmatch(text):
        raise UsageError(f"{what} {text!r} is not a version of the form vX.Y.Z (e.g. v1.21.14)")
    return text


def image_reference(text: str, what: str) -> str:
    """An image reference (`docker.io/istio/pilot:1.7.8`, `name@sha256:...`); `{tag}` stands for the Istio version."""
    if not text or len(text) > 255 or not _IMAGE.fullmatch(text.replace("{tag}", "0")):
        raise UsageError(f"{what} {text!r} is not an image reference (e.g. docker.io/library/name:tag)")
    return text
