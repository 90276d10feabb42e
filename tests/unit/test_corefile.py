"""lab.scenarios.replicated_control_planes.corefile: the `global` server block, on real Corefiles (tests/data/corefile)
and generated ones."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.cli import main
from lab.errors import ValidationError
from lab.scenarios.replicated_control_planes import corefile
from lab.scenarios.replicated_control_planes.corefile import (
    CorefileError,
    global_block,
    parse,
    patch,
    render_block,
    unpatch,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "corefile"
IP = "10.96.0.20"


def read(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")


# The server blocks each vector has, as a person reads them (tests/data/corefile/README.md describes each file).
VECTOR_KEYS = {
    "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile": [(".:53",)],
    "kubeadm-dns_test_expected-default-k8s1.32plus.Corefile": [(".:53",)],
    "kubeadm-dns_test_stub-blocks-before-main.Corefile": [("consul",), ("domain.int",), (".:53",)],
    "kubeadm-dns_test_proxy-k8s_external-no-trailing-newline.Corefile": [(".:53",)],
    "k8s-website-docs_default-coredns1.6.x.Corefile": [(".:53",)],
    "k8s-website-docs_stubdomain-consul.Corefile": [(".:53",), ("consul.local:53",)],
    "k8s-website-docs_kubedns-translation-federation-mixed-indent.Corefile": [
        (".:53",), ("abc.com:53",), ("my.cluster.local:53",)],
    "aks-VijayRod-demo_import-custom-override-server.Corefile": [(".:53",)],
    "homelab-MacroPower_k3s-style-hosts-two-forwards-import.Corefile": [(".:53",)],
    "prabhu43-cka_default-trailing-whitespace.Corefile": [(".:53",)],
    "corefile-migration_multiple-proxy-stubs.start.Corefile": [(".:53",)],
    "corefile-migration_multiple-proxy-stubs.expected-after-migration.Corefile": [
        (".:53",), ("mystub-1.example.org",), ("mystub-2.example.org",)],
    "corefile-migration_hosts-plugin-nested.start.Corefile": [(".:53",)],
    "corefile-migration_hosts-plugin-nested.expected-after-migration.Corefile": [(".:53",)],
    "istio-1.7.8-istiocoredns-chart_coreDNSTag-1.6.2.Corefile": [(".:53",)],
}
WITH_GLOBAL = {
    "istio-docs-multicluster-gateways_coredns-ge-1.4.0_with-global.Corefile": [(".:53",), ("global:53",)],
    "istio-docs-multicluster-gateways_coredns-lt-1.4.0_with-global.Corefile": [(".:53",), ("global:53",)],
}
TEMPLATES = {
    "kubeadm-manifests.go-template-current@008b365.Corefile.tmpl": 7,  # `kubernetes {{ .DNSDomain }} ...`
    "kubeadm-manifests.go-template-k8s1.12-era@TinySong-54ebbea.Corefile.tmpl": 4,
}


def test_every_vector_file_is_covered_by_a_test():
    files = {p.name for p in DATA.iterdir() if p.name != "README.md"}
    assert files == set(VECTOR_KEYS) | set(WITH_GLOBAL) | set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(VECTOR_KEYS) + sorted(WITH_GLOBAL))
def test_parser_finds_the_server_blocks_of_real_corefiles(name):
    expected = {**VECTOR_KEYS, **WITH_GLOBAL}[name]
    assert [b.keys for b in parse(read(name)).server_blocks] == expected


def test_top_level_import_is_not_a_server_block():
    cf = parse(read("aks-VijayRod-demo_import-custom-override-server.Corefile"))
    assert [i.pattern for i in cf.imports] == ["custom/*.server"]
    assert [i.line for i in cf.imports] == [20]


@pytest.mark.parametrize("name", sorted(VECTOR_KEYS))
def test_patch_appends_the_global_block_and_keeps_the_input_as_a_prefix(name):
    text = read(name)
    out = patch(text, IP)
    assert out.startswith(text)
    assert "}global" not in out
    assert [b.keys for b in parse(out).server_blocks] == VECTOR_KEYS[name] + [("global:53",)]
    assert global_block(out) == render_block(IP)


@pytest.mark.parametrize("name", sorted(VECTOR_KEYS) + sorted(WITH_GLOBAL))
def test_patch_twice_equals_patch_once_on_real_corefiles(name):
    once = patch(read(name), IP)
    assert patch(once, IP) == once


@pytest.mark.parametrize("name", sorted(VECTOR_KEYS))
def test_unpatch_restores_real_corefiles_byte_for_byte(name):
    text = read(name)
    assert unpatch(patch(text, IP)) == text
    assert unpatch(text) == text


def test_no_trailing_newline_stays_without_one_and_never_glues_blocks():
    text = read("kubeadm-dns_test_proxy-k8s_external-no-trailing-newline.Corefile")
    assert not text.endswith("\n")
    out = patch(text, IP)
    assert out == text + "\n" + render_block(IP)
    assert not out.endswith("\n")


def test_a_file_ending_in_newline_gets_exactly_the_block_and_one_newline():
    text = read("k8s-website-docs_stubdomain-consul.Corefile")
    assert patch(text, IP) == text + render_block(IP) + "\n"


@pytest.mark.parametrize("name", sorted(WITH_GLOBAL))
def test_patch_replaces_the_docs_global_block_with_its_shell_substitution(name):
    text = read(name)
    old = global_block(text)
    assert old is not None and "$(kubectl" in old
    out = patch(text, IP)
    start = text.index(old)
    assert out == text[:start] + render_block(IP) + text[start + len(old):]
    assert out.count("global:53") == 1
    assert "$(kubectl" not in out


def test_unpatch_removes_the_docs_global_block_and_keeps_the_rest():
    text = read("istio-docs-multicluster-gateways_coredns-ge-1.4.0_with-global.Corefile")
    out = unpatch(text)
    assert out == text[: text.index("global:53 {")]
    assert [b.keys for b in parse(out).server_blocks] == [(".:53",)]


@pytest.mark.parametrize("name,line", sorted(TEMPLATES.items()))
def test_go_templates_are_refused_with_their_line(name, line):
    with pytest.raises(CorefileError) as info:
        patch(read(name), IP)
    assert info.value.line == line
    assert f"line {line}" in str(info.value) and "template" in str(info.value)


def test_colons_inside_nested_blocks_are_not_zones():
    cf = parse(read("corefile-migration_hosts-plugin-nested.start.Corefile"))
    assert [b.keys for b in cf.blocks] == [(".:53",)]
    assert global_block(read("corefile-migration_hosts-plugin-nested.start.Corefile")) is None


# --- the block itself --------------------------------------------------------------------------------------

def test_the_block_is_the_write_ups_block_plus_the_aaaa_guard():
    assert render_block(IP, aaaa_guard=False) == "global:53 {\n    errors\n    cache 30\n    forward . 10.96.0.20:53\n}"
    guarded = render_block(IP)
    assert "    template IN AAAA global {\n        rcode NOERROR\n    }\n" in guarded
    assert guarded.startswith("global:53 {\n    errors\n    cache 30\n")
    assert guarded.endswith("    forward . 10.96.0.20:53\n}")


def test_no_aaaa_guard_option_leaves_the_template_out():
    text = read("k8s-website-docs_default-coredns1.6.x.Corefile")
    assert "template" not in patch(text, IP, aaaa_guard=False)
    assert "template IN AAAA global" in patch(text, IP)


def test_switching_the_guard_off_replaces_the_block_in_place():
    text = read("k8s-website-docs_default-coredns1.6.x.Corefile")
    off = patch(patch(text, IP), IP, aaaa_guard=False)
    assert off == patch(text, IP, aaaa_guard=False)


def test_written_plugin_order_matches_coredns_plugin_cfg():
    # CoreDNS runs plugins in plugin.cfg order, whatever the order written; plugin.cfg lines at v1.7.0 and v1.8.0
    # (kube-system CoreDNS of kind's k8s 1.19 and 1.21 nodes): errors 36, cache 44, template 48, forward 61.
    cfg_line = {"errors": 36, "cache": 44, "template": 48, "forward": 61}
    written = [line.split()[0] for line in render_block(IP).splitlines()[1:-1]
               if line.split() and line.split()[0] in cfg_line]
    assert written == sorted(written, key=cfg_line.__getitem__)
    assert written == ["errors", "cache", "template", "forward"]


def test_the_guard_block_parses_as_a_nested_directive():
    out = patch(".:53 {\n    errors\n}\n", IP)
    assert [b.keys for b in parse(out).blocks] == [(".:53",), ("global:53",)]


def test_ipv6_forward_target_is_bracketed():
    assert "forward . [fd00::a]:53" in render_block("fd00::a")


@pytest.mark.parametrize("target,reason", [
    ("", "empty"),
    ("istiocoredns.istio-system", "not an IP literal"),
    ("10.96.0.20:53", "not an IP literal"),
    ("10.96.0.0/24", "not an IP literal"),
    ("None", "not an IP literal"),
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("255.255.255.255", "broadcast"),
])
def test_forward_target_must_be_a_usable_ip_literal(target, reason):
    with pytest.raises(CorefileError, match=reason) as info:
        patch(".:53 {\n}\n", target)
    assert info.value.line is None
    assert isinstance(info.value, ValidationError)


# --- spellings of the global zone --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["global", "global:53", "global.", "global.:53", "dns://global:53", "dns://global",
                                 "GLOBAL:53", "global:053"])
def test_every_spelling_of_the_global_zone_is_replaced(key):
    text = f".:53 {{\n    errors\n}}\n{key} {{\n    forward . 1.2.3.4\n}}\n# tail\n"
    out = patch(text, IP)
    assert out == ".:53 {\n    errors\n}\n" + render_block(IP) + "\n# tail\n"
    assert unpatch(text) == ".:53 {\n    errors\n}\n# tail\n"


@pytest.mark.parametrize("key", ["global:5353", "tls://global", "grpc://global", "bar.global", "global.com",
                                 "(global)"])
def test_other_zones_ports_and_transports_are_left_alone(key):
    text = f".:53 {{\n    errors\n}}\n{key} {{\n    forward . 1.2.3.4\n}}\n"
    assert patch(text, IP) == text + render_block(IP) + "\n"
    assert unpatch(text) == text


def test_an_indented_global_block_is_replaced_at_its_indentation():
    text = ".:53 {\n    errors\n    }\n    global:53 {\n        forward . 1.2.3.4\n    }\n"
    out = patch(text, IP, aaaa_guard=False)
    assert out == (".:53 {\n    errors\n    }\n    global:53 {\n        errors\n        cache 30\n"
                   "        forward . 10.96.0.20:53\n    }\n")
    assert patch(out, IP, aaaa_guard=False) == out


# --- syntax the parser must survive ------------------------------------------------------------------------

def test_crlf_files_get_a_crlf_block_and_round_trip():
    text = ".:53 {\r\n    errors\r\n}\r\n"
    out = patch(text, IP)
    assert out == text + render_block(IP).replace("\n", "\r\n") + "\r\n"
    assert "\n" not in out.replace("\r\n", "")
    assert unpatch(out) == text


def test_a_lone_carriage_return_does_not_split_a_token_as_in_caddy():
    text = ".:53 {\n    errors\n}\nglo\rbal {\r\n    forward . 1.2.3.4\r\n}\r\n"
    assert [b.keys for b in parse(text).blocks] == [(".:53",), ("global",)]
    assert unpatch(text) == ".:53 {\n    errors\n}\n"


def test_comments_quotes_and_placeholders_do_not_confuse_the_parser():
    text = (
        "# a comment with { and } and global:53 {\n"
        ".:{$DNS_PORT} { # trailing comment }\n"
        '    log . "{remote} } { # not a comment"\n'
        '    template IN A example.org {\n'
        '        answer "{{ .Name }} 60 IN A 127.0.0.1"\n'
        "    }\n"
        "    errors#glued comment }\n"
        "}\n"
    )
    cf = parse(text)
    assert [b.keys for b in cf.blocks] == [(".:{$DNS_PORT}",)]
    assert unpatch(patch(text, IP)) == text


def test_multi_line_quoted_token_counts_its_lines():
    text = '.:53 {\n    log "a\nb"\n}\nx {\n'  # lines: 1 .:53, 2-3 the quoted token, 4 }, 5 x {
    with pytest.raises(CorefileError) as info:
        parse(text)
    assert info.value.line == 5


def test_several_keys_with_trailing_comma_across_lines_are_one_block():
    text = "example.org,\n  example.net {\n    whoami\n}\n"
    assert [b.keys for b in parse(text).blocks] == [("example.org", "example.net")]


def test_brace_on_the_next_line_is_accepted_as_caddy_does():
    assert [b.keys for b in parse("example.org\n{\n    whoami\n}\n").blocks] == [("example.org",)]


def test_empty_block_and_block_on_one_line():
    assert [b.keys for b in parse(".:53 { }\nfoo { }\n").blocks] == [(".:53",), ("foo",)]


def test_snippets_are_parsed_but_are_not_server_blocks():
    text = "(common) {\n    errors\n}\n.:53 {\n    import common\n}\n"
    cf = parse(text)
    assert [b.keys for b in cf.blocks] == [("(common)",), (".:53",)]
    assert [b.keys for b in cf.server_blocks] == [(".:53",)]


def test_byte_order_mark_is_kept():
    text = "\ufeff.:53 {\n}\nglobal {\n}\n"
    assert patch(text, IP).startswith("\ufeff.:53 {\n}\n" + "global:53 {")
    assert unpatch(text) == "\ufeff.:53 {\n}\n"


# --- refusals ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,line,what", [
    (".:53 {\n    errors\n", 1, "never closed"),
    (".:53 {\n    errors\n}\n}\n", 4, "without a block"),
    (".:53 {\n    errors }\n}\n", 2, "same line"),
    (".:53 {\n    health {\n        lameduck 5s\n", 2, "directive 'health'"),
    (".:53 {\n    health {\n        lameduck 5s\n}\n", 1, "server block '.:53'"),
    ("example.org\nwhoami\n", 1, "no `{`"),
    ('.:53 {\n    log "unterminated\n}\n', 2, "quoted"),
    ("{\n}\n", 1, "without a zone"),
    ("a,\n{\n}\n", 2, "trailing comma"),
    (".:53 {\n}\nimport\n", 3, "import"),
    (".:53 {\n}\nimport a b\n", 3, "only one argument"),
    ("global:{$P} {\n}\n", 1, "placeholder"),
    (".:53 {\n}\nglobal {\n}\nglobal.:53 {\n}\n", 5, "all serve global"),
    (".:53 {\n}\nglobal consul {\n}\n", 3, "also serves consul"),
])
def test_unparseable_or_ambiguous_input_is_refused_with_its_line(text, line, what):
    with pytest.raises(CorefileError, match=what) as info:
        patch(text, IP)
    assert info.value.line == line
    assert str(info.value).startswith(f"Corefile line {line}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "import custom/*.server\n", "(s) {\n}\n"])
def test_a_corefile_without_server_blocks_is_refused(text):
    with pytest.raises(CorefileError, match="no server block"):
        patch(text, IP)


def test_unpatch_of_a_corefile_without_global_is_the_identity():
    text = read("kubeadm-dns_test_stub-blocks-before-main.Corefile")
    assert unpatch(text) == text


# --- properties --------------------------------------------------------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/.*@", min_size=1, max_size=8)
_zone = st.sampled_from([".", "cluster.local", "consul", "example.org", "in-addr.arpa", "global.example", "bar.global"])
_port = st.sampled_from(["", ":53", ":1053"])
_ws = st.sampled_from([" ", "  ", "\t"])
_indent = st.sampled_from(["", "  ", "    ", "\t"])
_comment = st.sampled_from(["", " # note", " #{ }", "#x"])


@st.composite
def _directive(draw, depth: int = 0) -> list[str]:
    name = draw(_word.filter(lambda w: w not in ("import",) and not w.startswith("(")))
    args = draw(st.lists(st.one_of(_word, st.just('"quoted { } # arg"'), st.just("{$ENV}")), max_size=3))
    ind = draw(_indent) * (depth + 1)
    head = ind + " ".join([name, *args])
    if depth < 2 and draw(st.booleans()):
        inner = draw(st.lists(_directive(depth + 1), max_size=3))
        return [head + " {" + draw(_comment), *[line for d in inner for line in d], ind + "}"]
    return [head + draw(_comment)]


@st.composite
def corefiles(draw) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["# header comment", "", "   "])))
        keys = [draw(_zone) + draw(_port) for _ in range(draw(st.integers(min_value=1, max_value=2)))]
        lines.append(draw(_indent) + " ".join(keys) + " {" + draw(_comment))
        for d in draw(st.lists(_directive(), max_size=4)):
            lines.extend(d)
        lines.append(draw(_indent) + "}" + draw(_comment))
    if draw(st.booleans()):
        lines.append("import custom/*.server")
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    text = nl.join(lines)
    return text + nl if draw(st.booleans()) else text


_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(corefiles(), st.booleans())
def test_property_patch_is_idempotent(text, guard):
    once = patch(text, IP, aaaa_guard=guard)
    assert patch(once, IP, aaaa_guard=guard) == once


@_settings
@given(corefiles())
def test_property_patch_preserves_every_other_byte_and_unpatch_inverts_it(text):
    out = patch(text, IP)
    assert out.startswith(text)
    added = out[len(text):]
    assert added.strip("\r\n") == render_block(IP, newline="\r\n" if "\r\n" in text else "\n")
    assert unpatch(out) == text
    before = [b.keys for b in parse(text).server_blocks]
    assert [b.keys for b in parse(out).server_blocks] == before + [("global:53",)]


@_settings
@given(corefiles(), corefiles(), st.sampled_from(["global", "global:53", "global.", "dns://global"]))
def test_property_replacing_a_global_block_keeps_the_bytes_around_it(head, tail, key):
    nl = "\r\n" if "\r\n" in head else "\n"
    if not head.endswith(nl):
        head += nl
    old = f"{key} {{{nl}    forward . 9.9.9.9{nl}}}"
    text = head + old + nl + tail.replace("\r\n", nl)
    out = patch(text, IP)
    assert out == head + render_block(IP, newline=nl) + nl + tail.replace("\r\n", nl)
    assert patch(out, IP) == out


# --- CLI ---------------------------------------------------------------------------------------------------



def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_cli_patch_reads_stdin_and_writes_stdout_byte_exact(monkeypatch, capsys):
    text = ".:53 {\r\n    errors\r\n}\r\n"
    _stdin(monkeypatch, text.encode())
    assert main(["corefile", "patch", "--forward", IP]) == 0
    assert capsys.readouterr().out == patch(text, IP)


def test_cli_patch_reads_a_file_and_honours_no_aaaa_guard(tmp_path, capsys):
    src = tmp_path / "Corefile"
    src.write_bytes(read("k8s-website-docs_stubdomain-consul.Corefile").encode())
    assert main(["corefile", "patch", "--forward", IP, "--no-aaaa-guard", str(src)]) == 0
    assert capsys.readouterr().out == patch(src.read_text(), IP, aaaa_guard=False)


def test_cli_unpatch_removes_the_block(tmp_path, capsys):
    src = tmp_path / "Corefile"
    original = read("kubeadm-dns_test_initial-default-coredns1.6.x.Corefile")
    src.write_text(patch(original, IP))
    assert main(["corefile", "unpatch", str(src)]) == 0
    assert capsys.readouterr().out == original


@pytest.mark.parametrize("argv,data,needle", [
    (["corefile", "patch", "--forward", "not-an-ip"], b".:53 {\n}\n", "not an IP literal"),
    (["corefile", "patch", "--forward", IP], b".:53 {\n    errors\n", "line 1"),
    (["corefile", "unpatch"], b"\xff\xfe", "not UTF-8"),
    (["corefile", "unpatch", "/nonexistent/Corefile"], b"", "cannot read"),
])
def test_cli_bad_input_exits_2_with_one_line(monkeypatch, capsys, argv, data, needle):
    _stdin(monkeypatch, data)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert needle in captured.err
    assert captured.err.count("\n") == 1


def test_module_exposes_the_agreed_interface():
    assert issubclass(corefile.CorefileError, ValidationError)
    assert CorefileError("x", 3).line == 3


# --- how long a block caches (the faults derive their waits from it: lab/scenarios/replicated_control_planes/faults.py)
# ------------------------------
def test_the_labs_block_caches_as_long_as_the_istio_docs_block():
    from lab.scenarios.replicated_control_planes.corefile import CACHE_TTL, cache_ttl, render_block

    docs = global_block(read("istio-docs-multicluster-gateways_coredns-ge-1.4.0_with-global.Corefile"))
    assert cache_ttl(docs) == 30
    assert cache_ttl(render_block("10.96.0.53")) == CACHE_TTL == cache_ttl(docs)
    assert cache_ttl(render_block("10.96.0.53", aaaa_guard=False)) == CACHE_TTL


def test_istiocoredns_chart_corefile_caches_30s():
    from lab.scenarios.replicated_control_planes.corefile import cache_ttl

    assert cache_ttl(read("istio-1.7.8-istiocoredns-chart_coreDNSTag-1.6.2.Corefile")) == 30


@pytest.mark.parametrize("block,ttl", [
    ("global:53 {\n    errors\n    forward . 10.0.0.1:53\n}", None),
    ("global:53 {\n    cache\n}", 3600),  # the plugin's cap for answers without a TTL argument
    ("global:53 {\n    # cache 5\n    cache 45 global\n}", 45),
    ("global:53 {\n    template IN A global {\n        answer \"cache 1\"\n    }\n    cache 12\n}", 12),
    ("global:53 {\n    forward . 10.0.0.1 {\n        except cache\n    }\n}", None),
])
def test_cache_ttl_reads_only_the_blocks_own_cache_directive(block, ttl):
    from lab.scenarios.replicated_control_planes.corefile import cache_ttl

    assert cache_ttl(block) == ttl
