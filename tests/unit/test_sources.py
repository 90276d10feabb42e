"""docs/sources.md is where the repository says which upstream file each fact comes from: every
`docs/sources.md#anchor` reference in lab/, tests/, docs/ and README.md names an entry that exists, and nothing there
points at files outside the repository (the project's old notes directory, its design notes or facts files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "sources.md"
SCANNED = [ROOT / "lab", ROOT / "tests", ROOT / "docs", ROOT / "README.md"]
REFERENCE = re.compile(r"docs/sources\.md#([A-Za-z0-9_-]+)")
OUTSIDE = re.compile("|".join([
    r"\.\./shared", "/work/shared", r"\bshared/(?:facts|vectors|seed)\b",
    r"\bDESIGN\.md\b", r"\bseed/000", r"\bfacts/[\w.-]+\.md\b", r"\bvectors/(?:README\.md|\w+/)",
]))


def _files() -> list[Path]:
    out = []
    for root in SCANNED:
        out += [root] if root.is_file() else [p for p in root.rglob("*")
                                              if p.is_file() and "__pycache__" not in p.parts]
    # This file spells out the old forms and a dangling anchor on purpose (the pattern tests below).
    return sorted(p for p in out if p != Path(__file__).resolve())


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def entries() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^### (.+)$", SOURCES.read_text(), re.M)]


def anchors() -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", SOURCES.read_text(), re.M)}


def test_each_entry_has_a_stable_anchor_of_its_own_a_source_and_what_it_says():
    names = entries()
    assert len(names) >= 15
    assert len(names) == len(set(names)), "two entries share an anchor"
    assert all(re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", n) and _slug(n) == n for n in names), names
    bodies = re.split(r"^### .+$", SOURCES.read_text(), flags=re.M)[1:]
    for name, body in zip(names, bodies, strict=True):
        assert "\n- Source: " in body and "\n- Says: " in body, f"entry {name} lacks its Source or Says line"


def test_every_sources_reference_in_the_repository_resolves_to_an_entry():
    have = anchors()
    refs = {(str(p.relative_to(ROOT)), ref) for p in _files() for ref in REFERENCE.findall(_text(p))}
    assert len(refs) >= 30, "the scan found almost no references: is it reading the files?"
    dangling = sorted((path, ref) for path, ref in refs if ref not in have)
    assert not dangling, f"references to anchors docs/sources.md does not have: {dangling}"
    internal = set(re.findall(r"\]\(#([\w-]+)\)", SOURCES.read_text()))
    assert internal <= have, f"links inside docs/sources.md to missing anchors: {internal - have}"


def test_nothing_refers_to_files_outside_the_repository():
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}" for p in _files()
             for n, line in enumerate(_text(p).splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "replace with a docs/sources.md entry (or docs/design.md):\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "(../shared/facts/recipes.md)", "see /work/shared/facts/kind.md", "DESIGN.md's table",
    "the headings of seed/000_b1c4e905758ca2e6.txt", "(facts/istio-1.7.md §2)",
    "Sources as given in `vectors/README.md`", "via `../shared/vectors/corefile/`",
])
def test_the_outside_pattern_catches_each_old_form(line):
    assert OUTSIDE.search(line)


@pytest.mark.parametrize("line", [
    "docs/design.md", "docs/sources.md#istio-release", "tests/data/envoy_config_dump/fragments",
    "the vectors: 91 bytes", "istiocoredns-plugin.seed-mapping.log", "hypothesis seed",
])
def test_the_outside_pattern_leaves_the_repositorys_own_names_alone(line):
    assert not OUTSIDE.search(line)


def test_a_dangling_reference_is_caught():
    assert "no-such-entry" not in anchors()
    assert REFERENCE.findall("see docs/sources.md#no-such-entry.") == ["no-such-entry"]
