"""musl's and glibc's real resolvers against the real kube-dns (README, correction 4).

tests/upstream/gai.c (getaddrinfo with AF_UNSPEC, as curl calls it) is built with Debian's musl-gcc and with gcc
(glibc) and run in the kube-dns namespace of a DnsLab (tests/upstream/dnslab.py): CoreDNS 1.8.0 (the default node
image's kube-dns) with the lab's patched Corefile listens there on 127.0.0.1:53 and forwards `global` to the
istiocoredns stand-in, which answers A with the VIP and AAAA with NXDOMAIN, as istio-coredns-plugin does.

Two views of /etc/resolv.conf, as on a node: CoreDNS is started while /etc/netns/<ns>/resolv.conf names the resolver
stand-in (a kube-dns pod has dnsPolicy Default: the node's resolv.conf); then the file is replaced and the clients,
started afterwards, get `nameserver 127.0.0.1` (a pod with ClusterFirst). `ip netns exec` bind-mounts the file at
start, so the running CoreDNS keeps the first one (pointed at itself, its `loop` plugin would stop it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.scenarios.replicated_control_planes import corefile
from lab.scenarios.replicated_control_planes.names import REMOTE_HOST
from tests.upstream import dnslab
from tests.upstream.conftest import built
from tests.upstream.gobuild import LOG

SOURCE = Path(__file__).with_name("gai.c")
KUBEADM_DEFAULT = Path(__file__).resolve().parents[1] / "data" / "corefile" / (
    "kubeadm-dns_test_initial-default-coredns1.6.x.Corefile")

pytestmark = pytest.mark.skipif(dnslab.skip_reason() is not None, reason=dnslab.skip_reason() or "")


def musl_version() -> str:
    """The musl dynamic loader's banner ("Version 1.2.3"), else the Debian package's version."""
    loader = Path("/lib/ld-musl-x86_64.so.1")
    if loader.exists():
        banner = subprocess.run([str(loader)], capture_output=True, text=True, timeout=30).stderr
        for line in banner.splitlines():
            if line.startswith("Version "):
                return line.split(" ", 1)[1]
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "musl"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or "unknown"


@pytest.fixture(scope="module")
def clients(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("musl-gcc") is None:
        pytest.skip("no musl-gcc on PATH: install Debian's musl-tools (apt-get install -y musl-tools)")
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on PATH: the glibc client is built with gcc")
    out = tmp_path_factory.mktemp("gai")
    progs = {}
    for libc, cc in (("musl", "musl-gcc"), ("glibc", "gcc")):
        progs[libc] = out / f"gai-{libc}"
        proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(progs[libc]), str(SOURCE)], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    LOG.versions.append(("musl", musl_version()))
    glibc = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True, timeout=30)
    LOG.versions.append(("glibc", glibc.stdout.strip() or "unknown"))
    return progs


@pytest.fixture(scope="module")
def net(require_go, tmp_path_factory):
    bins = built(dnslab.coredns_binaries)
    lab = dnslab.DnsLab("mu", tmp_path_factory.mktemp("musl"), bins["1.6.2"])
    try:
        lab.up()
        yield lab, bins["1.8.0"]
    finally:
        lab.down()


def lookups(net, clients, *, aaaa_guard: bool) -> dict[str, tuple[int, str]]:
    lab, coredns = net
    lab.kube.write_resolv_conf(f"nameserver {dnslab.RESOLVER}\n")
    text = corefile.patch(KUBEADM_DEFAULT.read_text(), dnslab.ISTIOCOREDNS, aaaa_guard=aaaa_guard)
    proc = lab.coredns(coredns, text, f"kube-dns-guard-{aaaa_guard}")
    try:
        lab.serving(proc)
        lab.kube.write_resolv_conf("nameserver 127.0.0.1\n")
        seen = subprocess.run(lab.kube.argv(["cat", "/etc/resolv.conf"]), capture_output=True, text=True)
        assert seen.stdout == "nameserver 127.0.0.1\n"
        results = {}
        for libc, prog in clients.items():
            run = subprocess.run(lab.kube.argv([str(prog), REMOTE_HOST]), capture_output=True, text=True, timeout=60)
            results[libc] = (run.returncode, run.stdout)
        assert proc.proc is not None and proc.proc.poll() is None, proc.output()  # still serving: no loop
        return results
    finally:
        proc.stop()


def test_with_the_aaaa_guard_musl_and_glibc_resolve_the_vip(net, clients):
    assert lookups(net, clients, aaaa_guard=True) == {"musl": (0, f"{dnslab.VIP}\n"), "glibc": (0, f"{dnslab.VIP}\n")}


def test_without_the_guard_musl_fails_the_lookup_while_glibc_resolves(net, clients):
    # musl 1.2.1+: an NXDOMAIN for the AAAA half fails the whole AF_UNSPEC lookup (EAI_NONAME, -2)
    assert lookups(net, clients, aaaa_guard=False) == {
        "musl": (2, "error -2 Name does not resolve\n"),
        "glibc": (0, f"{dnslab.VIP}\n"),
    }
