"""Test-only synthetic Envoy config dumps, in the shape lab.configdump reads (written from Istio 1.7.8's gateway chart
and pilot code: shapes no public dump has)."""

from __future__ import annotations


def synthetic_gateway(filters: list[dict], clusters: list[str]) -> dict:
    """A synthetic v3 dump holding one `0.0.0.0_15443` listener with `filters` and the named clusters."""
    return {"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
         "dynamic_active_clusters": [{"cluster": {"name": n, "type": "EDS", "eds_cluster_config": {}}}
                                     for n in clusters]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [{
            "name": "0.0.0.0_15443", "active_state": {"listener": {
                "name": "0.0.0.0_15443",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15443}},
                "filter_chains": [{"filter_chain_match": {"server_names": ["*.global"]}, "filters": filters}]}}}]},
    ]}
