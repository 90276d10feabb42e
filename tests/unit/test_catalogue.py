"""lab.catalogue: what both scenarios' fault catalogues share (their own tests cover Expectation, pick and
settled_class through each catalogue; these cover the shared pieces on their own)."""

from __future__ import annotations

import pytest

from lab import catalogue
from lab.errors import LabError


def test_clean_drops_status_server_fields_and_nulls_but_keeps_what_the_object_says():
    live = {"apiVersion": "v1", "kind": "Secret", "type": None, "status": {"x": 1},
            "metadata": {"name": "s", "namespace": "n", "uid": "u", "resourceVersion": "7", "managedFields": [],
                         "creationTimestamp": "t", "generation": 2, "selfLink": "l", "labels": None,
                         "annotations": {"a": "b"}},
            "data": {"k": "dg=="}}
    out = catalogue.clean(live)
    assert out == {"apiVersion": "v1", "kind": "Secret", "data": {"k": "dg=="},
                   "metadata": {"name": "s", "namespace": "n", "annotations": {"a": "b"}}}
    assert live["metadata"]["uid"] == "u" and live["status"] == {"x": 1}  # a copy: the saved object is untouched


def test_with_table_replaces_only_between_the_markers():
    text = "intro\n<!-- b -->\nold row\nold row 2\n<!-- e -->\nafter\n"
    assert catalogue.with_table(text, "<!-- b -->", "<!-- e -->", "| new |\n") == (
        "intro\n<!-- b -->\n| new |\n<!-- e -->\nafter\n")


@pytest.mark.parametrize("text", ["no markers\n", "<!-- e -->\n<!-- b -->\n", "<!-- b -->\n<!-- b -->\n<!-- e -->\n"])
def test_with_table_refuses_missing_reversed_or_repeated_markers(text):
    with pytest.raises(LabError, match="needs exactly one line `<!-- b -->`"):
        catalogue.with_table(text, "<!-- b -->", "<!-- e -->", "| new |\n")


def test_heal_reports_a_failed_restore_then_reraises_and_waits_for_ok_otherwise():
    heard: list[str] = []

    def broken() -> None:
        raise KeyError("gone")

    with pytest.raises(KeyError):
        catalogue.heal("demo", broken, lambda: "ok", timeout=1, on_failure=heard.append)
    assert heard == ["restore of demo failed: KeyError: 'gone'"]
    answers = iter(["timeout", "ok", "ok", "ok"])
    seen: list[str] = []
    catalogue.heal("demo", lambda: None, lambda: next(answers), timeout=60, sleep=lambda _s: None, history=seen)
    assert seen == ["timeout", "ok", "ok", "ok"]
