"""The lab's certificates judged by a second, independent implementation: the OpenSSL command line.

`openssl verify` builds and checks the same paths `lab.certs.check` does (and that istiod and Envoy do), so a
disagreement between the two would show a bug in one of them. The commands go through lab.shell.Runner.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab import certs
from lab.scenario import load_profile
from lab.shell import Result, Runner
from tests.support.workload_certs import issue

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"
CLUSTERS = [c.name for c in load_profile().clusters]
ONE, TWO = CLUSTERS[0], CLUSTERS[1]
RUN = Runner()


@pytest.fixture(scope="module", autouse=True)
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("the openssl command is not installed")
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "certs"
    certs.generate(out, CLUSTERS)
    return out


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("other") / "certs"
    certs.generate(out, [TWO], key_size=2048)
    return out


def verify(cert: Path, root: Path, untrusted: Path | None = None, *extra: str) -> Result:
    argv = ["openssl", "verify", *extra, "-CAfile", str(root)]
    if untrusted is not None:
        argv += ["-untrusted", str(untrusted)]
    return RUN.run([*argv, str(cert)], check=False, context="openssl verify")


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_openssl_verifies_each_intermediate_against_the_root_strictly(generated, cluster):
    # -x509_strict also demands what RFC 5280 asks of a CA (SKI, AKI, keyUsage with keyCertSign).
    d = generated / cluster
    r = verify(d / "ca-cert.pem", d / "root-cert.pem", d / "cert-chain.pem", "-x509_strict")
    assert (r.returncode, r.stdout.strip()) == (0, f"{d / 'ca-cert.pem'}: OK"), r.output


def test_openssl_verifies_the_release_samples():
    r = verify(SAMPLES / "ca-cert.pem", SAMPLES / "root-cert.pem", SAMPLES / "cert-chain.pem")
    assert r.returncode == 0, r.output


def test_the_release_samples_fail_the_strict_rfc5280_checks_that_generated_material_passes():
    # The 2018 samples predate these rules; istiod and Envoy do not apply them, so the samples still work.
    r = verify(SAMPLES / "ca-cert.pem", SAMPLES / "root-cert.pem", SAMPLES / "cert-chain.pem", "-x509_strict")
    assert r.returncode != 0
    for reason in ("Basic Constraints of CA cert not marked critical", "Missing Authority Key Identifier",
                   "Missing Subject Key Identifier"):
        assert reason in r.output


def test_openssl_rejects_an_intermediate_from_another_root_as_check_does(generated, other):
    r = verify(other / TWO / "ca-cert.pem", generated / "root-cert.pem")
    # Same issuer name, but the AKI names another key, so OpenSSL finds no issuer at all.
    assert r.returncode != 0 and "unable to get local issuer certificate" in r.output
    assert certs.check(generated / ONE, other / TWO) != []


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_openssl_verifies_a_workload_certificate_through_the_chain_istiod_hands_out(generated, cluster, tmp_path):
    workload = issue(generated / cluster, "spiffe://cluster.local/ns/foo/sa/sleep")
    chain, _ = workload.write(tmp_path, "sleep")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(workload.chain_pem.split(b"-----END CERTIFICATE-----\n", 1)[0] + b"-----END CERTIFICATE-----\n")
    # Any cluster's root-cert.pem verifies any cluster's workload: that is what "one root" buys.
    for trust in CLUSTERS:
        r = verify(leaf, generated / trust / "root-cert.pem", chain, "-purpose", "sslclient")
        assert r.returncode == 0, r.output
        r = verify(leaf, generated / trust / "root-cert.pem", chain, "-purpose", "sslserver")
        assert r.returncode == 0, r.output


def test_openssl_rejects_a_workload_certificate_without_its_intermediate(generated, tmp_path):
    workload = issue(generated / ONE, "spiffe://cluster.local/ns/foo/sa/sleep", with_chain=False)
    leaf, _ = workload.write(tmp_path, "sleep")
    r = verify(leaf, generated / ONE / "root-cert.pem")
    assert r.returncode != 0 and "unable to get local issuer certificate" in r.output


def test_openssl_reads_the_ca_extensions_as_generated(generated):
    text = RUN.run(["openssl", "x509", "-noout", "-text", "-in", str(generated / ONE / "ca-cert.pem")]).stdout
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    assert ("X509v3 Key Usage: critical\n                Digital Signature, Non Repudiation, Key Encipherment, "
            "Certificate Sign") in text
    assert "DNS:istiod.istio-system.svc" in text


@pytest.mark.parametrize("key", ["root-key.pem", f"{ONE}/ca-key.pem"])
def test_openssl_finds_the_private_keys_consistent(generated, key):
    r = RUN.run(["openssl", "rsa", "-check", "-noout", "-in", str(generated / key)], check=False)
    assert r.returncode == 0 and "RSA key ok" in r.output
