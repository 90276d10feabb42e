"""docs/extending.md cannot rot silently: every repository path and every dotted lab name it writes in backticks
exists.

- A path (a span with a `/`, or a file name such as `README.md`) exists relative to the repository root; a
  `path::name` span also names a function defined in that file; a span with a `<placeholder>` needs the folder
  before the placeholder to exist.
- A dotted name `lab.module.Name[.attr]` (or the short `module.Name` for a module of lab/) imports, and each
  further part is an attribute or, for a dataclass, a field.
Fenced code blocks are skipped: the page shows the planned layout of issue 10 there, paths that do not exist yet.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "extending.md"
LAB_MODULES = {p.stem for p in (ROOT / "lab").glob("*.py") if p.stem != "__init__"}

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"[A-Za-z0-9_.<>*-]+(?:/[A-Za-z0-9_.<>*-]*)*(?:::\w+)?")
_FILE_SUFFIXES = (".py", ".md", ".toml", ".yml", ".yaml", ".json", ".sh", ".txt", ".cfg")
_TOP_FILES = {"Makefile", ".importlinter"}
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def spans(text: str) -> list[str]:
    return _SPAN.findall(_FENCE.sub("", text))


def is_path(span: str) -> bool:
    if not _PATH.fullmatch(span):
        return False
    bare = span.split("::", 1)[0]
    if bare in _TOP_FILES or "/" in bare:
        return True
    return bare.endswith(_FILE_SUFFIXES) and not bare.startswith(".")  # `.json` alone is a suffix, not a file


def is_dotted(span: str) -> bool:
    return bool(_DOTTED.fullmatch(span)) and not span.endswith(_FILE_SUFFIXES) and (
        span.startswith("lab.") or span.split(".", 1)[0] in LAB_MODULES)


def path_problem(span: str, root: Path = ROOT) -> str | None:
    bare, _, func = span.partition("::")
    if "<" in bare:
        folder = root / bare.split("<", 1)[0]
        folder = folder if bare.split("<", 1)[0].endswith("/") else folder.parent
        return None if folder.is_dir() else f"{span}: folder {folder.relative_to(root)} does not exist"
    if "*" in bare:
        return None if list(root.glob(bare)) else f"{span}: matches no file"
    path = root / bare
    if not path.exists():
        return f"{span}: no such file or folder"
    if func and not re.search(rf"^\s*(?:async\s+)?def {re.escape(func)}\b", path.read_text(encoding="utf-8"), re.M):
        return f"{span}: {bare} defines no function {func}"
    return None


def name_problem(span: str) -> str | None:
    parts = span.split(".")
    if parts[0] != "lab":
        # a short name (`lab.plan.Step`) is an engine module's or a scenario package's
        for pkg in sorted(p.name for p in (ROOT / "lab" / "scenarios").iterdir() if (p / "__init__.py").exists()):
            if importlib.util.find_spec(f"lab.scenarios.{pkg}.{parts[0]}") is not None:
                return name_problem(".".join(["lab", "scenarios", pkg, *parts]))
        parts = ["lab", *parts]
    for i in range(len(parts), 0, -1):  # the longest importable module prefix (`lab` itself at worst)
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        rest = parts[i:]
        break
    for j, attr in enumerate(rest):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
        elif dataclasses.is_dataclass(obj) and attr in {f.name for f in dataclasses.fields(obj)} \
                and j == len(rest) - 1:
            return None
        else:
            return f"{span}: {'.'.join(parts[:i + j])} has no {attr}"
    return None


TEXT = DOC.read_text(encoding="utf-8")
PATHS = sorted({s for s in spans(TEXT) if is_path(s)})
NAMES = sorted({s for s in spans(TEXT) if is_dotted(s)})


def test_the_page_names_enough_paths_and_names_for_the_check_to_mean_something():
    # the page's three sections name dozens of each; a regex that stopped matching would pass everything below
    assert len(PATHS) >= 30 and len(NAMES) >= 40, (len(PATHS), len(NAMES))


@pytest.mark.parametrize("span", PATHS)
def test_every_path_in_backticks_exists(span):
    assert path_problem(span) is None, path_problem(span)


@pytest.mark.parametrize("span", NAMES)
def test_every_dotted_name_in_backticks_resolves(span):
    assert name_problem(span) is None, name_problem(span)


# --- the checker itself -------------------------------------------------------------------------------------------
def test_the_checker_refuses_what_does_not_exist(tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "x.py").write_text("def real():\n    pass\n")
    assert path_problem("lab/x.py", tmp_path) is None
    assert path_problem("lab/x.py::real", tmp_path) is None
    assert "no such file" in path_problem("lab/gone.py", tmp_path)
    assert "defines no function" in path_problem("lab/x.py::gone", tmp_path)
    assert path_problem("lab/<name>.py", tmp_path) is None
    assert "does not exist" in path_problem("gone/<name>/", tmp_path)
    assert "matches no file" in path_problem("lab/*.json", tmp_path)
    assert name_problem("lab.scenarios.replicated_control_planes.faults.FAULTS") is None
    assert name_problem("faults.FAULTS") is None
    # a dataclass field without a default
    assert name_problem("lab.scenarios.replicated_control_planes.faults.Fault.inject") is None
    assert "has no" in name_problem("lab.scenarios.replicated_control_planes.faults.NO_SUCH_THING")
    assert "has no" in name_problem("lab.scenarios.replicated_control_planes.faults.Fault.no_such_field")
    assert "has no" in name_problem("lab.scenarios.replicated_control_planes.faults.Fault.inject.deeper")
    assert "lab has no nosuchmodule" in name_problem("lab.nosuchmodule.x")


def test_spans_skip_fenced_blocks_and_tell_paths_from_names():
    text = "a `lab/x.py` b `lab.plan.Step`\n```\n`lab/planned/`\n```\n`--set k=v` `httpbin.bar.global`\n"
    assert spans(text) == ["lab/x.py", "lab.plan.Step", "--set k=v", "httpbin.bar.global"]
    assert [s for s in spans(text) if is_path(s)] == ["lab/x.py"]
    assert [s for s in spans(text) if is_dotted(s)] == ["lab.plan.Step"]
    assert is_path("README.md") and is_path(".importlinter") and is_dotted("plan.build")
    assert not is_path(".json") and not is_path('"1.7.0-1.7.4"')
    assert not is_dotted("python -m lab faults table --write README.md")
