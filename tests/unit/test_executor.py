"""The commands (lab.executor) against a recording runner and a fake two-cluster lab: order, parallel branches,
resume, re-run, lock, interrupt. The pure pieces are tested in test_perform.py and test_scheduler.py."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import yaml

from lab import executor, scheduler
from lab import images as lab_images
from lab.errors import CommandError, LockedError, NoLabError, PreflightError, UsageError, no_lab_message
from lab.executor import Hooks
from lab.scenario import load_profile
from lab.scenarios.replicated_control_planes.steps import build
from lab.shell import Result
from lab.state import State
from tests.support.apilab import fakelab_api
from tests.support.fakelab import ISTIO_DIR, FakeCluster, FakeLab, fail

PROFILE = load_profile()


@pytest.fixture
def lab(tmp_path):
    return FakeLab(PROFILE, tmp_path / "home")


def hooks(lab: FakeLab, preflight=None) -> Hooks:
    return Hooks(preflight=preflight or (lambda *a, **k: None), tools=lambda p, r: lab.tools,
                 cached_tools=lambda p, r: lab.tools, provider=lambda p, home, t, r: lab.provider, sleep=lambda s: None)


def up(lab: FakeLab, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = executor.up(PROFILE, home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab, **kw))
    return code, out.getvalue()


def index(calls, pred) -> int:
    for i, c in enumerate(calls):
        if pred(c):
            return i
    raise AssertionError("no such call")


def is_apply_of(kind: str, lab: FakeLab):
    # calls are recorded with their stdin in the same order; pair them up
    def pred(call_and_input):
        call, text = call_and_input
        return "apply" in call and text is not None and f"kind: {kind}" in text
    return pred


def calls_with_input(lab: FakeLab):
    return list(zip(lab.runner.calls, lab.runner.inputs, strict=True))


# --- a first run ---------------------------------------------------------------------------------------------
def test_first_run_builds_both_clusters_and_ends_with_the_curl_returning_200(lab):
    code, out = up(lab)
    assert code == 0
    assert sorted(lab.provider.created) == ["cluster1", "cluster2"]
    assert all(c.istio for c in lab.clusters.values())
    assert "global:53" in lab.clusters["cluster1"].corefile and "global:53" in lab.clusters["cluster2"].corefile
    assert lab.clusters["cluster1"].coredns_restarts == 1
    last = [c for c in lab.runner.calls if c[0] != "docker"][-1]  # docker: the digests for lock.json, after
    assert "exec" in last and "kind-cluster1" in last and "httpbin.bar.global:8000/headers" in last[-1]
    assert "returned 200" in out
    state = State.load(lab.home)
    assert state.data["last_probe"]["status"] == 200
    assert state.owns_cluster("cluster1") and state.owns_cluster("cluster2")


def test_every_step_prints_one_progress_line_with_its_duration_and_a_phase_summary(lab):
    _, out = up(lab)
    steps = build(PROFILE)
    for s in steps:
        lines = [ln for ln in out.splitlines() if f" {s.id} " in ln]
        assert len(lines) == 1, s.id
        assert lines[0].split()[3].endswith("s")  # the duration column
    assert "lab up: finished in" in out
    for phase in ("tools", "host", "clusters", "control-plane", "dns", "apps", "serviceentries", "verify"):
        assert any(ln.strip().startswith(phase) for ln in out.splitlines()), phase


def test_cacerts_is_applied_before_istioctl_install_in_each_cluster(lab):
    up(lab)
    seq = calls_with_input(lab)
    for c in ("cluster1", "cluster2"):
        secret = index(seq, lambda ci, c=c: f"kind-{c}" in ci[0] and ci[1] and "kind: Secret" in ci[1])
        install = index(seq, lambda ci, c=c: ci[0][0] == "istioctl" and f"kind-{c}" in ci[0])
        assert secret < install


def test_the_cacerts_secret_is_applied_server_side_so_no_annotation_copies_the_key(lab):
    up(lab)
    seq = calls_with_input(lab)
    secrets = [argv for argv, text in seq if text and "kind: Secret" in text]
    assert len(secrets) == 2
    for argv in secrets:
        assert "--server-side" in argv and "--force-conflicts" in argv
    others = [argv for argv, text in seq if text and "kind: Secret" not in text and "apply" in argv]
    assert others and not any("--server-side" in argv for argv in others)


def test_the_ca_key_is_sent_on_stdin_never_on_a_command_line_nor_in_the_output(lab):
    _, out = up(lab)
    key = (ISTIO_DIR / "samples/certs/ca-key.pem").read_text()
    key_line = key.splitlines()[1]
    assert not any(key_line in " ".join(c) for c in lab.runner.calls)
    assert key_line not in out
    secrets = [t for t in lab.runner.inputs if t and "kind: Secret" in t]
    assert len(secrets) == 2  # one per cluster, rendered from the files


def test_cluster1_serviceentry_waits_for_cluster2_gateway_and_uses_its_node_ip_and_nodeport(lab):
    up(lab)
    seq = calls_with_input(lab)
    gw = index(seq, lambda ci: "kind-cluster2" in ci[0] and "deployment/istio-ingressgateway" in ci[0]
               and "rollout" in ci[0])
    se = index(seq, lambda ci: "kind-cluster1" in ci[0] and ci[1] and "kind: ServiceEntry" in ci[1])
    assert gw < se
    doc = yaml.safe_load(seq[se][1])
    assert doc["spec"]["endpoints"] == [{"address": "172.18.0.3", "ports": {"http1": PROFILE.gateway_node_port}}]
    assert doc["spec"]["addresses"] == [PROFILE.client.vip]


def _client_serviceentries_applied(calls) -> list[dict]:
    return [yaml.safe_load(t) for c, t in calls if "kind-cluster1" in c and "apply" in c and t
            and "kind: ServiceEntry" in t]


def test_a_rerun_heals_a_cluster1_serviceentry_whose_gateway_node_ip_moved(lab):
    up(lab)
    # after a Docker restart cluster2's node can get another address on the `kind` network: the live lookup
    # changes, the ServiceEntry in cluster1 still names the old endpoint
    lab.clusters["cluster2"].gateway_ip = "172.18.0.7"
    before = len(lab.runner.calls)
    code, out = up(lab)
    assert code == 0
    (applied,) = _client_serviceentries_applied(calls_with_input(lab)[before:])
    assert applied["spec"]["endpoints"] == [{"address": "172.18.0.7", "ports": {"http1": PROFILE.gateway_node_port}}]
    assert "spec.endpoints is" in out and "172.18.0.3" in out  # says why it applied it again


def test_a_rerun_heals_a_cluster1_serviceentry_whose_endpoint_port_was_changed_by_hand(lab):
    up(lab)
    se = lab.clusters["cluster1"].objects[("ServiceEntry", "foo", "httpbin-bar")]
    se["spec"]["endpoints"][0]["ports"]["http1"] = 15443  # the port the write-up says not to use with a nodePort
    before = len(lab.runner.calls)
    assert up(lab)[0] == 0
    (applied,) = _client_serviceentries_applied(calls_with_input(lab)[before:])
    assert applied["spec"]["endpoints"][0]["ports"] == {"http1": PROFILE.gateway_node_port}


def test_a_rerun_with_the_same_gateway_endpoint_leaves_the_serviceentry_alone(lab):
    up(lab)
    before = len(lab.runner.calls)
    _, out = up(lab)
    assert _client_serviceentries_applied(calls_with_input(lab)[before:]) == []
    statuses = {ln.split()[1]: ln.split()[2] for ln in out.splitlines() if ln.startswith("  ") and "/" in ln}
    assert statuses["cluster1/serviceentry"] == "in-place"


def test_istioctl_install_gets_its_readiness_wait_and_a_deadline_longer_than_all_of_its_waits(lab):
    from lab import settings
    from lab.settings import TIMEOUTS

    up(lab)
    installs = [i for i, c in enumerate(lab.runner.calls) if c[:2] == ("istioctl", "install")]
    assert len(installs) == 2
    for i in installs:
        assert lab.runner.envs[i] == {"WAIT_FOR_RESOURCES_TIMEOUT": f"{int(TIMEOUTS.istio_readiness)}s"}
        # istioctl 1.7 waits up to 60 s for CRDs, then once per level of Base -> Pilot -> gateways/addons
        every_wait = settings.ISTIOCTL_CRD_WAIT + settings.ISTIOCTL_WAIT_LEVELS * TIMEOUTS.istio_readiness
        assert lab.runner.timeouts[i] == TIMEOUTS.istio_install > every_wait
    assert "--readiness-timeout" not in lab.runner.calls[installs[0]]  # parsed and ignored by 1.7.x


def test_both_clusters_are_built_in_parallel(lab):
    # Each `kind create` waits until the other has started: if the branches ran one after the other,
    # the barrier would time out and the run would fail.
    barrier = threading.Barrier(2, timeout=10)

    def on_call(argv):
        if argv[:3] == ("kind", "create", "cluster"):
            barrier.wait()

    lab.on_call = on_call
    code, _ = up(lab)
    assert code == 0


# --- failure, resume, re-run ---------------------------------------------------------------------------------
def test_a_failure_in_the_middle_stops_what_depends_on_it_and_the_next_run_resumes_there(lab):
    lab.fail_when(lambda a: a[0] == "istioctl" and "kind-cluster2" in a, fail("Error: failed to apply manifests"))
    out = io.StringIO()
    with pytest.raises(CommandError, match="cluster2/istio"):
        executor.up(PROFILE, home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab))
    text = out.getvalue()
    assert "cluster2/istio                 failed" in text and "Error: failed to apply manifests" in text
    assert "cluster1/curl                  blocked" in text
    assert "lab up: stopped in" in text and "run `make lab-up` again" in text
    state = State.load(lab.home)
    assert state.step_done("cluster2/cacerts", _fp("cluster2/cacerts"))
    assert not any(s.startswith("cluster2/istio") for s in state.done_steps)
    assert "cluster1/curl" not in state.done_steps
    assert lab.clusters["cluster1"].istio, "the independent branch kept going"

    before = len(lab.runner.calls)
    code, out = up(lab)
    assert code == 0
    again = lab.runner.calls[before:]
    assert not any(c[:3] == ("kind", "create", "cluster") for c in again), "clusters are not created again"
    assert sum(1 for c in again if c[0] == "istioctl") == 1, "only the failed install runs again"
    assert [ln for ln in out.splitlines() if "cluster2/istio " in ln][0].split()[2] == "done"


def _fp(step_id: str) -> str:
    from lab.state import fingerprint
    return fingerprint(next(s for s in build(PROFILE) if s.id == step_id).run)


def test_rerunning_a_healthy_lab_only_checks_and_changes_nothing(lab):
    up(lab)
    before = len(lab.runner.calls)
    code, out = up(lab)
    assert code == 0
    again = calls_with_input(lab)[before:]
    assert not any(c[0] == "istioctl" for c, _ in again)
    assert not any("apply" in c for c, _ in again), "nothing is applied again"
    assert not any("restart" in c for c, _ in again)
    assert not any(c[:2] == ("kind", "create") for c, _ in again)
    statuses = {ln.split()[1]: ln.split()[2] for ln in out.splitlines() if ln.startswith("  ") and "/" in ln}
    assert statuses["cluster1/cluster"] == "in-place"
    assert statuses["cluster1/ns-istio-system"] == "verified"
    assert statuses["cluster1/curl"] == "checked"
    assert len(again) < 60


def test_a_deleted_namespace_is_noticed_on_rerun_and_redone_with_what_depends_on_it(lab):
    up(lab)
    del lab.clusters["cluster1"].objects[("Namespace", "", "foo")]
    del lab.clusters["cluster1"].objects[("Deployment", "foo", "sleep")]
    before = len(lab.runner.calls)
    code, _ = up(lab)
    assert code == 0
    again = calls_with_input(lab)[before:]
    applied = [t for c, t in again if "apply" in c and t]
    assert any("name: foo" in t and "kind: Namespace" in t for t in applied)
    assert any("kind: Deployment" in t and "name: sleep" in t for t in applied), "the sleep app is applied again"


def test_a_changed_profile_redoes_the_steps(lab, tmp_path):
    up(lab)
    other = load_profile(overrides={"images.sleep": "docker.io/curlimages/curl:8.5.0"})
    before = len(lab.runner.calls)
    out = io.StringIO()
    executor.up(other, home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab))
    applied = [t for c, t in calls_with_input(lab)[before:] if "apply" in c and t]
    assert any("image: docker.io/curlimages/curl:8.5.0" in t for t in applied)


@pytest.mark.parametrize("pilot", ["pilot:1.7.8-custom", "reg.example:5000/istio/pilot:1.7.8-custom"])
def test_rerunning_with_an_overridden_pilot_image_only_checks_istio(tmp_path, pilot):
    # a reference without a registry is installed as docker.io/library/<ref>; the istiod check must expect that
    # spelling too, or every `lab up` reinstalls Istio
    profile = load_profile(overrides={"images.pilot": pilot, "images.proxyv2": "proxyv2:1.7.8-custom"})
    lab = FakeLab(profile, tmp_path / "home")

    def run() -> str:
        out = io.StringIO()
        assert executor.up(profile, home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 0
        return out.getvalue()

    run()
    want = pilot if "/" in pilot else f"docker.io/library/{pilot}"
    assert {c.istiod_image for c in lab.clusters.values()} == {want}
    before = len(lab.runner.calls)
    out = run()
    assert not any(c[0] == "istioctl" for c in lab.runner.calls[before:])
    statuses = {ln.split()[1]: ln.split()[2] for ln in out.splitlines() if ln.startswith("  ") and "/" in ln}
    assert statuses["cluster1/istio"] == statuses["cluster2/istio"] == "verified"


def test_an_existing_cluster_the_lab_did_not_create_is_refused(lab):
    lab.clusters["cluster1"].exists = True
    with pytest.raises(UsageError, match="cluster1 exists that this lab did not create"):
        up(lab)
    assert "cluster1" not in lab.provider.created


def test_interrupt_stops_every_branch_and_the_next_run_continues(lab):
    lab.fail_when(lambda a: a[0] == "istioctl" and "kind-cluster1" in a, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        up(lab)
    state = State.load(lab.home)
    assert "cluster1/cacerts" in state.done_steps and "cluster1/istio" not in state.done_steps
    assert not (lab.home / "lock").exists(), "the lock is released on interrupt"
    code, _ = up(lab)
    assert code == 0


# --- preflight and lock ----------------------------------------------------------------------------------------
def test_preflight_failure_creates_nothing(lab):
    def no_docker(*a, **k):
        raise PreflightError("Docker is not reachable: start Docker")

    with pytest.raises(PreflightError):
        up(lab, preflight=no_docker)
    assert not lab.home.exists()
    assert lab.runner.calls == []


def test_a_second_concurrent_run_is_refused_by_the_lock(lab):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lab.home.mkdir(parents=True)
        (lab.home / "lock").write_text(f"{holder.pid}\nup\n")
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            up(lab)
        assert lab.runner.calls == []
    finally:
        holder.kill()
        holder.wait()


# --- down, uninstall, status -------------------------------------------------------------------------------
def test_down_deletes_only_the_clusters_the_state_says_the_lab_created(lab):
    up(lab)
    state = State.load(lab.home)
    state.forget_cluster("cluster2")  # as if cluster2 had been made by someone else
    out = io.StringIO()
    assert executor.down(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 0
    assert lab.provider.deleted == ["cluster1"]
    assert lab.clusters["cluster2"].exists
    assert not (lab.home / "kubeconfig" / "cluster1").exists()


def test_down_without_state_deletes_nothing(lab, capsys):
    out = io.StringIO()
    assert executor.down(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 0
    # the no-lab line of status/uninstall/doctor, on the same stream, as a note (deleting nothing succeeded)
    err = capsys.readouterr().err
    assert err.startswith("lab: note: no lab in ") and "nothing to delete" in err and err.count("\n") == 1
    assert lab.runner.calls == []


def test_uninstall_removes_apps_and_serviceentries_and_the_next_up_puts_them_back(lab):
    up(lab)
    out = io.StringIO()
    assert executor.uninstall(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 0
    c1 = lab.clusters["cluster1"]
    assert ("Namespace", "", "foo") not in c1.objects and ("ServiceEntry", "foo", "httpbin-bar") not in c1.objects
    assert c1.istio and c1.exists, "uninstall keeps the clusters and Istio"
    deletes = [c for c in lab.runner.calls if "delete" in c]
    assert all("--ignore-not-found" in c for c in deletes)
    code, _ = up(lab)
    assert code == 0 and ("ServiceEntry", "foo", "httpbin-bar") in c1.objects


def test_status_reports_each_cluster_and_the_last_probe(lab):
    up(lab)
    out = io.StringIO()
    with fakelab_api(lab):  # the rows are read through the lab handle, on the API
        assert executor.status(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 0
    text = out.getvalue()
    assert "cluster1: cluster up" in text and "cluster2: cluster up" in text
    assert "HTTP 200" in text
    assert "NO " not in text, text
    # as kubectl's jsonpath prints them (JSON lists), the form the row had when kubectl read it
    assert 'foo/httpbin-bar ["httpbin.bar.global"] ["240.0.0.2"]' in text
    assert f"ok  istiod: 1/1 ready ({lab.clusters['cluster1'].istiod_image})" in text


def test_a_serviceentry_row_is_what_kubectls_jsonpath_printed():
    from lab.scenarios.replicated_control_planes.status import serviceentry_line

    se = {"metadata": {"namespace": "foo", "name": "httpbin-bar"},
          "spec": {"hosts": ["httpbin.bar.global"], "addresses": ["240.0.0.2"],
                   "endpoints": [{"address": "172.18.0.3", "ports": {"http1": 31443}},
                                 {"address": "172.18.0.4", "ports": {"http1": 31444}}]}}
    # {.metadata.namespace}/{.metadata.name} {.spec.hosts} {.spec.addresses} {.spec.endpoints[*].address}:
    # {.spec.endpoints[*].ports}: lists and objects as compact JSON, [*] joined by spaces
    assert serviceentry_line(se) == ('foo/httpbin-bar ["httpbin.bar.global"] ["240.0.0.2"] 172.18.0.3 172.18.0.4:'
                                     '{"http1":31443} {"http1":31444}')
    assert serviceentry_line({"metadata": {"namespace": "bar", "name": "x"}, "spec": {"hosts": ["a.b.global"]}}) \
        == 'bar/x ["a.b.global"] [] :'


def test_status_rows_of_a_cluster_whose_api_does_not_answer_say_so_instead_of_failing(tmp_path):
    from lab.cluster import ClusterHandle
    from lab.scenarios.replicated_control_planes import status
    from tests.support.fake_apiserver import running

    with running() as server:
        kubeconfig = server.kubeconfig(tmp_path / "kubeconfig", context="kind-cluster1")
    handle = ClusterHandle("cluster1", kubeconfig, "kind-cluster1")
    try:
        rows = status.rows(handle, PROFILE.client)
    finally:
        handle.close()
    by_label = {label: (ok, detail) for label, ok, detail in rows}
    ok, detail = by_label["istiod"]
    assert not ok and detail.startswith("unknown (read deployment istio-system/istiod on kind-cluster1: cannot reach")
    assert by_label["kube-system CoreDNS global block"] == (False, "missing")
    assert by_label["ServiceEntries"] == (False, "none")


def test_status_without_a_lab_says_so(lab):
    out = io.StringIO()
    with pytest.raises(NoLabError, match="no lab in "):
        executor.status(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab))
    assert out.getvalue() == ""


def test_lock_file_records_image_digests_after_a_successful_run(lab):
    up(lab)
    lock = json.loads((lab.home / "lock.json").read_text())
    assert set(lock["images"]) == set(lab_images.image_list(PROFILE))


def test_a_lab_built_on_other_nodes_is_not_changed_in_place(lab):
    up(lab)
    writeup = load_profile("writeup")
    with pytest.raises(UsageError, match="built with another node_image, kind_version; run `make lab-down`"):
        executor.up(writeup, home=lab.home, runner=lab.runner, out=io.StringIO(), hooks=hooks(lab))


def test_an_interrupt_cuts_a_wait_short_in_every_branch(lab):
    # cluster2's gateway check never passes; an interrupt in cluster1 must end that wait at once, not after
    # its deadline (the test would hang for minutes otherwise).
    lab.fail_when(lambda a: "nodePort}" in " ".join(a) and "kind-cluster2" in a, Result((), 0, "1", ""), times=10**6)
    lab.fail_when(lambda a: a[0] == "istioctl" and "kind-cluster1" in a, KeyboardInterrupt())
    import time
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        up(lab)
    assert time.monotonic() - t0 < 60, "the gateway wait ran to its deadline"
    assert not (lab.home / "lock").exists()


def test_status_after_uninstall_reports_what_is_missing(lab):
    up(lab)
    executor.uninstall(home=lab.home, runner=lab.runner, out=io.StringIO(), hooks=hooks(lab))
    out = io.StringIO()
    with fakelab_api(lab):
        assert executor.status(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 1
    text = out.getvalue()
    assert "NO  sleep in foo: absent" in text and "ok  istiod" in text


def test_down_still_works_when_the_recorded_profile_no_longer_loads(lab):
    up(lab)
    state = State.load(lab.home)
    state.data["profile"]["overrides"] = {"no_such_key": "1"}
    state.save()
    assert executor.down(home=lab.home, runner=lab.runner, out=io.StringIO(), hooks=hooks(lab)) == 0
    assert sorted(lab.provider.deleted) == ["cluster1", "cluster2"]
    assert not (lab.home / "state.json").exists()


def test_generated_certificates_are_made_once_and_each_cluster_gets_its_own_intermediate(lab):
    from lab import certs

    profile = load_profile(overrides={"cert_source": "generated"})
    executor.up(profile, home=lab.home, runner=lab.runner, out=io.StringIO(), hooks=hooks(lab))
    assert certs.check(lab.home / "certs" / "cluster1", lab.home / "certs" / "cluster2") == []
    secrets = [yaml.safe_load(t) for t in lab.runner.inputs if t and "kind: Secret" in t]
    import base64
    c1, c2 = (base64.b64decode(s["data"]["ca-cert.pem"]) for s in secrets)
    assert c1 != c2, "one intermediate per cluster"
    assert base64.b64decode(secrets[0]["data"]["root-cert.pem"]) == (lab.home / "certs" / "root-cert.pem").read_bytes()
    key = (lab.home / "certs" / "root-key.pem").read_text()
    assert not any(key.splitlines()[1] in (t or "") for t in lab.runner.inputs), "the root key is never applied"


def test_a_removed_global_block_is_put_back_on_rerun_and_coredns_restarted(lab):
    from lab.scenarios.replicated_control_planes import corefile

    up(lab)
    c1 = lab.clusters["cluster1"]
    c1.corefile = corefile.unpatch(c1.corefile)
    code, out = up(lab)
    assert code == 0
    assert corefile.global_block(c1.corefile) is not None
    assert c1.coredns_restarts == 2, "the restart follows a changed Corefile"
    assert lab.clusters["cluster2"].coredns_restarts == 1, "cluster2's CoreDNS is left alone"


def test_a_cluster_deleted_behind_the_lab_is_recreated_and_rebuilt(lab):
    up(lab)
    lab.clusters["cluster2"] = type(lab.clusters["cluster2"])()  # gone, as after `kind delete cluster`
    before = len(lab.runner.calls)
    code, _ = up(lab)
    assert code == 0
    again = lab.runner.calls[before:]
    assert sum(1 for c in again if c[:3] == ("kind", "create", "cluster")) == 1
    assert sum(1 for c in again if c[0] == "istioctl") == 1, "only cluster2 is installed again"
    assert lab.clusters["cluster2"].istio and ("ServiceEntry", "bar", "httpbin-bar") in lab.clusters["cluster2"].objects
    seq = calls_with_input(lab)[before:]
    se1 = [t for c, t in seq if "kind-cluster1" in c and t and "kind: ServiceEntry" in t]
    assert se1, "cluster1's ServiceEntry is refreshed: it points at cluster2's (new) gateway"


def test_cli_status_and_uninstall_without_a_lab_say_so(tmp_path, capsys):
    from lab.cli import main

    # one message, one stream (stderr), one exit code (1) for status, uninstall and doctor; down says it as a note
    lines = {}
    for command in ("status", "uninstall", "doctor"):
        assert main([command, "--home", str(tmp_path / "none")]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1
        lines[command] = err
    assert len(set(lines.values())) == 1
    assert lines["status"] == f"lab: error: {no_lab_message(tmp_path / 'none')}\n"
    assert main(["down", "--home", str(tmp_path / "none"), "--profile", "writeup"]) == 0
    assert capsys.readouterr().err == f"lab: note: {no_lab_message(tmp_path / 'none')}; nothing to delete\n"
    assert not (tmp_path / "none").exists()


def test_every_cluster_command_of_a_run_uses_the_lab_own_kubeconfig(lab):
    up(lab)
    for call in lab.runner.calls:
        if call[0] in ("kubectl", "istioctl"):
            kubeconfig = call[call.index("--kubeconfig") + 1]
            assert kubeconfig.startswith(str(lab.home / "kubeconfig")) and ".kube" not in kubeconfig, call
            assert "--context" in call


def test_a_cluster_whose_creation_was_interrupted_is_still_the_lab_s_and_ends_created(lab):
    State(lab.home).cluster_intent("cluster1")  # recorded, then the run died before kind finished
    lab.clusters["cluster1"].exists = True
    code, _ = up(lab)
    assert code == 0
    assert State.load(lab.home).clusters["cluster1"]["status"] == "created"


# --- the stats annotation lab doctor needs ---------------------------------------------------------------------
def _stats_annotation(lab: FakeLab, cluster: str, ns: str) -> str | None:
    obj = lab.clusters[cluster].objects[("Deployment", ns, "sleep")]
    return (obj["spec"]["template"]["metadata"].get("annotations") or {}).get("sidecar.istio.io/statsInclusionSuffixes")


def test_up_leaves_every_sleep_pod_template_with_the_stats_annotation(lab):
    code, _ = up(lab)
    assert code == 0
    assert _stats_annotation(lab, "cluster1", "foo") == "ssl.fail_verify_error"
    assert _stats_annotation(lab, "cluster2", "bar") == "ssl.fail_verify_error"
    calls = lab.commands("cluster1")
    patch = index(calls, lambda c: "patch" in c and "sleep" in c)
    assert index(calls, lambda c: "rollout" in c and "deployment/sleep" in c) > patch, \
        "the rollout awaited is the annotated one"


def test_a_sleep_deployment_recreated_on_rerun_gets_the_annotation_again(lab):
    up(lab)
    del lab.clusters["cluster1"].objects[("Deployment", "foo", "sleep")]
    code, _ = up(lab)
    assert code == 0
    assert _stats_annotation(lab, "cluster1", "foo") == "ssl.fail_verify_error"


# --- an interrupted cluster creation -----------------------------------------------------------------------------
def test_a_cluster_whose_creation_never_finished_is_deleted_and_created_again(lab):
    # What Ctrl-C during `kind create cluster` leaves: the intent recorded, node containers labelled for the cluster
    # (kind has no signal handler, so it does not clean up), and the kubeconfig pytest_kind touched.
    state = State(lab.home)
    state.cluster_intent("cluster1")
    lab.clusters["cluster1"].exists = True
    kubeconfig = lab.provider.kubeconfig(PROFILE.clusters[0])
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("")
    code, out = up(lab)
    assert code == 0
    assert lab.provider.deleted == ["cluster1"]
    assert sorted(lab.provider.created) == ["cluster1", "cluster2"]
    assert "did not finish last time" in out
    assert State.load(lab.home).clusters["cluster1"]["status"] == "created"


def test_a_cluster_the_lab_finished_creating_is_reused_on_rerun(lab):
    up(lab)
    code, _ = up(lab)
    assert code == 0
    assert lab.provider.deleted == [] and sorted(lab.provider.created) == ["cluster1", "cluster2"]


def test_a_failing_provider_check_after_creation_does_not_recreate_the_cluster_next_time(lab, monkeypatch):
    def verify(cluster):
        raise PreflightError("cluster1-control-plane: Docker's DNS DNAT rules lost '--dport 53'")

    monkeypatch.setattr(lab.provider, "verify", verify)
    with pytest.raises(PreflightError):
        up(lab)
    with pytest.raises(PreflightError):
        up(lab)
    assert lab.provider.deleted == [], "the same node image would fail the same way: say so again, cheaply"


def test_up_hands_the_provider_a_sleep_that_an_interrupt_cuts_short(lab):
    lab.provider.sleep = None  # lab.kind.KindProvider's attribute: the wait between its node-Ready polls
    code, _ = up(lab)
    assert code == 0
    sleep = lab.provider.sleep
    assert sleep is not None
    sleep(0)  # not interrupted: returns
    sleep.__self__.stop.set()  # what Scheduler.run does on Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        sleep(0)


def test_a_command_killed_by_the_users_ctrl_c_is_reported_as_the_interrupt(lab):
    # SIGINT goes to the whole process group: istioctl dies of it (subprocess returncode -2) as Python raises
    # KeyboardInterrupt in the main thread; the step must read "interrupted", and the run end as an interrupt.
    lab.fail_when(lambda a: a[0] == "istioctl" and "kind-cluster1" in a, Result((), -2, "", ""))
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        executor.up(PROFILE, home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab))
    line = next(ln for ln in out.getvalue().splitlines() if " cluster1/istio " in ln)
    assert "failed" in line
    assert "-> interrupted" in out.getvalue().split(" cluster1/istio ", 1)[1].splitlines()[1]


def test_a_lab_built_with_other_certificates_is_not_changed_in_place(lab):
    up(lab)
    generated = load_profile(overrides={"cert_source": "generated"})
    with pytest.raises(UsageError, match="built with another cert_source; run `make lab-down`"):
        executor.up(generated, home=lab.home, runner=lab.runner, out=io.StringIO(), hooks=hooks(lab))
    secret = lab.clusters["cluster1"].objects[("Secret", "istio-system", "cacerts")]
    sample_root = (ISTIO_DIR / "samples/certs/root-cert.pem").read_bytes()
    assert base64.b64decode(secret["data"]["root-cert.pem"]) == sample_root, "cacerts was not replaced"


# --- a cluster of the lab's name that is not the lab's -------------------------------------------------------------
def _recreated_outside_the_lab(lab: FakeLab) -> None:
    # `kind delete cluster --name cluster1` then `kind create cluster --name cluster1` by the user: same name and
    # label, other node containers
    lab.clusters["cluster1"] = FakeCluster(exists=True, node_id="users-own-node")


def test_up_records_the_node_identity_of_each_cluster_it_creates(lab):
    up(lab)
    clusters = State.load(lab.home).clusters
    assert clusters["cluster1"]["identity"] == lab.clusters["cluster1"].node_id != ""
    assert clusters["cluster2"]["identity"] == lab.clusters["cluster2"].node_id


def test_up_refuses_a_cluster_of_its_name_recreated_outside_the_lab(lab):
    up(lab)
    _recreated_outside_the_lab(lab)
    with pytest.raises(UsageError, match="not the one this lab created"):
        up(lab)
    assert lab.clusters["cluster1"].node_id == "users-own-node" and lab.provider.deleted == []


def test_down_does_not_delete_a_cluster_of_its_name_recreated_outside_the_lab(lab):
    up(lab)
    _recreated_outside_the_lab(lab)
    out = io.StringIO()
    assert executor.down(home=lab.home, runner=lab.runner, out=out, hooks=hooks(lab)) == 0
    assert lab.provider.deleted == ["cluster2"]
    assert lab.clusters["cluster1"].exists and lab.clusters["cluster1"].node_id == "users-own-node"
    assert "cluster1" in out.getvalue() and "not deleted" in out.getvalue()
    assert not (lab.home / "state.json").exists(), "both forgotten: cluster1 is not the lab's any more"


def test_a_lab_cluster_deleted_behind_its_back_and_interrupted_while_recreated_is_still_the_labs(lab, monkeypatch):
    up(lab)
    lab.clusters["cluster1"] = FakeCluster()  # `kind delete cluster --name cluster1` by someone
    real_create = lab.provider.create

    def killed_kind(cluster, config):
        if cluster.name == "cluster1":  # kind made the node container, then Ctrl-C
            lab.clusters["cluster1"].exists, lab.clusters["cluster1"].node_id = True, "half-made-node"
            raise KeyboardInterrupt
        real_create(cluster)

    monkeypatch.setattr(lab.provider, "create", killed_kind)
    with pytest.raises(KeyboardInterrupt):
        up(lab)
    monkeypatch.setattr(lab.provider, "create", real_create)
    code, _ = up(lab)
    assert code == 0, "the lab's own half-made cluster is not taken for someone else's"
    assert "cluster1" in lab.provider.deleted, "and it is created again"


def test_a_pull_refused_by_docker_hubs_rate_limit_stops_lab_up_with_one_line_saying_docker_login(lab):
    from lab.errors import LabError

    lab.fail_when(lambda argv: argv[:2] == ("docker", "image") and argv[2] == "inspect" and "{{.Id}}" in argv,
                  Result((), 1, "", "Error: No such image"), times=99)
    lab.fail_when(lambda argv: argv[:2] == ("docker", "pull"),
                  Result((), 1, "", "Error response from daemon: toomanyrequests: You have reached your pull rate "
                                    "limit.\n"), times=99)
    with pytest.raises(LabError) as err:
        up(lab)
    assert "run `docker login`" in str(err.value) and "\n" not in str(err.value)


# --- statuses ----------------------------------------------------------------------------------------------------
def test_outcome_statuses_print_as_their_words(lab):
    assert f"{scheduler.Status.IN_PLACE:<9}|" == "in-place |" and str(scheduler.Status.BLOCKED) == "blocked"
    code, out = up(lab)
    ids = {s.id for s in build(PROFILE)}
    words = {ln.split()[2] for ln in out.splitlines() if len(ln.split()) > 2 and ln.split()[1] in ids}
    assert code == 0 and words <= {s.value for s in scheduler.Status} and "done" in words
    assert "Status." not in out
