"""lab.certs: the cacerts layout, CA extensions, file modes, the release samples, and the shared-root check."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import example, given
from hypothesis import strategies as st

from lab import certs, cli
from lab.errors import ValidationError
from lab.scenario import load_profile

SAMPLES = Path(__file__).parent.parent / "data" / "certs" / "istio-1.7.8-samples"
CLUSTERS = [c.name for c in load_profile().clusters]
ONE, TWO = CLUSTERS[0], CLUSTERS[1]
FAST = 2048  # key size for tests that do not look at keys (4096, the default, is checked once below)


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """One `generate` run (Makefile validities; small keys, which no extension depends on), read-only."""
    out = tmp_path_factory.mktemp("gen") / "certs"
    certs.generate(out, CLUSTERS, key_size=FAST)
    return out


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A writable generated directory for tests that damage it."""
    out = tmp_path / "certs"
    certs.generate(out, CLUSTERS, key_size=FAST)
    return out


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    """Material for the second cluster from a separate run: another root with the same names."""
    out = tmp_path_factory.mktemp("other") / "certs"
    certs.generate(out, [TWO], key_size=FAST)
    return out


# --- generate: layout, modes, extensions -------------------------------------------------------------------
def test_generate_writes_the_root_at_the_top_and_the_four_cacerts_files_per_cluster(generated):
    top = {p.name for p in generated.iterdir()}
    assert top == {"root-cert.pem", "root-key.pem", *CLUSTERS}
    for name in CLUSTERS:
        assert {p.name for p in (generated / name).iterdir()} == {
            "ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}


def test_private_keys_are_written_0600_and_certificates_0644(generated):
    modes = {p.relative_to(generated).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in generated.rglob("*.pem")}
    assert {k: m for k, m in modes.items() if k.endswith("-key.pem")} == {
        "root-key.pem": 0o600, **{f"{c}/ca-key.pem": 0o600 for c in CLUSTERS}}
    assert {m for k, m in modes.items() if not k.endswith("-key.pem")} == {0o644}


def test_keys_are_rsa_4096_by_default_in_pkcs1_like_the_makefile_and_the_samples(tmp_path):
    certs.generate(tmp_path, CLUSTERS)
    for path in [tmp_path / "root-key.pem", *(tmp_path / c / "ca-key.pem" for c in CLUSTERS)]:
        text = path.read_bytes()
        assert text.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        key = serialization.load_pem_private_key(text, password=None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096


def test_root_is_a_self_signed_ca_with_the_makefiles_extensions(generated):
    root = read_cert(generated / "root-cert.pem")
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Root CA"
    root.verify_directly_issued_by(root)
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(root, x509.KeyUsage)
    assert ku.critical
    assert (ku.value.key_cert_sign, ku.value.digital_signature, ku.value.content_commitment,
            ku.value.key_encipherment) == (True, True, True, True)
    ski = ext(root, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(root.public_key())
    assert ext(root, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert root.not_valid_after_utc - root.not_valid_before_utc == dt.timedelta(days=3650)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_intermediate_is_a_pathlen0_ca_named_for_its_cluster_and_signed_by_the_root(generated, cluster):
    root = read_cert(generated / "root-cert.pem")
    ca = read_cert(generated / cluster / "ca-cert.pem")
    ca.verify_directly_issued_by(root)
    assert ca.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == cluster
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Intermediate CA"
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.digital_signature
    assert ext(ca, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        "istiod.istio-system.svc"]
    assert ext(ca, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    assert (ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier
            == ext(root, x509.SubjectKeyIdentifier).value.digest)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == dt.timedelta(days=730)


def test_each_cluster_gets_its_own_intermediate_key(generated):
    keys = {(generated / c / "ca-key.pem").read_bytes() for c in CLUSTERS}
    assert len(keys) == len(CLUSTERS)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_cert_chain_is_the_intermediate_followed_by_the_root_as_tools_certs_writes_it(generated, cluster):
    d = generated / cluster
    assert (d / "cert-chain.pem").read_bytes() == (d / "ca-cert.pem").read_bytes() + (
        generated / "root-cert.pem").read_bytes()
    assert (d / "root-cert.pem").read_bytes() == (generated / "root-cert.pem").read_bytes()


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_ca_key_belongs_to_ca_cert(generated, cluster):
    key = serialization.load_pem_private_key((generated / cluster / "ca-key.pem").read_bytes(), password=None)
    cert = read_cert(generated / cluster / "ca-cert.pem")
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_generate_again_keeps_the_root_and_the_intermediates_and_adds_a_new_cluster(fresh):
    before = {p: p.read_bytes() for p in fresh.rglob("*.pem")}
    certs.generate(fresh, [*CLUSTERS, "cluster3"], key_size=FAST)
    assert {p: p.read_bytes() for p in before} == before
    assert certs.check(fresh / ONE, fresh / "cluster3") == []


def test_generate_refuses_a_root_cert_without_its_key(fresh):
    (fresh / "root-key.pem").unlink()
    with pytest.raises(ValidationError, match="root-cert.pem without its pair"):
        certs.generate(fresh, CLUSTERS, key_size=FAST)


def test_generate_refuses_to_overwrite_a_cluster_directory_from_another_root(fresh, other):
    for name in certs.CACERTS_FILES:
        shutil.copy(other / TWO / name, fresh / TWO / name)
    before = (fresh / TWO / "ca-cert.pem").read_bytes()
    with pytest.raises(ValidationError, match="not usable under .*it chains to another root"):
        certs.generate(fresh, CLUSTERS, key_size=FAST)
    assert (fresh / TWO / "ca-cert.pem").read_bytes() == before


def test_generate_refuses_to_replace_an_expired_intermediate_silently(tmp_path):
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=731)
    certs.generate(tmp_path / "old", CLUSTERS, key_size=FAST, now=long_ago)
    with pytest.raises(ValidationError, match=r"not usable under .*Intermediate CA.* expired .*: move .* away"):
        certs.generate(tmp_path / "old", CLUSTERS, key_size=FAST)


def test_generate_refuses_to_reuse_an_expired_root(tmp_path):
    certs.generate(tmp_path / "old", [ONE], key_size=FAST,
                   now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3651))
    with pytest.raises(ValidationError, match=r"root-cert.pem: 'CN=Root CA,O=Istio' expired .*new root"):
        certs.generate(tmp_path / "old", [TWO], key_size=FAST)


@pytest.mark.parametrize("names, rule", [
    ([], "no cluster names"),
    (["Cluster1"], "not a DNS label"),
    (["cluster_1"], "not a DNS label"),
    (["-a"], "not a DNS label"),
    (["../etc"], "not a DNS label"),
    (["a" * 64], "not a DNS label"),
    (["cluster1", "cluster1"], "given twice"),
])
def test_generate_refuses_bad_cluster_names_before_writing_anything(tmp_path, names, rule):
    with pytest.raises(ValidationError, match=rule):
        certs.generate(tmp_path / "out", names, key_size=FAST)
    assert not (tmp_path / "out").exists()


def test_generate_refuses_an_out_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValidationError, match="is not a directory"):
        certs.generate(tmp_path / "f", CLUSTERS, key_size=FAST)


@given(st.text(min_size=1, max_size=70))
@example("0\x85")  # str.strip() would remove U+0085 and accept the name
@example("0 ")  # surrounding ASCII blanks are stripped (a `--clusters a, b` list), the rest must be a label
def test_a_cluster_name_is_accepted_only_if_it_is_a_dns_label(name):
    name = name.strip(" \t")
    label = 0 < len(name) <= 63 and name[0].isalnum() and name[-1].isalnum() and all(
        c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in name)
    try:
        certs._cluster_names([name])
    except ValidationError:
        assert not label
    else:
        assert label


# --- the release samples -----------------------------------------------------------------------------------
def test_samples_are_the_istio_1_7_8_release_files():
    # sha256 of the files, from docs/sources.md#istio-samples-certs.
    expected = {
        "ca-cert.pem": "5b0a04a187edb466c670ac53b75f43a0b0cc7a4bc881bbfcf9202ad4a9ec06eb",
        "cert-chain.pem": "5b0a04a187edb466c670ac53b75f43a0b0cc7a4bc881bbfcf9202ad4a9ec06eb",
        "ca-key.pem": "126a361581639e2c8170e954e612f50e3b83b7946153a42fdf63854bc099e8a2",
        "root-cert.pem": "d4b72cdb69ee845ded5e652010d13d2e517cb044fdd0454de7a3b586af91d0fe",
    }
    assert {n: hashlib.sha256((SAMPLES / n).read_bytes()).hexdigest() for n in expected} == expected


def test_sample_root_constant_is_the_fingerprint_of_the_release_root():
    assert certs.root_fingerprint((SAMPLES / "root-cert.pem").read_bytes()) == certs.SAMPLE_ROOT_SHA256
    assert certs.uses_sample_root(SAMPLES)


def test_samples_share_one_root_and_their_chain_verifies():
    assert certs.check(SAMPLES, SAMPLES) == []


def test_samples_cert_chain_holds_the_intermediate_alone():
    assert (SAMPLES / "cert-chain.pem").read_bytes() == (SAMPLES / "ca-cert.pem").read_bytes()


def test_samples_and_generated_material_do_not_share_a_root(generated):
    problems = certs.check(SAMPLES, generated / TWO)
    assert len(problems) == 1 and "do not share one root" in problems[0]
    assert certs.SAMPLE_ROOT_SHA256[:16] in problems[0]
    assert not certs.uses_sample_root(generated / TWO)


def make_release(tmp_path: Path) -> Path:
    istio = tmp_path / "istio-1.7.8"
    shutil.copytree(SAMPLES, istio / "samples" / "certs")
    return istio


def test_samples_dir_finds_the_release_files_and_says_once_that_they_are_for_demonstrations(
    tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(certs, "_samples_noticed", False)
    istio = make_release(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lab.certs"):
        assert certs.samples_dir(istio) == istio / "samples" / "certs"
        assert certs.samples_dir(istio) == istio / "samples" / "certs"
    notices = [r.getMessage() for r in caplog.records if r.name == "lab.certs"]
    assert notices == [certs.SAMPLES_NOTICE]
    assert "demonstrations only" in notices[0] and "lab certs generate" in notices[0]


def test_samples_dir_refuses_a_release_without_the_sample_key(tmp_path):
    istio = make_release(tmp_path)
    (istio / "samples" / "certs" / "ca-key.pem").unlink()
    with pytest.raises(ValidationError, match=r"lacks ca-key\.pem"):
        certs.samples_dir(istio)


# --- cacerts_files and root_fingerprint ---------------------------------------------------------------------
def test_cacerts_files_maps_each_secret_key_to_its_file(generated):
    files = certs.cacerts_files(generated / ONE)
    assert files == {n: generated / ONE / n for n in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")}


def test_cacerts_files_names_every_missing_file_and_is_a_usage_error(fresh):
    (fresh / ONE / "ca-key.pem").unlink()
    (fresh / ONE / "cert-chain.pem").unlink()
    with pytest.raises(ValidationError, match=r"lacks ca-key\.pem, cert-chain\.pem") as err:
        certs.cacerts_files(fresh / ONE)
    assert err.value.exit_code == 2


def test_root_fingerprint_is_the_sha256_of_the_der(generated):
    root = read_cert(generated / "root-cert.pem")
    assert certs.root_fingerprint((generated / "root-cert.pem").read_bytes()) == root.fingerprint(
        hashes.SHA256()).hex()


def test_root_fingerprint_refuses_text_without_a_certificate():
    with pytest.raises(ValidationError, match="no PEM certificate"):
        certs.root_fingerprint(b"not a certificate")


# --- check ---------------------------------------------------------------------------------------------------
def test_check_accepts_two_clusters_from_one_generate_run(generated):
    assert certs.check(generated / ONE, generated / TWO) == []


def test_check_reports_clusters_from_two_roots_with_the_same_name_by_fingerprint(generated, other):
    problems = certs.check(generated / ONE, other / TWO)
    fp_a = certs.root_fingerprint((generated / "root-cert.pem").read_bytes())
    fp_b = certs.root_fingerprint((other / "root-cert.pem").read_bytes())
    assert len(problems) == 1
    assert "do not share one root" in problems[0]
    assert fp_a[:16] in problems[0] and fp_b[:16] in problems[0]
    assert "CERTIFICATE_VERIFY_FAILED" in problems[0]


def test_check_reports_the_one_direction_that_fails_when_one_cluster_trusts_both_roots(fresh, other):
    both = (fresh / "root-cert.pem").read_bytes() + (other / "root-cert.pem").read_bytes()
    (fresh / ONE / "root-cert.pem").write_bytes(both)
    problems = certs.check(fresh / ONE, other / TWO)
    assert problems == [
        f"{other / TWO}/root-cert.pem does not contain the root {fresh / ONE} chains to "
        f"('CN=Root CA,O=Istio' sha256 {certs.root_fingerprint(both)[:16]}): workloads in {other / TWO}'s cluster "
        f"reject certificates from {fresh / ONE}'s cluster"
    ]


def test_check_reports_missing_files_by_name(fresh):
    (fresh / TWO / "cert-chain.pem").unlink()
    problems = certs.check(fresh / ONE, fresh / TWO)
    assert len(problems) == 1 and f"{fresh / TWO} lacks cert-chain.pem" in problems[0]


def test_check_says_to_pass_a_cluster_directory_when_given_the_generated_top(fresh):
    problems = certs.check(fresh, fresh / TWO)
    assert problems == [f"{fresh} is the top of a generated directory (it holds root-key.pem): pass {fresh}/<cluster>"]


def test_check_reports_a_key_that_does_not_belong_to_the_certificate_without_printing_it(fresh):
    shutil.copy(fresh / TWO / "ca-key.pem", fresh / ONE / "ca-key.pem")
    problems = certs.check(fresh / ONE, fresh / TWO)
    assert problems == [f"{fresh / ONE}/ca-key.pem does not belong to {fresh / ONE}/ca-cert.pem (their public keys "
                        "differ)"]
    key_body = (fresh / ONE / "ca-key.pem").read_text().splitlines()[1]
    assert key_body not in problems[0]


def test_check_reports_an_unreadable_key_without_printing_it(fresh):
    (fresh / ONE / "ca-key.pem").write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n")
    problems = certs.check(fresh / ONE, fresh / TWO)
    assert problems == [f"{fresh / ONE}/ca-key.pem is not an unencrypted PEM private key"]


def test_check_reports_a_cert_chain_that_does_not_start_with_the_signing_certificate(fresh):
    (fresh / ONE / "cert-chain.pem").write_bytes((fresh / "root-cert.pem").read_bytes())
    problems = certs.check(fresh / ONE, fresh / TWO)
    assert len(problems) == 1
    assert "cert-chain.pem starts with 'CN=Root CA,O=Istio', not with ca-cert.pem" in problems[0]


def test_check_reports_a_root_file_from_another_root_with_the_same_name(fresh, other):
    shutil.copy(other / "root-cert.pem", fresh / ONE / "root-cert.pem")
    shutil.copy(other / "root-cert.pem", fresh / ONE / "cert-chain.pem")
    (fresh / ONE / "cert-chain.pem").write_bytes((fresh / ONE / "ca-cert.pem").read_bytes())
    problems = certs.check(fresh / ONE, fresh / TWO)
    assert len(problems) == 1
    assert "ca-cert.pem does not verify against" in problems[0]
    assert "its signature does not verify with that root's key (another root with the same name" in problems[0]


def test_check_reports_an_expired_intermediate(tmp_path):
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=731)
    certs.generate(tmp_path / "old", CLUSTERS, key_size=FAST, now=long_ago)
    problems = certs.check(tmp_path / "old" / ONE, tmp_path / "old" / TWO)
    assert len(problems) == 2
    assert all("'L=" in p and "Intermediate CA" in p and " expired " in p for p in problems)


def _leaf_signed_by_root(out: Path) -> bytes:
    root = read_cert(out / "root-cert.pem")
    root_key = serialization.load_pem_private_key((out / "root-key.pem").read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=FAST)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
            .issuer_name(root.subject).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (out / ONE / "ca-cert.pem").write_bytes(pem)
    (out / ONE / "cert-chain.pem").write_bytes(pem)
    (out / ONE / "ca-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return pem


def test_check_reports_a_signing_certificate_that_is_not_a_ca(fresh):
    _leaf_signed_by_root(fresh)
    problems = certs.check(fresh / ONE, fresh / TWO)
    assert problems == [f"{fresh / ONE}/ca-cert.pem: 'CN=leaf' is not a CA (basicConstraints CA:FALSE), so istiod "
                        "cannot sign workload certificates"]


def test_check_reports_a_directory_that_does_not_exist(tmp_path, generated):
    assert certs.check(tmp_path / "nope", generated / TWO) == [f"{tmp_path / 'nope'} is not a directory"]


# --- CLI ---------------------------------------------------------------------------------------------------
@pytest.fixture
def fast_keys(monkeypatch):
    """The CLI generates with the default key size; smaller keys keep these tests quick."""
    monkeypatch.setattr(certs, "KEY_SIZE", FAST)


def test_cli_generate_writes_the_profiles_clusters_by_default_and_prints_no_key(tmp_path, capsys, fast_keys):
    assert cli.main(["certs", "generate", "--out", str(tmp_path / "c")]) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(["root-cert.pem", "root-key.pem", *CLUSTERS])
    assert "PRIVATE KEY" not in out + err
    for path in (tmp_path / "c").rglob("*-key.pem"):
        assert path.read_text().splitlines()[1] not in out + err


def test_cli_generate_takes_a_comma_separated_cluster_list(tmp_path, capsys, fast_keys):
    assert cli.main(["certs", "generate", "--out", str(tmp_path / "c"), "--clusters", "east,west"]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["east", "root-cert.pem", "root-key.pem", "west"]


def test_cli_generate_refuses_a_bad_cluster_name_with_exit_2_and_one_line(tmp_path, capsys):
    assert cli.main(["certs", "generate", "--out", str(tmp_path / "c"), "--clusters", "ok,Not_OK"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "'Not_OK' is not a DNS label" in err


def test_cli_check_exits_0_when_both_share_one_root(generated, capsys):
    assert cli.main(["certs", "check", str(generated / ONE), str(generated / TWO)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_cli_check_exits_1_and_lists_the_problem_when_roots_differ(generated, other, capsys):
    assert cli.main(["certs", "check", str(generated / ONE), str(other / TWO)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("problem: ") and "do not share one root" in out


def test_cli_check_exits_1_when_a_file_is_missing(fresh, capsys):
    (fresh / ONE / "ca-cert.pem").unlink()
    assert cli.main(["certs", "check", str(fresh / ONE), str(fresh / TWO)]) == 1
    assert "lacks ca-cert.pem" in capsys.readouterr().out


def test_cli_check_exits_2_with_one_line_when_a_directory_does_not_exist(tmp_path, generated, capsys):
    assert cli.main(["certs", "check", str(tmp_path / "nope"), str(generated / TWO)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "is not a directory" in err


def test_cli_check_notes_on_stderr_that_the_samples_are_for_demonstrations(capsys):
    assert cli.main(["certs", "check", str(SAMPLES), str(SAMPLES)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: ") and certs.SAMPLES_NOTICE in err


def test_cli_certs_needs_an_action(capsys):
    # argparse's refusal is the CLI's one line too (not its usage block), with the exit code 2 it uses
    assert cli.main(["certs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the following arguments are required: ACTION" in err
