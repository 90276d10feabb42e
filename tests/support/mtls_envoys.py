"""Two Envoy bootstraps that play the cross-cluster hop of the certs integration test: sleep's sidecar in cluster1
calling httpbin's sidecar in cluster2 with Istio mutual TLS.

Only what that hop needs from Istio 1.7.8's generated config is kept:
- client side (outbound cluster of an ISTIO_MUTUAL DestinationRule): the workload's chain and key, the cluster's
  root as trusted CA, and SNI `outbound_.8000_._.httpbin.bar.global`, which the passthrough gateway on 15443 routes
  on (pilot/pkg/networking/core/v1alpha3/cluster.go and the `*.global` DestinationRule in
  manifests/charts/gateways/istio-ingress/templates/preconfigured.yaml);
- server side (inbound listener in STRICT/PERMISSIVE mTLS): client certificate required and verified against the
  cluster's root, and `forward_client_cert_details: APPEND_FORWARD` with Subject/URI/DNS
  (pilot/pkg/networking/core/v1alpha3/listener.go, ~line 644), so the app sees the caller's SPIFFE identity in
  `X-Forwarded-Client-Cert`.
`passthrough_gateway` is cluster2's ingress gateway port 15443 in sni-dnat mode (AUTO_PASSTHROUGH): it reads the SNI
without terminating TLS and forwards the stream to the cluster named by it, as in the 1.7-era listener kept in
tests/data/envoy_config_dump/fragments (sni_cluster, then tcp_proxy whose BlackHoleCluster is a placeholder;
docs/sources.md#gateway-15443-listener).
Istio's own `tcp_cluster_rewrite` filter is not in upstream Envoy, so the gateway's cluster keeps the `.global` name:
what cluster2's own `httpbin.bar.global` ServiceEntry (the write-up's fix) gives the gateway.
The app behind the server sidecar is `headers_app`, a tiny stand-in for httpbin's `/headers`: it answers with the
request headers it received as JSON.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
TLS = "envoy.transport_sockets.tls"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"

OUTBOUND_CLUSTER = "outbound|8000||httpbin.bar.global"
OUTBOUND_SNI = "outbound_.8000_._.httpbin.bar.global"
INBOUND_STAT_PREFIX = "inbound_httpbin"
ACCESS_LOG_PREFIX = "outbound-access"
ACCESS_LOG_FORMAT = (ACCESS_LOG_PREFIX + ' %RESPONSE_CODE% %RESPONSE_FLAGS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
                     '%UPSTREAM_PEER_URI_SAN%\n')


def _addr(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _static_cluster(name: str, port: int, transport_socket: dict | None = None) -> dict:
    cluster: dict = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _addr(port)}}]}]},
    }
    if transport_socket:
        cluster["transport_socket"] = transport_socket
    return cluster


def _hcm(prefix: str, routes: list[dict], **extra: object) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": prefix,
            "route_config": {"virtual_hosts": [{"name": prefix, "domains": ["*"], "routes": routes}]},
            "http_filters": [ROUTER],
            **extra,
        },
    }


def _tls_certificate(chain: Path, key: Path) -> dict:
    return {"certificate_chain": {"filename": str(chain)}, "private_key": {"filename": str(key)}}


def client_sidecar(*, listen_port: int, server_port: int, chain: Path, key: Path, root: Path,
                   server_identity: str) -> dict:
    """sleep's sidecar: plain HTTP in (from the app), mutual TLS out to the server sidecar."""
    upstream_tls = {
        "name": TLS,
        "typed_config": {
            "@type": UPSTREAM_TLS,
            "sni": OUTBOUND_SNI,
            "common_tls_context": {
                "tls_certificates": [_tls_certificate(chain, key)],
                "validation_context": {
                    "trusted_ca": {"filename": str(root)},
                    # Istio sets the destination's service account as the expected SAN when it knows it.
                    "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": server_identity}}],
                },
            },
        },
    }
    route = {"match": {"prefix": "/"}, "route": {"cluster": OUTBOUND_CLUSTER},
             # Shows which identity the client verified on the server's certificate.
             "response_headers_to_add": [{"header": {"key": "x-upstream-peer-uri",
                                                     "value": "%UPSTREAM_PEER_URI_SAN%"}}]}
    # An access log line on stdout (the Envoy log) carries the TLS failure reason, as Istio's access log does.
    access_log = [{"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}]
    return {"static_resources": {
        "listeners": [{"name": "outbound", "address": _addr(listen_port),
                       "filter_chains": [{"filters": [_hcm("outbound", [route], access_log=access_log)]}]}],
        "clusters": [_static_cluster(OUTBOUND_CLUSTER, server_port, upstream_tls)],
    }}


def server_sidecar(*, listen_port: int, app_port: int, chain: Path, key: Path, root: Path) -> dict:
    """httpbin's sidecar: mutual TLS in (client certificate required), plain HTTP to the app, plus the app."""
    downstream_tls = {
        "name": TLS,
        "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [_tls_certificate(chain, key)],
                "validation_context": {"trusted_ca": {"filename": str(root)}},
            },
        },
    }
    inbound_route = {"match": {"prefix": "/"}, "route": {"cluster": "inbound|8000||"},
                     "response_headers_to_add": [{"header": {"key": "x-downstream-peer-uri",
                                                             "value": "%DOWNSTREAM_PEER_URI_SAN%"}}]}
    return {"static_resources": {
        "listeners": [
            {"name": "inbound", "address": _addr(listen_port), "stat_prefix": INBOUND_STAT_PREFIX,
             "filter_chains": [{
                 "filters": [_hcm("inbound", [inbound_route],
                                  forward_client_cert_details="APPEND_FORWARD",
                                  set_current_client_cert_details={"subject": True, "uri": True, "dns": True})],
                 "transport_socket": downstream_tls,
             }]},
        ],
        "clusters": [_static_cluster("inbound|8000||", app_port)],
    }}


def passthrough_gateway(*, listen_port: int, server_port: int) -> dict:
    """cluster2's gateway on 15443: SNI `*.global` routed, TLS passed through untouched, to the server sidecar."""
    return {"static_resources": {
        "listeners": [{
            "name": "0.0.0.0_15443",
            "address": _addr(listen_port),
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
            "filter_chains": [{
                "filter_chain_match": {"server_names": ["*.global"]},
                "filters": [
                    {"name": "envoy.filters.network.sni_cluster", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster"}},
                    {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "BlackHoleCluster", "cluster": "BlackHoleCluster"}},
                ],
            }],
        }],
        "clusters": [
            _static_cluster(OUTBOUND_SNI, server_port),
            {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"},
        ],
    }}


class _HeadersHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.server.requests_seen += 1  # type: ignore[attr-defined]
        body = json.dumps({"headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass


@contextlib.contextmanager
def headers_app(port: int) -> Iterator[http.server.ThreadingHTTPServer]:
    """httpbin's `/headers` in miniature on 127.0.0.1:`port`: returns {"headers": {...}} of each request.

    `.requests_seen` on the yielded server counts the requests that reached the app."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _HeadersHandler)
    server.requests_seen = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
