"""lab/scenarios/multi_primary_multi_network/metallb.py: MetalLB slices of the kind network, and the externalIPs
fallback; the scenario's kind config and MetalLB pool templates against kind's and MetalLB's own schemas."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lab import manifests
from lab.errors import ValidationError
from lab.scenarios.multi_primary_multi_network import metallb
from tests.support import schemas

DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS = DATA / "docker-network"
SCENARIO = "multi-primary-multi-network"
CLUSTERS = ("cluster1", "cluster2")
KIND_V032_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"


def vector(name: str) -> str:
    """A stored `docker network inspect kind` output; `.ipam.txt` members are wrapped as the README says."""
    text = (VECTORS / name).read_text(encoding="utf-8")
    if name.endswith(".ipam.txt"):
        return "[{" + text.strip().rstrip(",") + "}]"
    return text


VECTOR_NAMES = sorted(p.name for p in VECTORS.iterdir() if p.name != "README.md")


def inspect_json(configs: list[dict]) -> str:
    return json.dumps([{"Name": "kind", "IPAM": {"Driver": "default", "Options": {}, "Config": configs}}])


# --- the real outputs ---------------------------------------------------------------------------------------

def test_every_vector_is_listed_in_the_readme_with_its_source_url():
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for name in VECTOR_NAMES:
        row = next((ln for ln in readme.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None and re.search(r"https://github\.com/\S+/(issues|pull)/\d+", row), name
    assert len(VECTOR_NAMES) >= 3


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_the_ipv4_subnet_is_found_whatever_the_order_of_the_entries(name):
    net = metallb.parse_inspect(vector(name))
    assert [str(s.network) for s in net.ipv4] == ["172.18.0.0/16"]
    assert [str(s.network) for s in net.ipv6] == ["fc00:f853:ccd:e793::/64"]
    assert str(net.subnet4().gateway) == "172.18.0.1"


def test_a_missing_ipv6_gateway_is_none_and_a_present_one_is_parsed():
    assert metallb.parse_inspect(vector("kind-issue3167.ipam.txt")).ipv6[0].gateway is None
    assert str(metallb.parse_inspect(vector("kuadrant-operator-pr418.json")).ipv6[0].gateway) == "fc00:f853:ccd:e793::1"


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_on_a_real_kind_network_the_slices_are_the_top_of_the_ipv4_subnet(name):
    got = metallb.slices(metallb.parse_inspect(vector(name)), CLUSTERS)
    assert [(s.cluster, s.range) for s in got] == [("cluster1", "172.18.255.247-172.18.255.254"),
                                                   ("cluster2", "172.18.255.239-172.18.255.246")]


def test_the_fallback_is_the_node_address_and_must_be_a_container_address_outside_the_slices():
    net = metallb.parse_inspect(vector("kuadrant-operator-pr418.json"))
    taken = metallb.slices(net, CLUSTERS)
    assert metallb.fallback_address(net, "172.18.0.3", taken) == ipaddress.IPv4Address("172.18.0.3")
    for bad, said in [("172.18.0.1", "not a container address"), ("172.19.0.3", "not a container address"),
                      ("172.18.255.255", "not a container address"), ("fc00:f853:ccd:e793::3", "not an IPv4"),
                      ("node", "not an IPv4"), ("172.18.255.250", "lies in cluster1's MetalLB slice")]:
        with pytest.raises(ValidationError, match=said):
            metallb.fallback_address(net, bad, taken)


# --- refusals, each one line ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, said", [
    ("not json", "did not print JSON"),
    ("[]", "printed 0 networks, expected exactly one"),
    ('{"Name": "kind"}', "printed no networks"),
    ('[{"Name": "bridge", "IPAM": {"Config": []}}]', "described the network 'bridge'"),
    (inspect_json([{"Subnet": "172.18.0.0/33"}]), "Subnet '172.18.0.0/33' is not an IP network"),
    (inspect_json([{"Subnet": "172.18.0.0/16", "Gateway": "172.19.0.1"}]), "Gateway 172.19.0.1 is outside"),
    (inspect_json([{"Subnet": "172.18.0.0/16", "IPRange": "10.0.0.0/24"}]), "IPRange 10.0.0.0/24 is outside"),
])
def test_output_that_is_not_one_kind_network_is_refused_in_one_line(text, said):
    with pytest.raises(ValidationError, match=re.escape(said)) as err:
        metallb.parse_inspect(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("configs", [
    [{"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"}],
    [], [{}],  # moby#18626: a network without subnets lists `[{}]`
])
def test_no_ipv4_subnet_is_one_clear_line(configs):
    net = metallb.parse_inspect(inspect_json(configs))
    with pytest.raises(ValidationError, match="has no IPv4 subnet") as err:
        metallb.slices(net, CLUSTERS)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("subnet", ["192.168.8.0/26", "172.18.0.0/30", "10.0.0.0/32", "10.0.0.0/31"])
def test_a_subnet_too_small_for_the_slices_and_the_containers_is_one_clear_line(subnet):
    net = metallb.parse_inspect(inspect_json([{"Subnet": subnet}]))
    with pytest.raises(ValidationError, match=re.escape(f"IPv4 subnet {subnet} is too small for MetalLB")) as err:
        metallb.slices(net, CLUSTERS)
    assert "\n" not in str(err.value)


def test_a_slash_24_is_enough_and_the_room_is_what_decides():
    net = metallb.parse_inspect(inspect_json([{"Subnet": "192.168.8.0/24", "Gateway": "192.168.8.1"}]))
    assert [s.range for s in metallb.slices(net, CLUSTERS)] == ["192.168.8.247-192.168.8.254",
                                                                 "192.168.8.239-192.168.8.246"]
    # 192.168.8.2-238 is free below the slices (.0 is the network, .1 the gateway): 237 addresses.
    metallb.slices(net, CLUSTERS, room=237)
    with pytest.raises(ValidationError, match="leave 237 for containers, the lab needs 238"):
        metallb.slices(net, CLUSTERS, room=238)


def test_a_gateway_or_auxiliary_address_at_the_top_pushes_the_slices_below_it():
    net = metallb.parse_inspect(inspect_json([{"Subnet": "192.168.8.0/24", "Gateway": "192.168.8.254",
                                               "AuxiliaryAddresses": {"host": "192.168.8.250"}}]))
    assert [s.range for s in metallb.slices(net, CLUSTERS)] == ["192.168.8.242-192.168.8.249",
                                                                 "192.168.8.234-192.168.8.241"]


def test_with_an_ip_range_only_its_addresses_below_the_slices_count_as_room():
    net = metallb.parse_inspect(inspect_json([{"Subnet": "10.5.0.0/16", "IPRange": "10.5.0.0/26"}]))
    with pytest.raises(ValidationError, match="leave 63 for containers"):
        metallb.slices(net, CLUSTERS)
    assert metallb.slices(net, CLUSTERS, room=63)[0].range == "10.5.255.247-10.5.255.254"


@pytest.mark.parametrize("clusters, kwargs", [((), {}), (("a", "a"), {}), (CLUSTERS, {"per_cluster": 0}),
                                              (CLUSTERS, {"room": -1})])
def test_bad_arguments_are_refused(clusters, kwargs):
    net = metallb.parse_inspect(vector("kuadrant-operator-pr418.json"))
    with pytest.raises(ValidationError):
        metallb.slices(net, clusters, **kwargs)


# --- properties over generated subnets ------------------------------------------------------------------------

@st.composite
def ipv4_configs(draw):
    prefix = draw(st.integers(min_value=16, max_value=30))
    base = draw(st.integers(min_value=0, max_value=2**32 - 1))
    subnet = ipaddress.IPv4Network((base >> (32 - prefix) << (32 - prefix), prefix))
    hosts = int(subnet.num_addresses)
    config: dict = {"Subnet": str(subnet)}
    if draw(st.booleans()):
        config["Gateway"] = str(subnet.network_address + draw(st.integers(1, hosts - 2)))
    if draw(st.booleans()):
        config["AuxiliaryAddresses"] = {f"a{i}": str(subnet.network_address + draw(st.integers(1, hosts - 2)))
                                        for i in range(draw(st.integers(1, 3)))}
    if draw(st.booleans()):
        sub_prefix = draw(st.integers(min_value=prefix, max_value=32))
        offset = draw(st.integers(0, 2 ** (sub_prefix - prefix) - 1))
        config["IPRange"] = str(ipaddress.IPv4Network(
            (int(subnet.network_address) + offset * 2 ** (32 - sub_prefix), sub_prefix)))
    return config


IPV6 = {"Subnet": "fc00:f853:ccd:e793::/64"}


@settings(max_examples=200, deadline=None)
@given(config=ipv4_configs(), ipv6_first=st.booleans(), n=st.integers(1, 4), per=st.integers(1, 40),
       room=st.integers(0, 300))
def test_slices_are_disjoint_contiguous_in_the_subnet_clear_of_reserved_and_leave_the_room(config, ipv6_first, n,
                                                                                           per, room):
    configs = [IPV6, config] if ipv6_first else [config, IPV6]
    net = metallb.parse_inspect(inspect_json(configs))
    subnet = net.subnet4()
    names = [f"c{i}" for i in range(n)]
    try:
        got = metallb.slices(net, names, per_cluster=per, room=room)
    except ValidationError as err:
        assert "too small for MetalLB" in str(err) and "\n" not in str(err)
        # Refused only when the block really does not fit: no contiguous, reserved-free block of n*per addresses
        # above `room` free pool addresses exists at the top as the rule describes (checked by brute force below).
        assert not _fits_by_brute_force(subnet, n * per, room)
        return
    assert [s.cluster for s in got] == names
    addrs = [a for s in got for a in range(int(s.first), int(s.last) + 1)]
    assert all(s.size == per for s in got)
    assert len(addrs) == len(set(addrs)) == n * per  # disjoint
    assert max(addrs) - min(addrs) + 1 == n * per  # one block, cluster order from the top down
    assert got[0].last == max(ipaddress.IPv4Address(a) for a in addrs)
    reserved = {int(a) for a in subnet.reserved()}
    assert all(int(subnet.network.network_address) < a < int(subnet.network.broadcast_address) for a in addrs)
    assert not reserved & set(addrs)
    assert _free_below(subnet, min(addrs), reserved) >= room


def _free_below(subnet: metallb.Subnet, start: int, reserved: set[int]) -> int:
    """Addresses of the container pool (IPRange, else the subnet) below `start` that are not reserved."""
    pool = subnet.ip_range or subnet.network
    lo, hi = int(pool.network_address), min(int(pool.broadcast_address), start - 1)
    return max(0, hi - lo + 1) - len({a for a in reserved if lo <= a <= hi})


def _fits_by_brute_force(subnet: metallb.Subnet, need: int, room: int) -> bool:
    """Independent of the module's sliding: the highest reserved-free run of `need` addresses below the broadcast."""
    reserved = {int(a) for a in subnet.reserved()}
    lo, hi = int(subnet.network.network_address), int(subnet.network.broadcast_address)
    top = hi - 1
    while top - need + 1 > lo:
        clash = [a for a in range(top - need + 1, top + 1) if a in reserved]
        if not clash:
            return _free_below(subnet, top - need + 1, reserved) >= room
        top = min(clash) - 1
    return False


@settings(max_examples=200, deadline=None)
@given(config=ipv4_configs(), data=st.data())
def test_the_fallback_accepts_exactly_the_container_addresses_outside_the_slices(config, data):
    net = metallb.parse_inspect(inspect_json([config]))
    subnet = net.subnet4()
    try:
        taken = metallb.slices(net, CLUSTERS, room=0)
    except ValidationError:
        taken = ()
    offset = data.draw(st.integers(0, int(subnet.network.num_addresses) - 1))
    addr = subnet.network.network_address + offset
    ok = addr not in subnet.reserved() and not any(addr in s for s in taken)
    if ok:
        assert metallb.fallback_address(net, str(addr), taken) == addr
    else:
        with pytest.raises(ValidationError):
            metallb.fallback_address(net, str(addr), taken)


@settings(deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_parsed_or_refused_with_a_validation_error(text):
    assume(text.strip() != "")
    try:
        metallb.parse_inspect(text)
    except ValidationError as err:
        assert "\n" not in str(err)


# --- the templates ------------------------------------------------------------------------------------------------

def _metallb_validator(kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((DATA / "metallb-v0.16.1" / f"metallb.io_{kind.lower()}s.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    assert (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"]) == ("metallb.io", "v1beta1", kind)
    return jsonschema.Draft7Validator(schemas._strict(version["schema"]["openAPIV3Schema"]))


def test_the_pool_template_renders_objects_metallb_v0_16_1_accepts():
    net = metallb.parse_inspect(vector("metal3-ironic-standalone-operator-pr660.ipam.txt"))
    first = metallb.slices(net, CLUSTERS)[0]
    docs = list(yaml.safe_load_all(manifests.render("metallb-pool.yaml", SCENARIO, NAME="lab-cluster1",
                                                    ADDRESSES=first.range)))
    assert [d["kind"] for d in docs] == ["IPAddressPool", "L2Advertisement"]
    for doc in docs:
        assert doc["apiVersion"] == "metallb.io/v1beta1" and doc["metadata"]["namespace"] == "metallb-system"
        _metallb_validator(doc["kind"]).validate(doc)
    assert docs[0]["spec"]["addresses"] == ["172.18.255.247-172.18.255.254"]
    assert docs[1]["spec"]["ipAddressPools"] == [docs[0]["metadata"]["name"]]


def test_the_strict_metallb_schema_refuses_a_misspelt_field():
    doc = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
           "metadata": {"name": "p", "namespace": "metallb-system"}, "spec": {"adresses": ["10.0.0.1-10.0.0.2"]}}
    assert list(_metallb_validator("IPAddressPool").iter_errors(doc))


def test_the_kind_config_is_a_strict_v1alpha4_cluster_with_one_node_and_no_port_mappings():
    text = manifests.render("kind-cluster.yaml", SCENARIO, CLUSTER_NAME="cluster1", NODE_IMAGE=KIND_V032_IMAGE,
                            POD_SUBNET="10.10.0.0/16", SERVICE_SUBNET="10.255.10.0/24")
    obj = yaml.safe_load(text)
    # kind v0.32.0's v1alpha4 types differ from v0.20.0's only by kubeProxyMode "nftables" (derived with
    # tests/data/kind/derive_schema.py from both tags), so v0.20.0's strict schema checks every field used here.
    schema = json.loads((DATA / "kind" / "v1alpha4-v0.20.0.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(obj)
    assert obj["nodes"] == [{"role": "control-plane", "image": KIND_V032_IMAGE}]
    assert obj["networking"] == {"podSubnet": "10.10.0.0/16", "serviceSubnet": "10.255.10.0/24"}


@pytest.mark.parametrize("name", ["kind-cluster.yaml", "metallb-pool.yaml"])
def test_each_template_names_its_step_and_upstream_and_has_its_readme_row(name):
    header, _ = manifests.read(name, SCENARIO)
    assert re.search(r"^# Scenario step: \S", header, flags=re.M) and re.search(r"^# Upstream: \S", header, flags=re.M)
    readme = (manifests.ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### `multi-primary-multi-network/`", 1)[1]  # the scenario's one table
    row = next(ln for ln in section.splitlines() if ln.startswith(f"| `{name}` |"))
    assert set(re.findall(r"`\$(\w+)`", row)) == manifests.variables(name, SCENARIO)
