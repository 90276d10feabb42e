"""The objects the lab applies or writes, as files: templates under `manifests/<scenario>/` and their renderer.

Each template starts with a header (comment lines up to the first empty line) naming the write-up section and the
upstream source; the header is documentation and is not rendered. The rest is filled by `string.Template`, the same
`$NAME` / `${NAME}` syntax as envsubst. A template must be given exactly the variables it uses: a missing or an extra
one is a ManifestError, so a renamed variable cannot silently leave `$OLD` in an object or be ignored.

Values are validated by the scenarios' builders (of ServiceEntries, Corefile blocks, ...) before they get here;
this module only refuses what could not be placed into a template safely: a value that is not a str or int, or a
string with a double quote, a backslash or a control character (string variables sit inside double-quoted YAML
scalars, so their type never depends on the value: port name `80` stays a string).

The replayable script fills a plain template (one applied as rendered, nothing changed in code: lab.plan.Template)
with `envsubst '$VAR ...' < FILE` instead of a heredoc. envsubst reads `$NAME` and `${NAME}` as string.Template does
but keeps `$$` as two dollars, so `check_envsubst` refuses a template with `$$` for that use
(tests/integration/test_manifests_envsubst.py runs the real envsubst on every file against `render`).

The folder is found relative to this file: the lab runs from a checkout of the repository (manifests/README.md).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from lab.errors import ManifestError

ROOT = Path(__file__).resolve().parents[1] / "manifests"
REPO = ROOT.parent  # the checkout the lab runs from ($LAB_REPO in the replayable script)
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def folder(scenario: str) -> Path:
    """The scenario's template folder."""
    return ROOT / scenario


def names(scenario: str) -> list[str]:
    """Every template of the scenario (file names, sorted)."""
    return sorted(p.name for p in folder(scenario).iterdir() if p.is_file())


def _split(text: str) -> tuple[str, str]:
    """(header, body): the header is the leading comment lines and the empty line that ends them."""
    lines = text.splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].startswith("#"):
        k += 1
    if k == 0 or k >= len(lines) or lines[k].strip():
        raise ManifestError("a manifest template must start with comment lines (write-up section, upstream "
                            "source) followed by one empty line")
    return "".join(lines[:k]), "".join(lines[k + 1:])


def read(name: str, scenario: str) -> tuple[str, str]:
    """The (header, body) of a template; ManifestError if the file is not there."""
    path = folder(scenario) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ManifestError(f"manifest template {path} is missing: run the lab from a checkout of the repository "
                            "(the manifests/ folder sits beside lab/)") from err
    try:
        return _split(text)
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None


def variables(name: str, scenario: str) -> frozenset[str]:
    """The `$VARIABLES` a template's body uses."""
    return _identifiers(read(name, scenario)[1], name)


def _identifiers(body: str, name: str) -> frozenset[str]:
    found = set()
    for m in string.Template.pattern.finditer(body):
        if m.group("invalid") is not None:
            raise ManifestError(f"manifest template {name}: a `$` that starts no variable (write `$$` for a "
                                f"literal dollar) at offset {m.start()}")
        ident = m.group("named") or m.group("braced")
        if ident:
            found.add(ident)
    return frozenset(found)


def render(name: str, scenario: str, /, **values: str | int) -> str:
    """The body of template `name` with its `$VARIABLES` filled from `values` (exactly those it uses)."""
    body = read(name, scenario)[1]
    wanted = _identifiers(body, name)
    missing, extra = sorted(wanted - values.keys()), sorted(values.keys() - wanted)
    if missing or extra:
        said = [f"missing {', '.join(missing)}"] * bool(missing) + [f"not used {', '.join(extra)}"] * bool(extra)
        raise ManifestError(f"manifest template {name}: variables {'; '.join(said)} (it uses "
                            f"{', '.join(sorted(wanted)) or 'none'})")
    text: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ManifestError(f"manifest template {name}: ${key} must be a string or an integer, not "
                                f"{type(value).__name__}")
        if isinstance(value, str) and _UNSAFE.search(value):
            raise ManifestError(f"manifest template {name}: ${key} {value!r} contains a quote, a backslash or a "
                                "control character, which cannot be placed into a manifest safely")
        text[key] = str(value)
    return string.Template(body).substitute(text)


def check_envsubst(name: str, scenario: str) -> None:
    """ManifestError unless `envsubst '$VAR ...'` fills the template's body exactly as `render` does: envsubst has no
    `$$` escape (it keeps both dollars where string.Template writes one)."""
    body = read(name, scenario)[1]
    for m in string.Template.pattern.finditer(body):
        if m.group("escaped") is not None:
            raise ManifestError(f"manifest template {name}: `$$` at offset {m.start()} is one `$` for the lab but "
                                "two for envsubst: the replayable script cannot fill this file with envsubst")


def merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge `extra` into the loaded manifest `into` in place (mappings key by key, anything else replaced), as
    istioctl merges a `-f` file over the profile; returns `into`."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into
