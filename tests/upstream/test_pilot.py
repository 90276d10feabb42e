"""Pilot's own configuration for the scenario (issue 9 item 2), fed to the lab's analysers.

The wrapper modules `upstream/pilot-1.7.8` and `upstream/pilot-1.7.0` (1.7.0 stands in for 1.7.3, whose
pseudo-version the module proxy refuses; see upstream/README.md for why the parts used are the same) build a Go
test binary around Istio's in-process fake discovery server. This file:
1. renders the lab's own objects with the lab's code: the ServiceEntries
(lab.scenarios.replicated_control_planes.serviceentry, as lab up applies them),
   the IstioOperator overlay (lab.scenarios.replicated_control_planes.istio.overlay); httpbin's Service comes from the
   release's samples/httpbin;
2. has the binary render the `*.global` Gateway, DestinationRule and EnvoyFilter with istioctl's own manifest
   generation (values-istio-multicluster-gateways.yaml + the lab's overlay, `-d <module>/manifests`);
3. has pilot generate clusters, listeners, routes and endpoints for cluster1's sleep sidecar in `foo` and for
   cluster2's ingress gateway (router, ISTIO_META_ROUTER_MODE=sni-dnat, istio=ingressgateway), as /config_dump JSON;
4. checks those dumps with lab.configdump, `lab configdump` and lab.scenarios.replicated_control_planes.doctor's hops,
and the fault catalogue's
   (lab.scenarios.replicated_control_planes.faults) configuration side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import configdump
from lab.scenarios.replicated_control_planes import doctor, faults, istio, serviceentry
from lab.scenarios.replicated_control_planes.names import (
    CLIENT_NS,
    ENVOYFILTER,
    ISTIO_NS,
    REMOTE_HOST,
    REMOTE_PORT,
    SERVER_NS,
)
from lab.scenarios.replicated_control_planes.profiles import load_profile
from tests.upstream.conftest import built
from tests.upstream.gobuild import LOG, MODULES, go_test_binary

GATEWAY_NODE_IP = "172.18.0.3"  # a kind node's address on the `kind` network (cluster2's gateway node)
SLEEP_IP = "10.10.0.7"  # in cluster1's pod subnet (lab.profile DEFAULT_CLUSTERS)
HTTPBIN_IP = "10.20.0.9"  # in cluster2's pod subnet
GATEWAY_POD_IP = "10.20.0.5"
CLIENT_CLUSTER = f"outbound|{REMOTE_PORT}||{REMOTE_HOST}"
SNI_GLOBAL = configdump.sni_dnat_name(REMOTE_HOST, REMOTE_PORT)  # outbound_.8000_._.httpbin.bar.global
SNI_LOCAL = configdump.sni_dnat_name(f"httpbin.{SERVER_NS}.svc.cluster.local", REMOTE_PORT)

# wrapper module -> (the Istio release its code is, the version the lab's expectations are looked up for)
MODULE_VERSIONS = {"pilot-1.7.8": ("1.7.8", "1.7.8"), "pilot-1.7.0": ("1.7.0", "1.7.3")}


@dataclass
class Run:
    module: str
    code_version: str  # the istio.io/istio tag whose code ran
    lab_version: str  # the release the lab's expectations are taken for (1.7.0 stands in for 1.7.3)
    preconfigured: dict[str, dict]  # kind -> the object istioctl's render gave
    dumps: dict[str, dict]  # view -> config dump


def _go(module_dir: Path, *args: str) -> str:
    return subprocess.run(["go", *args], cwd=module_dir, capture_output=True, text=True, check=True).stdout.strip()


def _run_binary(binary: Path, test: str, env: dict[str, str]) -> None:
    proc = subprocess.run([str(binary), "-test.run", f"^{test}$", "-test.count=1"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{binary.name} -test.run {test} exited {proc.returncode}:\n{tail}", pytrace=False)


def _yaml_all(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _httpbin_objects(istio_dir: Path) -> list[dict]:
    """httpbin's Service from the release's sample (as the lab applies it in bar), its pod and Endpoints."""
    sample = _yaml_all((istio_dir / "samples/httpbin/httpbin.yaml").read_text())
    service = next(d for d in sample if d["kind"] == "Service")
    service["metadata"]["namespace"] = SERVER_NS
    labels = service["spec"]["selector"]
    target = service["spec"]["ports"][0]["targetPort"]
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "httpbin-779c54bf49-x2x8k", "namespace": SERVER_NS,
                        "labels": {**labels, "version": "v1"}},
           "spec": {"containers": [{"name": "httpbin", "image": "docker.io/kennethreitz/httpbin"}],
                    "serviceAccountName": "httpbin", "nodeName": "cluster2-control-plane"},
           "status": {"phase": "Running", "podIP": HTTPBIN_IP}}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": service["metadata"]["name"], "namespace": SERVER_NS},
                 "subsets": [{"addresses": [{"ip": HTTPBIN_IP, "targetRef": {
                     "kind": "Pod", "name": pod["metadata"]["name"], "namespace": SERVER_NS}}],
                     "ports": [{"name": service["spec"]["ports"][0]["name"], "port": target, "protocol": "TCP"}]}]}
    return [service, pod, endpoints]


def _write_view(root: Path, view: str, proxy: dict, configs: list[dict], kube: list[dict]) -> None:
    d = root / view
    d.mkdir(parents=True)
    (d / "proxy.json").write_text(json.dumps(proxy))
    (d / "configs.yaml").write_text("---\n".join(serviceentry.to_yaml(c) for c in configs))
    (d / "kube.yaml").write_text("---\n".join(serviceentry.to_yaml(k) for k in kube))


def _views(code_version: str, pre: dict[str, dict], istio_dir: Path) -> dict[str, tuple[dict, list[dict], list]]:
    """view -> (proxy, Istio configs, Kubernetes objects): the lab's two views and the fault catalogue's."""
    profile = load_profile()
    svc = serviceentry.RemoteService.from_host(REMOTE_HOST, REMOTE_PORT)
    client_se = serviceentry.render_client(svc, profile.client.vip, GATEWAY_NODE_IP, profile.gateway_node_port,
                                           namespace=CLIENT_NS)
    server_se = serviceentry.render_server(svc, profile.server.vip, namespace=SERVER_NS)
    installed = [pre["Gateway"], pre["DestinationRule"], pre["EnvoyFilter"]]
    sidecar = {"type": "sidecar", "id": f"sleep-854565cb79-4wqz8.{CLIENT_NS}", "namespace": CLIENT_NS,
               "ip": SLEEP_IP, "labels": {"app": "sleep"}, "istioVersion": code_version}
    # The gateway's labels and env from the chart (gateways/istio-ingress, values `labels`, ISTIO_META_ROUTER_MODE).
    gateway = {"type": "router", "id": f"istio-ingressgateway-5d8b5f7d4-7kq2p.{ISTIO_NS}", "namespace": ISTIO_NS,
               "ip": GATEWAY_POD_IP, "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
               "routerMode": "sni-dnat", "istioVersion": code_version}
    httpbin = _httpbin_objects(istio_dir)
    legacy = [pre["Gateway"], pre["DestinationRule"], faults.legacy_envoyfilter(pre["EnvoyFilter"])]
    return {
        "cluster1-sidecar": (sidecar, [client_se, *installed], []),
        "cluster2-gateway": (gateway, [server_se, *installed], httpbin),
        # fault missing-local-serviceentry: cluster2 without its own ServiceEntry
        "cluster2-gateway-no-se": (gateway, installed, httpbin),
        # fault envoyfilter-broken: the EnvoyFilter in its 1.7.0-1.7.4 form, no ServiceEntry; then the write-up's fix
        "cluster2-gateway-legacy-no-se": (gateway, legacy, httpbin),
        "cluster2-gateway-legacy": (gateway, [server_se, *legacy], httpbin),
    }


@pytest.fixture(scope="module", params=sorted(MODULE_VERSIONS, reverse=True))
def run(request, require_go, tmp_path_factory) -> Run:
    module = request.param
    code_version, lab_version = MODULE_VERSIONS[module]
    module_dir = MODULES / module
    binary = built(go_test_binary, module, ".", name=f"{module}.test")
    istio_mod = _go(module_dir, "list", "-m", "-f", "{{.Version}} {{.Dir}}", "istio.io/istio")
    pseudo, istio_dir = istio_mod.split(" ", 1)
    LOG.versions.append((f"pilot (fake discovery server) {module}", f"istio.io/istio {pseudo} = tag {code_version}"))
    work = tmp_path_factory.mktemp(module)
    overlay = work / "overlay.yaml"
    overlay.write_text(istio.overlay_yaml(load_profile(overrides={"istio_version": code_version})))
    values = istio.values_file(Path(istio_dir))
    _run_binary(binary, "TestRender", {"PILOT_RENDER_FILES": os.pathsep.join([str(values), str(overlay)]),
                                       "PILOT_MANIFESTS": str(Path(istio_dir) / "manifests"), "PILOT_OUT": str(work)})
    pre = {d["kind"]: d for d in _yaml_all((work / "preconfigured.yaml").read_text())}
    assert sorted(pre) == ["DestinationRule", "EnvoyFilter", "Gateway"]
    views_in, out = work / "in", work / "out"
    out.mkdir()
    views = _views(code_version, pre, Path(istio_dir))
    for view, (proxy, configs, kube) in views.items():
        _write_view(views_in, view, proxy, configs, kube)
    _run_binary(binary, "TestDump", {"PILOT_IN": str(views_in), "PILOT_OUT": str(out)})
    dumps = {view: configdump.load((out / f"{view}.json").read_text(), source=view) for view in views}
    return Run(module, code_version, lab_version, pre, dumps)


def _observations(r: Run, gateway_view: str, *, server_se: bool, envoyfilter: dict) -> doctor.Observations:
    profile = load_profile()
    svc = serviceentry.RemoteService.from_host(REMOTE_HOST, REMOTE_PORT)
    ses = {profile.client.name: [serviceentry.render_client(svc, profile.client.vip, GATEWAY_NODE_IP,
                                                            profile.gateway_node_port, namespace=CLIENT_NS)],
           profile.server.name: [serviceentry.render_server(svc, profile.server.vip, namespace=SERVER_NS)]
           if server_se else []}
    return doctor.Observations(istio_version=r.lab_version, client=profile.client.name, server=profile.server.name,
                               serviceentries=ses, sidecar_dump=r.dumps["cluster1-sidecar"],
                               gateway_dump=r.dumps[gateway_view], gateway_address=GATEWAY_NODE_IP,
                               gateway_node_port=profile.gateway_node_port, envoyfilter=envoyfilter)


def _gateway_chain(dump: dict) -> dict:
    summary = configdump.analyze(dump, REMOTE_HOST, REMOTE_PORT)
    listeners = [ls for ls in summary["listeners_15443"] if ls["wildcard"]]
    assert [ls["name"] for ls in listeners] == ["0.0.0.0_15443"]
    chains = [ch for ch in listeners[0]["chains"] if "*.global" in ch["server_names"]]
    assert len(chains) == 1, listeners[0]["chains"]
    return chains[0]


# --- the render ------------------------------------------------------------------------------------------------
def test_render_envoyfilter_form_per_version(run):
    ef = run.preconfigured["EnvoyFilter"]
    assert ef["metadata"]["name"] == ENVOYFILTER and ef["metadata"]["namespace"] == ISTIO_NS
    form = doctor.envoyfilter_form(ef)
    assert form == ("typed_config" if run.lab_version == "1.7.8" else "legacy-config")
    gw = run.preconfigured["Gateway"]["spec"]["servers"][0]
    assert gw["hosts"] == ["*.global"] and gw["port"]["number"] == 15443 and gw["tls"]["mode"] == "AUTO_PASSTHROUGH"
    assert run.preconfigured["DestinationRule"]["spec"]["host"] == "*.global"


# --- cluster1's sidecar ------------------------------------------------------------------------------------------
def test_sidecar_client_cluster_and_gateway_endpoint(run):
    dump = run.dumps["cluster1-sidecar"]
    found = {c["name"]: c for c in configdump.find_clusters(dump, REMOTE_HOST, REMOTE_PORT)}
    assert CLIENT_CLUSTER in found, sorted(configdump.cluster_names(dump))
    c = found[CLIENT_CLUSTER]
    node_port = load_profile().gateway_node_port
    assert [e["address"] for e in c["endpoints"]] == [f"{GATEWAY_NODE_IP}:{node_port}"]
    # the `*.global` DestinationRule's ISTIO_MUTUAL: the SNI the gateway's sni_cluster turns into a cluster name
    assert c["tls_sni"] == SNI_GLOBAL
    hop = doctor.hop_sidecar(_observations(run, "cluster2-gateway", server_se=True,
                                           envoyfilter=run.preconfigured["EnvoyFilter"]))
    assert hop.status == doctor.OK, hop


def test_sidecar_route_carries_the_vip(run):
    routes = [r for r in configdump.find_routes(run.dumps["cluster1-sidecar"], REMOTE_HOST, REMOTE_PORT)
              if r["match"] == "exact"]
    assert routes, "no virtual host for httpbin.bar.global:8000"
    vip = load_profile().client.vip
    assert any(d.split(":")[0] == vip for r in routes for d in r["domains"]), routes
    assert all(r["clusters"] == [CLIENT_CLUSTER] for r in routes)


def test_lab_configdump_cli_on_pilot_output(run, tmp_path):
    path = tmp_path / "sidecar.json"
    path.write_text(json.dumps(run.dumps["cluster1-sidecar"]))
    proc = subprocess.run([sys.executable, "-m", "lab", "configdump", str(path), "--host", REMOTE_HOST, "--port",
                           str(REMOTE_PORT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["format"] == "v3"
    assert [c["name"] for c in out["clusters"]["matches"]] == [CLIENT_CLUSTER]


# --- cluster2's gateway ------------------------------------------------------------------------------------------
def test_gateway_15443_chain_and_rewrite_per_version(run):
    chain = _gateway_chain(run.dumps["cluster2-gateway"])
    assert chain["sni_cluster"]
    rw = chain["tcp_cluster_rewrite"]
    if run.lab_version == "1.7.8":
        assert chain["filters"] == [configdump.SNI_CLUSTER, configdump.TCP_CLUSTER_REWRITE,
                                    "envoy.filters.network.tcp_proxy"]
        assert rw["usable"] and rw["after_sni_cluster"] and rw["form"] == "typed_config"
        assert rw["cluster_pattern"] == r"\.global$" and rw["cluster_replacement"] == ".svc.cluster.local"
    else:
        # pilot keeps the inserted filter but drops the legacy `config:` (istio#27909): a rewrite with no settings
        assert chain["filters"][:2] == [configdump.SNI_CLUSTER, configdump.TCP_CLUSTER_REWRITE]
        assert rw["form"] == "none" and not rw["usable"], rw


def test_gateway_with_server_serviceentry_reaches_a_cluster(run):
    dump = run.dumps["cluster2-gateway"]
    names = configdump.cluster_names(dump)
    assert SNI_GLOBAL in names and SNI_LOCAL in names
    hop = doctor.hop_gateway(_observations(run, "cluster2-gateway", server_se=True,
                                           envoyfilter=run.preconfigured["EnvoyFilter"]))
    assert hop.status == doctor.OK, hop


def test_fault_missing_local_serviceentry(run):
    """No cluster2 ServiceEntry: on 1.7.8 the rewrite still reaches httpbin.bar.svc.cluster.local; on the 1.7.3
    stand-in the SNI cluster is gone and nothing rewrites it (the write-up's situation)."""
    dump = run.dumps["cluster2-gateway-no-se"]
    names = configdump.cluster_names(dump)
    assert SNI_GLOBAL not in names and SNI_LOCAL in names
    obs = _observations(run, "cluster2-gateway-no-se", server_se=False, envoyfilter=run.preconfigured["EnvoyFilter"])
    hop = doctor.hop_gateway(obs)
    expected = faults.BY_ID["missing-local-serviceentry"].expected_for(run.lab_version).cls
    if run.lab_version == "1.7.8":
        assert _gateway_chain(dump)["tcp_cluster_rewrite"]["usable"]
        assert expected == "ok" and hop.status == doctor.OK, hop
        assert doctor.hop_serviceentries(obs).status == doctor.OK
    else:
        assert expected == "upstream-connect-failure" and hop.status == doctor.BROKEN, hop
        assert doctor.hop_serviceentries(obs).status == doctor.BROKEN


def test_fault_envoyfilter_broken_and_the_writeups_fix(run):
    """The EnvoyFilter in its legacy form (faults.legacy_envoyfilter): no usable rewrite, and without cluster2's
    ServiceEntry no cluster for the SNI; with it back (the follow-up) outbound_.8000_._.httpbin.bar.global exists."""
    fault = faults.BY_ID["envoyfilter-broken"]
    legacy = faults.legacy_envoyfilter(run.preconfigured["EnvoyFilter"])
    broken = run.dumps["cluster2-gateway-legacy-no-se"]
    rw = _gateway_chain(broken)["tcp_cluster_rewrite"]
    assert rw["form"] == "none" and not rw["usable"], rw
    assert SNI_GLOBAL not in configdump.cluster_names(broken)
    hop = doctor.hop_gateway(_observations(run, "cluster2-gateway-legacy-no-se", server_se=False, envoyfilter=legacy))
    assert fault.expected_for(run.lab_version).cls == "upstream-connect-failure" and hop.status == doctor.BROKEN
    fixed = run.dumps["cluster2-gateway-legacy"]
    assert fault.followup is not None
    assert SNI_GLOBAL in configdump.cluster_names(fixed)
    hop = doctor.hop_gateway(_observations(run, "cluster2-gateway-legacy", server_se=True, envoyfilter=legacy))
    assert fault.followup.expected_for(run.lab_version).cls == "ok" and hop.status == doctor.OK, hop


# The state each gateway-side fault's `gateway_state` waits for before the e2e suite judges the symptom
# (lab.scenarios.replicated_control_planes.faults,
# reach_new_connections), with the state before the change: pilot's view satisfies the check after it, not before.
GATEWAY_STATES: list[tuple[str, str | None, str, str]] = [
    ("missing-local-serviceentry", None, "cluster2-gateway", "cluster2-gateway-no-se"),
    ("envoyfilter-broken", None, "cluster2-gateway", "cluster2-gateway-legacy-no-se"),
    ("envoyfilter-broken", "followup", "cluster2-gateway-legacy-no-se", "cluster2-gateway-legacy"),
]


@pytest.mark.parametrize(("fault_id", "step", "before", "after"), GATEWAY_STATES,
                         ids=[f"{f}-{s or 'inject'}" for f, s, _, _ in GATEWAY_STATES])
def test_fault_gateway_state_matches_pilot(run, fault_id, step, before, after):
    fault = faults.BY_ID[fault_id]
    if step == "followup":
        assert fault.followup is not None, f"{fault_id} has no follow-up"
        check = fault.followup.gateway_state
    else:
        check = fault.gateway_state
    assert check is not None, f"{fault_id} {step or 'inject'} has no gateway_state"
    summary = {view: configdump.analyze(run.dumps[view], REMOTE_HOST, REMOTE_PORT) for view in (before, after)}
    assert check(summary[after], run.lab_version) == [], summary[after]["gateway_paths"]
    assert check(summary[before], run.lab_version), f"{fault_id} {step or 'inject'}: already satisfied before"


def test_every_gateway_side_fault_is_checked_against_pilot():
    with_state: set[tuple[str, str | None]] = {(f.id, None) for f in faults.FAULTS if f.gateway_state}
    with_state |= {(f.id, "followup") for f in faults.FAULTS if f.followup and f.followup.gateway_state}
    assert with_state == {(f, s) for f, s, _, _ in GATEWAY_STATES}
