"""What the installed package needs: pyproject's runtime dependencies are exactly what `lab/` imports (plus pytest,
which the e2e suite's fixtures need), test-only libraries are in the `test` extra, and `lab/` imports nothing from
`tests/`. Read from the source files' syntax trees (every import, including late ones inside functions) and the
installed distributions' metadata; nothing is imported or run."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FIRST_PARTY = {"lab", "tests"}
# Runtime dependencies that lab/ does not import, each with why it is there.
RUNTIME_WITHOUT_IMPORT = {"pytest": "the e2e suite (`pytest tests/e2e`) and its fixtures run on it (docs/design.md)"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: Iterable[str]) -> set[str]:
    return {_norm(Requirement(r).name) for r in requirements}


RUNTIME = _declared(PYPROJECT["project"]["dependencies"])
TEST_EXTRA = _declared(PYPROJECT["project"]["optional-dependencies"]["test"])


def _guarded(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `try: ... except ImportError/ModuleNotFoundError`: optional imports."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in {"ImportError", "ModuleNotFoundError"}
                for h in node.handlers):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def imports(path: Path, *, optional: bool = True) -> set[str]:
    """The absolute module names `path` imports (`from x import y` gives `x` and `x.y`)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = set() if optional else _guarded(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def third_party(modules: Iterable[str]) -> set[str]:
    tops = {m.split(".")[0] for m in modules}
    return {t for t in tops if t not in FIRST_PARTY and t not in sys.stdlib_module_names and t != "__future__"}


def distributions(modules: Iterable[str]) -> dict[str, set[str]]:
    """top-level module -> the (normalised) distributions that install it (its own name when none installed here)."""
    table = metadata.packages_distributions()
    return {m: {_norm(d) for d in table.get(m, [m])} for m in modules}


def python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in ([root] if root.is_file() else root.rglob("*.py")))


def lab_modules() -> set[str]:
    return set().union(*(imports(p) for p in python_files(ROOT / "lab")))


def test_every_third_party_module_lab_imports_is_a_runtime_dependency():
    found = distributions(third_party(lab_modules()))
    assert found, "no third-party import found in lab/: the walk is broken"
    undeclared = {m: d for m, d in found.items() if not d & RUNTIME}
    assert not undeclared, f"lab/ imports these, but [project].dependencies does not declare them: {undeclared}"


def test_every_runtime_dependency_is_imported_by_lab_or_named_with_its_reason():
    used = set().union(*distributions(third_party(lab_modules())).values())
    unused = RUNTIME - used - set(RUNTIME_WITHOUT_IMPORT)
    assert not unused, f"[project].dependencies declares what lab/ never imports (move it to the test extra): {unused}"
    assert set(RUNTIME_WITHOUT_IMPORT) <= RUNTIME


def test_the_e2e_suite_runs_on_the_runtime_dependencies_alone():
    """`pytest tests/e2e` after a plain install: every import the e2e suite and the root conftest.py reach (through
    tests.* modules too), except those guarded by `except ImportError`, comes from a runtime dependency."""
    todo, seen, reached = python_files(ROOT / "tests" / "e2e", ROOT / "conftest.py"), set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        mods = imports(path, optional=False)
        reached |= mods
        for m in mods:
            if m.split(".")[0] == "tests":
                base = ROOT / Path(*m.split("."))
                todo += [c for c in (base.with_suffix(".py"), base / "__init__.py") if c.is_file()]
    assert "pytest" in third_party(reached), "the e2e suite does not import pytest: RUNTIME_WITHOUT_IMPORT is stale"
    missing = {m: d for m, d in distributions(third_party(reached)).items() if not d & RUNTIME}
    assert not missing, f"the e2e suite imports these, which only the test extra (or nothing) installs: {missing}"


def test_every_third_party_module_the_tests_import_is_declared():
    modules = set().union(*(imports(p) for p in python_files(ROOT / "tests", ROOT / "conftest.py")))
    undeclared = {m: d for m, d in distributions(third_party(modules)).items() if not d & (RUNTIME | TEST_EXTRA)}
    assert not undeclared, f"tests/ import these, but no runtime dependency or test extra declares them: {undeclared}"
    both = RUNTIME & TEST_EXTRA
    assert not both, f"declared twice (runtime and test extra): {both}"


def test_lab_imports_nothing_from_tests():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.split(".")[0] == "tests")
                 for p in python_files(ROOT / "lab")}
    assert not {p: m for p, m in offenders.items() if m}


def test_the_package_ships_no_test_only_code_or_data():
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["lab*"]
    assert "package-data" not in PYPROJECT["tool"]["setuptools"], "lab has no data files to ship"
    assert not [p for p in (ROOT / "lab").rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"}], \
        "lab/ holds a non-Python file that the package would not ship"
    assert not (ROOT / "lab" / "schemas.py").exists()
    assert not [p for p in python_files(ROOT / "lab") if "class RecordingRunner" in p.read_text()]


@pytest.mark.parametrize("source, expected", [
    ("import yaml\nimport os\n", {"yaml"}),
    ("def f():\n    from pytest_kind import KindCluster\n", {"pytest_kind"}),
    ("from lab.shell import Runner\nfrom tests.support import x\nfrom . import y\n", set()),
    ("import xml.etree.ElementTree\nfrom collections.abc import Mapping\n", set()),
])
def test_the_walk_finds_late_imports_and_skips_stdlib_and_first_party(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert third_party(imports(path)) == expected


def test_imports_guarded_by_except_importerror_are_optional_only_when_asked(tmp_path):
    path = tmp_path / "conftest.py"
    path.write_text("try:\n    from hypothesis import settings\nexcept ImportError:\n    settings = None\n"
                    "import pytest\n")
    assert third_party(imports(path)) == {"hypothesis", "pytest"}
    assert third_party(imports(path, optional=False)) == {"pytest"}


# --- the engine knows no scenario: not by import (.importlinter) and not by name --------------------------------
SCENARIO_ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["istio_multicluster_lab.scenarios"]
# An engine module that still names a scenario, with why it is not changed here. Each entry must still be needed
# (the test below fails once the module is clean, so that the entry goes too).
NAMES_A_SCENARIO: dict[str, str] = {}


def engine_modules() -> list[Path]:
    """lab/*.py: every module outside lab/scenarios/."""
    return sorted((ROOT / "lab").glob("*.py"))


def scenario_words() -> list[str]:
    """What names a scenario: each one's name, its package (from its entry point), and the 1.7 scenario's `.global`
    names (`httpbin.bar.global`, `*.global`: a default of that scenario, never of the engine)."""
    words = [r"\.global\b"]
    for name, target in SCENARIO_ENTRY_POINTS.items():
        package = target.split(":")[0]
        words += [re.escape(name), re.escape(package.rsplit(".", 1)[-1])]
    return words


def mentions(text: str, words: Iterable[str]) -> list[str]:
    """The lines of `text` that name a scenario (`scenario_words`), numbered."""
    pattern = re.compile("|".join(words), re.IGNORECASE)
    return [f"{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]


def test_no_engine_module_names_a_scenario():
    words = scenario_words()
    found = {p.name: mentions(p.read_text(), words) for p in engine_modules()}
    assert {name: lines for name, lines in found.items() if lines and name not in NAMES_A_SCENARIO} == {}
    assert [name for name in NAMES_A_SCENARIO if not found.get(name)] == [], \
        "an engine module named in NAMES_A_SCENARIO no longer names a scenario: remove its entry"


def test_the_scenario_name_check_sees_names_packages_and_dot_global():
    words = scenario_words()
    assert len(SCENARIO_ENTRY_POINTS) >= 2
    text = ("ok: every *.svc.cluster.local host\nbad: curl httpbin.bar.global:8000\n"
            "bad: lab/scenarios/multi_primary_multi_network/doctor.py\nbad: the Replicated-Control-Planes lab\n"
            "ok: a removed `global` block, global-sidecar.default\n")
    assert [line.split(":")[0] for line in mentions(text, words)] == ["2", "3", "4"]


def test_the_import_contract_covers_every_engine_module():
    """.importlinter's engine-knows-no-scenario lists its source modules one by one: a new engine module must be on
    it, or it could import a scenario unnoticed."""
    text = (ROOT / ".importlinter").read_text()
    block = text.split("[importlinter:contract:engine-knows-no-scenario]", 1)[1].split("forbidden_modules", 1)[0]
    listed = set(re.findall(r"^\s+(lab\.\w+)\s*$", block, re.M))
    modules = {f"lab.{p.stem}" for p in engine_modules() if p.stem not in {"__init__", "__main__"}}
    assert modules - listed == set()
