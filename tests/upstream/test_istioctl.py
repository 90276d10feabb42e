"""What the lab relies on in `istioctl install`, checked against istioctl itself (built from istio.io/istio, see
tests/upstream/istioctl.py): the render of values-istio-multicluster-gateways.yaml plus the lab's own overlay
(lab/scenarios/replicated_control_planes/istio.py, rendered by the lab's code), and `istioctl analyze` of the lab's own
manifests.

The render is `istioctl manifest generate` with the same `-f` files `lab up` passes to `istioctl install`, and the
tag's charts from istio.io/istio's module directory (`-d <dir>/manifests`): the manifests `install` applies.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import images as lab_images
from lab import perform, plan
from lab.profile import version_key
from lab.scenarios.replicated_control_planes import actions as rcp_actions
from lab.scenarios.replicated_control_planes import istio, names, serviceentry
from lab.scenarios.replicated_control_planes import steps as rcp_steps
from lab.scenarios.replicated_control_planes.faults import legacy_envoyfilter
from lab.scenarios.replicated_control_planes.profiles import Profile, load_profile
from tests.upstream import istioctl as ic
from tests.upstream.conftest import built
from tests.upstream.gobuild import LOG

DATA = Path(__file__).resolve().parents[1] / "data" / "istio"
NS = names.ISTIO_NS
GATEWAY_NODE_IP = "172.18.0.3"  # stands in for the run-time lookup of the gateway pod's node IP (kind network)


@pytest.fixture(scope="module", params=ic.RELEASES, ids=lambda r: r.version)
def release(request) -> ic.Release:
    return request.param


@pytest.fixture(scope="module")
def profile(release) -> Profile:
    return load_profile("default", {"istio_version": release.version})


_BINARIES: dict[str, Path] = {}
_RENDERS: dict[str, list[dict]] = {}


def binary_for(release: ic.Release) -> Path:
    """The release's istioctl, built (or found in the cache) once per session; its version goes to the summary."""
    if release.version not in _BINARIES:
        binary = built(ic.build, release)
        res = ic.run(binary, "version", "--remote=false")
        assert res.returncode == 0, res.stderr
        LOG.versions.append((f"istioctl for the lab's {release.version}",
                             f"`istioctl version --remote=false` -> {res.stdout.strip()} "
                             f"(istio.io/istio {release.code_tag}, {release.commit[:12]})"))
        _BINARIES[release.version] = binary
    return _BINARIES[release.version]


@pytest.fixture(scope="module")
def istioctl(require_go, release) -> Path:
    return binary_for(release)


@pytest.fixture(scope="module")
def istio_dir(require_go, release) -> Path:
    return built(ic.release_dir, release)


@pytest.fixture(scope="module")
def values_file(istio_dir) -> Path:
    return istio.values_file(istio_dir)  # the lab's own lookup of the file in a release tree


def render_for(istioctl: Path, istio_dir: Path, values_file: Path, profile: Profile, tmp: Path) -> list[dict]:
    overlay = tmp / "istio-overlay.yaml"
    overlay.write_text(istio.overlay_yaml(profile), encoding="utf-8")
    return generate(istioctl, istio_dir, values_file, overlay)  # the two -f files of `lab up`'s install


@pytest.fixture(scope="module")
def rendered(istioctl, istio_dir, values_file, profile, release, tmp_path_factory) -> list[dict]:
    if release.version not in _RENDERS:
        _RENDERS[release.version] = render_for(istioctl, istio_dir, values_file, profile,
                                               tmp_path_factory.mktemp(f"render-{release.version}"))
    return _RENDERS[release.version]


def test_istioctl_reports_the_version_it_was_stamped_with(istioctl, release):
    out = ic.run(istioctl, "version", "--remote=false", "-o", "json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["clientVersion"]
    assert (info["version"], info["revision"], info["tag"]) == (release.version, release.commit, release.code_tag)


def test_the_values_file_is_the_one_the_lab_tests_against(values_file, release):
    ours = (DATA / "1.7.8" / "values-istio-multicluster-gateways.yaml").read_bytes()
    if release.version == "1.7.8":
        assert values_file.read_bytes() == ours
    else:
        # 1.7.0-1.7.3 lack the two keys 1.7.4 added (docs/sources.md#gateway-envoyfilter); everything else is the same.
        theirs = yaml.safe_load(values_file.read_text())
        newer = yaml.safe_load(ours)
        multicluster = newer["spec"]["values"]["global"]["multiCluster"]
        assert multicluster.pop("globalDomainSuffix") == "global"
        assert multicluster.pop("includeEnvoyFilter") is True
        assert theirs == newer


def test_the_default_profile_is_the_one_the_unit_tests_read(require_go):
    (latest,) = [r for r in ic.RELEASES if r.version == "1.7.8"]  # the lab keeps a copy of 1.7.8's profile only
    istio_dir = built(ic.release_dir, latest)
    assert (istio_dir / "manifests" / "profiles" / "default.yaml").read_bytes() == \
        (DATA / "1.7.8" / "default-profile.yaml").read_bytes()


def test_manifest_generate_renders_a_nodeport_gateway_with_all_four_ports_and_the_fixed_15443(
        rendered, istio_dir, profile):
    svc = ic.find(rendered, "Service", names.GATEWAY_SERVICE, NS)
    assert svc["spec"]["type"] == "NodePort"
    got = [(p["name"], p["port"], p["targetPort"], p.get("nodePort")) for p in svc["spec"]["ports"]]
    assert got == [("status-port", 15021, 15021, None), ("http2", 80, 8080, None), ("https", 443, 8443, None),
                   ("tls", 15443, 15443, profile.gateway_node_port)]
    assert profile.gateway_node_port == 31443
    # the same four ports this version's own default profile gives the gateway: the overlay repeats them unchanged
    default = yaml.safe_load((istio_dir / "manifests" / "profiles" / "default.yaml").read_text())
    (gw,) = [g for g in default["spec"]["components"]["ingressGateways"] if g["name"] == istio.GATEWAY]
    assert [(p["name"], p["port"], p["targetPort"]) for p in gw["k8s"]["service"]["ports"]] == \
        [g[:3] for g in got]


def test_the_gateway_keeps_the_profiles_sni_dnat_router_mode(rendered):
    deploy = ic.find(rendered, "Deployment", istio.GATEWAY, NS)
    (proxy,) = [c for c in ic.containers(deploy) if c["name"] == "istio-proxy"]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_ROUTER_MODE"] == "sni-dnat"


def test_every_rendered_container_and_the_injector_use_if_not_present(rendered):
    workloads = [o for o in rendered if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
    assert {o["metadata"]["name"] for o in workloads} >= {"istiod", istio.GATEWAY, "istio-egressgateway",
                                                          "istiocoredns"}
    policies = {(o["metadata"]["name"], c["name"]): c.get("imagePullPolicy") for o in workloads
                for c in ic.containers(o)}
    assert set(policies.values()) == {"IfNotPresent"}, policies
    injector = ic.find(rendered, "ConfigMap", "istio-sidecar-injector", NS)
    assert json.loads(injector["data"]["values"])["global"]["imagePullPolicy"] == "IfNotPresent"


def test_access_logs_go_to_stdout(rendered):
    mesh = yaml.safe_load(ic.find(rendered, "ConfigMap", "istio", NS)["data"]["mesh"])
    assert mesh["accessLogFile"] == "/dev/stdout"


def test_istiocoredns_runs_coredns_1_6_2_with_the_plugin_behind_grpc_global(rendered):
    deploy = ic.find(rendered, "Deployment", "istiocoredns", NS)
    images = {c["name"]: c["image"] for c in ic.containers(deploy)}
    assert images == {"coredns": "coredns/coredns:1.6.2", "istio-coredns-plugin": "istio/coredns-plugin:0.2-istio-1.1"}
    cm = ic.find(rendered, "ConfigMap", "coredns", NS)
    lines = [line.strip() for line in cm["data"]["Corefile"].splitlines()]
    assert "grpc global 127.0.0.1:8053" in lines


def _rewrite(envoyfilter: dict) -> dict:
    (patch,) = envoyfilter["spec"]["configPatches"]
    assert patch["applyTo"] == "NETWORK_FILTER"
    assert patch["match"]["context"] == "GATEWAY"
    assert patch["match"]["listener"]["portNumber"] == names.GATEWAY_TLS_PORT
    assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.sni_cluster"
    assert patch["patch"]["operation"] == "INSERT_AFTER"
    value = patch["patch"]["value"]
    assert value["name"] == "envoy.filters.network.tcp_cluster_rewrite"
    return value


def test_the_preconfigured_envoyfilter_has_the_form_the_lab_expects_of_its_version(rendered, release):
    value = _rewrite(ic.find(rendered, "EnvoyFilter", names.ENVOYFILTER, NS))
    settings = {"cluster_pattern": "\\.global$", "cluster_replacement": ".svc.cluster.local"}
    fixed = version_key(release.version) >= version_key(names.ENVOYFILTER_FIXED_IN)
    if fixed:
        assert set(value) == {"name", "typed_config"}
        assert value["typed_config"] == {
            "@type": "type.googleapis.com/istio.envoy.config.filter.network.tcp_cluster_rewrite.v2alpha1."
                     "TcpClusterRewrite", **settings}
    else:
        assert set(value) == {"name", "config"}
        assert value["config"] == settings
    assert release.version == "1.7.8" if fixed else release.version == "1.7.3"


def test_the_lab_s_broken_envoyfilter_fault_is_the_1_7_3_render(require_go, tmp_path):
    # faults.legacy_envoyfilter turns 1.7.8's filter into the 1.7.0-1.7.4 form: it must be what 1.7.3 renders.
    filters = {}
    for release in ic.RELEASES:
        binary, istio_dir = binary_for(release), built(ic.release_dir, release)
        profile = load_profile("default", {"istio_version": release.version})
        objs = _RENDERS.get(release.version) or render_for(binary, istio_dir, istio.values_file(istio_dir), profile,
                                                           tmp_path / release.version)
        filters[release.version] = ic.find(objs, "EnvoyFilter", names.ENVOYFILTER, NS)
    assert legacy_envoyfilter(filters["1.7.8"])["spec"] == filters["1.7.3"]["spec"]


def test_the_gateway_and_destination_rule_for_dot_global(rendered):
    gw = ic.find(rendered, "Gateway", "istio-multicluster-ingressgateway", NS)
    assert gw["spec"]["selector"] == {"istio": "ingressgateway"}
    (server,) = gw["spec"]["servers"]
    assert server["hosts"] == ["*.global"]
    assert server["port"] == {"name": "tls", "number": 15443, "protocol": "TLS"}
    assert server["tls"] == {"mode": "AUTO_PASSTHROUGH"}
    dr = ic.find(rendered, "DestinationRule", "istio-multicluster-ingressgateway", NS)
    assert dr["spec"]["host"] == "*.global"
    assert dr["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}


def _injected(istioctl: Path, rendered: list[dict], sample: Path, tmp: Path) -> list[dict]:
    injector = ic.find(rendered, "ConfigMap", "istio-sidecar-injector", NS)["data"]
    mesh = ic.find(rendered, "ConfigMap", "istio", NS)["data"]["mesh"]
    files = {"inject.yaml": injector["config"], "values.json": injector["values"], "mesh.yaml": mesh}
    for name, text in files.items():
        (tmp / name).write_text(text, encoding="utf-8")
    res = ic.run(istioctl, "kube-inject", "--injectConfigFile", tmp / "inject.yaml", "--valuesFile",
                 tmp / "values.json", "--meshConfigFile", tmp / "mesh.yaml", "-f", sample)
    assert res.returncode == 0, res.stderr
    return ic.objects(res.stdout)


def test_the_injector_gives_sidecars_the_lab_s_images_pull_policy_and_global_search(
        istioctl, rendered, istio_dir, profile, tmp_path):
    # istioctl kube-inject with the rendered injector template, values and mesh config: what istiod's webhook adds
    objs = _injected(istioctl, rendered, istio_dir / rcp_steps.SAMPLE_SLEEP, tmp_path)
    deploy = ic.find(objs, "Deployment", "sleep")
    injected = {c["name"]: c for c in ic.containers(deploy)}
    assert set(injected) == {"istio-init", "istio-proxy", "sleep"}
    want = profile.images.resolved(profile.istio_version)["proxyv2"]
    for name in ("istio-init", "istio-proxy"):
        assert injected[name]["image"] == want
        assert injected[name]["imagePullPolicy"] == "IfNotPresent"
    assert "global" in deploy["spec"]["template"]["spec"]["dnsConfig"]["searches"]


def _normalised(ref: str) -> str:
    return plan._normalise(ref)  # containerd's reading of a reference (docker.io/, library/, :latest)


def test_every_image_the_install_and_the_injector_name_is_in_the_lab_s_image_list(
        istioctl, rendered, istio_dir, profile, release, tmp_path):
    named = {c["image"] for o in rendered for c in ic.containers(o)}
    for sample in (rcp_steps.SAMPLE_SLEEP, rcp_steps.SAMPLE_HTTPBIN):
        named |= {c["image"] for o in _injected(istioctl, rendered, istio_dir / sample, tmp_path)
                  for c in ic.containers(o) if c["name"] in ("istio-init", "istio-proxy")}
    assert f"docker.io/istio/pilot:{release.version}" in named
    assert f"docker.io/istio/proxyv2:{release.version}" in named
    listed = {_normalised(i) for i in lab_images.image_list(profile)}
    missing = sorted(i for i in named if _normalised(i) not in listed)
    assert missing == [], f"images the {release.version} install runs but the lab does not load: {missing}"


# --- what the overlay changes, and the claims behind its shape (lab/scenarios/replicated_control_planes/istio.py)
# --------------------------------------
def generate(istioctl: Path, istio_dir: Path, *files: Path) -> list[dict]:
    flags = [arg for f in files for arg in ("-f", f)]
    res = ic.run(istioctl, "manifest", "generate", "-d", istio_dir / "manifests", *flags)
    assert res.returncode == 0, f"istioctl manifest generate failed:\n{res.stderr[-3000:]}"
    return ic.objects(res.stdout)


def test_without_the_overlay_sidecars_pull_always_no_access_log_and_a_load_balancer(
        istioctl, istio_dir, values_file, tmp_path):
    # what the overlay is for: the values file alone leaves the 1.7 defaults the lab has to change
    plain = generate(istioctl, istio_dir, values_file)
    assert ic.find(plain, "Service", names.GATEWAY_SERVICE, NS)["spec"]["type"] == "LoadBalancer"
    assert not yaml.safe_load(ic.find(plain, "ConfigMap", "istio", NS)["data"]["mesh"]).get("accessLogFile")
    sleep = ic.find(_injected(istioctl, plain, istio_dir / rcp_steps.SAMPLE_SLEEP, tmp_path), "Deployment", "sleep")
    policies = {c["name"]: c.get("imagePullPolicy") for c in ic.containers(sleep)}
    assert (policies["istio-init"], policies["istio-proxy"]) == ("Always", "Always")
    # the install's own Deployments name no policy (Kubernetes then uses IfNotPresent for a tag other than latest)
    workloads = [o for o in plain if o["kind"] == "Deployment"]
    assert workloads and all("imagePullPolicy" not in c for o in workloads for c in ic.containers(o))


def test_an_overlay_port_list_replaces_the_profiles_but_an_env_list_cannot_drop_sni_dnat(
        istioctl, istio_dir, values_file, profile, tmp_path):
    # why the overlay repeats all four ports: the IstioOperator overlay replaces the profile's list. The gateway's
    # env is another matter: ISTIO_META_ROUTER_MODE=sni-dnat also comes from the gateway chart's values.yaml
    # (gateways.istio-ingressgateway.env, rendered by templates/deployment.yaml), and `k8s.env` is patched onto
    # the rendered container by name (translate.go K8S.Env), so an env list in an overlay adds to it.
    doc = istio.overlay(profile)
    (gw,) = doc["spec"]["components"]["ingressGateways"]
    gw["k8s"]["service"]["ports"] = [p for p in gw["k8s"]["service"]["ports"] if p["name"] == "tls"]
    gw["k8s"]["env"] = [{"name": "LAB_PROBE", "value": "1"}]
    overlay = tmp_path / "one-port.yaml"
    overlay.write_text(yaml.safe_dump(doc), encoding="utf-8")
    objs = generate(istioctl, istio_dir, values_file, overlay)
    assert [p["name"] for p in ic.find(objs, "Service", names.GATEWAY_SERVICE, NS)["spec"]["ports"]] == ["tls"]
    (proxy,) = [c for c in ic.containers(ic.find(objs, "Deployment", istio.GATEWAY, NS)) if c["name"] == "istio-proxy"]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert (env["LAB_PROBE"], env["ISTIO_META_ROUTER_MODE"]) == ("1", "sni-dnat")
    chart_values = yaml.safe_load((istio_dir / "manifests/charts/gateways/istio-ingress/values.yaml").read_text())
    assert chart_values["gateways"]["istio-ingressgateway"]["env"]["ISTIO_META_ROUTER_MODE"] == "sni-dnat"


def test_image_overrides_render_as_the_lab_expects(istioctl, istio_dir, values_file, release, tmp_path):
    # lab.scenarios.replicated_control_planes.istio.image_values/chart_image against the real charts: a bare name, a
    # name with a registry, and the
    # istiocoredns name:tag split; the plan's istiod check reads containers[0] of Deployment istiod.
    overrides = {"istio_version": release.version, "images.pilot": "pilot:1.7-lab",
                 "images.proxyv2": "registry.local:5000/istio/proxyv2:1.7-lab",
                 "images.coredns": "registry.local:5000/coredns:1.6.2-lab",
                 "images.coredns_plugin": "registry.local:5000/coredns-plugin:lab"}
    profile = load_profile("default", overrides)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(istio.overlay_yaml(profile), encoding="utf-8")
    objs = generate(istioctl, istio_dir, values_file, overlay)
    want = profile.images.resolved(profile.istio_version)
    istiod = ic.find(objs, "Deployment", "istiod", NS)
    assert istiod["spec"]["template"]["spec"]["containers"][0]["image"] == istio.chart_image(want["pilot"])
    assert istio.chart_image(want["pilot"]) == "docker.io/library/pilot:1.7-lab"
    for gateway in (istio.GATEWAY, "istio-egressgateway"):
        (proxy,) = [c for c in ic.containers(ic.find(objs, "Deployment", gateway, NS)) if c["name"] == "istio-proxy"]
        assert proxy["image"] == want["proxyv2"]
    coredns = {c["name"]: c["image"] for c in ic.containers(ic.find(objs, "Deployment", "istiocoredns", NS))}
    assert coredns == {"coredns": want["coredns"], "istio-coredns-plugin": want["coredns_plugin"]}
    injected = {c["name"]: c["image"] for c in ic.containers(
        ic.find(_injected(istioctl, objs, istio_dir / rcp_steps.SAMPLE_SLEEP, tmp_path), "Deployment", "sleep"))}
    assert (injected["istio-init"], injected["istio-proxy"]) == (want["proxyv2"], want["proxyv2"])


# --- istioctl analyze of the lab's own manifests -----------------------------------------------------------------
def lab_manifests(profile: Profile, istio_dir: Path) -> dict[str, list[dict]]:
    """Every object `lab up` applies, per cluster, rendered by the lab's own code with the release's files
    (namespaces, cacerts, samples, ServiceEntries; the kube-system CoreDNS patch is not Istio config)."""
    paths = plan.Paths(home=Path("/nonexistent-lab-home"), istio_dir=istio_dir)
    out: dict[str, list[dict]] = {c.name: [] for c in profile.clusters}
    for step in rcp_steps.build(profile, paths):
        run = step.run
        if isinstance(run, plan.Manifest):
            src = run.source
            if isinstance(src, (plan.Text, plan.Template)):
                text = src.yaml
            elif isinstance(src, plan.Sample):
                text = perform.sample_manifest(paths.resolve(src.file).read_text(encoding="utf-8"), src.images)
            else:
                text = perform.secret_manifest(src.name, src.namespace,
                                               {paths.resolve(f).name: paths.resolve(f).read_bytes()
                                                for f in src.files})
            cluster, namespace = run.cluster, run.namespace
        elif isinstance(run, rcp_actions.ApplyClientServiceEntry):
            svc = serviceentry.RemoteService(run.service, run.service_namespace)
            obj = serviceentry.render_client(svc, run.vip, GATEWAY_NODE_IP, profile.gateway_node_port)
            text, cluster, namespace = serviceentry.to_yaml(obj), run.cluster, run.namespace
        else:
            continue
        for obj in ic.objects(text):
            if namespace and obj["kind"] != "Namespace":
                obj.setdefault("metadata", {}).setdefault("namespace", namespace)  # what `kubectl apply -n` does
            out[cluster].append(obj)
    return out


def analyze(istioctl: Path, objs: list[dict], tmp: Path) -> tuple[list[dict], subprocess.CompletedProcess]:
    """`istioctl analyze --use-kube=false --all-namespaces` of the objects, one file each: (messages, result).
    Without --all-namespaces it would report only on `default`, where the lab puts nothing."""
    files = []
    for i, obj in enumerate(objs):
        path = tmp / f"{i:02d}-{obj['kind'].lower()}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
        files.append(path)
    res = ic.run(istioctl, "analyze", "--use-kube=false", "--all-namespaces", "-o", "json", *files)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout or "[]") or [], res  # `null` when there is nothing to say


def test_the_lab_s_own_manifests_pass_istioctl_analyze(istioctl, istio_dir, profile, release, tmp_path):
    manifests = lab_manifests(profile, istio_dir)
    kinds = {o["kind"] for objs in manifests.values() for o in objs}
    assert {"Namespace", "Secret", "ServiceEntry", "Deployment", "Service"} <= kinds
    for cluster, objs in manifests.items():
        messages, _ = analyze(istioctl, objs, tmp_path / cluster)
        errors = [m for m in messages if m["level"] == "Error"]
        warnings = [f"{m['code']} {m.get('origin', '')}: {m['message']}" for m in messages if m["level"] != "Error"]
        for w in warnings:
            print(f"{cluster}: {w}")
        LOG.notes.append((f"istioctl {release.version} analyze of the lab's {cluster} manifests",
                          f"{len(objs)} objects, {len(errors)} errors, "
                          f"{len(warnings)} warnings{': ' + '; '.join(warnings) if warnings else ''}"))
        assert errors == [], f"{cluster}: {errors}"


def test_analyze_does_look_at_the_lab_s_namespaces(istioctl, istio_dir, profile, tmp_path):
    # the check above can fail: a VirtualService in foo naming a Gateway that does not exist is reported
    objs = lab_manifests(profile, istio_dir)[profile.client.name]
    bad = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
           "metadata": {"name": "canary", "namespace": rcp_steps.CLIENT_NS},
           "spec": {"hosts": [names.REMOTE_HOST], "gateways": ["no-such-gateway"],
                    "http": [{"route": [{"destination": {"host": names.REMOTE_HOST}}]}]}}
    messages, _ = analyze(istioctl, [*objs, bad], tmp_path)
    errors = [m for m in messages if m["level"] == "Error"]
    assert [(m["code"], m["origin"]) for m in errors] == [("IST0101", f"VirtualService canary.{rcp_steps.CLIENT_NS}")]
    assert "no-such-gateway" in errors[0]["message"]
