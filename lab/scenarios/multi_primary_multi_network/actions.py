"""The multi-primary-multi-network scenario's own lab actions: what `lab up` does in-process (`perform`) and the
commands the replayable script writes instead (`shell_action`), one `functools.singledispatch` registration each
beside the action (the engine's lab/plan.py and lab/perform.py dispatch on the type); and `lab metallb-pool`, the
filter the script's MetalLB step runs.

- DownloadPinned: MetalLB's native manifest, fetched once into $LAB_HOME and checked against the sha256 the lab pins
  (MetalLB publishes no checksum file for it; lab.tools.download_pinned).
- ApplyMetalLBPool: the cluster's IPAddressPool and L2Advertisement, whose addresses are its slice of the `kind`
  Docker network (lab/scenarios/multi_primary_multi_network/metallb.py), known only once the network exists;
  applied again while MetalLB's validating webhook still refuses it.
- InstallEastWest: `istioctl install` of the east-west gateway; without MetalLB with `spec.externalIPs` set to the
  node's own address on the kind network (metallb.fallback_address checks it).
- CreateRemoteSecret: `istioctl create-remote-secret` of one cluster, applied to another; the server is the source
  cluster's control-plane address on the kind network, never 127.0.0.1 (istio#31081). The Secret's content (a
  service-account token) is never printed, logged or put in an annotation: it goes from istioctl's stdout to
  `kubectl apply --server-side` on stdin, and every value of it is redacted from error messages.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from lab import manifests, tools
from lab.cliargs import read_input
from lab.errors import CommandError, LabError, ValidationError
from lab.files import atomic_write
from lab.perform import Env, apply, perform
from lab.plan import (
    SERVER_SIDE_APPLY,
    Action,
    Command,
    Step,
    describe,
    describe_action,
    heredoc,
    kubectl_argv_of,
    shell_action,
    shell_argv,
    shell_word,
    var_suffix,
)
from lab.retry import NotYet
from lab.scenarios.multi_primary_multi_network import istio, metallb, names
from lab.scenarios.multi_primary_multi_network.names import SCENARIO
from lab.settings import TIMEOUTS
from lab.tokens import Context, File, Kubeconfig, Lookup, Token

POOL_TEMPLATE = "metallb-pool.yaml"
# The API server's answer while MetalLB's webhook Service has no ready endpoint yet (k8s.io/apiserver
# pkg/admission/plugin/webhook/errors: `failed calling webhook "<name>": ...`).
WEBHOOK_REFUSAL = "failed calling webhook"
SHELL_ATTEMPTS = 30  # the script's retries of the pool (2 s apart: a minute, as the executor's poll allows more)


def pool_name(cluster: str) -> str:
    return f"lab-{cluster}"


def pool_manifest(cluster: str, chosen: metallb.Slice) -> str:
    """manifests/multi-primary-multi-network/metallb-pool.yaml for the cluster's slice."""
    return manifests.render(POOL_TEMPLATE, SCENARIO, NAME=pool_name(cluster), ADDRESSES=chosen.range)


def slice_of(inspect_json: str, cluster: str, clusters: Sequence[str]) -> metallb.Slice:
    """The cluster's MetalLB slice, from `docker network inspect kind` output (ValidationError, one line)."""
    if cluster not in clusters:
        raise ValidationError(f"cluster {cluster!r} is not one of {', '.join(clusters)}")
    chosen = metallb.slices(metallb.parse_inspect(inspect_json), list(clusters))
    return next(s for s in chosen if s.cluster == cluster)


def api_server_address(value: str, cluster: str) -> str:
    """The control-plane address a remote secret names: an IP literal, never a loopback one (istio#31081)."""
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValidationError(f"{cluster}'s control-plane address {value!r} is not an IP address") from None
    if addr.is_loopback or addr.is_unspecified:
        raise ValidationError(f"{cluster}'s control-plane address is {addr}: the other cluster's istiod would call "
                              "itself (istio#31081); the remote secret needs the node's address on the kind network")
    return str(addr)


def remote_secret_values(text: str, source: str) -> tuple[str, list[str]]:
    """(the Secret as YAML, the strings to redact) from `istioctl create-remote-secret` output; LabError when it is
    not the one Secret istioctl 1.30.3 prints (remote_secret.go: a v1 Secret in istio-system with stringData)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError:
        raise LabError(f"istioctl create-remote-secret for {source} printed no YAML; run it by hand to see why") \
            from None
    want = names.remote_secret_name(source)
    if len(docs) != 1 or not isinstance(docs[0], dict) or docs[0].get("kind") != "Secret" or \
            (docs[0].get("metadata") or {}).get("name") != want:
        raise LabError(f"istioctl create-remote-secret for {source} did not print one Secret {want}")
    secret = docs[0]
    data = {**(secret.get("stringData") or {}), **(secret.get("data") or {})}
    redact = [str(v) for v in data.values() if v]
    for value in list(redact):  # the kubeconfig's token on its own, as an error message might quote it
        try:
            redact += _tokens(yaml.safe_load(value))
        except yaml.YAMLError:
            continue
    return yaml.safe_dump(secret, sort_keys=False), redact


def _tokens(obj: object) -> list[str]:
    if isinstance(obj, dict):
        found = [str(v) for k, v in obj.items() if k == "token" and v]
        return found + [t for v in obj.values() for t in _tokens(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in _tokens(v)]
    return []


# --- the actions -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadPinned(Action):
    """Download `url` to `dest` unless it is there with `sha256`; refuse any other digest."""

    name: ClassVar[str] = "download.pinned"
    self_checking: ClassVar[bool] = True  # one file read: a deleted or altered copy is fetched again
    url: str
    sha256: str
    dest: File


@dataclass(frozen=True)
class ApplyMetalLBPool(Action):
    """The cluster's IPAddressPool + L2Advertisement (`name`) on its slice of the kind network among `clusters`."""

    name: ClassVar[str] = "metallb.pool"
    python: ClassVar[str] = "python3 -m lab metallb-pool"
    cluster: str
    clusters: tuple[str, ...]
    pool: str


@dataclass(frozen=True)
class InstallEastWest(Action):
    """`argv` (istioctl install of `file`, written from `text`); with `node_ip`, plus `--set` of the Service's
    spec.externalIPs to that address, checked against the kind network first."""

    name: ClassVar[str] = "istio.eastwest"
    computes: ClassVar[str] = "the east-west gateway's fallback address"
    cluster: str
    argv: tuple[Token, ...]
    file: File
    text: str
    node_ip: Lookup | None
    timeout: float


@dataclass(frozen=True)
class CreateRemoteSecret(Action):
    """`istioctl create-remote-secret` of cluster `source` (server https://<`server`>:6443), applied to `cluster`."""

    name: ClassVar[str] = "istio.remote-secret"
    computes: ClassVar[str] = "the remote secret's server address"
    cluster: str  # where the Secret goes
    source: str  # whose API server it opens
    source_context: str
    server: Lookup  # the source's control-plane address on the kind network


# --- lab plan ----------------------------------------------------------------------------------------------------
@describe_action.register
def _(action: DownloadPinned) -> str:
    return f"download {action.url} to ${action.dest.base}/{action.dest.rel} (sha256 {action.sha256[:12]}...)"


@describe_action.register
def _(action: ApplyMetalLBPool) -> str:
    return (f"kubectl apply IPAddressPool+L2Advertisement {action.pool} in {names.METALLB_NS}: {action.cluster}'s "
            f"slice of `docker network inspect {metallb.NETWORK}` (of {', '.join(action.clusters)})")


@describe_action.register
def _(action: InstallEastWest) -> str:
    extra = f" --set {istio.EXTERNAL_IPS_SET}<{action.node_ip.what}>" if action.node_ip else ""
    return describe(Command(action.argv)) + extra


@describe_action.register
def _(action: CreateRemoteSecret) -> str:
    return (f"istioctl create-remote-secret --context {action.source_context} --name={action.source} "
            f"--server=https://<{action.server.what}>:{names.API_SERVER_PORT} | kubectl apply --server-side "
            f"(in {action.cluster})")


# --- the shell script ----------------------------------------------------------------------------------------
@shell_action.register
def _shell_download(run: DownloadPinned, contexts: Mapping[str, str]) -> list[str]:
    dest = shell_word(run.dest)
    part = shell_word(File(run.dest.base, run.dest.rel + ".part"))
    parent = run.dest.rel.rsplit("/", 1)[0] if "/" in run.dest.rel else ""
    sha = shlex.quote(run.sha256)
    return [
        *([f'mkdir -p "${run.dest.base}/{parent}"'] if parent else []),
        "# kept when it is there with the pinned sha256; `sha256sum` on Linux, `shasum -a 256` on macOS",
        "lab_sha256() { (sha256sum \"$1\" 2>/dev/null || shasum -a 256 \"$1\") | cut -d ' ' -f 1; }",
        f"if [ ! -f {dest} ] || [ \"$(lab_sha256 {dest})\" != {sha} ]; then",
        f"  curl -fsSL --retry 3 -o {part} {shlex.quote(run.url)}",
        f"  got=\"$(lab_sha256 {part})\"",
        f"  [ \"$got\" = {sha} ] || {{ echo \"{run.url} has sha256 $got, the lab pins {run.sha256}\" >&2; "
        f"rm -f {part}; exit 1; }}",
        f"  mv {part} {dest}",
        "fi",
    ]


@shell_action.register
def _shell_metallb_pool(run: ApplyMetalLBPool, contexts: Mapping[str, str]) -> list[str]:
    k = kubectl_argv_of(run.cluster, contexts)
    var = "POOL_" + var_suffix(run.cluster)
    compute = (f"docker network inspect {metallb.NETWORK} | {run.python} --cluster {shlex.quote(run.cluster)} "
               f"--clusters {shlex.quote(','.join(run.clusters))}")
    return [
        f"# {run.cluster}'s slice of the kind network, by the lab's own arithmetic "
        "(lab/scenarios/multi_primary_multi_network/metallb.py)",
        f'{var}="$({compute})"',
        "# MetalLB's validating webhook refuses the pool until its controller serves it: retry",
        f"for attempt in $(seq 1 {SHELL_ATTEMPTS}); do",
        f'  if {shell_argv((*k, "apply", "-f", "-"))} <<<"${var}"; then break; fi',
        f'  [ "$attempt" -lt {SHELL_ATTEMPTS} ] || exit 1',
        "  sleep 2",
        "done",
    ]


@shell_action.register
def _shell_eastwest(run: InstallEastWest, contexts: Mapping[str, str]) -> list[str]:
    parent = run.file.rel.rsplit("/", 1)[0] if "/" in run.file.rel else ""
    lines = [*([f'mkdir -p "${run.file.base}/{parent}"'] if parent else []),
             f"cat > {shell_word(run.file)} {heredoc(run.text)}"]
    argv = shell_argv(run.argv)
    if run.node_ip is None:
        return [*lines, argv]
    var = "NODE_IP_" + var_suffix(run.cluster)
    return [*lines,
            "# no MetalLB: the gateway Service's spec.externalIPs is the node's own address on the kind network",
            f"{var}={shell_word(run.node_ip)}",
            f': "${{{var}:?{run.node_ip.what} is not known yet}}"',
            f'{argv} --set {shlex.quote(istio.EXTERNAL_IPS_SET)}"${var}"']


@shell_action.register
def _shell_remote_secret(run: CreateRemoteSecret, contexts: Mapping[str, str]) -> list[str]:
    var = "SERVER_" + var_suffix(run.source)
    create = istio.remote_secret_argv("istioctl", Kubeconfig(run.source), Context(run.source, run.source_context),
                                      run.source, f"https://${{{var}}}:{names.API_SERVER_PORT}")
    # the server word is built here with the variable inside double quotes
    words = shell_argv(create[:-1]) + f' --server="https://${{{var}}}:{names.API_SERVER_PORT}"'
    k = kubectl_argv_of(run.cluster, contexts)
    return [
        f"# {run.source}'s control-plane address on the kind network (never 127.0.0.1: istio#31081)",
        f"{var}={shell_word(run.server)}",
        f': "${{{var}:?{run.server.what} is not known yet}}"',
        "# straight into kubectl: the Secret holds a token; server-side apply keeps it out of any annotation",
        f"{words} | {shell_argv((*k, 'apply', *SERVER_SIDE_APPLY, '-f', '-'))}",
    ]


# --- lab up -------------------------------------------------------------------------------------------------------
@perform.register
def _download(run: DownloadPinned, env: Env, step: Step, forced: bool) -> bool:
    dest = env.paths.resolve(run.dest)
    if dest.is_file() and tools.sha256_file(dest) == run.sha256:
        return False
    tools.download_pinned(run.url, run.sha256, dest, progress=lambda line: env.say(f"  {'host':<9} {line}"))
    return True


def _network_json(env: Env, what: str) -> str:
    return env.runner.run(["docker", "network", "inspect", metallb.NETWORK], timeout=TIMEOUTS.command,
                          context=what).stdout


@perform.register
def _metallb_pool(run: ApplyMetalLBPool, env: Env, step: Step, forced: bool) -> bool:
    chosen = slice_of(_network_json(env, step.id), run.cluster, run.clusters)
    text = pool_manifest(run.cluster, chosen)
    env.say(f"  {run.cluster:<9} {step.id}: MetalLB pool {run.pool} = {chosen.range}")
    k = env.kubectl(run.cluster)

    def attempt() -> None:
        res = k.run("apply", "-f", "-", input=text, check=False, context=step.id)
        if res.ok:
            return
        if WEBHOOK_REFUSAL in res.output:
            raise NotYet(f"MetalLB's webhook is not serving yet ({res.output.strip().splitlines()[-1]})")
        raise CommandError([*k.base(), "apply", "-f", "-"], res.returncode, res.output, step.id)

    env.poll(attempt, timeout=TIMEOUTS.rollout, what=f"{step.id}: MetalLB accepts the pool")
    return True


@perform.register
def _eastwest(run: InstallEastWest, env: Env, step: Step, forced: bool) -> bool:
    atomic_write(env.paths.resolve(run.file), run.text)
    argv = env.argv(run.argv)
    if run.node_ip is not None:
        node_ip = run.node_ip
        ip = env.poll(lambda: env.resolve(node_ip), timeout=TIMEOUTS.rollout, what=f"{step.id}: {node_ip.what}")
        network = metallb.parse_inspect(_network_json(env, step.id))
        address = metallb.fallback_address(network, ip)
        argv += ["--set", f"{istio.EXTERNAL_IPS_SET}{address}"]
    env.runner.run(argv, timeout=run.timeout, context=step.id)
    return True


@perform.register
def _remote_secret(run: CreateRemoteSecret, env: Env, step: Step, forced: bool) -> bool:
    server_t = run.server
    raw = env.poll(lambda: env.resolve(server_t), timeout=TIMEOUTS.rollout, what=f"{step.id}: {server_t.what}")
    server = istio.api_server_url(api_server_address(raw, run.source))
    src = Context(run.source, run.source_context)
    argv = env.argv(istio.remote_secret_argv("istioctl", Kubeconfig(run.source), src, run.source, server))
    res = env.runner.run(argv, timeout=TIMEOUTS.command, context=step.id, check=False)
    if not res.ok:
        # stderr only: stdout would be the Secret if istioctl printed it before failing
        raise CommandError(argv, res.returncode, res.stderr, step.id)
    text, redact = remote_secret_values(res.stdout, run.source)
    apply(env, run.cluster, text, None, step.id, redact)
    return True


# --- `lab metallb-pool` ---------------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("metallb-pool", help="print a cluster's MetalLB pool from `docker network inspect kind`",
                       description="Read `docker network inspect kind` (FILE or standard input) and print the "
                                   "IPAddressPool and L2Advertisement of one cluster's slice of its IPv4 subnet.")
    p.add_argument("--cluster", required=True, metavar="NAME", help="the cluster whose pool to print")
    p.add_argument("--clusters", required=True, metavar="A,B",
                   help="every cluster sharing the network, in the profile's order (the slices go top down)")
    p.add_argument("file", nargs="?", metavar="FILE", help="the inspect output (default: standard input)")

    def run(a: argparse.Namespace) -> int:
        clusters = [c for c in a.clusters.split(",") if c]
        sys.stdout.write(pool_manifest(a.cluster, slice_of(read_input(a.file), a.cluster, clusters)))
        return 0

    p.set_defaults(func=run)

