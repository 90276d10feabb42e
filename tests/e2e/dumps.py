"""Small readers over an Envoy v3 /config_dump for the e2e assertions (the sections the write-up quotes).

Field names follow Envoy's admin API (envoy.admin.v3.ClustersConfigDump / ListenersConfigDump / RoutesConfigDump:
`dynamic_active_clusters[].cluster`, `dynamic_listeners[].active_state.listener`,
`dynamic_route_configs[].route_config`), the shapes the write-up prints from Istio 1.7's Envoy.
The ROOTCA comparison uses lab.configdump.rootca.
"""

from __future__ import annotations


def section(dump: dict, type_suffix: str) -> dict:
    for config in dump.get("configs", []):
        if str(config.get("@type", "")).endswith(type_suffix):
            return config
    return {}


def clusters(dump: dict) -> dict[str, dict]:
    sec = section(dump, "ClustersConfigDump")
    found = [e.get("cluster", {}) for e in sec.get("dynamic_active_clusters", []) + sec.get("static_clusters", [])]
    return {c.get("name", ""): c for c in found}


def endpoints(cluster: dict) -> list[tuple[str, int]]:
    out = []
    for group in cluster.get("load_assignment", {}).get("endpoints", []):
        for lb in group.get("lb_endpoints", []):
            sock = lb.get("endpoint", {}).get("address", {}).get("socket_address", {})
            out.append((sock.get("address", ""), int(sock.get("port_value", 0))))
    return out


def listeners(dump: dict) -> dict[str, dict]:
    sec = section(dump, "ListenersConfigDump")
    out = {}
    for entry in sec.get("dynamic_listeners", []):
        listener = entry.get("active_state", {}).get("listener")
        if listener:
            out[listener.get("name", entry.get("name", ""))] = listener
    return out


def virtual_hosts(dump: dict) -> list[dict]:
    sec = section(dump, "RoutesConfigDump")
    out = []
    for entry in sec.get("dynamic_route_configs", []):
        out.extend(entry.get("route_config", {}).get("virtual_hosts", []))
    return out


def chains_for_sni(listener: dict, server_name: str) -> list[dict]:
    return [fc for fc in listener.get("filter_chains", [])
            if server_name in fc.get("filter_chain_match", {}).get("server_names", [])]


def filter_names(chain: dict) -> list[str]:
    return [f.get("name", "") for f in chain.get("filters", [])]
