"""lab.kind: the kind config against kind's own v1alpha4 types, the provider's commands, the kind #3054 check."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from lab import kind
from lab.errors import CommandError, PreflightError
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes import kindconfig
from lab.shell import Result
from tests.support.recording import RecordingRunner

DATA = Path(__file__).resolve().parent.parent / "data" / "kind"
PROFILES = ("default", "writeup")


def schema_for(kind_version: str) -> dict:
    return json.loads((DATA / f"v1alpha4-{kind_version}.schema.json").read_text())


def ok(stdout: str = "", rc: int = 0, stderr: str = "") -> Result:
    return Result((), rc, stdout, stderr)


@dataclasses.dataclass
class FakeTools:
    kind: Path = Path("/cache/bin/kind-v0.20.0")
    kubectl: Path = Path("/cache/bin/kubectl-v1.21.14")
    istioctl: Path = Path("/cache/istio/istio-1.7.8/bin/istioctl")
    istio_dir: Path = Path("/cache/istio/istio-1.7.8")


class FakeKindCluster:
    """Stands in for pytest_kind.KindCluster: records how it was built and what was called."""

    instances: list[FakeKindCluster] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple] = []
        FakeKindCluster.instances.append(self)

    def create(self, config_file=None):
        self.calls.append(("create", config_file))
        Path(self.kwargs["kubeconfig"]).write_text("apiVersion: v1\nkind: Config\n")

    def delete(self):
        self.calls.append(("delete",))


@pytest.fixture(autouse=True)
def _reset_fake():
    FakeKindCluster.instances = []


def ready_nodes(argv):
    return ok("cluster1-control-plane=True\n")


def provider(tmp_path, runner, profile_name="default"):
    return kind.KindProvider(load_profile(profile_name), tmp_path / "state", FakeTools(), runner,
                             cluster_factory=FakeKindCluster)


# --- config ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PROFILES)
def test_rendered_config_validates_against_kind_types_of_the_profiles_kind_version(name):
    profile = load_profile(name)
    for cluster in profile.clusters:
        jsonschema.validate(kindconfig.render_config(profile, cluster), schema_for(profile.kind_version))


@pytest.mark.parametrize("version", ["v0.17.0", "v0.20.0"])
def test_kind_schema_refuses_an_unknown_or_misspelt_field(version):
    profile = load_profile("default")
    config = kindconfig.render_config(profile, profile.clusters[0])
    config["nodes"][0]["extraPortMapping"] = []  # kind's field is extraPortMappings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema_for(version))


def test_kind_v017_schema_refuses_dns_search_which_arrived_in_v020():
    profile = load_profile("writeup")
    config = kindconfig.render_config(profile, profile.clusters[0])
    config["networking"]["dnsSearch"] = []
    jsonschema.validate(config, schema_for("v0.20.0"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema_for("v0.17.0"))


@pytest.mark.parametrize("name", PROFILES)
def test_config_runs_one_control_plane_on_the_pinned_image_with_digest(name):
    profile = load_profile(name)
    config = kindconfig.render_config(profile, profile.clusters[0])
    assert [n["role"] for n in config["nodes"]] == ["control-plane"]
    assert config["nodes"][0]["image"] == profile.node_image
    assert "@sha256:" in config["nodes"][0]["image"]
    assert config["name"] == profile.clusters[0].name


def test_gateway_port_mapping_binds_loopback_with_a_distinct_host_port_per_cluster():
    profile = load_profile("default")
    mappings = [kindconfig.render_config(profile, c)["nodes"][0]["extraPortMappings"] for c in profile.clusters]
    for cluster, ports in zip(profile.clusters, mappings, strict=True):
        assert ports == [{"containerPort": profile.gateway_node_port, "hostPort": cluster.gateway_host_port,
                          "listenAddress": "127.0.0.1", "protocol": "TCP"}]
    host_ports = [m[0]["hostPort"] for m in mappings]
    assert len(set(host_ports)) == len(host_ports)


def test_clusters_get_distinct_pod_and_service_subnets():
    profile = load_profile("default")
    nets = [kindconfig.render_config(profile, c)["networking"] for c in profile.clusters]
    assert nets[0] == {"podSubnet": "10.10.0.0/16", "serviceSubnet": "10.255.10.0/24"}
    assert len({n["podSubnet"] for n in nets}) == len({n["serviceSubnet"] for n in nets}) == len(nets)


def test_gateway_node_port_override_moves_the_container_port():
    profile = load_profile("default", {"gateway_node_port": "30999"})
    config = kindconfig.render_config(profile, profile.clusters[1])
    assert config["nodes"][0]["extraPortMappings"][0]["containerPort"] == 30999


def test_only_kubernetes_below_1_20_gets_the_trustworthy_jwt_kubeadm_patch():
    writeup, default = load_profile("writeup"), load_profile("default")
    assert "kubeadmConfigPatches" not in kindconfig.render_config(default, default.clusters[0])
    (patch,) = kindconfig.render_config(writeup, writeup.clusters[0])["kubeadmConfigPatches"]
    doc = yaml.safe_load(patch)
    # kind v0.17.0 renders kubeadm.k8s.io/v1beta2 ClusterConfiguration below Kubernetes 1.23; the patch must match it.
    assert (doc["apiVersion"], doc["kind"]) == ("kubeadm.k8s.io/v1beta2", "ClusterConfiguration")
    assert doc["apiServer"]["extraArgs"] == {"service-account-issuer": "kubernetes.default.svc",
                                             "service-account-signing-key-file": "/etc/kubernetes/pki/sa.key"}


def test_config_yaml_round_trips_to_the_rendered_dict():
    profile = load_profile("writeup")
    cluster = profile.clusters[1]
    assert yaml.safe_load(kindconfig.config_yaml(profile, cluster)) == kindconfig.render_config(profile, cluster)


def test_create_argv_matches_what_pytest_kind_runs_plus_nothing_else():
    profile = load_profile("default")
    argv = kind.create_argv("kind", profile.clusters[0], profile, "/s/kind/cluster1.yaml", "/s/kubeconfig/cluster1")
    assert argv == ["kind", "create", "cluster", "--name=cluster1", "--kubeconfig=/s/kubeconfig/cluster1",
                    f"--image={profile.node_image}", "--config", "/s/kind/cluster1.yaml"]


# --- kind #3054 ---------------------------------------------------------------------------------------------------
def test_docker_dns_rules_with_dport_53_pass_the_3054_check():
    text = (DATA / "iptables" / "kind-2326_container-on-kind-network.iptables-save").read_text()
    assert kind.dns_dnat_problem(text) is None
    assert kind.dns_dnat_problem((DATA / "iptables" / "minikube-15573_fedora36-ok.rules").read_text()) is None


def test_docker_dns_rules_that_lost_dport_53_fail_the_3054_check_with_a_fix():
    text = (DATA / "iptables" / "minikube-15573_fedora37-broken.rules").read_text()
    problem = kind.dns_dnat_problem(text, "cluster1-control-plane")
    assert problem is not None
    assert "cluster1-control-plane" in problem and "#3054" in problem and "--dport 53" in problem
    assert "default profile" in problem
    assert "\n" not in problem


def test_one_rule_without_dport_is_enough_to_fail_the_3054_check():
    good = (DATA / "iptables" / "minikube-15573_fedora36-ok.rules").read_text().splitlines()
    bad = (DATA / "iptables" / "minikube-15573_fedora37-broken.rules").read_text().splitlines()
    assert kind.dns_dnat_problem("\n".join([good[0], bad[1]])) is not None


def test_dport_5353_is_not_mistaken_for_dport_53():
    rule = "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 127.0.0.11:1"
    assert kind.dns_dnat_problem(rule) is not None


def test_only_node_images_from_kind_before_v018_need_the_3054_check():
    assert kind.needs_dns_check(load_profile("writeup"))
    assert not kind.needs_dns_check(load_profile("default"))
    assert kind.needs_dns_check(load_profile("default", {"kind_version": "v0.17.0", "node_image": load_profile(
        "writeup").node_image, "kubectl_version": "v1.19.16"}))


def test_verify_stops_the_writeup_profile_on_broken_dns_rules(tmp_path):
    broken = (DATA / "iptables" / "minikube-15573_fedora37-broken.rules").read_text()
    runner = RecordingRunner(answers={("docker", "exec"): ok(broken)})
    p = provider(tmp_path, runner, "writeup")
    with pytest.raises(PreflightError, match="#3054"):
        p.verify(p.profile.clusters[0])
    assert runner.calls == [MODPROBE_CLUSTER1,
                            ("docker", "exec", "cluster1-control-plane", "iptables-save", "-t", "nat")]


MODPROBE_CLUSTER1 = ("docker", "exec", "cluster1-control-plane", "modprobe", "-a", "ip_tables", "iptable_nat",
                     "xt_REDIRECT", "xt_owner")


def test_verify_only_loads_the_iptables_modules_for_the_default_profile(tmp_path):
    runner = RecordingRunner()
    p = provider(tmp_path, runner)
    p.verify(p.profile.clusters[0])
    assert runner.calls == [MODPROBE_CLUSTER1]


PROC_MODULES = "".join(f"{m} 16384 0 - Live 0x0\n" for m in ("nf_nat", "ip_tables", "iptable_nat", "xt_REDIRECT",
                                                               "xt_owner"))


def test_a_failing_modprobe_is_fine_when_the_modules_are_loaded_already(tmp_path):
    runner = RecordingRunner(answers={MODPROBE_CLUSTER1: Result((), 1, "", "modprobe: FATAL: Module ip_tables not "
                                                                          "found in directory /lib/modules/6.10"),
                                      ("docker", "exec", "cluster1-control-plane", "cat"): ok(PROC_MODULES)})
    p = provider(tmp_path, runner)
    p.verify(p.profile.clusters[0])
    assert runner.calls[-1] == ("docker", "exec", "cluster1-control-plane", "cat", "/proc/modules")


def test_modules_that_cannot_be_loaded_stop_the_lab_with_one_line_saying_what_to_run(tmp_path):
    fatal = "modprobe: FATAL: Module iptable_nat not found in directory /lib/modules/6.10.14-linuxkit"
    only_ip_tables = ok("ip_tables 1 0 - Live 0\n")
    runner = RecordingRunner(answers={MODPROBE_CLUSTER1: Result((), 1, "", fatal),
                                      ("docker", "exec", "cluster1-control-plane", "cat"): only_ip_tables})
    p = provider(tmp_path, runner)
    with pytest.raises(PreflightError) as err:
        p.verify(p.profile.clusters[0])
    line = str(err.value)
    assert "\n" not in line and "iptable_nat, xt_REDIRECT, xt_owner" in line and fatal in line
    assert "`sudo modprobe -a ip_tables iptable_nat xt_REDIRECT xt_owner` on the Docker host" in line
    assert "without legacy xtables cannot run Istio 1.7's sidecars at all" in line


# --- provider ----------------------------------------------------------------------------------------------------
def test_kind_provider_satisfies_the_provider_protocol(tmp_path):
    assert isinstance(provider(tmp_path, RecordingRunner()), kind.Provider)


def test_kubeconfig_is_per_cluster_in_the_state_dir_and_context_is_kinds(tmp_path):
    p = provider(tmp_path, RecordingRunner())
    c = p.profile.clusters[1]
    assert p.kubeconfig(c) == tmp_path / "state" / "kubeconfig" / "cluster2"
    assert p.context(c) == "kind-cluster2"
    assert p.node_container(c) == "cluster2-control-plane"


def test_exists_asks_docker_for_kinds_cluster_label(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok("cluster1-control-plane\n")})
    p = provider(tmp_path, runner)
    assert p.exists(p.profile.clusters[0])
    assert runner.calls == [("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=cluster1",
                             "--format", "{{.Names}}")]


def test_delete_refuses_a_cluster_without_kinds_label(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok("")})
    p = provider(tmp_path, runner)
    assert p.delete(p.profile.clusters[0]) is False
    assert FakeKindCluster.instances == []


def test_delete_removes_a_labelled_cluster_through_pytest_kind_and_its_kubeconfig(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok("cluster2-control-plane\n")})
    p = provider(tmp_path, runner)
    c = p.profile.clusters[1]
    p.kubeconfig(c).parent.mkdir(parents=True)
    p.kubeconfig(c).write_text("x")
    assert p.delete(c) is True
    (kc,) = FakeKindCluster.instances
    assert kc.calls == [("delete",)]
    assert kc.kwargs["name"] == "cluster2"
    assert not p.kubeconfig(c).exists()


def test_create_builds_kindcluster_with_explicit_paths_and_the_rendered_config(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok(""), (str(FakeTools.kubectl),): ready_nodes})
    p = provider(tmp_path, runner)
    c = p.profile.clusters[0]
    p.create(c, kindconfig.config_yaml(p.profile, c))
    (kc,) = FakeKindCluster.instances
    assert kc.kwargs == {"name": "cluster1", "kubeconfig": p.kubeconfig(c), "image": p.profile.node_image,
                         "kind_path": FakeTools.kind, "kubectl_path": FakeTools.kubectl}
    ((call, config_file),) = kc.calls
    assert call == "create"
    assert yaml.safe_load(Path(config_file).read_text()) == kindconfig.render_config(p.profile, c)
    # no kubeconfig export for a fresh cluster (pytest_kind wrote it); the Ready wait names kubeconfig and context
    assert not any("export" in call for call in runner.calls)
    kubectl_calls = [call for call in runner.calls if call[0] == str(FakeTools.kubectl)]
    assert kubectl_calls and kubectl_calls[0][:5] == (str(FakeTools.kubectl), "--kubeconfig",
                                                      str(p.kubeconfig(c)), "--context", "kind-cluster1")


def test_create_reuses_an_existing_cluster_and_rewrites_its_kubeconfig(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok("cluster1-control-plane\n"),
                                      (str(FakeTools.kubectl),): ready_nodes})
    p = provider(tmp_path, runner)
    c = p.profile.clusters[0]
    p.create(c, kindconfig.config_yaml(p.profile, c))
    assert FakeKindCluster.instances == []
    assert (str(FakeTools.kind), "export", "kubeconfig", "--name", "cluster1", "--kubeconfig",
            str(p.kubeconfig(c))) in runner.calls


def test_create_turns_a_failed_kind_run_into_a_command_error(tmp_path):
    class Failing(FakeKindCluster):
        def create(self, config_file=None):
            raise subprocess.CalledProcessError(1, ["kind", "create", "cluster"], output=b"ERROR: boom")

    runner = RecordingRunner(answers={("docker", "ps"): ok("")})
    p = kind.KindProvider(load_profile("default"), tmp_path, FakeTools(), runner, cluster_factory=Failing)
    with pytest.raises(CommandError, match="cluster1: kind create cluster.*boom"):
        p.create(p.profile.clusters[0], kindconfig.config_yaml(p.profile, p.profile.clusters[0]))


def test_an_unwritable_working_directory_is_one_preflight_line_not_a_traceback(tmp_path):
    def unwritable(**kwargs):  # what KindCluster.__init__ raises when it cannot mkdir ./.pytest-kind/<name>
        raise PermissionError(13, "Permission denied", ".pytest-kind/cluster1")

    runner = RecordingRunner(answers={("docker", "ps"): ok("")})
    p = kind.KindProvider(load_profile("default"), tmp_path, FakeTools(), runner, cluster_factory=unwritable)
    with pytest.raises(PreflightError, match=r"cannot create .pytest-kind/cluster1 in .*Permission denied.*writ"):
        p.create(p.profile.clusters[0], kindconfig.config_yaml(p.profile, p.profile.clusters[0]))


def test_create_waits_until_the_node_reports_ready(tmp_path, monkeypatch):
    answers = iter([ok("cluster1-control-plane=False\n"), ok("cluster1-control-plane=True\n")])
    runner = RecordingRunner(answers={("docker", "ps"): ok(""), (str(FakeTools.kubectl),): lambda argv: next(answers)})
    p = provider(tmp_path, runner)
    monkeypatch.setattr(kind, "poll", _fast_poll)
    p.create(p.profile.clusters[0], kindconfig.config_yaml(p.profile, p.profile.clusters[0]))
    assert sum(1 for call in runner.calls if call[0] == str(FakeTools.kubectl)) == 2


def _fast_poll(fn, **kwargs):
    from lab import retry

    return retry.poll(fn, **{**kwargs, "interval": 0, "sleep": lambda _s: None})


@pytest.mark.parametrize(("out", "ready"), [("a=True\n", True), ("a=True\nb=False\n", False), ("", False),
                                            ("a=\n", False), ("a=Unknown", False)])
def test_node_ready_needs_every_node_ready(out, ready):
    assert kind.node_ready(out) is ready


def test_constructing_kindcluster_leaves_no_pytest_kind_folder_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = kind.KindProvider(load_profile("default"), tmp_path / "state", FakeTools(), RecordingRunner())
    kc = p._kind_cluster(p.profile.clusters[0])  # the real pytest_kind.KindCluster
    assert type(kc).__module__ == "pytest_kind.cluster"
    assert (kc.kind_path, kc.kubectl_path) == (FakeTools.kind, FakeTools.kubectl)
    assert kc.kubeconfig_path == tmp_path / "state" / "kubeconfig" / "cluster1"
    assert not (tmp_path / ".pytest-kind").exists()


def test_load_images_uses_kind_load_docker_image_by_tag(tmp_path):
    runner = RecordingRunner()
    p = provider(tmp_path, runner)
    p.load_images(p.profile.clusters[0], ["docker.io/istio/pilot:1.7.8"], "linux/amd64")
    assert runner.calls == [(str(FakeTools.kind), "load", "docker-image", "--name", "cluster1",
                             "docker.io/istio/pilot:1.7.8")]


def test_load_images_falls_back_to_a_single_platform_archive_when_kind_load_fails(tmp_path):
    # kind #4066: Docker 29 with the containerd image store, multi-arch image.
    failure = ok(rc=1, stderr="ERROR: failed to load image: command \"docker exec --privileged -i "
                              "cluster1-control-plane ctr --namespace=k8s.io images import --all-platforms "
                              "--digests --snapshotter=overlayfs -\" failed with error: exit status 1\n"
                              "ctr: content digest sha256:0123 not found")
    runner = RecordingRunner(answers={(str(FakeTools.kind), "load", "docker-image"): failure})
    p = provider(tmp_path, runner)
    p.load_images(p.profile.clusters[0], ["docker.io/kennethreitz/httpbin:latest"], "linux/amd64")
    assert runner.calls[0][:3] == (str(FakeTools.kind), "load", "docker-image")
    save, load = runner.calls[1], runner.calls[2]
    assert save[:6] == ("docker", "image", "save", "--platform", "linux/amd64", "-o")
    assert save[7] == "docker.io/kennethreitz/httpbin:latest"
    assert load == (str(FakeTools.kind), "load", "image-archive", "--name", "cluster1", save[6])
    assert not Path(save[6]).exists()


def test_the_archive_fallback_saves_the_platform_the_lab_pulled_on_an_arm64_engine(tmp_path):
    # kind #4224 (kind v0.32.0, Docker 29 on Apple Silicon): `kind load docker-image` fails on a multi-arch tag of
    # which the host has only linux/arm64; a linux/amd64 save would name content the host never pulled.
    runner = RecordingRunner(answers={(str(FakeTools.kind), "load", "docker-image"): ok(
        rc=1, stderr="ctr: content digest sha256:b1ad not found")})
    p = provider(tmp_path, runner)
    p.load_images(p.profile.clusters[0], ["docker.io/istio/pilot:1.30.3"], "linux/arm64")
    save = runner.calls[1]
    assert save[:6] == ("docker", "image", "save", "--platform", "linux/arm64", "-o")
    assert not [c for c in runner.calls if "linux/amd64" in c]


def test_load_images_reports_the_fallback_failure(tmp_path):
    runner = RecordingRunner(answers={(str(FakeTools.kind), "load"): ok(rc=1, stderr="nope"),
                                      ("docker", "image", "save"): ok(rc=1, stderr="no such image")})
    p = provider(tmp_path, runner)
    with pytest.raises(CommandError, match="no such image"):
        p.load_images(p.profile.clusters[0], ["x:1"], "linux/amd64")


def test_node_ip_reads_the_kind_network_address_of_the_node(tmp_path):
    runner = RecordingRunner(answers={("docker", "inspect"): ok("172.18.0.3\n")})
    p = provider(tmp_path, runner)
    assert p.node_ip(p.profile.clusters[1]) == "172.18.0.3"
    assert runner.calls == [("docker", "inspect", "-f", "{{ .NetworkSettings.Networks.kind.IPAddress }}",
                             "cluster2-control-plane")]


def test_node_ip_without_an_address_is_a_one_line_error(tmp_path):
    p = provider(tmp_path, RecordingRunner(answers={("docker", "inspect"): ok("\n")}))
    with pytest.raises(PreflightError, match="no address on the Docker network 'kind'"):
        p.node_ip(p.profile.clusters[0])


def test_make_provider_gives_a_provider_for_the_profile(tmp_path):
    p = kind.make_provider(load_profile("writeup"), tmp_path, FakeTools(), RecordingRunner())
    assert isinstance(p, kind.Provider) and p.profile.name == "writeup"


def test_only_the_provider_module_imports_pytest_kind():
    lab_dir = Path(kind.__file__).parent
    users = sorted(p.name for p in lab_dir.rglob("*.py") if "pytest_kind" in p.read_text())
    assert users == ["kind.py"]


def test_an_existing_pytest_kind_folder_of_the_user_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".pytest-kind" / "mine").mkdir(parents=True)
    p = kind.KindProvider(load_profile("default"), tmp_path / "state", FakeTools(), RecordingRunner())
    p._kind_cluster(p.profile.clusters[1])
    assert sorted(x.name for x in (tmp_path / ".pytest-kind").iterdir()) == ["mine"]


def test_config_yaml_writes_the_kubeadm_patch_as_a_readable_block():
    profile = load_profile("writeup")
    text = kindconfig.config_yaml(profile, profile.clusters[0])
    assert "kubeadmConfigPatches:\n- |\n  apiVersion: kubeadm.k8s.io/v1beta2\n" in text


def test_the_wait_for_node_ready_uses_the_sleep_it_is_given_so_an_interrupt_ends_it(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok(""),
                                      (str(FakeTools.kubectl),): ok("cluster1-control-plane=False\n")})
    p = provider(tmp_path, runner)

    def interrupted(_seconds):
        raise KeyboardInterrupt  # what the executor's sleep does once Ctrl-C has set its stop event

    p.sleep = interrupted
    with pytest.raises(KeyboardInterrupt):
        p.wait_ready(p.profile.clusters[0], timeout=300)
    assert sum(1 for call in runner.calls if call[0] == str(FakeTools.kubectl)) == 1


class LockCheckingKindCluster(FakeKindCluster):
    """kind fails as it does when `<kubeconfig>.lock` exists (O_EXCL create in its kubeconfig lock.go)."""

    def _locked(self) -> bool:
        return Path(str(self.kwargs["kubeconfig"]) + ".lock").exists()

    def create(self, config_file=None):
        if self._locked():
            raise subprocess.CalledProcessError(1, ["kind", "create", "cluster"],
                                                output=b"ERROR: failed to lock config file: file exists")
        super().create(config_file)

    def delete(self):
        if self._locked():
            raise subprocess.CalledProcessError(1, ["kind", "delete", "cluster"],
                                                output=b"ERROR: failed to lock config file: file exists")
        super().delete()


@pytest.mark.parametrize("existing", [False, True])
def test_a_kubeconfig_lock_left_by_a_killed_kind_does_not_block_the_next_create(tmp_path, existing):
    nodes = "cluster1-control-plane\n" if existing else ""
    runner = RecordingRunner(answers={("docker", "ps"): ok(nodes), (str(FakeTools.kubectl),): ready_nodes})
    p = kind.KindProvider(load_profile("default"), tmp_path / "state", FakeTools(), runner,
                          cluster_factory=LockCheckingKindCluster)
    c = p.profile.clusters[0]
    lock = Path(str(p.kubeconfig(c)) + ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    # kind export kubeconfig (existing cluster) would fail the same way with the lock there
    p.create(c, kindconfig.config_yaml(p.profile, c))
    assert not lock.exists()


def test_a_kubeconfig_lock_left_by_a_killed_kind_does_not_block_delete(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok("cluster1-control-plane\n")})
    p = kind.KindProvider(load_profile("default"), tmp_path / "state", FakeTools(), runner,
                          cluster_factory=LockCheckingKindCluster)
    c = p.profile.clusters[0]
    lock = Path(str(p.kubeconfig(c)) + ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    assert p.delete(c) is True
    assert [i.calls for i in LockCheckingKindCluster.instances] == [[("delete",)]]


def test_a_failed_fallback_still_says_why_kind_load_failed_first(tmp_path):
    # Docker before 28 has no `docker image save --platform`: its error alone would hide the real cause.
    runner = RecordingRunner(answers={
        (str(FakeTools.kind), "load"): ok(rc=1, stderr="ERROR: failed to load image: no space left on device"),
        ("docker", "image", "save"): ok(rc=125, stderr="unknown flag: --platform")})
    p = provider(tmp_path, runner)
    with pytest.raises(CommandError) as err:
        p.load_images(p.profile.clusters[0], ["docker.io/istio/pilot:1.7.8"], "linux/amd64")
    message = str(err.value)
    assert "no space left on device" in message and "unknown flag: --platform" in message
    assert len(message.splitlines()) == 1


def test_identity_is_the_sorted_ids_of_the_clusters_labelled_node_containers(tmp_path):
    runner = RecordingRunner(answers={("docker", "ps"): ok("f00dcafe0002\n0123abcd0001\n")})
    p = provider(tmp_path, runner)
    assert p.identity(p.profile.clusters[0]) == "0123abcd0001,f00dcafe0002"
    assert runner.calls[-1] == ("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=cluster1",
                                "--format", "{{.ID}}")
