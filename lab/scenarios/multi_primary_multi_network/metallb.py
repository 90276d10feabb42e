"""MetalLB's address slices on the `kind` Docker network, and the gateway address without MetalLB (pure).

Input: the JSON `docker network inspect kind` prints (a list of one network). kind v0.32.0 makes that network
itself (pkg/cluster/internal/providers/docker/network.go: fixed name "kind", overridable by
KIND_EXPERIMENTAL_DOCKER_NETWORK; a bridge created with `--ipv6 --subnet <ULA /64 from a sha1 of the name>` and no
IPv4 subnet of its own, so Docker's IPAM picks the IPv4 subnet from the daemon's default address pools, and an IPv4-only
network when the engine refuses IPv6). `IPAM.Config` therefore lists one IPv4 and usually one IPv6 entry, in either
order, each `Gateway` optional (tests/data/docker-network/ holds real ones): the IPv4 entry is found by parsing, never
by position (Istio 1.30.3's common/scripts/kind_provisioner.sh reads `.IPAM.Config[0]`, which is the IPv6 entry on
such networks).

Docker hands container addresses out from the bottom of the subnet (or of its `IPRange`), so MetalLB's addresses are
taken from the top, as Istio's own kind script does for subnets of up to 2000 addresses (kind_provisioner.sh
`cidr_to_ips` at 1.30.3: the top quarter of the hosts; for larger subnets it uses hosts 1000-2000 instead). One
contiguous slice per cluster, cluster order from the top down, never the network, broadcast, gateway or auxiliary
addresses (MetalLB would hand those out too: the whole subnet as a pool gives a Service the gateway's address), and at
least `room` addresses left below for containers. The lab's pool is IPv4 only; IPv6 entries are parsed and left alone.

Without MetalLB (a fault, or a host where L2 announcements do not reach), the east-west gateway Service keeps a
no-dependency address in `spec.externalIPs`: its own node's IP on the kind network. kube-proxy on that node forwards
traffic for externalIP:port to the gateway pod, and Istio 1.30 takes `spec.externalIPs` as the Service's external
addresses for every Service type (pilot/pkg/serviceregistry/kube/conversion.go `ConvertService` at 1.30.3).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from lab.errors import ValidationError

NETWORK = "kind"
PER_CLUSTER = 8  # addresses per cluster: the east-west gateway needs one; the rest leaves room for faults' Services
ROOM = 64  # addresses left below the slices for containers (kind nodes, registries, other users of the network)

IPNetwork = IPv4Network | IPv6Network
IPAddr = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Subnet:
    """One `IPAM.Config` entry: the subnet, and the addresses Docker keeps for itself or hands out from."""

    network: IPNetwork
    gateway: IPAddr | None = None
    ip_range: IPNetwork | None = None
    auxiliary: tuple[IPAddr, ...] = ()

    def reserved(self) -> frozenset[IPAddr]:
        """Addresses no pool may contain: network, broadcast (IPv4), gateway and auxiliary addresses."""
        out: set[IPAddr] = {self.network.network_address, *self.auxiliary}
        if self.network.version == 4:
            out.add(self.network.broadcast_address)
        if self.gateway is not None:
            out.add(self.gateway)
        return frozenset(out)


@dataclass(frozen=True)
class KindNetwork:
    """The parsed network: its IPv4 and IPv6 subnets in the order Docker lists them."""

    name: str
    ipv4: tuple[Subnet, ...]
    ipv6: tuple[Subnet, ...]

    def subnet4(self) -> Subnet:
        """The IPv4 subnet the pools come from (the first one listed); ValidationError when there is none."""
        if not self.ipv4:
            listed = ", ".join(str(s.network) for s in self.ipv6) or "nothing"
            raise ValidationError(f"the {self.name!r} Docker network has no IPv4 subnet (its IPAM.Config lists "
                                  f"{listed}): MetalLB's L2 pools need one; delete the network while no kind cluster "
                                  "uses it and let kind create it again")
        return self.ipv4[0]


@dataclass(frozen=True)
class Slice:
    """One cluster's contiguous MetalLB range, first to last inclusive."""

    cluster: str
    first: IPv4Address
    last: IPv4Address

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    @property
    def range(self) -> str:
        """The form IPAddressPool `spec.addresses` takes for a range ("172.18.255.247-172.18.255.254")."""
        return f"{self.first}-{self.last}"

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, IPv4Address) and self.first <= addr <= self.last


def parse_inspect(text: str, name: str = NETWORK) -> KindNetwork:
    """The network in `docker network inspect <name>` output; ValidationError (one line) when it is not that."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValidationError(f"`docker network inspect {name}` did not print JSON ({err.msg} at line {err.lineno}):"
                              " run it by hand to see what Docker says") from None
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        count = len(data) if isinstance(data, list) else "no"
        raise ValidationError(f"`docker network inspect {name}` printed {count} networks, expected exactly one: "
                              f"create the clusters first (kind makes the {name!r} network)")
    entry = data[0]
    if "Name" in entry and entry["Name"] != name:
        raise ValidationError(f"`docker network inspect {name}` described the network {entry['Name']!r}")
    ipam = entry.get("IPAM")
    configs = ipam.get("Config") if isinstance(ipam, dict) else None
    subnets = [_subnet(c, name) for c in (configs or []) if isinstance(c, dict) and c.get("Subnet")]
    return KindNetwork(name=name, ipv4=tuple(s for s in subnets if s.network.version == 4),
                       ipv6=tuple(s for s in subnets if s.network.version == 6))


def _subnet(config: dict[str, Any], name: str) -> Subnet:
    network = _parse(ipaddress.ip_network, "Subnet", config["Subnet"], name)
    gateway = _parse(ipaddress.ip_address, "Gateway", config["Gateway"], name) if config.get("Gateway") else None
    ip_range = _parse(ipaddress.ip_network, "IPRange", config["IPRange"], name) if config.get("IPRange") else None
    aux_map = config.get("AuxiliaryAddresses")
    aux = tuple(_parse(ipaddress.ip_address, "AuxiliaryAddresses", v, name)
                for v in (aux_map.values() if isinstance(aux_map, dict) else ()))
    for what, addr in [("Gateway", gateway), *[("AuxiliaryAddresses", a) for a in aux]]:
        if addr is not None and addr not in network:
            raise ValidationError(f"the {name!r} Docker network's {what} {addr} is outside its subnet {network}")
    if ip_range is not None and (ip_range.version != network.version or not ip_range.subnet_of(network)):
        raise ValidationError(f"the {name!r} Docker network's IPRange {ip_range} is outside its subnet {network}")
    return Subnet(network=network, gateway=gateway, ip_range=ip_range, auxiliary=aux)


def _parse(parse: Any, key: str, value: Any, name: str) -> Any:
    try:
        return parse(str(value))
    except ValueError:
        what = "network" if parse is ipaddress.ip_network else "address"
        raise ValidationError(f"the {name!r} Docker network's IPAM.Config {key} {value!r} is not an IP "
                              f"{what}") from None


def slices(network: KindNetwork, clusters: Sequence[str], *, per_cluster: int = PER_CLUSTER,
           room: int = ROOM) -> tuple[Slice, ...]:
    """One slice of `per_cluster` addresses per cluster, from the top of the IPv4 subnet down, in cluster order.

    ValidationError (one line) when there is no IPv4 subnet, or when the slices would leave fewer than `room`
    addresses below them for Docker to give containers.
    """
    if not clusters or len(set(clusters)) != len(clusters):
        raise ValidationError(f"MetalLB slices need distinct cluster names, got {list(clusters)}")
    if per_cluster < 1 or room < 0:
        raise ValidationError(f"MetalLB slices need per_cluster >= 1 and room >= 0, got {per_cluster} and {room}")
    subnet = network.subnet4()
    reserved = subnet.reserved()
    need = per_cluster * len(clusters)
    top = int(subnet.network.broadcast_address) - 1
    bottom = int(subnet.network.network_address) + 1
    # Slide the block down below any reserved address inside it, so every slice stays one contiguous range.
    while top - need + 1 >= bottom:
        inside = [int(a) for a in reserved if top - need + 1 <= int(a) <= top]
        if not inside:
            break
        top = min(inside) - 1
    start = top - need + 1
    pool = subnet.ip_range or subnet.network
    left = _free_below(pool, start, reserved) if start >= bottom else 0
    if start < bottom or left < room:
        raise ValidationError(
            f"the {network.name!r} Docker network's IPv4 subnet {subnet.network} is too small for MetalLB: "
            f"{len(clusters)} clusters x {per_cluster} addresses at its top leave {left} for containers, the lab "
            f"needs {room}; give Docker a /24 or larger for this network (its default address pools do)")
    return tuple(Slice(name, IPv4Address(top - (i + 1) * per_cluster + 1), IPv4Address(top - i * per_cluster))
                 for i, name in enumerate(clusters))


def _free_below(pool: IPNetwork, start: int, reserved: frozenset[IPAddr]) -> int:
    """Addresses Docker could give containers in `pool` below `start` (network, gateway, ... excluded)."""
    lo, hi = int(pool.network_address), min(int(pool.broadcast_address), start - 1)
    if hi < lo:
        return 0
    return hi - lo + 1 - sum(1 for a in reserved if lo <= int(a) <= hi)


def fallback_address(network: KindNetwork, node_ip: str, taken: Sequence[Slice] = ()) -> IPv4Address:
    """The gateway Service's `spec.externalIPs` entry without MetalLB: the node's own IPv4 address on the network.

    ValidationError when `node_ip` is not an IPv4 address of the IPv4 subnet that Docker could have given a
    container, or lies in a MetalLB slice (then two owners would answer for it).
    """
    subnet = network.subnet4()
    try:
        addr = IPv4Address(node_ip.strip())
    except ValueError:
        raise ValidationError(f"node address {node_ip!r} is not an IPv4 address; the externalIPs fallback needs "
                              "the node container's IPv4 address on the kind network") from None
    if addr not in subnet.network or addr in subnet.reserved():
        raise ValidationError(f"node address {addr} is not a container address of the {network.name!r} network's "
                              f"subnet {subnet.network}: is the node attached to another network?")
    for s in taken:
        if addr in s:
            raise ValidationError(f"node address {addr} lies in {s.cluster}'s MetalLB slice {s.range}: the slices "
                                  "must stay clear of container addresses; lower per_cluster or use a larger subnet")
    return addr
