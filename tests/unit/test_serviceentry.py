"""lab.scenarios.replicated_control_planes.serviceentry: the write-up's two ServiceEntries, VIP rules and allocation."""

from __future__ import annotations

import ipaddress

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.cli import main
from lab.errors import ValidationError
from lab.scenarios.replicated_control_planes.serviceentry import (
    RemoteService,
    allocate_vips,
    check_vips,
    parse_endpoint,
    render_client,
    render_for_endpoint,
    render_server,
    to_yaml,
    validate_vip,
)
from tests.support.schemas import validate_istio

HTTPBIN = RemoteService("httpbin", "bar")

# The write-up's cluster1 ServiceEntry (seed "配置应用服务", comments dropped), with its ${INGRESS_HOST} and nodePort
# filled in with the values its config dump shows (172.18.0.4:30001).
WRITEUP_CLIENT = """\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin-bar
spec:
  hosts:
  - httpbin.bar.global
  location: MESH_INTERNAL
  ports:
  - name: http1
    number: 8000
    protocol: http
  resolution: DNS
  addresses:
  - 240.0.0.2
  endpoints:
  - address: 172.18.0.4
    ports:
      http1: 30001
"""
# The write-up's cluster2 ServiceEntry (its fix).
WRITEUP_SERVER = """\
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin-bar
spec:
  hosts:
  - httpbin.bar.global
  location: MESH_INTERNAL
  ports:
  - name: http1
    number: 8000
    protocol: http
  resolution: DNS
  addresses:
  - 240.0.0.3
  endpoints:
  - address: httpbin.bar.svc.cluster.local
"""


def test_remote_service_names_follow_the_write_up():
    assert HTTPBIN.host == "httpbin.bar.global"
    assert HTTPBIN.local_host == "httpbin.bar.svc.cluster.local"
    assert HTTPBIN.resource_name == "httpbin-bar"
    assert (HTTPBIN.port, HTTPBIN.port_name) == (8000, "http1")


def test_client_serviceentry_is_the_write_ups_field_for_field():
    assert to_yaml(render_client(HTTPBIN, "240.0.0.2", "172.18.0.4", 30001)) == WRITEUP_CLIENT


def test_server_serviceentry_is_the_write_ups_field_for_field():
    assert to_yaml(render_server(HTTPBIN, "240.0.0.3")) == WRITEUP_SERVER


def test_namespace_goes_into_metadata_when_given():
    obj = render_client(HTTPBIN, "240.0.0.2", "172.18.0.4", 31443, namespace="foo")
    assert obj["metadata"] == {"name": "httpbin-bar", "namespace": "foo"}


@pytest.mark.parametrize("obj", [
    render_client(HTTPBIN, "240.0.0.2", "172.18.0.4", 31443, namespace="foo"),
    render_client(RemoteService("api", "shop", 9080, "grpc-api"), "240.1.2.3", "gw.example.com", 15443),
    render_server(HTTPBIN, "240.0.0.3", namespace="bar"),
])
def test_rendered_serviceentries_validate_against_istio_1_7_8_crd(obj):
    validate_istio(obj)


@pytest.mark.parametrize("host", ["httpbin.bar", "httpbin.bar.svc.cluster.local", "httpbin.bar.global.",
                                  "a.b.c.global", "httpbin.bar.GLOBAL", "Httpbin.bar.global", "httpbin..global",
                                  "*.bar.global", "1httpbin.bar.global"])
def test_hosts_not_of_the_form_name_namespace_global_are_refused(host):
    with pytest.raises(ValidationError):
        RemoteService.from_host(host)


def test_from_host_round_trips():
    assert RemoteService.from_host("httpbin.bar.global") == HTTPBIN


# --- VIPs --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vip", ["240.0.0.0", "240.0.0.2", "240.0.0.3", "250.1.2.3", "255.255.255.254"])
def test_class_e_vips_are_accepted(vip):
    assert validate_vip(vip) == vip


@pytest.mark.parametrize("vip,rule", [
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.255", "multicast"),
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("240.0.0.2/32", "CIDR"),
    ("240.0.0.0/4", "CIDR"),
    ("fd00::2", "IPv6"),
    ("::ffff:240.0.0.2", "IPv6"),
    ("0.0.0.0", "outside 240.0.0.0/4"),
    ("10.96.0.10", "outside 240.0.0.0/4"),
    ("169.254.1.1", "outside 240.0.0.0/4"),
    ("239.0.0.0", "multicast"),
    ("httpbin", "not an IPv4 address"),
    ("", "not an IPv4 address"),
    ("240.0.0.02", "not an IPv4 address"),
    (" 240.0.0.2", "not an IPv4 address"),
])
def test_vips_outside_class_e_are_refused_with_the_rule(vip, rule):
    with pytest.raises(ValidationError, match=rule) as info:
        validate_vip(vip)
    assert "\n" not in str(info.value)


def test_python_is_reserved_cannot_be_the_test():
    # ipaddress marks all of 240.0.0.0/4 reserved, including the VIPs the docs recommend.
    assert ipaddress.ip_address("240.0.0.2").is_reserved
    assert validate_vip("240.0.0.2") == "240.0.0.2"


def test_duplicate_vips_in_one_cluster_are_refused():
    with pytest.raises(ValidationError, match="duplicate, already given to httpbin.bar.global"):
        check_vips({"httpbin.bar.global": "240.0.0.2", "details.bar.global": "240.0.0.2"})


def test_check_vips_accepts_distinct_class_e_vips_and_checks_hosts():
    assert check_vips({"httpbin.bar.global": "240.0.0.2", "details.bar.global": "240.0.0.3"}) == {
        "httpbin.bar.global": "240.0.0.2", "details.bar.global": "240.0.0.3"}
    with pytest.raises(ValidationError, match="not of the form"):
        check_vips({"httpbin.bar.svc.cluster.local": "240.0.0.2"})


def test_allocation_gives_the_write_ups_vips():
    assert allocate_vips(["httpbin.bar.global"]) == {"httpbin.bar.global": "240.0.0.2"}
    assert allocate_vips(["httpbin.bar.global"], taken=["240.0.0.2"]) == {"httpbin.bar.global": "240.0.0.3"}


def test_allocation_is_independent_of_input_order_and_duplicates():
    a = allocate_vips(["b.x.global", "a.x.global", "c.y.global"])
    b = allocate_vips(["c.y.global", "a.x.global", "b.x.global", "a.x.global"])
    assert a == b == {"a.x.global": "240.0.0.2", "b.x.global": "240.0.0.3", "c.y.global": "240.0.0.4"}


def test_allocation_refuses_bad_hosts_and_bad_taken_vips():
    with pytest.raises(ValidationError):
        allocate_vips(["httpbin.bar"])
    with pytest.raises(ValidationError, match="multicast"):
        allocate_vips(["httpbin.bar.global"], taken=["224.0.0.2"])


_label = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_hosts = st.lists(st.builds(lambda n, ns: f"{n}.{ns}.global", _label, _label), max_size=30)
_taken = st.lists(st.integers(min_value=int(ipaddress.ip_address("240.0.0.0")),
                              max_value=int(ipaddress.ip_address("240.0.0.40"))).map(
                                  lambda i: str(ipaddress.ip_address(i))), max_size=10)


@settings(max_examples=200, deadline=None)
@given(_hosts, _taken)
def test_property_allocation_is_deterministic_unique_valid_and_avoids_taken(hosts, taken):
    out = allocate_vips(hosts, taken)
    assert out == allocate_vips(list(reversed(hosts)), list(reversed(taken)))
    assert set(out) == set(hosts)
    assert len(set(out.values())) == len(out)
    assert not set(out.values()) & set(taken)
    for vip in out.values():
        assert validate_vip(vip) == vip
    check_vips(out)


# --- endpoints ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1"])
def test_client_endpoint_cannot_be_loopback(address):
    with pytest.raises(ValidationError, match="the pod itself"):
        render_client(HTTPBIN, "240.0.0.2", address, 31443)


@pytest.mark.parametrize("port", [0, 65536, -1, True])
def test_client_endpoint_port_must_be_a_port(port):
    with pytest.raises(ValidationError, match="not a port number"):
        render_client(HTTPBIN, "240.0.0.2", "172.18.0.4", port)


def test_client_endpoint_rejects_garbage_addresses():
    with pytest.raises(ValidationError, match="neither an IP address nor a DNS name"):
        render_client(HTTPBIN, "240.0.0.2", "not an address", 31443)


@pytest.mark.parametrize("value,expected", [
    ("172.18.0.4:31443", ("172.18.0.4", 31443)),
    ("gw.example.com:15443", ("gw.example.com", 15443)),
    ("[fd00::4]:31443", ("fd00::4", 31443)),
    ("httpbin.bar.svc.cluster.local", ("httpbin.bar.svc.cluster.local", None)),
])
def test_endpoint_argument_parsing(value, expected):
    assert parse_endpoint(value) == expected


def test_the_endpoint_form_chooses_the_side():
    assert render_for_endpoint(HTTPBIN, "240.0.0.2", "172.18.0.4:30001") == render_client(
        HTTPBIN, "240.0.0.2", "172.18.0.4", 30001)
    assert render_for_endpoint(HTTPBIN, "240.0.0.3", "httpbin.bar.svc.cluster.local.") == render_server(
        HTTPBIN, "240.0.0.3")
    with pytest.raises(ValidationError, match="give ADDR:PORT"):
        render_for_endpoint(HTTPBIN, "240.0.0.3", "172.18.0.4")


# --- CLI ---------------------------------------------------------------------------------------------------

def test_cli_renders_the_client_serviceentry(capsys):
    argv = ["serviceentry", "render", "--host", "httpbin.bar.global", "--port", "8000", "--vip", "240.0.0.2",
            "--endpoint", "172.18.0.4:30001"]
    assert main(argv) == 0
    assert capsys.readouterr().out == WRITEUP_CLIENT


def test_cli_renders_the_server_serviceentry_with_namespace(capsys):
    argv = ["serviceentry", "render", "--host", "httpbin.bar.global", "--port", "8000", "--vip", "240.0.0.3",
            "--endpoint", "httpbin.bar.svc.cluster.local", "--namespace", "bar"]
    assert main(argv) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    expected = yaml.safe_load(WRITEUP_SERVER)
    expected["metadata"]["namespace"] = "bar"
    assert out == expected


@pytest.mark.parametrize("args,rule", [
    (["--host", "httpbin.bar", "--vip", "240.0.0.2", "--endpoint", "1.2.3.4:1"], "<name>.<namespace>.global"),
    (["--host", "httpbin.bar.global", "--vip", "224.0.0.2", "--endpoint", "1.2.3.4:1"], "multicast"),
    (["--host", "httpbin.bar.global", "--vip", "127.0.0.2", "--endpoint", "1.2.3.4:1"], "loopback"),
    (["--host", "httpbin.bar.global", "--vip", "240.0.0.2/32", "--endpoint", "1.2.3.4:1"], "CIDR"),
    (["--host", "httpbin.bar.global", "--vip", "255.255.255.255", "--endpoint", "1.2.3.4:1"], "broadcast"),
    (["--host", "httpbin.bar.global", "--vip", "240.0.0.2", "--endpoint", "1.2.3.4:99999"], "not a port number"),
    (["--host", "httpbin.bar.global", "--vip", "240.0.0.2", "--endpoint", "1.2.3.4:x"], "not a number"),
    (["--host", "httpbin.bar.global", "--vip", "240.0.0.2", "--endpoint", "details.bar.svc.cluster.local"],
     "httpbin.bar.svc.cluster.local"),
])
def test_cli_refused_value_exits_2_with_one_line_naming_the_rule(capsys, args, rule):
    assert main(["serviceentry", "render", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert rule in captured.err
    assert captured.err.count("\n") == 1
