"""The curl argv of lab.probe run for real (sh + curl on this machine) against loopback servers."""

from __future__ import annotations

import http.server
import shutil
import threading

import pytest

from lab.probe import curl_argv, parse_curl
from lab.shell import Runner
from tests.support.envoy import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b'{"headers": {"X-Forwarded-Client-Cert": "URI=spiffe://cluster.local/ns/foo/sa/sleep"}}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _need_curl():
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for this test; .ci/run installs it")


def test_real_curl_success_is_parsed_to_200_with_body(http_server):
    res = Runner().run(curl_argv(f"http://127.0.0.1:{http_server}/headers", method="POST"), check=False)
    r = parse_curl(res.stdout, res.returncode, stderr=res.stderr)
    assert (r.status, r.exit_code, r.ok) == (200, 0, True)
    assert r.body.startswith("{") and r.body.rstrip().endswith("}")  # the -v lines stay out of the body
    assert "spiffe://cluster.local/ns/foo/sa/sleep" in r.body
    assert "> POST /headers" in r.output
    assert r.headers["content-type"] == "application/json"


def test_real_curl_refused_port_gives_exit_7_and_no_status():
    res = Runner().run(curl_argv(f"http://127.0.0.1:{free_port()}/headers"), check=False)
    r = parse_curl(res.output, res.returncode)
    assert (r.status, r.exit_code) == (None, 7)
    assert "curl: (7)" in r.output


def test_real_curl_unresolvable_name_gives_exit_6():
    res = Runner().run(curl_argv("http://httpbin.bar.invalid:8000/headers"), check=False)
    r = parse_curl(res.output, res.returncode)
    assert (r.status, r.exit_code) == (None, 6)


@pytest.fixture
def routed_netns():
    """A network namespace with an interface, an address and a default route, so that a route lookup for any
    destination succeeds there and an ENETUNREACH can only come from a rule about the address itself: a veth pair
    whose other end (10.200.0.1, the gateway) sits in a second namespace, so nothing can leave the machine.
    Yields (namespace, peer address)."""
    import os

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")
    name, peer = f"labprobe{os.getpid()}", f"labpeer{os.getpid()}"
    run = Runner().run
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "netns", "add", peer])
        ns, pns = ["ip", "netns", "exec", name], ["ip", "netns", "exec", peer]
        run([*ns, "ip", "link", "set", "lo", "up"])
        run([*ns, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", peer])
        run([*ns, "ip", "addr", "add", "10.200.0.2/24", "dev", "veth0"])
        run([*ns, "ip", "link", "set", "veth0", "up"])
        run([*pns, "ip", "addr", "add", "10.200.0.1/24", "dev", "veth1"])
        run([*pns, "ip", "link", "set", "veth1", "up"])
        run([*ns, "ip", "route", "add", "default", "via", "10.200.0.1", "dev", "veth0"])
        yield name, "10.200.0.1"
    finally:
        run(["ip", "netns", "del", name], check=False)
        run(["ip", "netns", "del", peer], check=False)


@pytest.mark.needs_root
def test_real_curl_to_a_multicast_vip_is_unreachable_and_verbose_lines_say_so(routed_netns):
    from lab.classify import classify

    netns, peer = routed_netns
    ns = ["ip", "netns", "exec", netns]
    # the kernel has a route for it (the default route's device; `ip route get` says multicast) ...
    route = Runner().run([*ns, "ip", "route", "get", "224.0.0.2"]).stdout
    assert route.startswith("multicast 224.0.0.2 dev veth0"), route
    # ... and the same namespace reaches a unicast address over that interface (refused by the peer's kernel) ...
    res = Runner().run([*ns, *curl_argv(f"http://{peer}:{free_port()}/headers")], check=False)
    reached = parse_curl(res.stdout, res.returncode, stderr=res.stderr)
    assert reached.exit_code == 7 and "Connection refused" in reached.output, reached.output
    # ... so "Network is unreachable" comes from TCP refusing a multicast destination (net/ipv4/tcp_ipv4.c
    # tcp_v4_connect: RTCF_MULTICAST -> -ENETUNREACH), at once, not from a missing route.
    res = Runner().run([*ns, *curl_argv("http://224.0.0.2:8000/headers")], check=False)
    r = parse_curl(res.stdout, res.returncode, stderr=res.stderr)
    assert (r.status, r.exit_code) == (None, 7)
    assert "Network is unreachable" in r.output
    assert classify(r.output, r.exit_code).cls == "unreachable"
