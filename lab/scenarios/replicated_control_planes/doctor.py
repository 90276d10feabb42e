"""`lab doctor`: walk the path from cluster1's sleep to cluster2's httpbin and name the first broken hop.

This module owns the hop-by-hop diagnosis. `walk(observations)` is pure: it reads an `Observations` record (pods,
the kube-system Corefile, istiocoredns plugin log lines, ServiceEntries, the two sidecars' and the gateway's config
dumps, the EnvoyFilter, nodePort reachability, Envoy stats, the final curl) and returns one `Hop` per check, in
the order traffic meets them, stopping at the first broken one. `collect(lab)` is the thin part: it gathers those
observations through the lab's one handle (lab.cluster.LabHandle, from the provider: typed reads, pod logs, exec
for nslookup, nc and curl, pilot-agent for Envoy admin), so tests answer it with fake API servers.

A hop whose observation is missing is `unknown` (with what could not be read), never a guess; only `broken`
stops the walk.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from lab import classify, configdump
from lab.cluster import ENVOY_FILTER, SERVICE_ENTRY, ClusterHandle, LabHandle
from lab.errors import LabError, NoLabError, PreflightError, UsageError, ValidationError
from lab.kube import Kubectl
from lab.probe import NslookupResult, Prober, envoy_admin
from lab.profile import version_key
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import corefile, names, serviceentry
from lab.scenarios.replicated_control_planes.profiles import PROFILES, Profile
from lab.shell import Runner
from lab.state import State
from lab.state import lab_home as resolve_home

OK, BROKEN, UNKNOWN = "ok", "broken", "unknown"

ENVOYFILTER = names.ENVOYFILTER
FIXED_ENVOYFILTER = version_key(names.ENVOYFILTER_FIXED_IN)
# The pod annotation without which the sidecar hides the TLS counters
# (lab.scenarios.replicated_control_planes.names.STATS_ANNOTATION, set by the plan).
STATS_ANNOTATION = ": ".join(names.STATS_ANNOTATION)


@dataclass(frozen=True)
class Hop:
    name: str
    status: str  # "ok" | "broken" | "unknown"
    evidence: tuple[str, ...]
    fix: str


@dataclass(frozen=True)
class PodState:
    cluster: str
    namespace: str
    name: str
    labels: dict[str, str]
    ready: bool
    detail: str  # phase and, when not ready, the first waiting/terminated reason


@dataclass
class Observations:
    """What the doctor saw. None means "not observed"; `errors` says why, by the same key."""

    istio_version: str = PROFILES["default"].istio_version
    client: str = PROFILES["default"].client.name
    server: str = PROFILES["default"].server.name
    host: str = names.REMOTE_HOST
    port: int = names.REMOTE_PORT
    client_namespace: str = names.CLIENT_NS
    server_namespace: str = names.SERVER_NS
    aaaa_guard: bool = True
    pods: dict[str, list[PodState]] | None = None  # by cluster name
    corefile: str | None = None  # client cluster kube-system/coredns Corefile
    istiocoredns_ip: str | None = None  # client cluster istiocoredns ClusterIP
    istiocoredns_log: str | None = None  # client cluster istio-coredns-plugin container log
    kube_dns_ip: str | None = None  # client cluster kube-system/kube-dns ClusterIP
    # the write-up's checks from sleep: `nslookup -type=a <host> <kube-dns IP | istiocoredns IP>`
    lookup_kube_dns: NslookupResult | None = None
    lookup_istiocoredns: NslookupResult | None = None
    serviceentries: dict[str, list[dict[str, Any]]] | None = None  # by cluster name: ServiceEntry objects
    sidecar_dump: dict[str, Any] | None = None  # client sleep pod istio-proxy /config_dump
    gateway_dump: dict[str, Any] | None = None  # server ingress gateway /config_dump
    # server httpbin pod istio-proxy /config_dump: the other end of the mTLS (the gateway only passes it through)
    server_sidecar_dump: dict[str, Any] | None = None
    gateway_address: str | None = None  # server gateway pod's hostIP (node IP)
    gateway_node_port: int | None = None  # server gateway Service's nodePort for 15443
    node_port_reachable: bool | None = None
    node_port_detail: str = ""
    envoyfilter: dict[str, Any] | None = None  # server EnvoyFilter object; {} when it does not exist
    client_stats: str | None = None  # client sidecar /stats text (filtered or not)
    curl_output: str | None = None
    curl_exit: int | None = None
    curl_status: int | None = None
    errors: dict[str, str] = field(default_factory=dict)


# --- small pure helpers ---------------------------------------------------------------------------------------
def pods_from_json(cluster: str, obj: dict[str, Any]) -> list[PodState]:
    """PodStates from `kubectl get pods -A -o json`."""
    out = []
    for item in obj.get("items") or []:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ready = conds.get("Ready") == "True"
        detail = str(status.get("phase", "?"))
        if not ready:
            for cs in status.get("containerStatuses") or []:
                state = cs.get("state") or {}
                why = (state.get("waiting") or state.get("terminated") or {}).get("reason")
                if why:
                    detail += f", {cs.get('name')}: {why}"
                    break
        out.append(PodState(cluster, str(meta.get("namespace", "")), str(meta.get("name", "")),
                            dict(meta.get("labels") or {}), ready, detail))
    return out


# (role, namespace, label, value, what it is); the cluster roles come from the profile.
REQUIRED_PODS: tuple[tuple[str, str, str, str, str], ...] = (
    ("client", "kube-system", "k8s-app", "kube-dns", "CoreDNS"),
    ("client", "istio-system", "app", "istiod", "istiod"),
    ("client", "istio-system", "app", "istiocoredns", "istiocoredns"),
    ("client", "", "app", "sleep", "sleep"),
    ("server", "istio-system", "app", "istiod", "istiod"),
    ("server", "istio-system", "istio", "ingressgateway", "ingress gateway"),
)


def plugin_log_facts(log: str, host: str) -> dict[str, Any]:
    """What the istio-coredns-plugin log says (istio-ecosystem/istio-coredns-plugin plugin.go log lines):
    the last `Have N service entries`, the `adding DNS mapping: host.->[ips]` for `host`, and how many queries
    ended in `Could not find the service requested`."""
    counts = [int(m) for m in re.findall(r"Have (\d+) service entries", log)]
    mappings = re.findall(r"adding DNS mapping: " + re.escape(host.rstrip(".")) + r"\.->\[([^\]]*)\]", log)
    invalid = re.findall(r"Ignoring invalid service entry: (\S+)", log)
    return {"entries": counts[-1] if counts else None,
            "mapping": mappings[-1].split() if mappings else None,
            "not_found": log.count("Could not find the service requested"),
            "invalid": invalid}


def envoyfilter_form(obj: dict[str, Any]) -> str:
    """How the EnvoyFilter patches in tcp_cluster_rewrite: "typed_config" (1.7.5+, works), "legacy-config"
    (1.7.0-1.7.4 `config:`, pushed without configuration by Istio 1.7: istio#27909), "absent", or "other"."""
    if not obj:
        return "absent"
    for cp in (obj.get("spec") or {}).get("configPatches") or []:
        value = (cp.get("patch") or {}).get("value") or {}
        if value.get("name") != configdump.TCP_CLUSTER_REWRITE:
            continue
        typed = value.get("typed_config") or {}
        if "TcpClusterRewrite" in str(typed.get("@type", "")) and typed.get("cluster_pattern"):
            return "typed_config"
        if value.get("config"):
            return "legacy-config"
    return "other"


def fail_verify_errors(stats: str, host: str) -> int | None:
    """Sum of `cluster.<...host...>.ssl.fail_verify_error` counters, or None when Envoy does not expose them."""
    total, seen = 0, False
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if name.endswith(names.FAIL_VERIFY_STAT) and host in name and value.strip().isdigit():
            total += int(value)
            seen = True
    return total if seen else None


def _module(name: str) -> ModuleType | None:
    """An optional sibling module (lab.tools, branch platform), or None when this build does not have it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        return None


def _local_host(host: str) -> str:
    """`name.ns.global` -> `name.ns.svc.cluster.local`, the Service the gateway side reaches."""
    return re.sub(r"\.global$", ".svc.cluster.local", host)


def _se_hosts(se: dict[str, Any]) -> list[str]:
    return list((se.get("spec") or {}).get("hosts") or [])


def _se_name(se: dict[str, Any]) -> str:
    meta = se.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _unknown(name: str, obs: Observations, key: str, what: str, fix: str) -> Hop:
    why = obs.errors.get(key)
    return Hop(name, UNKNOWN, (f"{what} not observed" + (f": {why}" if why else ""),), fix)


# --- the hops, in the order traffic meets them ---------------------------------------------------------------
def hop_pods(obs: Observations) -> Hop:
    name, fix = "pods-ready", "wait for the pods or look at them: `kubectl get pods -A --context kind-<cluster>`"
    if obs.pods is None:
        return _unknown(name, obs, "pods", "pods", fix)
    evidence, broken = [], []
    for role, ns, key, value, what in REQUIRED_PODS:
        cluster = obs.client if role == "client" else obs.server
        ns = ns or obs.client_namespace
        pods = [p for p in obs.pods.get(cluster, []) if p.namespace == ns and p.labels.get(key) == value]
        ready = [p for p in pods if p.ready]
        line = f"{cluster} {ns} {what} ({key}={value}): {len(ready)}/{len(pods)} ready"
        if not ready:
            line += "".join(f"; {p.name} {p.detail}" for p in pods[:2]) if pods else "; no pod"
            broken.append(line)
        evidence.append(line)
    if broken:
        return Hop(name, BROKEN, tuple(evidence),
                   "make these pods ready (`kubectl describe pod`); if they are missing, run `make lab-up` again")
    return Hop(name, OK, tuple(evidence), "")


def hop_kube_dns(obs: Observations) -> Hop:
    name = "kube-dns-global"
    fix = ("add the `global:53` server block (forward . <istiocoredns ClusterIP>:53, with the AAAA guard) to "
           f"kube-system/coredns in {obs.client}: `make lab-up` does it; then restart CoreDNS")
    looked = _lookup_evidence(obs.lookup_kube_dns, obs, "kube-dns", obs.kube_dns_ip)
    if obs.corefile is None:
        if looked is None:
            return _unknown(name, obs, "corefile", "kube-system/coredns Corefile", fix)
        line, resolved = looked
        return Hop(name, OK if resolved else BROKEN, ("kube-system/coredns Corefile not observed", line), fix)
    try:
        block = corefile.global_block(obs.corefile)
    except ValidationError as err:
        return Hop(name, BROKEN, (f"the Corefile does not parse: {err}",), fix)
    if not block:
        return Hop(name, BROKEN, (f"{obs.client} kube-system/coredns has no `global` server block: kube-dns sends "
                                  ".global names upstream, where they do not exist",), fix)
    code = "\n".join(line.split("#", 1)[0] for line in block.splitlines())  # comments are not evidence
    evidence = [f"global block: {' '.join(code.split())}"]
    targets = re.findall(r"forward\s+\.\s+(\S+)", block)
    target = targets[0] if targets else None
    if target is None or not re.match(r"^\d+\.\d+\.\d+\.\d+(:\d+)?$", target):
        return Hop(name, BROKEN, (*evidence, f"forward target {target!r} is not an IP address"), fix)
    if obs.istiocoredns_ip and target.split(":")[0] != obs.istiocoredns_ip:
        return Hop(name, BROKEN, (*evidence, f"it forwards to {target}, but istiocoredns is {obs.istiocoredns_ip}"),
                   fix)
    # the guard lab.scenarios.replicated_control_planes.corefile writes: CoreDNS `template IN AAAA global { rcode
    # NOERROR }` inside the block
    if obs.aaaa_guard and not re.search(r"(?m)^\s*template\s+IN\s+AAAA\b", block):
        return Hop(name, BROKEN, (*evidence, "no AAAA guard: istiocoredns answers NXDOMAIN to AAAA and musl (Alpine "
                                  "sleep) then fails the whole lookup"), fix)
    if looked is not None:
        evidence.append(looked[0])
        if not looked[1]:
            return Hop(name, BROKEN, tuple(evidence), fix)
    return Hop(name, OK, tuple(evidence), "")


def _lookup_evidence(result: NslookupResult | None, obs: Observations, via: str,
                     server: str | None) -> tuple[str, bool] | None:
    """One evidence line for an nslookup from sleep, and whether it returned an address."""
    if result is None:
        return None
    where = f"nslookup -type=a {obs.host} via {via}" + (f" ({server})" if server else "")
    if result.addresses:
        return f"{where}: {', '.join(result.addresses)}", True
    last = result.output.strip().splitlines()[-1] if result.output.strip() else f"exit {result.exit_code}"
    return f"{where}: no address ({last})", False


def hop_istiocoredns(obs: Observations) -> Hop:
    name = "istiocoredns"
    fix = (f"make sure a ServiceEntry for {obs.host} with `addresses: [<VIP>]` exists in {obs.client} and is valid; "
           "the plugin re-reads ServiceEntries every 5 s (`kubectl -n istio-system logs deploy/istiocoredns "
           "-c istio-coredns-plugin`)")
    looked = _lookup_evidence(obs.lookup_istiocoredns, obs, "istiocoredns", obs.istiocoredns_ip)
    if looked is not None and not looked[1]:
        extra: tuple[str, ...] = ()
        if obs.istiocoredns_log is not None:
            facts = plugin_log_facts(obs.istiocoredns_log, obs.host)
            extra = (f"plugin: Have {facts['entries']} service entries; mapping for {obs.host}: {facts['mapping']}",)
        return Hop(name, BROKEN, (looked[0], *extra), fix)
    if obs.istiocoredns_log is None:
        if looked is not None:
            return Hop(name, OK, (looked[0], "istio-coredns-plugin log not observed"), "")
        return _unknown(name, obs, "istiocoredns_log", "istio-coredns-plugin log", fix)
    facts = plugin_log_facts(obs.istiocoredns_log, obs.host)
    evidence = [looked[0]] if looked else []
    if facts["entries"] is not None:
        evidence.append(f"plugin: Have {facts['entries']} service entries")
    if facts["invalid"]:
        evidence.append(f"plugin ignored invalid ServiceEntries: {', '.join(facts['invalid'])}")
    if facts["mapping"]:
        evidence.append(f"plugin: adding DNS mapping: {obs.host}. -> {', '.join(facts['mapping'])}")
        return Hop(name, OK, tuple(evidence), "")
    if facts["not_found"]:
        evidence.append(f"plugin answered `Could not find the service requested` {facts['not_found']} time(s)")
    if facts["entries"] is None and not facts["not_found"]:
        return Hop(name, UNKNOWN, ("the plugin log has none of its usual lines (Have N service entries / adding "
                                   "DNS mapping)",), fix)
    evidence.append(f"no DNS mapping for {obs.host}")
    return Hop(name, BROKEN, tuple(evidence), fix)


def _vip_problem(se: dict[str, Any]) -> str | None:
    addresses = (se.get("spec") or {}).get("addresses") or []
    if not addresses:
        return "has no addresses: istiocoredns has no VIP to answer with"
    for a in addresses:
        try:
            serviceentry.validate_vip(a)
        except ValidationError as err:
            return f"address {a}: {err}"
    return None


def hop_serviceentries(obs: Observations) -> Hop:
    name = "serviceentries"
    fix = (f"apply the {obs.host} ServiceEntries (`make lab-up`); in {obs.client} the endpoint is the gateway's node "
           f"IP and 15443 nodePort, in {obs.server} it is the local service")
    if obs.serviceentries is None:
        return _unknown(name, obs, "serviceentries", "ServiceEntries", fix)
    evidence, problems = [], []
    for cluster in (obs.client, obs.server):
        mine = [se for se in obs.serviceentries.get(cluster, []) if obs.host in _se_hosts(se)]
        if not mine:
            if cluster == obs.server and _server_se_optional(obs):
                evidence.append(f"{cluster}: no ServiceEntry for {obs.host}; not needed while the gateway's "
                                "EnvoyFilter rewrites .global to .svc.cluster.local (Istio 1.7.5+)")
                continue
            problems.append(f"{cluster}: no ServiceEntry for {obs.host}")
            continue
        taken: dict[str, str] = {}
        for se in obs.serviceentries.get(cluster, []):
            for a in (se.get("spec") or {}).get("addresses") or []:
                if a in taken and taken[a] != _se_name(se):
                    problems.append(f"{cluster}: VIP {a} is used by {taken[a]} and {_se_name(se)}")
                taken[a] = _se_name(se)
        for se in mine:
            spec = se.get("spec") or {}
            why = _vip_problem(se)
            eps = [str(e.get("address")) + "".join(f":{v}" for v in (e.get("ports") or {}).values())
                   for e in spec.get("endpoints") or []]
            line = f"{cluster} {_se_name(se)}: addresses {spec.get('addresses')}, endpoints {eps}"
            evidence.append(line)
            if why:
                problems.append(f"{cluster} {_se_name(se)} {why}")
            if cluster == obs.client and obs.gateway_address and obs.gateway_node_port:
                want = f"{obs.gateway_address}:{obs.gateway_node_port}"
                if want not in eps:
                    problems.append(f"{cluster} {_se_name(se)}: endpoint should be {want} (gateway node IP and "
                                    "15443 nodePort)")
    if problems:
        return Hop(name, BROKEN, tuple(evidence + problems), fix)
    return Hop(name, OK, tuple(evidence), "")


def _server_se_optional(obs: Observations) -> bool:
    return (version_key(obs.istio_version) >= FIXED_ENVOYFILTER and obs.envoyfilter is not None
            and envoyfilter_form(obs.envoyfilter) == "typed_config")


def hop_sidecar(obs: Observations) -> Hop:
    name = "sidecar-cluster"
    cluster = f"outbound|{obs.port}||{obs.host}"
    fix = (f"the sidecar of sleep in {obs.client} has no usable {cluster}: check the ServiceEntry, then "
           "`istioctl proxy-status` and restart the sleep pod if the sidecar is stale")
    if obs.sidecar_dump is None:
        return _unknown(name, obs, "sidecar_dump", "sleep sidecar config_dump", fix)
    found = {c["name"]: c for c in configdump.find_clusters(obs.sidecar_dump, obs.host, obs.port)}
    if cluster not in found:
        return Hop(name, BROKEN, (f"{cluster} not found in the sleep sidecar's config_dump",), fix)
    c = found[cluster]
    evidence = [f"{cluster}: {c['type']}, endpoints {c['endpoints']} ({c['endpoints_statement']})"]
    if c.get("tls_sni"):
        evidence.append(f"TLS SNI {c['tls_sni']}")
    routes = [r for r in configdump.find_routes(obs.sidecar_dump, obs.host, obs.port) if r["match"] == "exact"]
    evidence += [f"route {r['route_config']} virtual host {r['virtual_host']} -> {r['clusters']}" for r in routes]
    addresses = [e["address"] for e in c["endpoints"] or []]
    if c["endpoints"] is not None and not addresses:
        return Hop(name, BROKEN, (*evidence, "the cluster has no endpoints"), fix)
    if obs.gateway_address and obs.gateway_node_port:
        want = f"{obs.gateway_address}:{obs.gateway_node_port}"
        if addresses and want not in addresses:
            return Hop(name, BROKEN, (*evidence, f"expected the gateway endpoint {want}"), fix)
    return Hop(name, OK, tuple(evidence), "")


def hop_gateway_reachable(obs: Observations) -> Hop:
    name = "gateway-reachable"
    where = f"{obs.gateway_address}:{obs.gateway_node_port}"
    fix = (f"{obs.server}'s gateway nodePort must be reachable from {obs.client}'s nodes: check the gateway Service "
           "(type NodePort, fixed nodePort for 15443) and that both kind clusters share the `kind` Docker network")
    if obs.node_port_reachable is None:
        return _unknown(name, obs, "node_port", f"TCP connect to {where}", fix)
    detail = (f": {obs.node_port_detail}" if obs.node_port_detail else "")
    if obs.node_port_reachable:
        return Hop(name, OK, (f"TCP connect from {obs.client} to {where} succeeded",), "")
    return Hop(name, BROKEN, (f"TCP connect from {obs.client} to {where} failed{detail}",), fix)


def hop_gateway(obs: Observations) -> Hop:
    name = "gateway-listener"
    sni = configdump.sni_dnat_name(obs.host, obs.port)
    fixed = version_key(obs.istio_version) >= FIXED_ENVOYFILTER
    fix = (f"on Istio {obs.istio_version}: " + (
        f"restore EnvoyFilter istio-system/{ENVOYFILTER} in its typed_config form (@type "
        f"{configdump.REWRITE_TYPE}), e.g. by re-running `istioctl install`" if fixed else
        f"the chart's EnvoyFilter uses the legacy `config:` form that Istio 1.7.0-1.7.4 cannot apply (istio#27909): "
        f"create the {obs.host} ServiceEntry in {obs.server} (endpoint {_local_host(obs.host)}) or upgrade "
        "to 1.7.5+"))
    if obs.gateway_dump is None:
        return _unknown(name, obs, "gateway_dump", "ingress gateway config_dump", fix)
    summary = configdump.analyze(obs.gateway_dump, obs.host, obs.port)
    gws = [ls for ls in summary["listeners_15443"] if ls["wildcard"]]
    if not gws:
        return Hop(name, BROKEN, ("the gateway has no 0.0.0.0_15443 listener: the `*.global` AUTO_PASSTHROUGH "
                                  "Gateway is missing (global.multiCluster.enabled?)",), fix)
    evidence = []
    for ls in gws:
        for ch in ls["chains"]:
            rw = ch["tcp_cluster_rewrite"]
            rw_text = "no tcp_cluster_rewrite" if rw is None else f"tcp_cluster_rewrite {rw['form']}" + (
                "" if rw["usable"] else " (unusable)")
            evidence.append(f"{ls['name']} chain server_names {ch['server_names']}: {' -> '.join(ch['filters'])}; "
                            f"{rw_text}; forwards to {ch['forwards_to']}")
    if obs.envoyfilter is not None:
        evidence.append(f"EnvoyFilter {ENVOYFILTER}: {envoyfilter_form(obs.envoyfilter)}")
    paths = summary["gateway_paths"]
    if not paths:
        return Hop(name, BROKEN, (*evidence, f"no 15443 chain serves the SNI {sni}"), fix)
    good = [p for p in paths if p["cluster_present"]]
    for p in paths:
        evidence.append(f"SNI {p['sni']} -> cluster {p['cluster']}" + ("" if p["cluster_present"] else " (absent)"))
    if not good:
        return Hop(name, BROKEN, (*evidence, "the connection ends in a cluster the gateway does not have: the "
                                  "gateway closes it (NR), the client sees 503 UF,URX"), fix)
    if fixed and obs.envoyfilter is not None and envoyfilter_form(obs.envoyfilter) != "typed_config":
        evidence.append("works only because the .global SNI cluster exists (local ServiceEntry); the EnvoyFilter "
                        "is not in its working form")
    return Hop(name, OK, tuple(evidence), "")


def hop_root_ca(obs: Observations) -> Hop:
    name = "root-ca"
    fix = ("give both clusters `cacerts` from one root BEFORE istiod starts; then restart istiod and the workloads "
           "(delete istio-ca-secret if istiod self-signed)")
    # The write-up's FAQ compares cluster1's sleep with cluster2's httpbin: those two sidecars end the mutual TLS.
    # The gateway passes it through on 15443 and is not restarted when cluster2's root changes, so its ROOTCA
    # says nothing about httpbin's certificate.
    if obs.sidecar_dump is None or obs.server_sidecar_dump is None:
        return _unknown(name, obs, "sidecar_dump" if obs.sidecar_dump is None else "server_sidecar_dump",
                        "config dumps of both sidecars", fix)
    a, b = configdump.rootca(obs.sidecar_dump), configdump.rootca(obs.server_sidecar_dump)
    if a is None or b is None:
        missing = " and ".join(w for w, v in ((f"{obs.client} sleep", a), (f"{obs.server} httpbin", b)) if v is None)
        return Hop(name, UNKNOWN, (f"no ROOTCA in the {missing} sidecar's config_dump",), fix)
    evidence = [f"{obs.client} sleep sidecar ROOTCA sha256 {a['sha256']} ({a['subject']})",
                f"{obs.server} httpbin sidecar ROOTCA sha256 {b['sha256']} ({b['subject']})"]
    failures = fail_verify_errors(obs.client_stats, obs.host) if obs.client_stats is not None else None
    if failures is None:
        evidence.append("ssl.fail_verify_error not exposed by the sidecar (needs the pod annotation "
                        f"{STATS_ANNOTATION})")
    else:
        evidence.append(f"sidecar ssl.fail_verify_error for {obs.host}: {failures}")
    if a["sha256"] != b["sha256"]:
        return Hop(name, BROKEN, (*evidence, "the two sides trust different roots"), fix)
    if failures:
        return Hop(name, BROKEN, (*evidence, "certificate verification is failing"), fix)
    return Hop(name, OK, tuple(evidence), "")


def hop_httpbin(obs: Observations) -> Hop:
    name = "httpbin-ready"
    fix = f"look at httpbin in {obs.server}/{obs.server_namespace}: `kubectl -n {obs.server_namespace} get pods`"
    if obs.pods is None:
        return _unknown(name, obs, "pods", "pods", fix)
    pods = [p for p in obs.pods.get(obs.server, []) if p.namespace == obs.server_namespace
            and p.labels.get("app") == "httpbin"]
    ready = [p for p in pods if p.ready]
    line = f"{obs.server} {obs.server_namespace} httpbin: {len(ready)}/{len(pods)} ready"
    if not ready:
        return Hop(name, BROKEN, (line + "".join(f"; {p.name} {p.detail}" for p in pods[:2]),), fix)
    return Hop(name, OK, (line,), "")


def hop_call(obs: Observations) -> Hop:
    name = "call"
    url = f"http://{obs.host}:{obs.port}/headers"
    fix = "the hops above look fine; read the evidence and the gateway's and sidecar's access logs"
    if obs.curl_output is None:
        return _unknown(name, obs, "curl", f"curl {url} from sleep", fix)
    if obs.curl_exit == 0 and obs.curl_status is not None and 200 <= obs.curl_status < 300:
        return Hop(name, OK, (f"curl {url} from {obs.client} sleep: HTTP {obs.curl_status}",), "")
    head = f"curl {url}: exit {obs.curl_exit}, HTTP {obs.curl_status}"
    verdict = classify.classify(obs.curl_output, obs.curl_exit)
    return Hop(name, BROKEN, (f"{head}, class {verdict.cls}", *verdict.evidence), fix)


HOPS: tuple[Callable[[Observations], Hop], ...] = (
    hop_pods, hop_kube_dns, hop_istiocoredns, hop_serviceentries, hop_sidecar, hop_gateway_reachable, hop_gateway,
    hop_root_ca, hop_httpbin, hop_call,
)


def walk(observations: Observations) -> list[Hop]:
    """Every hop in order, up to and including the first broken one."""
    out: list[Hop] = []
    for check in HOPS:
        hop = check(observations)
        out.append(hop)
        if hop.status == BROKEN:
            break
    return out


# --- output ---------------------------------------------------------------------------------------------------
def render_text(hops: Sequence[Hop]) -> str:
    lines = []
    for hop in hops:
        lines.append(f"{hop.status:<7} {hop.name}")
        lines += [f"        {e}" for e in hop.evidence]
        if hop.status != OK and hop.fix:
            lines.append(f"        fix: {hop.fix}")
    broken = [h for h in hops if h.status == BROKEN]
    if broken:
        lines.append(f"first broken hop: {broken[0].name}")
    else:
        unknown = [h.name for h in hops if h.status == UNKNOWN]
        lines.append("no broken hop" + (f" (not checked: {', '.join(unknown)})" if unknown else ""))
    return "\n".join(lines)


def render_json(hops: Sequence[Hop]) -> str:
    return json.dumps([asdict(h) for h in hops], indent=2)


def exit_code(hops: Sequence[Hop]) -> int:
    return 1 if any(h.status == BROKEN for h in hops) else 0


# --- the thin part: gathering observations from the clusters ------------------------------------------------
@dataclass
class LabAccess:
    """How to reach the lab: the profile, the one lab handle (a ClusterHandle per cluster, from the provider), and
    the runner and kubectl the fixes' commands name."""

    profile: Profile
    lab: LabHandle
    runner: Runner = field(default_factory=Runner)

    @property
    def kubectl(self) -> dict[str, Kubectl]:
        """kubectl per cluster name, on the handle's kubeconfig and context (ClusterHandle.kubectl)."""
        return {name: h.kubectl(self.runner) for name, h in self.lab.clusters.items()}


def _first_pod(k: ClusterHandle, namespace: str, selector: str) -> str:
    """The pod lab.probe.Prober.pod picks: the newest Running one not being deleted. Right after a rollout (lab up
    annotates the sleep pods for their stats) the replaced pod stays Running for its grace period with its sidecar
    gone (it carries a deletionTimestamp), and a new one may still be Pending, whose istio-proxy cannot be exec'd
    into yet."""
    return Prober(k).pod(namespace, selector)


def _gather(obs: Observations, key: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except PreflightError:
        raise
    except (LabError, ValueError, KeyError) as err:  # ValueError covers bad JSON from a half-started proxy
        obs.errors[key] = str(err).splitlines()[0] if str(err) else type(err).__name__


@dataclass
class _Reader:
    """One collection: the client cluster's (`k1`) and the server cluster's (`k2`) handle, and the observations it
    fills in, one method per observation (each failure is recorded by `_gather`)."""

    obs: Observations
    k1: ClusterHandle
    k2: ClusterHandle

    def pods(self) -> None:
        pods: dict[str, list[PodState]] = {}
        for name, k in ((self.obs.client, self.k1), (self.obs.server, self.k2)):
            # as the API's JSON (`kubectl get pods -A -o json`), for the pure reader of it
            pods[name] = pods_from_json(name, {"items": [k.json_of(p) for p in k.pods(None)]})
        self.obs.pods = pods

    def corefile(self) -> None:
        self.obs.corefile = (self.k1.coredns().data or {})["Corefile"]

    def istiocoredns(self) -> None:
        self.obs.istiocoredns_ip = self.k1.cluster_ip(names.ISTIO_NS, names.ISTIOCOREDNS_SERVICE)

    def kube_dns(self) -> None:
        self.obs.kube_dns_ip = self.k1.cluster_ip(*names.KUBE_DNS_SERVICE)

    def lookups(self) -> None:
        obs = self.obs
        prober = Prober(self.k1)
        pod = prober.pod(obs.client_namespace, "app=sleep")
        if obs.kube_dns_ip:
            obs.lookup_kube_dns = prober.nslookup(obs.client_namespace, pod, obs.host, obs.kube_dns_ip)
        if obs.istiocoredns_ip:
            obs.lookup_istiocoredns = prober.nslookup(obs.client_namespace, pod, obs.host, obs.istiocoredns_ip)

    def plugin_log(self) -> None:
        # container name from manifests/charts/istiocoredns/templates/deployment.yaml@1.7.8; its pod as `kubectl
        # logs deploy/istiocoredns` finds one, a running pod of the Deployment (app=istiocoredns)
        pod = _first_pod(self.k1, names.ISTIO_NS, f"app={names.ISTIOCOREDNS_SERVICE}")
        self.obs.istiocoredns_log = self.k1.logs(names.ISTIO_NS, pod, "istio-coredns-plugin", tail=500)

    def serviceentries(self) -> None:
        self.obs.serviceentries = {
            name: k.list_objects(SERVICE_ENTRY) for name, k in ((self.obs.client, self.k1), (self.obs.server, self.k2))}

    def gateway_address(self) -> None:
        # the write-up's lookups (docs/sources.md#istio-recipes-lookups): the gateway pod's hostIP, the nodePort
        self.obs.gateway_address = self.k2.pod_host_ip(names.ISTIO_NS, names.GATEWAY_SELECTOR)
        self.obs.gateway_node_port = self.k2.node_port(names.ISTIO_NS, names.GATEWAY_SERVICE, names.GATEWAY_TLS_PORT)

    def envoyfilter(self) -> None:
        self.obs.envoyfilter = self.k2.find_object(ENVOY_FILTER, names.ISTIO_NS, ENVOYFILTER) or {}

    def sidecar(self) -> None:
        obs, k1 = self.obs, self.k1
        pod = _first_pod(k1, obs.client_namespace, "app=sleep")
        obs.sidecar_dump = json.loads(envoy_admin(k1, obs.client_namespace, pod, "config_dump"))
        obs.client_stats = envoy_admin(k1, obs.client_namespace, pod, f"stats?filter={names.FAIL_VERIFY_STAT}")

    def server_sidecar(self) -> None:
        obs, k2 = self.obs, self.k2
        pod = _first_pod(k2, obs.server_namespace, "app=httpbin")
        obs.server_sidecar_dump = json.loads(envoy_admin(k2, obs.server_namespace, pod, "config_dump"))

    def gateway_dump(self) -> None:
        pod = _first_pod(self.k2, names.ISTIO_NS, names.GATEWAY_SELECTOR)
        self.obs.gateway_dump = json.loads(envoy_admin(self.k2, names.ISTIO_NS, pod, "config_dump"))

    def node_port(self) -> None:
        obs = self.obs
        if not (obs.gateway_address and obs.gateway_node_port):
            raise LabError("gateway address or nodePort unknown")
        pod = _first_pod(self.k1, obs.client_namespace, "app=sleep")
        # from the istio-proxy container: its traffic (uid 1337) is not redirected to Envoy, so this is a plain
        # TCP connect across the kind network; `nc` is in the proxyv2 base image (docker/Dockerfile.base@1.7.8).
        res = self.k1.exec(obs.client_namespace, pod, "istio-proxy",
                           ["nc", "-z", "-w", "5", obs.gateway_address, str(obs.gateway_node_port)])
        obs.node_port_reachable = res.ok
        obs.node_port_detail = res.output.strip().splitlines()[-1] if res.output.strip() else f"exit {res.exit_code}"

    def curl(self) -> None:
        obs = self.obs
        prober = Prober(self.k1)
        pod = prober.pod(obs.client_namespace, "app=sleep")
        result = prober.curl(obs.client_namespace, pod, f"http://{obs.host}:{obs.port}/headers")
        obs.curl_output, obs.curl_exit, obs.curl_status = result.output, result.exit_code, result.status

    def in_order(self) -> tuple[tuple[str, Callable[[], None]], ...]:
        """Every observation after the pods, keyed as `Observations.errors` names its failure, in reading order
        (the lookups need the DNS addresses, the nodePort probe the gateway address)."""
        return (("corefile", self.corefile), ("istiocoredns_ip", self.istiocoredns), ("kube_dns_ip", self.kube_dns),
                ("lookup", self.lookups),
                ("istiocoredns_log", self.plugin_log), ("serviceentries", self.serviceentries),
                ("gateway_address", self.gateway_address), ("envoyfilter", self.envoyfilter),
                ("sidecar_dump", self.sidecar), ("gateway_dump", self.gateway_dump),
                ("server_sidecar_dump", self.server_sidecar), ("node_port", self.node_port),
                ("curl", self.curl))


def collect(lab: LabAccess) -> Observations:
    """Read everything `walk` needs; each failure is recorded in `errors` and leaves that observation None."""
    p = lab.profile
    c1, c2 = p.client.name, p.server.name
    obs = Observations(istio_version=p.istio_version, client=c1, server=c2, aaaa_guard=p.aaaa_guard)
    reader = _Reader(obs, lab.lab[c1], lab.lab[c2])
    # Without the API servers nothing else can be observed: say so in one line instead of ten unknown hops (the
    # handle's own line: which call on which cluster, why, what to do).
    try:
        reader.pods()
    except (ValueError, KeyError, AttributeError, TypeError) as err:  # an answer that is no pod list
        raise LabError(f"the API server's pod list is not JSON of pods ({str(err)[:120] or type(err).__name__}); "
                       "check the lab's kubeconfig files (make lab-status)") from err
    for key, fn in reader.in_order():
        _gather(obs, key, fn)
    return obs


def lab_access(profile: Profile, lab_home: Path, runner: Runner | None = None,
               kubectl: str | None = None) -> LabAccess:
    """The lab handle from the provider of the lab in `lab_home` (lab.executor.connect: kubeconfig and context come
    only from it), or a one-line LabError when there is no lab."""
    from lab import executor  # the engine's commands, which know the provider; imported late (it imports this)

    runner = runner or Runner()
    provider = executor.provider_for(profile, lab_home, runner)
    for cluster in profile.clusters:
        kubeconfig = provider.kubeconfig(cluster)
        if not kubeconfig.is_file():
            raise LabError(f"no lab here: {kubeconfig} does not exist; run `make lab-up` first "
                           "(or set LAB_HOME to the lab's state directory)")
    binary = kubectl or _kubectl_binary(profile, runner)
    return LabAccess(profile, LabHandle.from_provider(profile.clusters, provider, binary), runner)


def _kubectl_binary(profile: Profile, runner: Runner) -> str:
    """The kubectl `lab up` used (lab.tools: PATH at the pinned version, else its cache), else kubectl on PATH.
    Never downloads: the doctor only reads."""
    tools = _module("lab.tools")  # branch platform
    if tools is None:
        return "kubectl"
    found = tools.cached_kubectl(profile, tools.cache_dir(), runner)
    if found:
        return str(found)
    if shutil.which("kubectl"):
        return "kubectl"
    raise PreflightError(f"kubectl {profile.kubectl_version} is neither on PATH nor in the lab's cache "
                         f"({tools.cache_dir()}); the doctor downloads nothing: run `make lab-up` first")


def run(profile: str | None = None, lab_home: str | Path | None = None, runner: Runner | None = None) -> list[Hop]:
    """Collect from the running lab and walk the hops (what `lab doctor` does). Without `profile`, the one the lab
    was built with (its state.json), as `lab status` reads it."""
    home = resolve_home(lab_home)
    if not (home / "state.json").exists():
        raise NoLabError(home)
    if profile is None:
        rec = State.load(home).profile or {}
        try:
            prof = _ours(load_profile(rec.get("name", "default"), rec.get("overrides") or {}))
        except LabError as err:
            raise LabError(f"the profile recorded in {home / 'state.json'} no longer loads ({err}); pass --profile "
                           "NAME") from err
    else:
        prof = _ours(load_profile(profile))
    return walk(collect(lab_access(prof, home, runner)))


def _ours(profile: object) -> Profile:
    if not isinstance(profile, Profile):
        raise UsageError(f"profile {getattr(profile, 'name', profile)!r} is not one of the replicated-control-planes "
                         "scenario's; its own scenario's doctor reads it")
    return profile


def command(profile: str | None, home: Path, as_json: bool, out: TextIO) -> int:
    """`lab doctor` for this scenario: the hops as text (or JSON) on `out`; the exit code says whether all are ok."""
    hops = run(profile=profile, lab_home=home)
    print(render_json(hops) if as_json else render_text(hops), file=out)
    return exit_code(hops)
