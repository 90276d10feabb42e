"""The CoreDNS `global` server block: parse a Corefile, add/replace/remove the block, byte-preserving the rest.

kube-dns (CoreDNS in kube-system) must forward `.global` names to istiocoredns (the write-up's "配置DNS" step and
docs/sources.md#istio-docs-dns-block). The lab never rewrites the whole Corefile: CoreDNS 1.7+ exits on options
that the docs' copy contains (docs/sources.md#coredns-upstream-option), so it reads the live Corefile, adds or
replaces one server block and leaves every other byte as it was.

The parser follows the Caddyfile grammar that CoreDNS uses (coredns/caddy `caddyfile/lexer.go` and `parse.go`, the
same at v1.0.0-v1.1.x; CoreDNS 1.7.0 used caddyserver/caddy v1.0.5, CoreDNS 1.8.0 coredns/caddy v1.1.0):
- tokens are separated by whitespace; `#` starts a comment wherever a token could continue; a `"` at the start of
  a token opens a quoted token (backslash escapes only `"`; newlines allowed inside);
- a server block is keys (zones, optionally `:port`, several per block, a trailing comma continues the key list on the
  next line) followed by `{` (on the same or the next line) and directives up to the matching `}`;
- a directive runs to the end of its line unless it opens `{`, which nests until the matching `}`;
- `import PATTERN` at the start of a line outside a block is an import statement, not a server block;
- `(name) { ... }` defines a snippet.
Brace tokens are recognised by their text alone, as in Caddy. Placeholders (`{$ENV}`, `{remote}`) are ordinary
tokens. Anything the lab cannot place a block into safely is refused with its line number, never mangled.

The `global` block carries, by default, an AAAA guard (CoreDNS `template` plugin answering AAAA for `global` with an
empty NOERROR): istiocoredns answers NXDOMAIN to every AAAA query and musl 1.2.1+ then fails the whole lookup
(docs/sources.md#istiocoredns-plugin, docs/sources.md#musl-paired-query). docs/corefile.md explains the choice.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lab import manifests
from lab.errors import ValidationError
from lab.scenarios.replicated_control_planes.names import SCENARIO

ZONE = "global"
PORT = "53"
# The lab's block caches answers at most this long (`cache 30`, as the Istio 1.7 docs' block:
# docs/sources.md#istio-docs-dns-block).
CACHE_TTL = 30
# The cache plugin's cap when `cache` names no TTL (coredns plugin/cache README: 3600 s for NOERROR answers).
CACHE_DEFAULT_TTL = 3600
# The block as a file (manifests/replicated-control-planes/); ZONE, PORT and CACHE_TTL above are what it says.
BLOCK_TEMPLATE = "coredns-global.Corefile"
BLOCK_TEMPLATE_NOGUARD = "coredns-global-noguard.Corefile"


class CorefileError(ValidationError):
    """A Corefile the lab will not patch (or a bad forward target); `.line` is the 1-based line, or None."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"Corefile line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # offset of the first character (the opening quote for a quoted token)
    end: int  # offset after the last character (after the closing quote)
    line: int
    end_line: int  # differs from `line` only for a quoted token spanning lines
    quoted: bool


@dataclass(frozen=True)
class Block:
    """A server block (or snippet): its keys as written and the text span from its first key to its closing `}`."""

    keys: tuple[str, ...]
    start: int
    end: int
    line: int
    end_line: int
    snippet: bool

    @property
    def serves_global(self) -> bool:
        return not self.snippet and any(_key_serves_global(k, self.line) for k in self.keys)


@dataclass(frozen=True)
class Import:
    pattern: str
    line: int


@dataclass(frozen=True)
class Corefile:
    text: str
    blocks: tuple[Block, ...]
    imports: tuple[Import, ...]

    @property
    def server_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if not b.snippet)


def _is_space(ch: str) -> bool:
    # Go's unicode.IsSpace (the Caddy lexer's test); Python's isspace() also counts \x1c-\x1f, Go does not.
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def _tokens(text: str) -> Iterator[Token]:
    n = len(text)
    i = 1 if text.startswith("\ufeff") else 0  # the Caddy lexer drops a byte order mark
    line = 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif _is_space(ch):
            i += 1
        elif ch == "#":
            nl = text.find("\n", i)
            i = n if nl == -1 else nl
        else:
            token, i = _quoted_token(text, i, line) if ch == '"' else _bare_token(text, i, line)
            line = token.end_line
            yield token


def _quoted_token(text: str, start: int, line: int) -> tuple[Token, int]:
    """The quoted token opening at `start` (on `line`), and the index after its closing quote."""
    n = len(text)
    i, end_line = start + 1, line
    buf: list[str] = []
    escaped = False
    while True:
        if i >= n:
            # Caddy would silently end the token at EOF; anything appended would land inside the string.
            raise CorefileError("a quoted token opened here is never closed", line)
        c = text[i]
        i += 1
        if not escaped and c == "\\":
            escaped = True
            continue
        if not escaped and c == '"':
            break
        if c == "\n":
            end_line += 1
        if escaped and c != '"':
            buf.append("\\")
        buf.append(c)
        escaped = False
    return Token("".join(buf), start, i, line, end_line, True), i


def _bare_token(text: str, start: int, line: int) -> tuple[Token, int]:
    """The unquoted token starting at `start`, and the index where it stops (whitespace, `#` or the end)."""
    # The Caddy lexer skips `\r` without ending a token (only other whitespace ends one), so a lone CR
    # inside a token vanishes from its text; a CR before the newline is not part of the token's span.
    n = len(text)
    i = start
    while i < n and (text[i] == "\r" or not _is_space(text[i])) and text[i] != "#":
        i += 1
    end = i
    while text[end - 1] == "\r":
        end -= 1
    return Token(text[start:end].replace("\r", ""), start, end, line, line, False), i


def parse(text: str) -> Corefile:
    """The server blocks and top-level imports of a Corefile; CorefileError (with the line) where it cannot be read."""
    toks = _checked_tokens(text)

    def new_line(k: int) -> bool:
        return k == 0 or toks[k - 1].end_line < toks[k].line

    blocks: list[Block] = []
    imports: list[Import] = []
    k, n = 0, len(toks)
    while k < n:
        t = toks[k]
        if t.text == "import" and new_line(k):
            imports.append(_import(toks, k, new_line))
            k += 2
            continue
        if t.text == "}":
            raise CorefileError("`}` without a block to close", t.line)
        keys, k = _keys(toks, k, new_line)
        open_tok = toks[k]
        snippet = len(keys) == 1 and keys[0].startswith("(") and keys[0].endswith(")")
        end = _snippet_end if snippet else _directives_end
        k = end(toks, k + 1, open_tok, keys, new_line)
        close = toks[k]
        blocks.append(Block(tuple(keys), t.start, close.end, t.line, close.line, snippet))
        k += 1
    return Corefile(text, tuple(blocks), tuple(imports))


def _checked_tokens(text: str) -> list[Token]:
    """The tokens of a Corefile, refusing a NUL byte and unrendered Go template syntax."""
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise CorefileError("a NUL byte: a Corefile is text; this looks like a binary or damaged file", line)
    toks = list(_tokens(text))
    for t in toks:
        if not t.quoted and "{{" in t.text:
            raise CorefileError(f"Go template syntax {t.text!r}: render the template before patching", t.line)
    return toks


def _import(toks: list[Token], k: int, new_line: Callable[[int], bool]) -> Import:
    """The `import PATTERN` statement at token k (which starts a line outside a block)."""
    t = toks[k]
    if k + 1 >= len(toks) or new_line(k + 1):
        raise CorefileError("`import` needs a file or glob pattern on the same line", t.line)
    if k + 2 < len(toks) and not new_line(k + 2):
        raise CorefileError("`import` takes only one argument", t.line)
    return Import(toks[k + 1].text, t.line)


def _keys(toks: list[Token], k: int, new_line: Callable[[int], bool]) -> tuple[list[str], int]:
    """The keys of the server block starting at token k, and the index of its `{`. A trailing comma continues the
    list, possibly on the next line; the `{` may be on the next line (Caddy accepts both)."""
    n = len(toks)
    first = toks[k]
    keys: list[str] = []
    expecting = False
    while True:
        t = toks[k]
        if t.text == "{":
            if expecting:
                raise CorefileError("a zone was expected after the trailing comma, found `{`", t.line)
            break
        if t.text == "}":
            raise CorefileError("`}` where a zone or `{` was expected", t.line)
        key = t.text
        if key:
            expecting = key.endswith(",")
            keys.append(key[:-1] if expecting else key)
        k += 1
        if k >= n:
            raise CorefileError(f"server block {' '.join(keys)!r} has no `{{ ... }}`", first.line)
        if not expecting and new_line(k):
            if toks[k].text == "{":
                break  # Caddy accepts the brace on the next line
            # Caddy's single-server form without braces: the whole rest of the file is that block.
            raise CorefileError(
                f"server block {' '.join(keys)!r} has no `{{`; the lab only patches Corefiles whose server "
                "blocks are in braces",
                first.line,
            )
    if not keys:
        raise CorefileError("`{` without a zone before it", toks[k].line)
    return keys, k


def _snippet_end(toks: list[Token], k: int, open_tok: Token, keys: list[str],
                 new_line: Callable[[int], bool] | None = None) -> int:
    depth = 1
    while k < len(toks):
        if toks[k].text == "{":
            depth += 1
        elif toks[k].text == "}":
            depth -= 1
            if depth == 0:
                return k
        k += 1
    raise CorefileError(f"snippet {keys[0]} opened here is never closed", open_tok.line)


def _directives_end(toks: list[Token], k: int, open_tok: Token, keys: list[str],
                    new_line: Callable[[int], bool]) -> int:
    """Index of the `}` closing the server block whose body starts at k (Caddy's directives/directive loop)."""
    while True:
        if k >= len(toks):
            raise CorefileError(f"server block {' '.join(keys)!r} opened here is never closed", open_tok.line)
        if toks[k].text == "}":
            return k
        k = _directive_end(toks, k, new_line)


def _directive_end(toks: list[Token], k: int, new_line: Callable[[int], bool]) -> int:
    """Index of the first token after the directive at k: the rest of its line, or up to the `}` closing the block
    it opens."""
    directive = toks[k]
    nesting = 0
    k += 1
    while k < len(toks):
        tt = toks[k]
        if tt.text == "{":
            nesting += 1
        elif new_line(k) and nesting == 0:
            break
        elif tt.text == "}" and nesting > 0:
            nesting -= 1
        elif tt.text == "}":
            raise CorefileError(f"`}}` on the same line as directive {directive.text!r}: CoreDNS refuses it",
                                tt.line)
        k += 1
    if nesting > 0:
        raise CorefileError(f"the block of directive {directive.text!r} opened here is never closed",
                            directive.line)
    return k


def _key_serves_global(key: str, line: int) -> bool:
    """Whether a server block key is the `global` zone on plain DNS port 53 (CoreDNS core/dnsserver normalizeZone)."""
    rest = key
    transport = "dns"
    for prefix in ("dns://", "tls://", "grpc://", "https://"):
        if rest.lower().startswith(prefix):
            transport, rest = prefix[:-3], rest[len(prefix):]
            break
    host, port = rest, ""
    colon = rest.rfind(":")
    if colon != -1:
        tail = rest[colon + 1:]
        if tail.isascii() and tail.isdigit():
            host, port = rest[:colon], str(int(tail))
        elif "{$" in tail or "{%" in tail:
            host, port = rest[:colon], "?"
    # CoreDNS makes the zone fully qualified (dns.Fqdn); the lab also ignores case so that it never adds a second
    # block a reader would take for the same zone.
    if host.lower() not in (ZONE, ZONE + ".") or transport != "dns":
        return False
    if port == "?":
        raise CorefileError(f"cannot tell which port {key!r} serves: resolve its environment placeholder first", line)
    return port in ("", PORT)


def _newline(text: str) -> str:
    i = text.find("\n")
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


def forward_target(value: str) -> str:
    """`IP:53` for the `forward` line; refuses anything but a usable IP literal (the istiocoredns ClusterIP)."""
    v = value.strip()
    hint = ("give the istiocoredns ClusterIP "
            "(kubectl -n istio-system get svc istiocoredns -o jsonpath={.spec.clusterIP})")
    if not v:
        raise CorefileError(f"the forward target is empty; {hint}")
    try:
        ip = ipaddress.ip_address(v)
    except ValueError as err:
        raise CorefileError(f"forward target {v!r} is not an IP literal; {hint}") from err
    if ip.is_unspecified:
        raise CorefileError(f"forward target {v} is the unspecified address; {hint}")
    if ip.is_loopback:
        raise CorefileError(f"forward target {v} is loopback: CoreDNS would forward to itself; {hint}")
    if ip.is_multicast or (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
        raise CorefileError(f"forward target {v} is multicast or broadcast; {hint}")
    return f"{ip}:{PORT}" if ip.version == 4 else f"[{ip}]:{PORT}"


def render_block(forward: str, *, aaaa_guard: bool = True, newline: str = "\n", indent: str = "") -> str:
    """The lab's `global:53` server block, from its key to its closing `}` (no trailing newline): the template
    manifests/replicated-control-planes/coredns-global.Corefile (coredns-global-noguard.Corefile without the AAAA
    guard), its lines joined by `newline` and indented by `indent` as the live Corefile is.

    Plugin order inside a server block is fixed by CoreDNS's plugin.cfg (errors, cache, template, forward at
    v1.7.0 and v1.8.0), not by the order written; it is written in that order for the reader.
    """
    text = manifests.render(BLOCK_TEMPLATE if aaaa_guard else BLOCK_TEMPLATE_NOGUARD, SCENARIO,
                            FORWARD=forward_target(forward))
    lines = text.removesuffix("\n").split("\n")
    return lines[0] + "".join(newline + indent + line for line in lines[1:])


def cache_ttl(block: str) -> int | None:
    """The longest a server block's `cache` plugin keeps an answer: `cache N` -> N, a bare `cache` -> the plugin's
    default cap, no `cache` directive -> None. Only directives of the block itself count (depth 1), never a word
    inside another plugin's sub-block or a comment."""
    depth = 0
    prev: Token | None = None
    toks = list(_tokens(block))
    for i, tok in enumerate(toks):
        if tok.text == "{" and not tok.quoted:
            depth += 1
        elif tok.text == "}" and not tok.quoted:
            depth -= 1
        elif depth == 1 and tok.text == "cache" and (prev is None or prev.end_line < tok.line or prev.text == "{"):
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and nxt.line == tok.line and nxt.text.isdigit():
                return int(nxt.text)
            return CACHE_DEFAULT_TTL
        prev = tok
    return None


def _global_blocks(cf: Corefile) -> list[Block]:
    found = [b for b in cf.blocks if b.serves_global]
    for b in found:
        if len(b.keys) > 1:
            others = ", ".join(k for k in b.keys if not _key_serves_global(k, b.line))
            raise CorefileError(
                f"the block serving {ZONE} also serves {others}; split it into its own block before patching", b.line
            )
    return found


def global_block(text: str) -> str | None:
    """The text of the block serving `global` on port 53 (from its key to its `}`), or None."""
    found = _global_blocks(parse(text))
    return text[found[0].start:found[0].end] if found else None


def patch(text: str, forward: str, *, aaaa_guard: bool = True) -> str:
    """Add the `global:53` block forwarding to `forward`, or replace the block that serves `global`.

    Every byte outside that block stays as it was; patching twice equals patching once.
    """
    forward_target(forward)  # refuse a bad target before reading anything else
    cf = parse(text)
    if not cf.server_blocks:
        # An empty Corefile usually means the read of the ConfigMap failed; the result would drop cluster DNS.
        raise CorefileError("the Corefile has no server block; read the live one from ConfigMap kube-system/coredns")
    found = _global_blocks(cf)
    if len(found) > 1:
        lines = " and ".join(str(b.line) for b in found)
        raise CorefileError(f"blocks at lines {lines} all serve {ZONE}:{PORT} (CoreDNS refuses that); keep one",
                            found[1].line)
    nl = _newline(text)
    if found:
        b = found[0]
        line_start = text.rfind("\n", 0, b.start) + 1
        before = text[line_start:b.start].lstrip("\ufeff")
        indent = before if before.strip() == "" else ""
        return text[:b.start] + render_block(forward, aaaa_guard=aaaa_guard, newline=nl, indent=indent) + text[b.end:]
    block = render_block(forward, aaaa_guard=aaaa_guard, newline=nl)
    if text.endswith("\n"):
        return text + block + nl
    return text + nl + block  # keeps "no trailing newline" and never glues `}global:53`


def unpatch(text: str) -> str:
    """Remove the block serving `global` on port 53; the rest stays byte-identical. No such block: unchanged."""
    for b in reversed(_global_blocks(parse(text))):
        text = _cut(text, b)
    return text


def _cut(text: str, b: Block) -> str:
    line_start = text.rfind("\n", 0, b.start) + 1
    line_end = text.find("\n", b.end)
    before = text[line_start:b.start].lstrip("\ufeff")
    after = text[b.end:len(text) if line_end == -1 else line_end]
    own_lines = before.strip() == "" and (after.strip() == "" or after.lstrip().startswith("#"))
    if not own_lines:
        return text[:b.start] + text[b.end:]
    start = line_start + (len(text[line_start:b.start]) - len(before))  # keep a byte order mark
    if line_end != -1:
        return text[:start] + text[line_end + 1:]
    # The block ends the file without a newline (as patch() appends it to such a file): drop the newline before it.
    if start > 0 and text[start - 1] == "\n":
        start -= 1
        if start > 0 and text[start - 1] == "\r" and _newline(text[:start]) == "\r\n":
            start -= 1
    return text[:start]
