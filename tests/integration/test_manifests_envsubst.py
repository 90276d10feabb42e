"""manifests/README.md's promise: a script can fill the template files with `sed` and `envsubst` directly, and the
replayable script's `envsubst '$VAR ...' < FILE` (lab.plan.Template) applies what lab.manifests.render renders.

The real envsubst (GNU gettext; `.ci/run` installs gettext-base) on every file of every scenario."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from lab import manifests
from lab.errors import ManifestError
from lab.scenarios.replicated_control_planes.names import SCENARIO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("envsubst") is None, reason="needs envsubst (GNU gettext)")]

EVERY = [(p.name, name) for p in sorted(manifests.ROOT.iterdir()) if p.is_dir() for name in manifests.names(p.name)]


def _envsubst(text: str, values: dict[str, str], shell_format: str | None = None) -> str:
    argv = ["envsubst"] if shell_format is None else ["envsubst", shell_format]
    return subprocess.run(argv, input=text, check=True, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **values}).stdout


@pytest.mark.parametrize("name", manifests.names(SCENARIO))
def test_envsubst_renders_each_file_as_the_renderer_does(name):
    # Drop the header (up to the first empty line), fill the variables from the environment.
    values = {v: f"v-{v.lower().replace('_', '-')}" for v in manifests.variables(name, SCENARIO)}
    body = subprocess.run(["sed", "1,/^$/d", str(manifests.folder(SCENARIO) / name)], check=True, capture_output=True,
                          text=True).stdout
    out = subprocess.run(["envsubst"], input=body, check=True, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], **values})
    assert out.stdout == manifests.render(name, SCENARIO, **values)


@pytest.mark.parametrize(("scenario", "name"), EVERY, ids=[f"{s}/{n}" for s, n in EVERY])
def test_the_scripts_envsubst_form_fills_every_file_as_the_renderer_does(scenario, name):
    # What lab.plan.shell_template runs: the whole file, envsubst limited to the template's variables, other
    # variables of the environment present (and left alone). Values with what a shell or envsubst might expand.
    wanted = sorted(manifests.variables(name, scenario))
    values = {v: f"v-{v.lower()} $HOME ${{PATH}} $$ {i}" for i, v in enumerate(wanted)}
    manifests.check_envsubst(name, scenario)
    text = (manifests.folder(scenario) / name).read_text(encoding="utf-8")
    out = _envsubst(text, {**values, "HOME": "/elsewhere", "UNRELATED": "x"}, " ".join(f"${v}" for v in wanted))
    header, body = manifests.read(name, scenario)
    rendered = manifests.render(name, scenario, **values)
    # the header is comments (envsubst fills a variable a comment names); the object is byte for byte the lab's
    assert out == _envsubst(header, values, " ".join(f"${v}" for v in wanted)) + "\n" + rendered
    if name.endswith(".yaml"):
        assert list(yaml.safe_load_all(out)) == list(yaml.safe_load_all(rendered))


def test_envsubst_reads_braced_and_bare_variables_as_string_template_does_but_not_double_dollars(tmp_path,
                                                                                                  monkeypatch):
    # the syntax the templates use, checked on the tool itself: `$VAR`, `${VAR}` glued to text, a longer name
    # that only starts like a variable, a `$` before a non-name; and `$$`, which is where the two part ways
    text = "a: $X\nb: ${X}m\nc: $XY\nd: 5$ \ne: $$X\n"
    out = _envsubst(text, {"X": "1", "XY": "2"}, "$X")
    assert out == "a: 1\nb: 1m\nc: $XY\nd: 5$ \ne: $1\n"  # envsubst: $$X is `$` then $X
    tpl = tmp_path / "s"
    tpl.mkdir()
    (tpl / "t.yaml").write_text("# h\n\na: $X\nb: ${X}m\ne: $$X\n")
    monkeypatch.setattr(manifests, "ROOT", tmp_path)
    assert manifests.render("t.yaml", "s", X="1") == "a: 1\nb: 1m\ne: $X\n"  # string.Template: $$X is `$X`
    with pytest.raises(ManifestError, match="two for envsubst"):
        manifests.check_envsubst("t.yaml", "s")
