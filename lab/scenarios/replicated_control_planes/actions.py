"""The replicated-control-planes scenario's own lab actions: what `lab up` does in-process for them (`perform`), and
the plain commands the replayable script writes instead (`shell_action`), one `functools.singledispatch`
registration each beside the action (the engine's lab/plan.py and lab/perform.py dispatch on the type).

- PatchCoreDNS: the write-up's "配置DNS" change to the live Corefile
(lab/scenarios/replicated_control_planes/corefile.py).
- ApplyClientServiceEntry: the calling cluster's ServiceEntry, whose endpoint (the remote gateway's node IP and
  15443 nodePort) is known only at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lab.files import atomic_write
from lab.kube import corefile_of, read_coredns
from lab.perform import Env, apply, coredns_configmap, perform
from lab.plan import Action, Step, kubectl_argv_of, shell_action, shell_argv, shell_word
from lab.scenarios.replicated_control_planes import corefile, names, serviceentry
from lab.settings import TIMEOUTS
from lab.tokens import File, Lookup


@dataclass(frozen=True)
class PatchCoreDNS(Action):
    """Add (or replace) the `global` server block of the live Corefile, forwarding to `forward`
    (lab/scenarios/replicated_control_planes/corefile.py);
    `file` keeps the Corefile written."""

    name: ClassVar[str] = "coredns.patch"
    self_checking: ClassVar[bool] = True
    computes: ClassVar[str] = "the Corefile"
    cluster: str
    forward: Lookup
    aaaa_guard: bool
    file: File


@dataclass(frozen=True)
class ApplyClientServiceEntry(Action):
    """The calling cluster's ServiceEntry for `service`.`service_namespace`.global (VIP `vip`), whose endpoint is
    the remote gateway at `address`:`port` (looked up at run time); re-applied when the live one differs."""

    name: ClassVar[str] = "serviceentry.client"
    self_checking: ClassVar[bool] = True
    computes: ClassVar[str] = "the ServiceEntry"
    cluster: str
    namespace: str
    service: str
    service_namespace: str
    vip: str
    address: Lookup
    port: Lookup


GLOBAL_FORWARD_VAR = "ISTIOCOREDNS_IP"
INGRESS_HOST_VAR, INGRESS_PORT_VAR = "INGRESS_HOST", "INGRESS_PORT"


@shell_action.register
def _shell_coredns_patch(run: PatchCoreDNS, contexts: Mapping[str, str]) -> list[str]:
    """The Corefile change as plain commands: read the live Corefile, drop a `global:53` block a previous run added,
    append the lab's block (lab/scenarios/replicated_control_planes/corefile.py render_block), write the ConfigMap back.

    What lab/scenarios/replicated_control_planes/corefile.py does more (the lab's own run): it replaces a `global` block
    in place, understands every
    spelling of the zone and refuses Corefiles it cannot patch safely. The sed range below removes only a block
    written as the lab writes it (`global:53 {` at the start of a line up to the first `}` alone on a line)."""
    cluster = run.cluster
    k = kubectl_argv_of(cluster, contexts)
    f = run.file
    forward = run.forward
    live = File(f.base, f.rel + ".live")
    var = GLOBAL_FORWARD_VAR
    block = corefile.render_block("192.0.2.53", aaaa_guard=run.aaaa_guard)
    placeholder = "forward . 192.0.2.53:53"
    if block.count(placeholder) != 1 or "$" in block or "`" in block or "\\" in block:
        raise ValueError("the Corefile block cannot be written as a shell heredoc")
    block = block.replace(placeholder, f"forward . ${{{var}}}:{corefile.PORT}")
    read = shell_argv((*k, "-n", "kube-system", "get", "configmap", "coredns", "-o", "jsonpath={.data.Corefile}"))
    write = shell_argv((*k, "-n", "kube-system", "create", "configmap", "coredns", "--from-file")) \
        + f' Corefile={shell_word(f)} --dry-run=client -o yaml | {shell_argv((*k, "apply", "-f", "-"))}'
    # (plain assignments: under `set -e` a failing lookup stops the script, `export X=$(...)` would hide it)
    return [
        f"{var}={shell_word(forward)}",
        f': "${{{var}:?{forward.what} is not known yet}}"',
        f"{read} > {shell_word(live)}",
        f"[ -s {shell_word(live)} ] || {{ echo 'the live Corefile of {cluster} is empty: is this the right cluster?' "
        ">&2; "
        "exit 1; }",
        f"# drop the `{corefile.ZONE}:{corefile.PORT}` block an earlier run appended, keep every other line as it is",
        f"sed '/^{corefile.ZONE}:{corefile.PORT} {{$/,/^}}$/d' {shell_word(live)} > {shell_word(f)}",
        f'[ -z "$(tail -c 1 {shell_word(f)})" ] || echo >> {shell_word(f)}  # end the last line before appending',
        f"cat >> {shell_word(f)} <<LAB_EOF\n{block}\nLAB_EOF",
        write,
    ]


def serviceentryheredoc(svc: serviceentry.RemoteService, vip: str) -> str:
    """The calling cluster's ServiceEntry (lab/scenarios/replicated_control_planes/serviceentry.py render_client) with
    its endpoint written as
    `${INGRESS_HOST}` and `${INGRESS_PORT}`, for an unquoted heredoc (the write-up's own form)."""
    host, port = "192.0.2.1", 1  # stand-ins (TEST-NET-1, port 1) replaced by the variables below
    text = serviceentry.to_yaml(serviceentry.render_client(svc, vip, host, port))
    swaps = ((f"- address: {host}\n", f"- address: ${{{INGRESS_HOST_VAR}}}\n"),
             (f"{svc.port_name}: {port}\n", f"{svc.port_name}: ${{{INGRESS_PORT_VAR}}}\n"))
    for old, new in swaps:
        if text.count(old) != 1:
            raise ValueError(f"the ServiceEntry has no single {old.strip()!r} to fill in")
        text = text.replace(old, new)
    if re.search(r"[`\\]|\$(?!\{INGRESS_(HOST|PORT)\})", text):
        raise ValueError("the ServiceEntry cannot be written as a shell heredoc")
    return text


@shell_action.register
def _shell_serviceentry_client(run: ApplyClientServiceEntry, contexts: Mapping[str, str]) -> list[str]:
    k = kubectl_argv_of(run.cluster, contexts)
    address, port = run.address, run.port
    svc = serviceentry.RemoteService(run.service, run.service_namespace)
    text = serviceentryheredoc(svc, run.vip)
    return [
        f"# the write-up's INGRESS_HOST (the gateway pod's node) and, as its ServiceEntry says, the gateway's "
        f"{names.GATEWAY_TLS_PORT} nodePort",
        f"{INGRESS_HOST_VAR}={shell_word(address)}",
        f"{INGRESS_PORT_VAR}={shell_word(port)}",
        f': "${{{INGRESS_HOST_VAR}:?{address.what} is not known yet}}" "${{{INGRESS_PORT_VAR}:?{port.what} is not '
        'known yet}"',
        f"export {INGRESS_HOST_VAR} {INGRESS_PORT_VAR}",
        f"{shell_argv((*k, 'apply', '-n', run.namespace, '-f', '-'))} <<LAB_EOF\n{text}LAB_EOF",
    ]


@perform.register
def _coredns_patch(run: PatchCoreDNS, env: Env, step: Step, forced: bool) -> bool:
    cluster = run.cluster
    forward = run.forward
    ip = env.poll(lambda: env.resolve(forward), timeout=TIMEOUTS.rollout, what=f"{step.id}: {forward.what}")
    k = env.kubectl(cluster)
    live = read_coredns(k, context=step.id)
    text = corefile_of(live)
    patched = corefile.patch(text, ip, aaaa_guard=run.aaaa_guard)
    if patched == text:
        return False
    atomic_write(env.paths.resolve(run.file), patched)
    apply(env, cluster, coredns_configmap(live, patched), None, step.id)
    return True


@perform.register
def _serviceentry_client(run: ApplyClientServiceEntry, env: Env, step: Step, forced: bool) -> bool:
    address_t, port_t = run.address, run.port
    address, port = env.poll(lambda: (env.resolve(address_t), env.resolve(port_t)), timeout=TIMEOUTS.rollout,
                             what=f"{step.id}: {address_t.what} and {port_t.what}")
    svc = serviceentry.RemoteService(run.service, run.service_namespace)
    obj = serviceentry.render_client(svc, run.vip, address, int(port))
    cluster, namespace = run.cluster, run.namespace
    res = env.kubectl(cluster).run("-n", namespace, "get", "serviceentries.networking.istio.io",
                                   obj["metadata"]["name"], "-o", "json", check=False, context=step.id)
    stale = serviceentry_changes(_json_or_none(res.stdout) if res.ok else None, obj)
    if not stale and not forced:
        return False
    if stale:
        env.say(f"  {cluster:<9} {step.id}: {'; '.join(stale)}: applying it")
    apply(env, cluster, serviceentry.to_yaml(obj), namespace, step.id)
    return True


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def serviceentry_changes(live: Any, want: Mapping[str, Any]) -> list[str]:
    """What differs between a live ServiceEntry (kubectl's JSON, or None when absent) and the one the lab renders:
    every field of the lab's spec (the endpoint's address and port included), one phrase each; [] if none."""
    if not isinstance(live, dict):
        return ["absent"]
    spec = live["spec"] if isinstance(live.get("spec"), dict) else {}
    return [f"spec.{key} is {spec.get(key)!r}, not {value!r}" for key, value in want["spec"].items()
            if spec.get(key) != value]
