"""Envoy `/config_dump` analysis: what a sidecar or gateway knows about one host and port, in plain terms.

This module owns reading a config dump (Envoy's admin `/config_dump`, with or without `?include_eds`) and
summarising it for the lab's path: the clusters for a host and port (Istio's `outbound|8000||host` names and a
gateway's SNI-DNAT names `outbound_.8000_._.host`), their endpoints or a plain statement that the dump has none,
the route virtual hosts whose domains match, the 15443 listeners with each filter chain's server names and network
filters, every `BlackHoleCluster` chain with the reason it is (or is not) a failure, and the ROOTCA certificate.

Formats accepted (all seen in real dumps, see tests/data/envoy_config_dump/README.md):
- `envoy.admin.v2alpha.*` (Envoy <= 1.12): `dynamic_active_listeners[].listener`, filters with `config:` structs;
- `envoy.admin.v3.*`: `dynamic_listeners[].active_state.listener`, filters with `typed_config`;
- static listeners without a `name`, sections missing altogether (a dump of secrets only), EDS clusters whose
  endpoints are only in an `EndpointsConfigDump` when the dump was taken with `?include_eds`.

Everything here is pure: input is the parsed JSON, output a JSON-able dict. Nothing is fetched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from lab.errors import ValidationError

BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
GATEWAY_PORT = 15443
ROOTCA = "ROOTCA"

TCP_PROXY = {"envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"}
SNI_CLUSTER = "envoy.filters.network.sni_cluster"
TCP_CLUSTER_REWRITE = "envoy.filters.network.tcp_cluster_rewrite"
# The Istio proxy's filter config type (istio/istio manifests/charts/gateways/istio-ingress/templates/
# preconfigured.yaml at 1.7.5+; the 1.7.0-1.7.4 chart used a legacy `config:` key instead, istio#27909).
REWRITE_TYPE = "istio.envoy.config.filter.network.tcp_cluster_rewrite.v2alpha1.TcpClusterRewrite"
# Istio's sidecar loop guards: virtualOutbound (15001) and virtualInbound (15006) send traffic addressed to the
# capture ports themselves to BlackHoleCluster so that it cannot loop.
LOOP_GUARD_PORTS = {15001, 15006}

NO_EDS_ENDPOINTS = "endpoints not present in dump (EDS)"

_SNI_DNAT_RE = re.compile(r"^(outbound|inbound)_\.(\d+)_\.(.*?)_\.(.+)$")


# --- reading ------------------------------------------------------------------------------------------------
def load(text: str, source: str = "input") -> dict[str, Any]:
    """Parse a config dump, or raise ValidationError with one line saying what is wrong and what to pass."""
    try:
        dump = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValidationError(
            f"{source} is not JSON ({err.msg} at line {err.lineno} column {err.colno}); pass the output of "
            "Envoy's /config_dump (e.g. `kubectl exec POD -c istio-proxy -- pilot-agent request GET config_dump`)"
        ) from err
    except RecursionError as err:
        raise ValidationError(f"{source} is nested too deeply to be a config dump (JSON deeper than Python's "
                              "recursion limit); pass the output of Envoy's /config_dump") from err
    if not isinstance(dump, dict) or not isinstance(dump.get("configs"), list | dict):
        raise ValidationError(f"{source} is JSON but not an Envoy config dump (no top-level `configs`); "
                              "pass the output of Envoy's /config_dump")
    return dump


def sections(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dump's sections by short type name (`ClustersConfigDump`, ...), whatever the admin API version."""
    configs = dump.get("configs") or []
    if isinstance(configs, dict):  # Envoy before 1.8 keyed sections by name
        configs = list(configs.values())
    out: dict[str, dict[str, Any]] = {}
    for section in configs:
        if isinstance(section, dict):
            short = str(section.get("@type", "")).rsplit(".", 1)[-1]
            if short:
                out[short] = section
    return out


def dump_format(dump: dict[str, Any]) -> str:
    types = [str(s.get("@type", "")) for s in sections(dump).values()]
    if any(".admin.v3." in t for t in types):
        return "v3"
    if any(".admin.v2alpha." in t for t in types):
        return "v2alpha"
    return "unknown"


# --- names --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterName:
    direction: str
    port: int | None
    subset: str
    host: str
    form: str  # "istio" (`outbound|8000||host`), "sni-dnat" (`outbound_.8000_._.host`) or "other"


def parse_cluster_name(name: str) -> ClusterName:
    """Split an Istio cluster name. The host may have any number of dots, or none (`com.netease.static-3718`)."""
    parts = name.split("|")
    if len(parts) == 4 and parts[0] in ("outbound", "inbound"):
        return ClusterName(parts[0], int(parts[1]) if parts[1].isdigit() else None, parts[2], parts[3], "istio")
    m = _SNI_DNAT_RE.match(name)
    if m:
        return ClusterName(m.group(1), int(m.group(2)), m.group(3), m.group(4), "sni-dnat")
    return ClusterName("", None, "", "", "other")


def sni_dnat_name(host: str, port: int, subset: str = "", direction: str = "outbound") -> str:
    """The cluster name a gateway in sni-dnat mode builds, and the SNI a sidecar sends for `host:port`."""
    return f"{direction}_.{port}_.{subset}_.{host}"


def in_domain(host: str, suffix: str) -> bool:
    """True when `host` is a name under the DNS suffix, as whole labels: `httpbin.bar.svc.cluster.local` is under
    `svc.cluster.local` and `cluster.local`; `global-sidecar.default.svc.cluster.local` is not under `global`, nor
    `local` under itself."""
    return host.lower().rstrip(".").endswith("." + suffix.lower().rstrip("."))


def host_matches(candidate: str, query: str) -> bool:
    """Does `candidate` (a cluster host or a route domain without port) match the query host?

    A query `*.suffix` matches every name under the suffix (`in_domain`), anything else only itself (any case, a
    trailing dot). A candidate wildcard domain (`*.cluster.local`, `*`) is not matched here: routes report those
    separately. The query a command uses when none is given is its scenario's (lab.scenario.Scenario.config_hosts).
    """
    cand = candidate.lower().rstrip(".")
    q = query.lower().rstrip(".")
    if q.startswith("*."):
        return in_domain(cand, q[2:])
    return cand == q


def _split_domain(domain: str) -> tuple[str, int | None]:
    host, sep, port = domain.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host, int(port)
    return domain, None


# --- clusters -----------------------------------------------------------------------------------------------
def _clusters(dump: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sec = sections(dump).get("ClustersConfigDump") or {}
    for state, key in (("static", "static_clusters"), ("active", "dynamic_active_clusters"),
                       ("warming", "dynamic_warming_clusters")):
        for entry in sec.get(key) or []:
            cluster = entry.get("cluster") if isinstance(entry, dict) else None
            if isinstance(cluster, dict):
                yield state, cluster


def _cluster_type(cluster: dict[str, Any]) -> str:
    if "type" in cluster:
        return str(cluster["type"])
    if "cluster_type" in cluster:
        return str(cluster["cluster_type"].get("name", "custom"))
    if "eds_cluster_config" in cluster:
        return "EDS"
    # proto3 JSON leaves out default values; STATIC is the enum's zero (envoy config/cluster/v3/cluster.proto).
    return "STATIC"


def _socket(addr: dict[str, Any]) -> str | None:
    sock = (addr or {}).get("socket_address")
    if isinstance(sock, dict):
        port = sock.get("port_value", sock.get("named_port", ""))
        return f"{sock.get('address', '')}:{port}"
    pipe = (addr or {}).get("pipe")
    if isinstance(pipe, dict):
        return f"unix:{pipe.get('path', '')}"
    return None


def _assignment_endpoints(assignment: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for locality in assignment.get("endpoints") or []:
        for lb in locality.get("lb_endpoints") or []:
            address = _socket((lb.get("endpoint") or {}).get("address") or {})
            if address:
                item = {"address": address}
                if lb.get("health_status"):
                    item["health"] = lb["health_status"]
                out.append(item)
    return out


def _eds_assignments(dump: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """cluster/service name -> ClusterLoadAssignment, or None when the dump has no EndpointsConfigDump."""
    sec = sections(dump).get("EndpointsConfigDump")
    if sec is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    for key in ("static_endpoint_configs", "dynamic_endpoint_configs"):
        for entry in sec.get(key) or []:
            cfg = entry.get("endpoint_config") or {}
            if cfg.get("cluster_name"):
                out[cfg["cluster_name"]] = cfg
    return out


def _tls_sni(cluster: dict[str, Any]) -> str | None:
    sockets = [cluster.get("transport_socket")] + [m.get("transport_socket") for m in
                                                   cluster.get("transport_socket_matches") or []]
    for ts in sockets:
        cfg = (ts or {}).get("typed_config") or (ts or {}).get("config") or {}
        if cfg.get("sni"):
            return str(cfg["sni"])
    tls = cluster.get("tls_context") or {}  # v2 clusters before transport_socket
    return tls.get("sni")


def summarize_cluster(cluster: dict[str, Any], state: str = "active",
                      eds: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    name = str(cluster.get("name", ""))
    parsed = parse_cluster_name(name)
    ctype = _cluster_type(cluster)
    out: dict[str, Any] = {"name": name, "form": parsed.form, "direction": parsed.direction, "port": parsed.port,
                           "subset": parsed.subset, "host": parsed.host, "type": ctype, "state": state}
    endpoints: list[dict[str, Any]] | None = None
    statement = ""
    if "load_assignment" in cluster:
        endpoints = _assignment_endpoints(cluster["load_assignment"])
        statement = "inline load_assignment" + (" (resolved by Envoy's DNS)" if ctype.endswith("DNS") else "")
    elif "hosts" in cluster:  # v2 clusters before load_assignment
        endpoints = [{"address": a} for a in (_socket(h) for h in cluster["hosts"]) if a]
        statement = "inline hosts"
    elif ctype == "EDS":
        service = (cluster.get("eds_cluster_config") or {}).get("service_name") or name
        if eds is None:
            statement = NO_EDS_ENDPOINTS
        elif service in eds:
            endpoints = _assignment_endpoints(eds[service])
            statement = "EndpointsConfigDump (include_eds)"
        else:
            endpoints = []
            statement = "EDS sent no assignment for this cluster"
    elif ctype == "ORIGINAL_DST":
        statement = "no endpoints: ORIGINAL_DST connects to the original destination address"
    else:
        endpoints = []
        statement = "no endpoints configured"
    out["endpoints"] = endpoints
    out["endpoints_statement"] = statement
    sni = _tls_sni(cluster)
    if sni:
        out["tls_sni"] = sni
    return out


def find_clusters(dump: dict[str, Any], host: str, port: int | None = None) -> list[dict[str, Any]]:
    eds = _eds_assignments(dump)
    out = []
    for state, cluster in _clusters(dump):
        parsed = parse_cluster_name(str(cluster.get("name", "")))
        if parsed.form == "other" or not host_matches(parsed.host, host):
            continue
        if port is not None and parsed.port != port:
            continue
        out.append(summarize_cluster(cluster, state, eds))
    return out


def cluster_names(dump: dict[str, Any]) -> set[str]:
    return {str(c.get("name", "")) for _, c in _clusters(dump)}


# --- listeners ----------------------------------------------------------------------------------------------
def _listeners(dump: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sec = sections(dump).get("ListenersConfigDump") or {}
    for entry in sec.get("static_listeners") or []:
        if isinstance(entry.get("listener"), dict):
            yield "static", entry["listener"]
    # v2alpha before Envoy 1.13: one list per state, each entry holding `listener` directly.
    for state, key in (("active", "dynamic_active_listeners"), ("warming", "dynamic_warming_listeners"),
                       ("draining", "dynamic_draining_listeners")):
        for entry in sec.get(key) or []:
            if isinstance(entry.get("listener"), dict):
                yield state, entry["listener"]
    # v3 (and v2alpha from Envoy 1.13): one entry per listener with a state each.
    for entry in sec.get("dynamic_listeners") or []:
        for state in ("active", "warming", "draining"):
            listener = (entry.get(f"{state}_state") or {}).get("listener")
            if isinstance(listener, dict):
                yield state, listener


def _listener_address(listener: dict[str, Any]) -> tuple[str, int | None]:
    sock = (listener.get("address") or {}).get("socket_address") or {}
    port = sock.get("port_value")
    return str(sock.get("address", "")), int(port) if port is not None else None


def listener_label(listener: dict[str, Any]) -> str:
    """The listener's name, or `address_port` for static listeners, which have none."""
    if listener.get("name"):
        return str(listener["name"])
    addr, port = _listener_address(listener)
    return f"{addr}_{port}"


def _filter_config(f: dict[str, Any]) -> dict[str, Any]:
    return f.get("typed_config") or f.get("config") or {}


def _rewrite_info(f: dict[str, Any]) -> dict[str, Any]:
    # Why the legacy form breaks on 1.7: istio/istio pkg/config/xds/xds.go@1.7.8 BuildXDSObjectFromStruct unmarshals
    # an EnvoyFilter NETWORK_FILTER value into the v3 listener.Filter with AllowUnknownFields, so `config:` is
    # silently dropped (at 1.6.8 the target was the v2 Filter, which still had `config`).
    typed = f.get("typed_config")
    legacy = f.get("config")
    if isinstance(typed, dict) and typed:
        type_url = str(typed.get("@type", ""))
        value = typed
        # A struct wrapped in udpa TypedStruct still carries the fields under `value`.
        if type_url.endswith("TypedStruct") and isinstance(typed.get("value"), dict):
            value = typed["value"]
            type_url = str(typed.get("type_url", type_url))
        usable = bool(value.get("cluster_pattern")) and "TcpClusterRewrite" in type_url
        why = ("typed_config with @type TcpClusterRewrite" if usable else
               f"typed_config without a usable TcpClusterRewrite ({type_url or 'no @type'})")
        return {"present": True, "form": "typed_config", "usable": usable, "type_url": type_url,
                "cluster_pattern": value.get("cluster_pattern"),
                "cluster_replacement": value.get("cluster_replacement"), "why": why}
    if isinstance(legacy, dict) and legacy:
        return {"present": True, "form": "legacy-config", "usable": False, "type_url": None,
                "cluster_pattern": legacy.get("cluster_pattern"),
                "cluster_replacement": legacy.get("cluster_replacement"),
                "why": "legacy `config:` struct: Istio 1.7+ builds xDS v3 filters, which have no `config` field, "
                       "so it is dropped; Istio 1.7.0-1.7.4 shipped this form (istio#27909, fixed in 1.7.5 with "
                       "typed_config)"}
    return {"present": True, "form": "none", "usable": False, "type_url": None, "cluster_pattern": None,
            "cluster_replacement": None,
            "why": "the filter has no configuration (what Istio 1.7.0-1.7.4 pushed from the legacy `config:` "
                   "EnvoyFilter, istio#27204/#27909), so it rewrites nothing"}


def _tcp_target(f: dict[str, Any]) -> str | None:
    cfg = _filter_config(f)
    if cfg.get("cluster"):
        return str(cfg["cluster"])
    weighted = (cfg.get("weighted_clusters") or {}).get("clusters") or []
    if weighted:
        return ",".join(str(w.get("name")) for w in weighted)
    return None


def _node_ips(dump: dict[str, Any]) -> set[str]:
    node = ((sections(dump).get("BootstrapConfigDump") or {}).get("bootstrap") or {}).get("node") or {}
    ips = set()
    parts = str(node.get("id", "")).split("~")
    if len(parts) >= 2 and parts[1]:
        ips.add(parts[1])
    meta_ips = (node.get("metadata") or {}).get("INSTANCE_IPS")
    if isinstance(meta_ips, str):
        ips.update(ip for ip in meta_ips.split(",") if ip)
    return ips


def _blackhole_kind(chain_name: str, match: dict[str, Any], filters: list[str], node_ips: set[str]) -> tuple[str,
                    bool, str]:
    """Why a chain forwards to BlackHoleCluster: (kind, is_failure, explanation)."""
    tcp_at = next(i for i, n in enumerate(filters) if n in TCP_PROXY)
    if SNI_CLUSTER in filters[:tcp_at]:
        return ("placeholder", False, "sni_cluster runs first and replaces the cluster with one named from the SNI "
                "(Istio's AUTO_PASSTHROUGH stack, pilot/pkg/networking/core/v1alpha3/networkfilter.go)")
    if match.get("destination_port") in LOOP_GUARD_PORTS or chain_name.endswith("-blackhole"):
        return ("loop-guard", False, "traffic addressed to the sidecar's own capture port is dropped so it cannot loop")
    prefixes = match.get("prefix_ranges") or []
    host_only = prefixes and all(
        int(p.get("prefix_len", 0) or 0) == (128 if ":" in str(p.get("address_prefix", "")) else 32) for p in prefixes)
    if host_only:
        own = {str(p.get("address_prefix")) for p in prefixes} & node_ips
        why = "matches only the pod's own IP" + (f" ({', '.join(sorted(own))})" if own else "")
        return ("self-loop-guard", False, why + ": a call to itself through the outbound listener is dropped")
    return ("drop", True, "connections matched by this chain are dropped (no sni_cluster before the tcp_proxy)")


def _summarize_chain(chain: dict[str, Any], label: str, node_ips: set[str]) -> dict[str, Any]:
    match = chain.get("filter_chain_match") or {}
    filters = chain.get("filters") or []
    names = [str(f.get("name", "")) for f in filters]
    out: dict[str, Any] = {"name": chain.get("name") or label, "server_names": list(match.get("server_names") or []),
                           "match": match, "filters": names, "sni_cluster": SNI_CLUSTER in names,
                           "tcp_cluster_rewrite": None, "forwards_to": None, "blackhole": None}
    for f in filters:
        if f.get("name") == TCP_CLUSTER_REWRITE:
            info = _rewrite_info(f)
            info["after_sni_cluster"] = SNI_CLUSTER in names and names.index(SNI_CLUSTER) < names.index(
                TCP_CLUSTER_REWRITE)
            out["tcp_cluster_rewrite"] = info
        elif f.get("name") in TCP_PROXY:
            out["forwards_to"] = _tcp_target(f)
        elif f.get("name") in ("envoy.filters.network.http_connection_manager", "envoy.http_connection_manager"):
            cfg = _filter_config(f)
            rds = (cfg.get("rds") or {}).get("route_config_name")
            out["forwards_to"] = f"http routes {rds}" if rds else "http routes (inline)"
    if out["forwards_to"] == BLACKHOLE:
        kind, failure, why = _blackhole_kind(str(chain.get("name", "")), match, names, node_ips)
        out["blackhole"] = {"kind": kind, "failure": failure, "why": why}
    return out


def _chains(listener: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    for chain in listener.get("filter_chains") or []:
        yield chain, ""
    if isinstance(listener.get("default_filter_chain"), dict):
        yield listener["default_filter_chain"], "default_filter_chain"


_ISTIO_LISTENER_RE = re.compile(r"^([0-9a-fA-F.:]+)_(\d+)$")


def istio_bind(listener: dict[str, Any]) -> tuple[str, int | None]:
    """The address and port Istio built the listener for: from its `<address>_<port>` name when it has one
    (pilot names listeners that way), else from the bound address. They differ only for listeners bound
    elsewhere on purpose, such as the loopback copy of a gateway listener in the integration tests."""
    m = _ISTIO_LISTENER_RE.match(str(listener.get("name", "")))
    if m:
        return m.group(1), int(m.group(2))
    return _listener_address(listener)


def summarize_listener(listener: dict[str, Any], state: str = "active",
                       node_ips: set[str] | None = None) -> dict[str, Any]:
    addr, port = _listener_address(listener)
    istio_addr, istio_port = istio_bind(listener)
    return {"name": listener_label(listener), "named": bool(listener.get("name")), "state": state,
            "address": addr, "port": port, "istio_port": istio_port, "wildcard": istio_addr in ("0.0.0.0", "::"),
            "chains": [_summarize_chain(c, lbl, node_ips or set()) for c, lbl in _chains(listener)]}


def _rewrite(name: str, rewrite: dict[str, Any]) -> str | None:
    try:
        replacement = str(rewrite.get("cluster_replacement") or "")
        # Envoy patterns are RE2; the ones Istio's charts write (a dotted suffix anchored with `$`) mean the same in
        # Python. The replacement is
        # taken literally.
        return re.sub(rewrite["cluster_pattern"], lambda _m: replacement, name)
    except (re.error, TypeError):
        return None


def gateway_path(listener_summary: dict[str, Any], host: str, port: int, known: set[str]) -> list[dict[str, Any]]:
    """For each chain of a 15443 listener that serves `host`'s SNI: which cluster the connection ends in."""
    sni = sni_dnat_name(host, port)
    out = []
    for chain in listener_summary["chains"]:
        names = chain["server_names"]
        served = not names or any(n == sni or (n.startswith("*.") and sni.endswith(n[1:])) for n in names)
        if not served:
            continue
        if chain["sni_cluster"]:
            target = sni
            rewrite = chain["tcp_cluster_rewrite"]
            if rewrite and rewrite["usable"] and rewrite["after_sni_cluster"]:
                target = _rewrite(sni, rewrite) or sni
        else:
            target = chain["forwards_to"]
        out.append({"chain": chain["name"], "sni": sni, "cluster": target,
                    "cluster_present": target in known if target else False})
    return out


# --- routes -------------------------------------------------------------------------------------------------
def _route_configs(dump: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sec = sections(dump).get("RoutesConfigDump") or {}
    for key in ("static_route_configs", "dynamic_route_configs"):
        for entry in sec.get(key) or []:
            rc = entry.get("route_config")
            if isinstance(rc, dict):
                # Envoy lists HTTP connection managers' inline route configs as static ones: no need to walk
                # the listeners for them.
                yield "rds" if key.startswith("dynamic") else "static", rc


def _route_targets(vhost: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for r in vhost.get("routes") or []:
        action = r.get("route") or {}
        if action.get("cluster"):
            out.append(str(action["cluster"]))
        for w in (action.get("weighted_clusters") or {}).get("clusters") or []:
            out.append(str(w.get("name")))
        if "direct_response" in r:
            out.append(f"direct_response {r['direct_response'].get('status')}")
    return list(dict.fromkeys(out))


_RC_PORT_RE = re.compile(r"^(?:(\d+)|https?\.(\d+)(?:\..*)?|[^:]+:(\d+))$")


def _route_config_port(name: str) -> int | None:
    """The port a route config serves, from Istio's names: `8000` (sidecar), `http.8080` / `https.443.x.y`
    (gateway), `host:9080` (older sidecars). None when the name does not say."""
    m = _RC_PORT_RE.match(name)
    if not m:
        return None
    return int(next(g for g in m.groups() if g))


def find_routes(dump: dict[str, Any], host: str, port: int | None = None) -> list[dict[str, Any]]:
    """Virtual hosts with a domain for the host: exact or `host:port`, a wildcard such as `*.bar.example`, or the
    catch-all `*` of the route config that serves the port (a sidecar's `8000`, a gateway's `http.8000`): that
    one says where the traffic goes when no virtual host names the host (`allow_any` -> PassthroughCluster).
    """
    out = []
    for origin, rc in _route_configs(dump):
        rc_name = str(rc.get("name", ""))
        rc_port = _route_config_port(rc_name)
        if port is not None and rc_port is not None and rc_port != port:
            continue
        serves_port = port is not None and rc_name in (str(port), f"http.{port}")
        for vh in rc.get("virtual_hosts") or []:
            domains = [str(d) for d in vh.get("domains") or []]
            how = None
            for d in domains:
                h, p = _split_domain(d)
                if port is not None and p is not None and p != port:
                    continue
                if host_matches(h, host):
                    how = "exact"
                    break
                if h.startswith("*.") and host_matches(host, h):  # `*.bar.example` serves `httpbin.bar.example`
                    how = how or "wildcard"
                elif h == "*" and serves_port:
                    how = how or "catch-all"
            if how:
                out.append({"route_config": rc_name, "origin": origin, "virtual_host": vh.get("name"),
                            "domains": domains, "match": how, "clusters": _route_targets(vh)})
    return out


# --- secrets ------------------------------------------------------------------------------------------------
def _secrets(dump: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sec = sections(dump).get("SecretsConfigDump") or {}
    for state, key in (("static", "static_secrets"), ("active", "dynamic_active_secrets"),
                       ("warming", "dynamic_warming_secrets")):
        for entry in sec.get(key) or []:
            secret = entry.get("secret")
            if isinstance(secret, dict):
                yield state, {"name": entry.get("name") or secret.get("name"), **secret}


def _data_source(ds: dict[str, Any]) -> bytes | None:
    if "inline_bytes" in ds:
        try:
            return base64.b64decode(ds["inline_bytes"])
        except ValueError:
            return None
    if "inline_string" in ds:
        return str(ds["inline_string"]).encode()
    return None


def certificate_info(pem: bytes) -> dict[str, Any]:
    """Fingerprint (sha256 of the first certificate's DER, hex), subject, issuer and expiry of a PEM bundle."""
    certs = x509.load_pem_x509_certificates(pem)
    first = certs[0]
    der = first.public_bytes(serialization.Encoding.DER)
    names = {NameOID.EMAIL_ADDRESS: "emailAddress"}  # as OpenSSL prints it, instead of the bare OID
    return {"pem": pem.decode(), "sha256": hashlib.sha256(der).hexdigest(),
            "subject": first.subject.rfc4514_string(names), "issuer": first.issuer.rfc4514_string(names),
            "not_after": first.not_valid_after_utc.isoformat(), "certificates": len(certs)}


def rootca(dump: dict[str, Any]) -> dict[str, Any] | None:
    """The `ROOTCA` secret's trusted CA: {"pem", "sha256", "subject", ...}, or None when the dump has none."""
    for state, secret in _secrets(dump):
        if secret.get("name") != ROOTCA:
            continue
        ca = (secret.get("validation_context") or {}).get("trusted_ca") or {}
        pem = _data_source(ca)
        if not pem or b"-----BEGIN CERTIFICATE-----" not in pem:
            continue
        try:
            info = certificate_info(pem)
        except ValueError:
            continue
        return {**info, "state": state}
    return None


def _rootca_statement(dump: dict[str, Any], found: dict[str, Any] | None) -> str:
    if found:
        return "present"
    for _, secret in _secrets(dump):
        if secret.get("name") == ROOTCA:
            ca = (secret.get("validation_context") or {}).get("trusted_ca") or {}
            if ca.get("filename"):
                return f"ROOTCA refers to the file {ca['filename']} (not in the dump)"
            return "ROOTCA secret present but holds no readable certificate"
    if "SecretsConfigDump" not in sections(dump):
        return "no SecretsConfigDump in the dump"
    return "no ROOTCA secret in the dump"


# --- the summary --------------------------------------------------------------------------------------------
def node_info(dump: dict[str, Any]) -> dict[str, Any] | None:
    boot = (sections(dump).get("BootstrapConfigDump") or {}).get("bootstrap") or {}
    node = boot.get("node")
    if not isinstance(node, dict):
        return None
    meta = node.get("metadata") or {}
    parts = str(node.get("id", "")).split("~")
    version = node.get("build_version")
    ubv = (node.get("user_agent_build_version") or {}).get("version")
    if isinstance(ubv, dict):
        version = ".".join(str(ubv.get(k, 0)) for k in ("major_number", "minor_number", "patch"))
    return {"id": node.get("id"), "proxy_type": parts[0] if len(parts) >= 4 else None,
            "ip": parts[1] if len(parts) >= 4 else None, "istio_version": meta.get("ISTIO_VERSION"),
            "router_mode": meta.get("ROUTER_MODE"), "envoy_version": version}


def _gateway_findings(on_15443: list[dict[str, Any]], sni: str) -> list[str]:
    """What is wrong with the 15443 listeners' chains: an unusable tcp_cluster_rewrite, or none where the SNI cluster
    (`sni`, the name the sidecar sends) would then have to exist on the gateway itself."""
    findings = []
    for ls in on_15443:
        for ch in ls["chains"]:
            rw = ch["tcp_cluster_rewrite"]
            if rw and not rw["usable"]:
                findings.append(f"{ls['name']} chain {ch['name']}: tcp_cluster_rewrite unusable: {rw['why']}")
            if ls["wildcard"] and ch["sni_cluster"] and rw is None:
                findings.append(f"{ls['name']} chain {ch['name']}: no tcp_cluster_rewrite, so the SNI cluster "
                                f"({sni}) must exist on the gateway itself")
    return findings


def _findings(secs: dict[str, Any], what: str, clusters: list[dict[str, Any]], on_15443: list[dict[str, Any]],
              blackholes: list[dict[str, Any]], sni: str) -> list[str]:
    """The summary's plain statements of what is missing or broken, in reading order."""
    findings: list[str] = []
    if "ClustersConfigDump" not in secs:
        findings.append("no ClustersConfigDump in the dump")
    elif not clusters:
        findings.append(f"no cluster for {what}: not found")
    for c in clusters:
        if c["endpoints"] == [] and c["type"] != "ORIGINAL_DST":
            findings.append(f"cluster {c['name']} has no endpoints ({c['endpoints_statement']})")
    if "ListenersConfigDump" not in secs:
        findings.append("no ListenersConfigDump in the dump")
    elif not any(ls["wildcard"] for ls in on_15443):
        findings.append(f"no 0.0.0.0_{GATEWAY_PORT} listener (not an AUTO_PASSTHROUGH gateway)")
    findings += _gateway_findings(on_15443, sni)
    return findings + [f"{b['listener']} chain {b['chain']} drops connections (BlackHoleCluster): {b['why']}"
                       for b in blackholes if b["failure"]]


def analyze(dump: dict[str, Any], host: str, port: int | None = None) -> dict[str, Any]:
    """Summarise `dump` for `host` (a name, or `*.suffix` for every name under it) on `port` (default: any).
    JSON-able."""
    secs = sections(dump)
    clusters = find_clusters(dump, host, port)
    known = cluster_names(dump)
    node_ips = _node_ips(dump)
    listeners = [summarize_listener(lis, st, node_ips) for st, lis in _listeners(dump)]
    on_15443 = [ls for ls in listeners if GATEWAY_PORT in (ls["port"], ls["istio_port"])]
    blackholes = [{"listener": ls["name"], "chain": ch["name"], **ch["blackhole"]}
                  for ls in listeners for ch in ls["chains"] if ch["blackhole"]]
    ca = rootca(dump)
    sni_port = port if port and not host.startswith("*") else None  # one name and port: one SNI, one gateway path
    sni = sni_dnat_name(host, sni_port) if sni_port else "outbound_.PORT_._.HOST"  # the name the sidecar sends
    findings = _findings(secs, host + (f":{port}" if port else ""), clusters, on_15443, blackholes, sni)
    paths: list[dict[str, Any]] = []
    if sni_port:
        for ls in on_15443:
            if ls["wildcard"]:
                paths += [{"listener": ls["name"], **p} for p in gateway_path(ls, host, sni_port, known)]
    return {
        "format": dump_format(dump),
        "node": node_info(dump),
        "sections": sorted(secs),
        "query": {"host": host, "port": port},
        "clusters": {"found": bool(clusters), "total": len(known), "matches": clusters},
        "routes": find_routes(dump, host, port),
        "listeners_15443": on_15443,
        "gateway_paths": paths,
        "blackhole_chains": blackholes,
        "rootca": {k: v for k, v in ca.items() if k != "pem"} if ca else None,
        "rootca_statement": _rootca_statement(dump, ca),
        "findings": findings,
    }
