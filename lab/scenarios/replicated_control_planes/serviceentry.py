"""The `.global` ServiceEntries of the write-up and the virtual IPs they carry.

One description of a remote service (`RemoteService`) renders both ServiceEntries of the write-up
(the write-up's "配置应用服务"; istio.io 1.7 "Replicated control planes", docs/sources.md#istio-docs-serviceentry):
- in the calling cluster: hosts `<name>.<namespace>.global`, MESH_INTERNAL, the port, resolution DNS, the VIP, and
  the remote ingress gateway's address with the port that reaches its 15443 (a nodePort on kind) as endpoint;
- in the serving cluster (the write-up's fix): its own VIP and endpoint `<name>.<namespace>.svc.cluster.local`.

VIPs come from class E, 240.0.0.0/4, as the docs recommend; each `.global` host needs its own VIP within a cluster.
Why the other ranges are refused is in docs/serviceentry.md; the rules are the `_vip_problem` checks below.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from lab import manifests
from lab.errors import ValidationError
from lab.scenarios.replicated_control_planes.names import SCENARIO

API_VERSION = "networking.istio.io/v1alpha3"  # the write-up's apiVersion (served and stored in Istio 1.7.8's CRD)
DOMAIN = "global"
# The two ServiceEntries as files (manifests/replicated-control-planes/); the values are checked here first.
CLIENT_TEMPLATE = "serviceentry-client.yaml"
SERVER_TEMPLATE = "serviceentry-server.yaml"
CLASS_E = ipaddress.IPv4Network("240.0.0.0/4")
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
FIRST_VIP = ipaddress.IPv4Address("240.0.0.2")  # the write-up's first VIP; .0/.1 are left out by convention

# Kubernetes names: a Service name is a DNS-1035 label, a namespace a DNS-1123 label (both at most 63 characters).
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?")


@dataclass(frozen=True)
class RemoteService:
    """A Kubernetes Service in the serving cluster, as the calling cluster names it (`<name>.<namespace>.global`)."""

    name: str
    namespace: str
    port: int = 8000
    port_name: str = "http1"

    def __post_init__(self) -> None:
        if not _DNS1035.fullmatch(self.name):
            raise ValidationError(f"service name {self.name!r} is not a DNS-1035 label (a-z, 0-9, '-', 63 at most)")
        if not _DNS1123.fullmatch(self.namespace):
            raise ValidationError(f"namespace {self.namespace!r} is not a DNS-1123 label (a-z, 0-9, '-', 63 at most)")
        _check_port(self.port, "service port")
        if not _DNS1123.fullmatch(self.port_name):
            raise ValidationError(f"port name {self.port_name!r} must be lower-case letters, digits and '-'")

    @classmethod
    def from_host(cls, host: str, port: int = 8000, port_name: str = "http1") -> RemoteService:
        """Parse `<name>.<namespace>.global`; any other form is refused."""
        parts = host.split(".")
        if len(parts) != 3 or parts[2] != DOMAIN:
            raise ValidationError(
                f"host {host!r} is not of the form <name>.<namespace>.global: istiocoredns and the gateway's "
                "`.global` -> `.svc.cluster.local` rewrite only understand that form"
            )
        return cls(parts[0], parts[1], port, port_name)

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.{DOMAIN}"

    @property
    def local_host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def resource_name(self) -> str:
        return f"{self.name}-{self.namespace}"  # the write-up's `httpbin-bar`


def _check_port(port: int, what: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError(f"{what} {port!r} is not a port number (1-65535)")


def _vip_problem(value: str) -> str | None:
    if "/" in value:
        return ("CIDR notation: istiocoredns only answers bare addresses (its CIDR branch is inverted, so "
                "prefixes are ignored); give a single IP such as 240.0.0.2")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return "not an IPv4 address"
    if ip.version == 6:
        return "IPv6: istiocoredns answers only A queries, so an IPv6 VIP never resolves"
    if ip == BROADCAST:
        return "the limited broadcast address: connections to it fail"
    if ip.is_loopback:
        return ("loopback (127.0.0.0/8): since Istio 1.5 the application's loopback traffic bypasses the sidecar, so "
                "it never reaches the remote service")
    if ip.is_multicast:
        return "multicast (224.0.0.0/4): there is no route; the kernel refuses TCP to it (network unreachable)"
    # Not `ip.is_reserved`: Python counts the whole of 240.0.0.0/4 as reserved, the very range the VIPs come from.
    if ip not in CLASS_E:
        return ("outside 240.0.0.0/4: the lab takes VIPs from class E so that they never collide with a pod, "
                "service or node address")
    return None


def validate_vip(value: str) -> str:
    """The VIP in canonical form; ValidationError naming the rule it breaks otherwise."""
    problem = _vip_problem(value)
    if problem:
        raise ValidationError(f"VIP {value!r} refused: {problem}")
    return str(ipaddress.IPv4Address(value))


def check_vips(assignments: Mapping[str, str]) -> dict[str, str]:
    """Validate host -> VIP assignments for ONE cluster: every host `.global`, every VIP valid and used once."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for host, vip in assignments.items():
        RemoteService.from_host(host)
        canonical = validate_vip(vip)
        if canonical in seen:
            raise ValidationError(
                f"VIP {canonical} refused: duplicate, already given to {seen[canonical]}; each .global service needs "
                "its own VIP in a cluster (istiocoredns keeps one address per host, the sidecar one service per VIP)"
            )
        seen[canonical] = host
        out[host] = canonical
    return out


def allocate_vips(hosts: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """Deterministic VIPs for `.global` hosts in one cluster: sorted hosts get the lowest free addresses from
    240.0.0.2 up, skipping `taken` (VIPs already used in that cluster). The same input always gives the same map."""
    used = {ipaddress.IPv4Address(validate_vip(v)) for v in taken}
    names = sorted({RemoteService.from_host(h).host for h in hosts})
    out: dict[str, str] = {}
    candidate = int(FIRST_VIP)
    for host in names:
        while ipaddress.IPv4Address(candidate) in used:
            candidate += 1
        ip = ipaddress.IPv4Address(candidate)
        if ip == BROADCAST:
            raise ValidationError("240.0.0.0/4 is exhausted: no VIP left for " + host)
        out[host] = str(ip)
        used.add(ip)
    return out


def _endpoint_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if _HOSTNAME.fullmatch(address):
            return address
        raise ValidationError(f"endpoint address {address!r} is neither an IP address nor a DNS name") from None
    if ip.is_loopback or ip.is_unspecified:
        raise ValidationError(
            f"endpoint address {address} refused: from the calling cluster's sidecar that is the pod itself; give the "
            "remote gateway's node IP (kubectl get po -l istio=ingressgateway -o jsonpath={.items[0].status.hostIP})"
        )
    if ip.is_multicast or ip == BROADCAST:
        raise ValidationError(
            f"endpoint address {address} refused: a {'multicast' if ip.is_multicast else 'broadcast'} address is no "
            "gateway (TCP cannot connect to it); give the remote gateway's node IP "
            "(kubectl get po -l istio=ingressgateway -o jsonpath={.items[0].status.hostIP})")
    return str(ip)


def template_vars(svc: RemoteService, vip: str, address: str, **extra: int) -> dict[str, str | int]:
    """The variables of manifests/replicated-control-planes/serviceentry-*.yaml, the VIP checked."""
    return {"NAME": svc.resource_name, "HOST": svc.host, "PORT_NAME": svc.port_name, "PORT": svc.port,
            "VIP": validate_vip(vip), "ADDRESS": address, **extra}


def server_vars(svc: RemoteService, vip: str) -> dict[str, str | int]:
    """The variables of SERVER_TEMPLATE for the serving cluster's ServiceEntry (render_server without a namespace is
    that file filled in, nothing changed in code)."""
    return template_vars(svc, vip, svc.local_host)


def _service_entry(template: str, svc: RemoteService, vip: str, address: str, namespace: str | None,
                   **extra: int) -> dict[str, Any]:
    """Render `template` (manifests/replicated-control-planes/serviceentry-*.yaml), field for field the write-up's
    ServiceEntry (and istio.io 1.7's): the same order, protocol spelled `http`. metadata.namespace is optional, so it
    is added here after the values are checked."""
    if namespace is not None and not _DNS1123.fullmatch(namespace):
        raise ValidationError(f"namespace {namespace!r} is not a DNS-1123 label")
    obj: dict[str, Any] = yaml.safe_load(manifests.render(template, SCENARIO,
                                                          **template_vars(svc, vip, address, **extra)))
    if namespace is not None:
        obj["metadata"]["namespace"] = namespace
    return obj


def render_client(svc: RemoteService, vip: str, address: str, port: int, *,
                  namespace: str | None = None) -> dict[str, Any]:
    """The calling cluster's ServiceEntry: traffic for the VIP goes to the remote gateway `address:port`
    (the port that reaches the gateway's 15443: its nodePort on kind; "Do not change" 15443 behind a load balancer)."""
    _check_port(port, "endpoint port")
    return _service_entry(CLIENT_TEMPLATE, svc, vip, _endpoint_address(address), namespace, ENDPOINT_PORT=port)


def render_server(svc: RemoteService, vip: str, *, namespace: str | None = None) -> dict[str, Any]:
    """The serving cluster's ServiceEntry (the write-up's fix): its own VIP, endpoint the local Service."""
    return _service_entry(SERVER_TEMPLATE, svc, vip, svc.local_host, namespace)


def to_yaml(obj: dict[str, Any]) -> str:
    """YAML in the order the object was built (the write-up's order), block style."""
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def parse_endpoint(value: str) -> tuple[str, int | None]:
    """`ADDR:PORT`, `[IPv6]:PORT` or a bare host name -> (address, port or None)."""
    if value.startswith("["):
        addr, sep, port = value[1:].partition("]:")
        if not sep:
            raise ValidationError(f"endpoint {value!r}: write an IPv6 endpoint as [ADDR]:PORT")
    elif value.count(":") == 1:
        addr, _, port = value.partition(":")
    else:
        return value, None
    if not port.isascii() or not port.isdigit():
        raise ValidationError(f"endpoint {value!r}: port {port!r} is not a number in ASCII digits")
    return addr, int(port)


def render_for_endpoint(svc: RemoteService, vip: str, endpoint: str, *, namespace: str | None = None) -> dict[str, Any]:
    """`ADDR:PORT` (the remote gateway) renders the calling cluster's ServiceEntry, `<name>.<ns>.svc.cluster.local`
    the serving cluster's; anything else is refused."""
    address, port = parse_endpoint(endpoint)
    if port is not None:
        return render_client(svc, vip, address, port, namespace=namespace)
    if address.rstrip(".") == svc.local_host:
        return render_server(svc, vip, namespace=namespace)
    raise ValidationError(f"endpoint {endpoint!r}: give ADDR:PORT (the remote gateway) or {svc.local_host} "
                          "(the service itself, in the serving cluster)")
