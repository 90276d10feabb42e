"""The plan model: a scenario as data, an ordered list of frozen steps per cluster, built from a profile.

A scenario's package builds the steps (lab/scenarios/<name>/steps.py); this module holds what every scenario builds
them from and what renders them: `lab plan` prints them, `lab plan --shell` renders it as a bash script a person can
replay, and `lab up`
(lab/executor.py) executes the same list. A step names its cluster, the write-up section it implements, what it
runs (a command, a manifest to apply, a check, or a named lab action with parameters) and the steps it needs, so
the executor can build both clusters in parallel wherever nothing orders them.

Values known only at run time (in the 1.7 scenario: the istiocoredns ClusterIP, cluster2's gateway node IP and
nodePort, the sleep pod) are `Lookup` tokens: a kubectl jsonpath query that the executor runs and the shell script
writes as
`$(kubectl ... -o jsonpath=...)`, the way the write-up does (jsonpaths: docs/sources.md#istio-recipes-lookups).
Paths are `File` tokens relative to `$LAB_HOME` or `$ISTIO_DIR`, so the plan itself does not depend on where
things live on this machine.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from functools import singledispatch
from pathlib import Path
from typing import ClassVar

import yaml

from lab import images as lab_images
from lab import kind, manifests
from lab.errors import ValidationError
from lab.profile import ClusterBase, ProfileBase
from lab.settings import TIMEOUTS
from lab.tokens import Concat, Context, DockerPlatform, File, Kubeconfig, Lookup, Token

SHELL_BASES = ("LAB_HOME", "ISTIO_DIR")
# The script's variable for a DockerPlatform token: asked once in its header, then used by every pull and save.
DOCKER_PLATFORM_VAR = "DOCKER_PLATFORM"
# `kubectl apply` flags for Secrets that carry keys (see `_shell_manifest` and lab.executor.apply).
SERVER_SIDE_APPLY = ("--server-side", "--force-conflicts", "--field-manager=istio-multicluster-lab")


# --- argv tokens (lab/tokens.py) -------------------------------------------------------------------

def kubectl(cluster: ClusterBase, *args: Token) -> tuple[Token, ...]:
    """argv of kubectl naming the cluster's own kubeconfig and context explicitly."""
    return ("kubectl", "--kubeconfig", Kubeconfig(cluster.name), "--context", Context(cluster.name, cluster.context),
            *args)


def lookup(cluster: ClusterBase, *args: str, jsonpath: str, what: str) -> Lookup:
    return Lookup(cluster.name, cluster.context, tuple(args), jsonpath, what)


# --- what a step runs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """An argv to run. `writes` are files (path, text) written first; `timeout` bounds the command; `env` is added
    to its environment (the shell script writes it as `NAME=value command ...`)."""

    argv: tuple[Token, ...]
    writes: tuple[tuple[File, str], ...] = ()
    timeout: float = TIMEOUTS.command
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Text:
    """A manifest the plan renders itself (validated in tests against the real schemas)."""

    yaml: str


@dataclass(frozen=True)
class Sample:
    """A manifest from the Istio release, with image references replaced by the profile's choice."""

    file: File
    images: tuple[tuple[str, str], ...] = ()  # (as written in the sample, what the profile runs)


@dataclass(frozen=True)
class SecretFromFiles:
    """A generic Secret whose keys are file names and values the files' bytes, as `kubectl create secret
    generic --from-file` makes it. Rendered from the files at run time and sent on stdin: key material is
    never on a command line nor in the plan."""

    name: str
    namespace: str
    files: tuple[File, ...]


@dataclass(frozen=True, init=False)
class Template:
    """A manifest that is a plain template file, applied as rendered (nothing changed in code):
    manifests/<scenario>/<name> with `vars` filled in. `lab up` renders it with lab.manifests.render; the script
    pipes the file through `envsubst '$VAR ...'` (`shell_template`). The variables are checked when the step is
    built: exactly the template's, values a manifest can hold, a file envsubst fills as the lab does."""

    scenario: str
    name: str
    vars: tuple[tuple[str, str], ...]  # (variable, value), sorted by variable

    def __init__(self, scenario: str, name: str, vars: Mapping[str, str | int]) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", scenario) or \
                not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValueError(f"bad Template({scenario!r}, {name!r})")
        manifests.render(name, scenario, **vars)  # ManifestError: a missing or extra variable, an unsafe value
        manifests.check_envsubst(name, scenario)
        object.__setattr__(self, "scenario", scenario)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "vars", tuple(sorted((k, str(v)) for k, v in vars.items())))

    @property
    def yaml(self) -> str:
        """The manifest as `lab up` applies it."""
        return manifests.render(self.name, self.scenario, **dict(self.vars))

    @property
    def path(self) -> str:
        """The file as the script names it."""
        return f"$LAB_REPO/manifests/{self.scenario}/{self.name}"


@dataclass(frozen=True)
class Manifest:
    """`kubectl apply` of a manifest on a cluster (apply semantics: re-running is safe)."""

    cluster: str
    source: Text | Template | Sample | SecretFromFiles
    namespace: str | None = None


class ExpectKind(str, Enum):
    """What a check compares: the exit code, stdout, curl's HTTP status, or nslookup's addresses."""

    EXIT0 = "exit0"
    EQUALS = "equals"
    HTTP = "http"
    RESOLVES = "resolves"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass(frozen=True)
class Expect:
    """What a check waits for: `exit0`, `equals` (stdout), `http` (curl status), `resolves` (nslookup address)."""

    kind: ExpectKind
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ExpectKind(self.kind))  # a kind's name is refused unless it is one

    def describe(self) -> str:
        return {
            ExpectKind.EXIT0: "exit code 0",
            ExpectKind.EQUALS: f"output {self.value!r}",
            ExpectKind.HTTP: f"HTTP {self.value}",
            ExpectKind.RESOLVES: f"an A record {self.value}",
        }[self.kind]


@dataclass(frozen=True)
class Check:
    """A command whose result must meet `expect` within `timeout` seconds (polled; a single try if 0)."""

    argv: tuple[Token, ...]
    expect: Expect
    timeout: float = TIMEOUTS.rollout


# --- lab actions: what the executor does in-process and the shell script writes as equivalent commands --------
# One frozen dataclass per action. Three functions dispatch on the type (functools.singledispatch): `describe_action`
# and `shell_action` here, `perform` in lab/perform.py; an action type registers its implementation of each beside
# it, so the code that runs a plan never names an action.
@dataclass(frozen=True)
class Action:
    """A lab action. `name` is its name in `lab plan`; a `self_checking` action looks before it acts and changes
    nothing when all is in place, so it runs on every `lab up` (lab/perform.py)."""

    name: ClassVar[str]
    self_checking: ClassVar[bool] = False
    computes: ClassVar[str] = ""  # what value its shell form computes with plain commands (the script's header)
    python: ClassVar[str] = ""  # the `python3 -m lab ...` command its shell form runs instead, if any (the header)


@dataclass(frozen=True)
class CreateCluster(Action):
    """Create (or reuse) a kind cluster through the provider; `argv` and `config_text` are what it runs."""

    name: ClassVar[str] = "kind.create"
    self_checking: ClassVar[bool] = True
    cluster: str
    argv: tuple[Token, ...]
    config: File
    config_text: str
    node: str  # the node container (the profile's kernel modules are loaded through it)
    dns_check: str  # the node container to check for kind #3054, or ""
    modules: tuple[str, ...] = ()  # the kernel modules the scenario's sidecars need (ProfileBase.kernel_modules)
    modules_for: str = ""  # who needs them, for the message (ProfileBase.kernel_modules_for)


@dataclass(frozen=True)
class PullImages(Action):
    """`docker pull` each image the host does not have yet."""

    name: ClassVar[str] = "images.pull"
    images: tuple[str, ...]
    platform: Token  # lab.images.platform_for(profile): linux/amd64, or the engine's own (DockerPlatform)


@dataclass(frozen=True)
class LoadImages(Action):
    """`kind load docker-image` the images into a cluster (with the one-platform archive fallback)."""

    name: ClassVar[str] = "images.load"
    cluster: str
    images: tuple[str, ...]
    platform: Token  # what the archive fallback saves: the platform PullImages pulled


@dataclass(frozen=True)
class GenerateCerts(Action):
    """A shared root CA in `out` and one intermediate CA per cluster (lab/certs.py)."""

    name: ClassVar[str] = "certs.generate"
    python: ClassVar[str] = "python3 -m lab certs generate"
    out: File
    clusters: tuple[str, ...]



Run = Command | Manifest | Check | Action


@dataclass(frozen=True)
class Step:
    id: str  # "<cluster>/<name>" or "host/<name>"
    cluster: str | None
    section: str  # the write-up section this step implements
    title: str
    run: Run
    needs: tuple[str, ...] = ()
    phase: str = ""
    verify: Check | None = None  # a cheap check that the step's effect is in place (for fast re-runs)


def default_istio_dir(profile: ProfileBase) -> Path:
    """Where `lab up` keeps the unpacked Istio release (lab.tools' cache); used for `lab plan` without downloading."""
    from lab import tools

    return tools.cache_dir() / f"istio-{profile.istio_version}"


@dataclass(frozen=True)
class Paths:
    """Where the lab keeps its state ($LAB_HOME), where the Istio release is unpacked ($ISTIO_DIR) and the checkout
    whose manifests/ the script's envsubst lines read ($LAB_REPO; the lab itself renders lab.manifests.ROOT)."""

    home: Path
    istio_dir: Path
    repo: Path = manifests.REPO

    def resolve(self, f: File) -> Path:
        return (self.home if f.base == "LAB_HOME" else self.istio_dir) / f.rel


def cluster_steps(profile: ProfileBase, c: ClusterBase, image_list: tuple[str, ...], config_text: str,
                  section: str) -> list[Step]:
    """The steps that make cluster `c` with the scenario's kind config `config_text` (phase "clusters"): create it
    through the provider and, when the profile loads images, `kind load` them (after the host's `host/images-pull`)."""
    n = c.name
    config = File("LAB_HOME", f"kind/{n}.yaml")
    argv = tuple(kind.create_argv("kind", c, profile, config, Kubeconfig(n)))
    steps = [Step(
        f"{n}/cluster", n, section, f"kind create cluster {n} ({profile.node_image.split('@')[0]})",
        # Done by the provider (lab.kind: creation, then its checks); `argv` and `config_text` are what it
        # runs, for the plan and the shell script.
        CreateCluster(n, argv, config, config_text, kind.node_container(c),
                      kind.node_container(c) if kind.needs_dns_check(profile) else "",
                      profile.kernel_modules, profile.kernel_modules_for),
        phase="clusters")]
    if profile.load_images:
        steps.append(Step(
            f"{n}/images-load", n, section, f"load the images into {n} (kind load docker-image)",
            LoadImages(n, image_list, lab_images.platform_for(profile)),
            needs=(f"{n}/cluster", "host/images-pull"), phase="clusters"))
    return steps


def same_image(a: str, b: str) -> bool:
    """Whether two references name the same image the way containerd normalises them (docker.io/library, :latest)."""
    return _normalise(a) == _normalise(b)


def _normalise(ref: str) -> str:
    name, digest = (ref.split("@", 1) + [""])[:2]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    return name + ("@" + digest if digest else "")


def check_order(steps: Sequence[Step]) -> None:
    """Step ids are unique and every step's needs come before it (the executor relies on it)."""
    seen: set[str] = set()
    for s in steps:
        if s.id in seen:
            raise ValueError(f"duplicate step id {s.id}")
        unknown = [n for n in s.needs if n not in seen]
        if unknown:
            raise ValueError(f"step {s.id} needs {unknown}, which do not come before it")
        seen.add(s.id)


# --- rendering --------------------------------------------------------------------------------------------
def describe(run: Run) -> str:
    """One line saying what a step runs (for `lab plan`)."""
    if isinstance(run, Command):
        return _plain(run.argv)
    if isinstance(run, Check):
        return f"{_plain(run.argv)}  => expect {run.expect.describe()}"
    if isinstance(run, Manifest):
        src = run.source
        ns = f" -n {run.namespace}" if run.namespace else ""
        if isinstance(src, (Text, Template)):
            kinds = [f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(src.yaml) if d]
            source = f" from {src.path}" if isinstance(src, Template) else ""
            return f"kubectl apply{ns} ({', '.join(kinds)}){source}"
        if isinstance(src, Sample):
            swap = "".join(f" with image {new}" for _, new in src.images)
            return f"kubectl apply{ns} -f ${src.file.base}/{src.file.rel}{swap}"
        return (f"kubectl create secret generic {src.name} -n {src.namespace} "
                + " ".join(f"--from-file=${f.base}/{f.rel}" for f in src.files) + " (applied)")
    return describe_action(run)


@singledispatch
def describe_action(action: Action) -> str:
    """One line for `lab plan`: by default the action's name and its fields."""
    params = ", ".join(f"{f.name}={_plain_value(getattr(action, f.name))}" for f in fields(action))
    return f"lab action {action.name}({params})"


@describe_action.register
def _(action: CreateCluster) -> str:
    return _plain(action.argv)


@describe_action.register
def _(action: PullImages) -> str:
    return f"docker pull{_platform_note(action.platform)} (each missing one): {', '.join(action.images)}"


@describe_action.register
def _(action: LoadImages) -> str:
    note = _platform_note(action.platform)
    return f"kind load docker-image --name {action.cluster}{note}: {', '.join(action.images)}"


def _platform_note(platform: Token) -> str:
    """How `lab plan` names a platform other than linux/amd64 (the 1.7 scenario's listing never named that one)."""
    return "" if platform == lab_images.PLATFORM else f" as {_plain((platform,))}"


def _plain_value(v: object) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_plain_value(x) for x in v) + "]"
    if isinstance(v, (Kubeconfig, Context, File, Lookup, DockerPlatform, Concat)):
        return _plain((v,))
    return str(v)


def _plain(argv: Iterable[Token]) -> str:
    out = []
    for t in argv:
        if isinstance(t, Kubeconfig):
            out.append(f"$LAB_HOME/kubeconfig/{t.cluster}")
        elif isinstance(t, Context):
            out.append(t.name)
        elif isinstance(t, File):
            out.append(f"${t.base}/{t.rel}")
        elif isinstance(t, Lookup):
            out.append(f"<{t.what}>")
        elif isinstance(t, DockerPlatform):
            out.append(f"<the Docker engine's platform: {' or '.join(t.accepted)}>")
        elif isinstance(t, Concat):
            out.append("".join(_plain((p,)) for p in t.parts))
        else:
            out.append(t if re.fullmatch(r"[\w@%+=:,./{}\[\]?()'-]+", t) else shlex.quote(t))
    return " ".join(out)


def render_text(steps: Sequence[Step]) -> str:
    """`lab plan`: every step in order with its number, cluster, id, title and write-up section."""
    lines = []
    width = max(len(s.id) for s in steps)
    for i, s in enumerate(steps, 1):
        lines.append(f"{i:2d}. [{s.cluster or 'host'}] {s.id:<{width}}  {s.title}")
        lines.append(f"      write-up: {s.section}")
        lines.append(f"      runs:     {describe(s.run)}")
        if s.needs and s is not steps[-1]:
            lines.append(f"      after:    {', '.join(s.needs)}")
        elif s.needs:
            lines.append("      after:    every step above")
    return "\n".join(lines) + "\n"


def var_suffix(cluster: str) -> str:
    return re.sub(r"\W", "_", cluster.upper())


def shell_word(t: Token) -> str:
    if isinstance(t, Kubeconfig):
        return f'"$KUBECONFIG_{var_suffix(t.cluster)}"'
    if isinstance(t, Context):
        return f'"$CTX_{var_suffix(t.cluster)}"'
    if isinstance(t, File):
        return f'"${t.base}/{t.rel}"'
    if isinstance(t, Lookup):
        inner = kubectl_for_lookup(t)
        return '"$(' + " ".join(shell_word(x) for x in inner) + ')"'
    if isinstance(t, DockerPlatform):
        return f'"${DOCKER_PLATFORM_VAR}"'  # set once in the script's header (`_docker_platform_lines`)
    if isinstance(t, Concat):
        return "".join(shell_word(p) for p in t.parts)
    return shlex.quote(t)


def kubectl_for_lookup(t: Lookup) -> tuple[Token, ...]:
    return ("kubectl", "--kubeconfig", Kubeconfig(t.cluster), "--context", Context(t.cluster, t.context), "get",
            *t.args, "-o", f"jsonpath={t.jsonpath}")


def shell_argv(argv: Iterable[Token]) -> str:
    return " ".join(shell_word(t) for t in argv)


def heredoc(text: str) -> str:
    if not text.endswith("\n"):
        text += "\n"
    if "\nLAB_EOF\n" in "\n" + text:
        raise ValueError("manifest contains the heredoc delimiter")
    return f"<<'LAB_EOF'\n{text}LAB_EOF"


def kubectl_argv_of(cluster: str, contexts: Mapping[str, str]) -> tuple[Token, ...]:
    return ("kubectl", "--kubeconfig", Kubeconfig(cluster), "--context", Context(cluster, contexts[cluster]))


def _write_file(f: File, text: str) -> list[str]:
    parent = f.rel.rsplit("/", 1)[0] if "/" in f.rel else ""
    mk = [f'mkdir -p "${f.base}/{parent}"'] if parent else []
    return [*mk, f"cat > {shell_word(f)} {heredoc(text)}"]


def _shell_lines(step: Step, contexts: Mapping[str, str]) -> list[str]:
    run = step.run
    if isinstance(run, Command):
        lines: list[str] = []
        for f, text in run.writes:
            lines += _write_file(f, text)
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in run.env)
        return lines + [env + shell_argv(run.argv)]
    if isinstance(run, Check):
        return [f"# expect: {run.expect.describe()}", shell_argv(run.argv)]
    if isinstance(run, Manifest):
        k = kubectl_argv_of(run.cluster, contexts)
        ns = ("-n", run.namespace) if run.namespace else ()
        src = run.source
        if isinstance(src, Text):
            return [f"{shell_argv((*k, 'apply', *ns, '-f', '-'))} {heredoc(src.yaml)}"]
        if isinstance(src, Template):
            return [f"{shell_template(src)} | {shell_argv((*k, 'apply', *ns, '-f', '-'))}"]
        if isinstance(src, Sample):
            if not src.images:
                return [shell_argv((*k, "apply", *ns, "-f", src.file))]
            seds = " ".join(f"-e {shlex.quote(_sed_image(old, new))}" for old, new in src.images)
            return [f"sed {seds} {shell_word(src.file)} | {shell_argv((*k, 'apply', *ns, '-f', '-'))}"]
        files = [x for f in src.files for x in ("--from-file", f)]
        create = (*k, "-n", src.namespace, "create", "secret", "generic", src.name, *files,
                  "--dry-run=client", "-o", "yaml")
        # Server-side apply: a client-side apply would copy the CA key into the
        # kubectl.kubernetes.io/last-applied-configuration annotation, readable by anyone who can read the Secret's
        # metadata. SERVER_SIDE_APPLY stores only field ownership.
        return [f"{shell_argv(create)} | {shell_argv((*k, 'apply', *SERVER_SIDE_APPLY, '-f', '-'))}"]
    return shell_action(run, contexts)


def shell_template(t: Template) -> str:
    """The command that writes template `t` filled in on stdout: its variables (shell-quoted, in the environment of
    envsubst alone, so that generic names such as NAME or PORT do not stay exported for the rest of the script),
    then `envsubst` limited to exactly those variables, reading the file from $LAB_REPO. The header comments go
    through too (kubectl ignores them). A template without variables is the file itself: `cat`, no envsubst."""
    if not t.vars:
        return f'cat "{t.path}"'
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in t.vars)
    names = " ".join(f"${k}" for k, _ in t.vars)
    return f'{assigns} \\\n  envsubst {shlex.quote(names)} < "{t.path}"'


def uses_templates(steps: Iterable[Step]) -> bool:
    """Whether a step's run holds a Template (a Manifest's source, or a field of an action whose shell form calls
    `shell_template`): the script then needs $LAB_REPO and envsubst."""
    return any(isinstance(v, Template) for s in steps for v in values_of(s.run))


def values_of(v: object) -> Iterator[object]:
    """`v` and everything it holds, depth first: the items of tuples and the fields of dataclass instances (a step's
    run, its tokens, a Template). What the script's header needs is found by looking for a type among them."""
    yield v
    if isinstance(v, tuple):
        for x in v:
            yield from values_of(x)
    elif is_dataclass(v) and not isinstance(v, type):
        for f in fields(v):
            yield from values_of(getattr(v, f.name))


def _sed_image(old: str, new: str) -> str:
    if re.search(r"[|&\\\s]", old + new):
        raise ValidationError(f"image reference {new!r} has characters the lab cannot put in a sed expression")
    return f"s|image: {re.escape(old)}$|image: {new}|"


@singledispatch
def shell_action(action: Action, contexts: Mapping[str, str]) -> list[str]:
    """The shell script's lines for a lab action: plain commands that do what the executor does."""
    raise TypeError(f"no shell form for lab action {action.name}")


@shell_action.register
def _(action: CreateCluster, contexts: Mapping[str, str]) -> list[str]:
    cluster = action.cluster
    k = kubectl_argv_of(cluster, contexts)
    # the provider runs this argv (kind waits for nothing by default); the lab waits for the node.
    # Re-runnable like the lab: an existing cluster of that name is reused. (No `grep -q`: exiting early
    # could SIGPIPE kind, and with pipefail the cluster would be created a second time.)
    lines = [*_write_file(action.config, action.config_text),
             f"kind get clusters | grep -x {shlex.quote(cluster)} >/dev/null || "
             f"{shell_argv(action.argv)}",
             shell_argv((*k, "wait", "--for=condition=Ready", "node", "--all",
                       f"--timeout={int(TIMEOUTS.kind_create)}s"))]
    # As the provider does after creating the node (lab.kind load_modules): the kernel modules the scenario's
    # sidecars need (Istio 1.7's istio-init: the legacy iptables ones), which a pod's network namespace cannot load
    # on demand.
    if action.modules:
        modprobe = " ".join(shlex.quote(a) for a in kind.modprobe_argv(action.node, action.modules))
        lines += [f"{modprobe} \\",
                  f"  || {{ echo 'cannot load the legacy iptables modules {action.modules_for} needs: run `sudo "
                  f"modprobe -a {' '.join(action.modules)}` on the Docker host' >&2; exit 1; }}"]
    node = action.dns_check
    if node:
        # kind #3054 (node images before kind v0.18): Docker's DNS DNAT rules in the node lose `--dport 53`
        # on hosts with iptables 1.8.8+ in nf_tables mode; lab.kind.dns_dnat_problem is the lab's check.
        lines += ["# kind #3054: in nodes before kind v0.18, Docker's DNS DNAT rules must still carry --dport 53",
                  f"if docker exec {shlex.quote(node)} iptables-save -t nat | grep -e '-A DOCKER_OUTPUT' "
                  "| grep -e '-j DNAT' | grep -qv -e '--dport 53'; then",
                  f"  echo 'kind #3054: DNS DNAT rules in {node} lost --dport 53; use the default profile' >&2",
                  "  exit 1", "fi"]
    return lines


@shell_action.register
def _(action: PullImages, contexts: Mapping[str, str]) -> list[str]:
    return [shell_argv(lab_images.pull_argv(i, action.platform)) for i in action.images]


@shell_action.register
def _(action: LoadImages, contexts: Mapping[str, str]) -> list[str]:
    return _shell_images_load(action.cluster, action.images, action.platform)


@shell_action.register
def _(action: GenerateCerts, contexts: Mapping[str, str]) -> list[str]:
    clusters = shlex.quote(",".join(action.clusters))
    # The one step that needs the lab's Python (profile cert_source=generated only; the header says so).
    return [f"python3 -m lab certs generate --out {shell_word(action.out)} --clusters {clusters}"]


def _shell_images_load(cluster: str, images: Sequence[str], platform: Token) -> list[str]:
    """What lab.kind.KindProvider.load_images does, per image: `kind load docker-image`, and when that fails (Docker
    29's containerd image store and multi-platform images, kind #3795/#4066) the one-platform archive fallback."""
    archive = File("LAB_HOME", f"tmp/image-{cluster}.tar")
    spec = ClusterBase(cluster, "", "", "")
    which = (f"the {platform} image" if isinstance(platform, str)
             else f"the image for the engine's platform (${DOCKER_PLATFORM_VAR})")
    lines = ['mkdir -p "$LAB_HOME/tmp"',
             f"# if `kind load docker-image` fails (kind #3795), save {which} and load the archive"]
    for image in images:
        load = shell_argv(kind.load_argv("kind", spec, image))
        fallback = " && ".join(shell_argv(a) for a in kind.archive_load_argvs("kind", spec, image, archive, platform))
        lines.append(f"{load} \\\n  || {{ {fallback} && rm -f {shell_word(archive)}; }}")
    return lines


# The variables the script's lookups export, named as in the write-up ("暴露cluster2的网关地址").
def contexts_of(steps: Iterable[Step]) -> dict[str, str]:
    """cluster -> context, from the Context and Lookup tokens the steps carry (in first-seen order)."""
    out: dict[str, str] = {}
    for v in (v for s in steps for v in values_of(s.run)):
        if isinstance(v, Context):
            out.setdefault(v.cluster, v.name)
        elif isinstance(v, Lookup):
            out.setdefault(v.cluster, v.context)
    return out


def docker_platforms_of(steps: Iterable[Step]) -> list[DockerPlatform]:
    """The distinct DockerPlatform tokens the steps carry (in first-seen order; none in the 1.7 scenario)."""
    found = (v for s in steps for v in values_of(s.run) if isinstance(v, DockerPlatform))
    return list(dict.fromkeys(found))


def _docker_platform_lines(steps: Sequence[Step]) -> list[str]:
    """The header lines that set $DOCKER_PLATFORM once, as `lab up` asks the engine once per run (lab.perform
    Env.resolve), and stop with the same one line when the engine's platform is not one the images are published
    for."""
    tokens = docker_platforms_of(steps)
    if not tokens:
        return []
    if len(tokens) > 1:
        raise ValueError(f"steps disagree on the accepted platforms: {tokens}")
    accepted = tokens[0].accepted
    problem = lab_images.platform_problem(f"${DOCKER_PLATFORM_VAR}", accepted)
    if problem is None or re.search(r'["`\\]', problem):
        raise ValueError(f"cannot echo {problem!r} in double quotes")
    return ["# the Docker engine's platform (Go's GOOS/GOARCH, e.g. linux/arm64 on Apple Silicon), asked once: every",
            "# image is pulled and saved as it (docs/platform.md, Images)",
            f'{DOCKER_PLATFORM_VAR}="$({shell_argv(lab_images.DOCKER_PLATFORM_ARGV)})"',
            f'case "${DOCKER_PLATFORM_VAR}" in',
            f"  {'|'.join(accepted)}) ;;",
            f'  *) echo "{problem}" >&2; exit 1 ;;',
            "esac"]


def render_shell(steps: Sequence[Step], paths: Paths | None = None, *, title: str = "lab up",
                 unset: bool = False) -> str:
    """The plan as a bash script a person can replay by hand, top to bottom (the lab runs clusters in parallel)."""
    contexts = contexts_of(steps)
    home = str(paths.home) if paths else ".lab"
    istio_dir = str(paths.istio_dir) if paths else "istio"
    templates = uses_templates(steps)
    needs = "# Needs kind, kubectl, istioctl (the profile's versions; `make lab-up` downloads them), docker, sed, tail"
    needs_lines = [needs + ",", "# and envsubst (GNU gettext; Debian/Ubuntu: gettext-base) for the lab's manifests/ "
                   "templates."] if templates else [needs + "."]
    lines = [
        "#!/usr/bin/env bash",
        f"# {title}, as commands a person can replay (generated by `python -m lab plan --shell`).",
        *needs_lines,
        "# Every kubectl/istioctl names its cluster: the lab's own kubeconfig files, never ~/.kube/config.",
        *_python_note(steps),
        "set -euo pipefail",
        f"export LAB_HOME=\"${{LAB_HOME:-{_dq(home)}}}\"",
        f"export ISTIO_DIR=\"${{ISTIO_DIR:-{_dq(istio_dir)}}}\"",
    ]
    if templates:
        repo = str(paths.repo) if paths else "."
        lines += ["# the lab's checkout: envsubst fills the templates of its manifests/ folder (manifests/README.md)",
                  f"export LAB_REPO=\"${{LAB_REPO:-{_dq(repo)}}}\""]
    for cluster, ctx in contexts.items():
        v = var_suffix(cluster)
        lines.append(f'export CTX_{v}={shlex.quote(ctx)}')
        lines.append(f'export KUBECONFIG_{v}="$LAB_HOME/kubeconfig/{cluster}"')
    if contexts:
        # The write-up reads both contexts from one kubectl config; this merged view serves ad-hoc commands.
        joined = ":".join(f"$KUBECONFIG_{var_suffix(c)}" for c in contexts)
        lines.append(f'export KUBECONFIG="{joined}"')
    lines += _docker_platform_lines(steps)
    lines.append('mkdir -p "$LAB_HOME/kubeconfig"')
    section = None
    for i, s in enumerate(steps, 1):
        lines.append("")
        if s.section != section:
            lines.append(f"# === {s.section}")
            section = s.section
        lines.append(f"# {i}. [{s.cluster or 'host'}] {s.id}: {s.title}")
        lines += _shell_lines(s, contexts)
    if unset:
        names = [f"{p}_{var_suffix(c)}" for c in contexts for p in ("CTX", "KUBECONFIG")]
        lines += ["", "# the write-up's last line: forget the variables this script exported",
                  "unset " + " ".join([*names, "KUBECONFIG"])]
    return "\n".join(lines) + "\n"


def _python_note(steps: Sequence[Step]) -> list[str]:
    pythons = sorted({s.run.python for s in steps if isinstance(s.run, Action)} - {""})
    if pythons:
        listed = ", ".join(f"`{p}`" for p in pythons)
        return [f"# Runs no Python except {listed}: run the script from",
                "# the repository's root with its virtual environment active (`. .venv/bin/activate`)."]
    computed = sorted({s.run.computes for s in steps if isinstance(s.run, Action)} - {""})
    what = f" ({', '.join(computed)})" if computed else ""
    return [f"# Runs no Python: every value it computes{what} is written by plain commands."]


def _dq(text: str) -> str:
    return re.sub(r'(["\\$`])', r"\\\1", text)


def to_json(steps: Sequence[Step]) -> str:
    """The plan as JSON (for tools): id, cluster, section, title, phase, needs and a one-line description."""
    return json.dumps([{"id": s.id, "cluster": s.cluster, "section": s.section, "title": s.title, "phase": s.phase,
                        "needs": list(s.needs), "runs": describe(s.run)} for s in steps], ensure_ascii=False,
                      indent=2) + "\n"
