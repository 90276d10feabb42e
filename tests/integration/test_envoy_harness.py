"""The real-Envoy harness itself: starts, serves a direct response, shows it in its config dump."""

from __future__ import annotations

import pytest
import requests

from tests.support.envoy import free_port, run_envoy

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

pytestmark = pytest.mark.integration


def test_real_envoy_serves_a_direct_response_and_dumps_its_config(envoy_path, tmp_path):
    port = free_port()
    bootstrap = {
        "static_resources": {
            "listeners": [{
                "name": "l",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": "t",
                        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"},
                             "direct_response": {"status": 418, "body": {"inline_string": "teapot"}}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    },
                }]}],
            }],
        },
    }
    with run_envoy(bootstrap, workdir=tmp_path) as envoy:
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert (r.status_code, r.text) == (418, "teapot")
        dump = envoy.config_dump()
        kinds = [c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]]
        assert "ListenersConfigDump" in kinds
