"""Certificates that give both clusters one root of trust: the material of Istio's `cacerts` secret.

Owns the two sources of that material and the check that two clusters' material fits together:
- `samples`: the four files Istio ships in `samples/certs` (the write-up's choice). Their root key is public, so
  they are for demonstrations only; `samples_dir` says so once per process.
- `generated`: one root CA and one intermediate CA per cluster, made here with `cryptography`, laid out the way
  Istio 1.7.8's `tools/certs/Makefile` lays out `<cluster>-cacerts-*` (its recipe: intermediate signed by the root,
  `cert-chain.pem` = intermediate followed by root, `root-cert.pem` copied next to it).
- `check`: both clusters trust one root and each cluster's signing certificate chains to it, with a message
  that names the file and the reason when not.

istiod reads the files from the `cacerts` secret (mounted at /etc/cacerts) only when it starts
(pilot/pkg/bootstrap/istio_ca.go@1.7.8), and verifies them the way `check` does
(security/pkg/pki/util/keycertbundle.go@1.7.8, `Verify`: ca-cert verifies to root-cert through cert-chain, and
ca-key matches ca-cert). Private keys are written 0600 and never printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import NameOID

from lab.errors import ValidationError
from lab.files import atomic_write

log = logging.getLogger(__name__)

# The keys of the `cacerts` secret, i.e. the file names istiod looks for in /etc/cacerts
# (security/pkg/pki/ca/ca.go and pilot/pkg/bootstrap/istio_ca.go @1.7.8).
CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"
CACERTS_FILES = (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN)
ROOT_KEY = "root-key.pem"  # only at the top of a generated directory; never part of the secret
# the private key types that can sign a certificate (cryptography's CertificateIssuerPrivateKeyTypes)
_ISSUER_KEYS = (rsa.RSAPrivateKey, dsa.DSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                ed448.Ed448PrivateKey)

SOURCES = ("samples", "generated")

# Defaults of istio/istio tools/certs/Makefile@1.7.8 (ROOTCA_* and INTERMEDIATE_* variables).
ROOT_DAYS = 3650
INTERMEDIATE_DAYS = 730
KEY_SIZE = 4096
ORG = "Istio"
ROOT_CN = "Root CA"
INTERMEDIATE_CN = "Intermediate CA"
# The Makefile gives each intermediate this DNS SAN (INTERMEDIATE_SAN_DNS) and the cluster name as L=.
INTERMEDIATE_SAN_DNS = "istiod.istio-system.svc"

# sha256 of the DER of samples/certs/root-cert.pem (istio/istio@1.7.8, unchanged since 2018). Lets `check`
# recognise the public sample root; tests/unit/test_certs.py recomputes it from the copied release file.
SAMPLE_ROOT_SHA256 = "63727a1785cab47acec5c24cc0669c20824e8ae1ac28079a4d2f8c830592e7b0"

SAMPLES_NOTICE = (
    "the certificates in Istio's samples/certs are for demonstrations only: their root key is published with "
    "every Istio release, so anyone can mint identities your mesh trusts; use `lab certs generate` for anything "
    "that is not a throwaway lab"
)

_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_samples_noticed = False


def samples_notice() -> str | None:
    """The demonstration-only notice the first time it is asked for in this process, then None."""
    global _samples_noticed
    if _samples_noticed:
        return None
    _samples_noticed = True
    return SAMPLES_NOTICE


def samples_dir(istio_dir: Path) -> Path:
    """The release's `samples/certs` directory (validated to hold the four files); logs the notice once."""
    path = Path(istio_dir) / "samples" / "certs"
    cacerts_files(path)
    notice = samples_notice()
    if notice:
        # A log record, not warnings.warn: this is advice for the person running the lab, not a code problem.
        log.warning(notice)
    return path


def cacerts_files(cluster_dir: Path) -> dict[str, Path]:
    """The four files of the `cacerts` secret in `cluster_dir`, keyed by secret key; refuses if any is missing."""
    cluster_dir = Path(cluster_dir)
    files = {name: cluster_dir / name for name in CACERTS_FILES}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ValidationError(
            f"{cluster_dir} lacks {', '.join(missing)}: the cacerts secret needs {', '.join(CACERTS_FILES)} "
            "(create them with `python -m lab certs generate --out DIR`)"
        )
    return files


def secret_object(name: str, namespace: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    """The Secret `kubectl create secret generic NAME --from-file=...` makes: key = file name, value = bytes."""
    data = {key: base64.b64encode(value).decode("ascii") for key, value in files.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": data}


def root_fingerprint(pem: bytes) -> str:
    """sha256 hex of the DER of the first certificate in `pem`."""
    certs = _load_certs(pem, "the given PEM")
    return _fingerprint(certs[0])


# --- generated material ------------------------------------------------------------------------------------
def generate(
    out: Path,
    clusters: Sequence[str],
    *,
    key_size: int | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Write a root CA to `out` and an intermediate CA per cluster to `out/<cluster>/` (cacerts layout).

    Re-running is safe: an existing root (root-cert.pem + root-key.pem) is reused, and a cluster directory whose
    material already chains to that root is kept, so a second `lab up` never rotates the mesh's root by accident.
    Delete `out` to start from a new root. `key_size` defaults to KEY_SIZE (RSA bits); `now` to the clock.
    """
    key_size = key_size or KEY_SIZE
    out = Path(out)
    names = _cluster_names(clusters)
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    if out.exists() and not out.is_dir():
        raise ValidationError(f"{out} exists and is not a directory: pass a new or a generated directory to --out")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)

    root_cert, root_key = _root(out, key_size, now)
    for name in names:
        _cluster_ca(out, name, root_cert, root_key, key_size, now)


def _root(out: Path, key_size: int, now: dt.datetime) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    """The root CA in `out`: the existing pair when it is usable, else a new one written there."""
    root_cert_path, root_key_path = out / ROOT_CERT, out / ROOT_KEY
    if root_cert_path.exists() != root_key_path.exists():
        present = ROOT_CERT if root_cert_path.exists() else ROOT_KEY
        raise ValidationError(f"{out} has {present} without its pair: delete {out} and generate again")
    if not root_cert_path.exists():
        root_key = _new_key(key_size)
        root_cert = _root_cert(root_key, now)
        _write(root_key_path, _key_pem(root_key), private=True)
        _write(root_cert_path, _cert_pem(root_cert))
        return root_cert, root_key
    root_cert = _load_certs(root_cert_path.read_bytes(), str(root_cert_path))[0]
    loaded = _load_key(root_key_path)
    if not _same_public_key(root_cert, loaded):
        raise ValidationError(f"{root_key_path} does not belong to {root_cert_path}: delete {out} and start over")
    if not isinstance(loaded, _ISSUER_KEYS):
        raise ValidationError(f"{root_key_path} is a key that cannot sign certificates: delete {out} and start "
                              "over")
    expired = _validity_problem(root_cert, now)
    if expired:
        raise ValidationError(f"{root_cert_path}: {expired}: delete {out} and start over with a new root")
    return root_cert, loaded


def _cluster_ca(out: Path, name: str, root_cert: x509.Certificate, root_key: CertificateIssuerPrivateKeyTypes,
                key_size: int, now: dt.datetime) -> None:
    """A cluster's intermediate CA in `out/<name>/`, kept when its material already chains to the root."""
    cdir = out / name
    if cdir.exists() and any((cdir / f).exists() for f in CACERTS_FILES):
        why = _unusable_under(cdir, root_cert)
        if not why:
            log.info("keeping %s: it already chains to %s", cdir, out / ROOT_CERT)
            return
        # Never overwrite a cluster's CA silently: istiod may already be running with it.
        raise ValidationError(f"{cdir} holds material that is not usable under {out / ROOT_CERT} ({why}): "
                              f"move {cdir} away or delete {out}")
    cdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _new_key(key_size)
    cert = _intermediate_cert(key, name, root_cert, root_key, now)
    _write(cdir / CA_KEY, _key_pem(key), private=True)
    _write(cdir / CA_CERT, _cert_pem(cert))
    _write(cdir / ROOT_CERT, _cert_pem(root_cert))
    # tools/certs/Makefile@1.7.8, target %/cert-chain.pem: `cat ca-cert.pem root-cert.pem > cert-chain.pem`.
    _write(cdir / CERT_CHAIN, _cert_pem(cert) + _cert_pem(root_cert))


def _cluster_names(clusters: Sequence[str]) -> list[str]:
    names = [c.strip(" \t") for c in clusters]  # ASCII blanks only: str.strip() would eat U+0085 and others
    if not names:
        raise ValidationError("no cluster names given: pass at least one, e.g. --clusters cluster1,cluster2")
    for n in names:
        if not _CLUSTER_NAME.match(n):
            raise ValidationError(
                f"cluster name {n!r} is not a DNS label (lower-case letters, digits and '-', at most 63)"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValidationError(f"cluster name {dupes[0]!r} is given twice: each cluster needs its own intermediate")
    return names


def _new_key(key_size: int) -> rsa.RSAPrivateKey:
    # RSA like the Makefile (`openssl genrsa 4096`); istiod signs with whatever key type ca-key.pem holds.
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


# keyUsage of both CAs in tools/certs/Makefile@1.7.8 (root-ca.conf and intermediate.conf):
# "critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign".
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=True, key_encipherment=True, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=False, encipher_only=False, decipher_only=False,
)


def _root_cert(key: rsa.RSAPrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CN)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=ROOT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


def _intermediate_cert(
    key: rsa.RSAPrivateKey, cluster: str, root: x509.Certificate, root_key: CertificateIssuerPrivateKeyTypes,
    now: dt.datetime
) -> x509.Certificate:
    # Subject as intermediate.conf: O, CN and L=<cluster> ("to differentiate between clusters", tools/certs/README.md).
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, INTERMEDIATE_CN),
                      x509.NameAttribute(NameOID.LOCALITY_NAME, cluster)])
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + dt.timedelta(days=INTERMEDIATE_DAYS), root.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(not_after)
        # pathlen:0 as intermediate.conf: istiod signs workload (leaf) certificates only.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(INTERMEDIATE_SAN_DNS)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root_key, hashes.SHA256())
    )


def _unusable_under(cdir: Path, root: x509.Certificate) -> str:
    """Why the material in `cdir` cannot be kept under `root`, or "" if it can."""
    material, problems = _inspect(cdir)
    if problems:
        return problems[0]
    if material is None or material.anchor != _fingerprint(root):
        return "it chains to another root"
    return ""


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    # PKCS#1 ("RSA PRIVATE KEY") like samples/certs/ca-key.pem; istiod parses PKCS#1, PKCS#8 and EC
    # (security/pkg/pki/util/crypto.go@1.7.8, ParsePemEncodedKey).
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write atomically; a private file is created 0600 from the start (never world-readable, even briefly)."""
    atomic_write(path, data, private=private)


# --- reading and checking ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Material:
    dir: Path
    ca_cert: x509.Certificate
    roots: tuple[x509.Certificate, ...]
    anchor: str  # fingerprint of the root in root-cert.pem that ca-cert chains to


def check(dir_a: Path, dir_b: Path) -> list[str]:
    """Problems with two clusters' cacerts material; empty when both chains verify and both trust one root.

    Each message names the directory or file and says what is wrong. The requirement behind the cross check: a
    sidecar in one cluster verifies the peer's certificate chain against its own cluster's root-cert.pem.
    """
    a, problems_a = _inspect(Path(dir_a))
    b, problems_b = _inspect(Path(dir_b))
    problems = problems_a + problems_b
    if a is None or b is None:
        return problems
    roots_a = {_fingerprint(r) for r in a.roots}
    roots_b = {_fingerprint(r) for r in b.roots}
    a_trusted_by_b = a.anchor in roots_b
    b_trusted_by_a = b.anchor in roots_a
    if not a_trusted_by_b and not b_trusted_by_a:
        problems.append(
            f"{a.dir} and {b.dir} do not share one root: {a.dir} chains to {_describe(a, a.anchor)}, "
            f"{b.dir} to {_describe(b, b.anchor)}; cross-cluster mTLS fails with CERTIFICATE_VERIFY_FAILED. "
            "Make both from one root (one `lab certs generate` run with both clusters)"
        )
    else:
        for x, y, ok in ((a, b, a_trusted_by_b), (b, a, b_trusted_by_a)):
            if not ok:
                problems.append(
                    f"{y.dir}/{ROOT_CERT} does not contain the root {x.dir} chains to ({_describe(x, x.anchor)}): "
                    f"workloads in {y.dir}'s cluster reject certificates from {x.dir}'s cluster"
                )
    return problems


def uses_sample_root(cluster_dir: Path) -> bool:
    """True if `cluster_dir/root-cert.pem` holds Istio's public sample root."""
    try:
        certs = _load_certs((Path(cluster_dir) / ROOT_CERT).read_bytes(), ROOT_CERT)
    except (OSError, ValidationError):
        return False
    return any(_fingerprint(c) == SAMPLE_ROOT_SHA256 for c in certs)


def _inspect(cdir: Path) -> tuple[_Material | None, list[str]]:
    """Read and verify one cluster's material the way istiod would at start."""
    if not cdir.is_dir():
        return None, [f"{cdir} is not a directory"]
    try:
        files = cacerts_files(cdir)
    except ValidationError as err:
        if (cdir / ROOT_KEY).exists():
            return None, [f"{cdir} is the top of a generated directory (it holds {ROOT_KEY}): pass {cdir}/<cluster>"]
        return None, [str(err)]
    problems: list[str] = []
    try:
        ca_certs = _load_certs(_read(files[CA_CERT]), str(files[CA_CERT]))
        chain = _load_certs(_read(files[CERT_CHAIN]), str(files[CERT_CHAIN]))
        roots = _load_certs(_read(files[ROOT_CERT]), str(files[ROOT_CERT]))
    except ValidationError as err:
        return None, [str(err)]
    ca_cert = ca_certs[0]
    try:
        key = _load_key(files[CA_KEY])
    except ValidationError as err:
        problems.append(str(err))
    else:
        if not _same_public_key(ca_cert, key):
            problems.append(f"{files[CA_KEY]} does not belong to {files[CA_CERT]} (their public keys differ)")

    for root in roots:
        why = _not_a_root(root)
        if why:
            problems.append(f"{files[ROOT_CERT]}: {_subject(root)} {why}")
    why = _cannot_sign(ca_cert)
    if why:
        problems.append(f"{files[CA_CERT]}: {_subject(ca_cert)} {why}, so istiod cannot sign workload certificates")
    # istiod appends cert-chain.pem to every workload certificate it issues (security/pkg/pki/ca/ca.go@1.7.8,
    # SignWithCertChain), so peers receive leaf + cert-chain: it must start with the signing certificate.
    if chain[0].fingerprint(hashes.SHA256()) != ca_cert.fingerprint(hashes.SHA256()):
        problems.append(
            f"{files[CERT_CHAIN]} starts with {_subject(chain[0])}, not with {CA_CERT} ({_subject(ca_cert)}): "
            "workloads would present a chain their peers cannot follow"
        )
    anchor, why = _verify_path(ca_cert, chain[1:], roots)
    if anchor is None:
        problems.append(f"{files[CA_CERT]} does not verify against {files[ROOT_CERT]} through {CERT_CHAIN}: {why}")
        return None, problems
    if problems:
        return None, problems
    return _Material(cdir, ca_cert, tuple(roots), anchor), []


def _verify_path(
    cert: x509.Certificate, intermediates: Sequence[x509.Certificate], roots: Sequence[x509.Certificate],
    now: dt.datetime | None = None,
) -> tuple[str | None, str]:
    """Build and verify the path cert -> intermediates... -> a root; (root fingerprint, "") or (None, reason)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    current = cert
    seen: set[bytes] = set()
    for _ in range(len(intermediates) + 2):
        expired = _validity_problem(current, now)
        if expired:
            return None, expired
        for root in roots:
            if _fingerprint(root) == _fingerprint(current):
                return _fingerprint(root), ""  # the certificate is itself one of the trusted roots
        named = False
        for root in roots:
            if root.subject != current.issuer:
                continue
            named = True
            if _issued_by(current, root):
                expired = _validity_problem(root, now)
                return (None, expired) if expired else (_fingerprint(root), "")
        for inter in intermediates:
            fp = inter.fingerprint(hashes.SHA256())
            if fp in seen or inter.subject != current.issuer or not _issued_by(current, inter):
                continue
            why = _cannot_sign(inter)
            if why:
                return None, f"{_subject(inter)} {why}"
            seen.add(fp)
            current = inter
            break
        else:
            if named:
                return None, (
                    f"{_subject(current)} names issuer {current.issuer.rfc4514_string()} but its signature does not "
                    f"verify with that root's key (another root with the same name: {_fps(roots)})"
                )
            return None, f"no trusted root issued {_subject(current)} (its issuer is {current.issuer.rfc4514_string()})"
    return None, "the chain does not end at a trusted root"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _validity_problem(cert: x509.Certificate, now: dt.datetime) -> str:
    if now < cert.not_valid_before_utc:
        return f"{_subject(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z"
    if now > cert.not_valid_after_utc:
        return f"{_subject(cert)} expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z"
    return ""


def _cannot_sign(cert: x509.Certificate) -> str:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "has no basicConstraints (not a CA)"
    if not bc.ca:
        return "is not a CA (basicConstraints CA:FALSE)"
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""  # no keyUsage means no restriction (RFC 5280 4.2.1.3); the samples' root has none
    return "" if ku.key_cert_sign else "lacks keyUsage keyCertSign"


def _not_a_root(cert: x509.Certificate) -> str:
    if cert.subject != cert.issuer or not _issued_by(cert, cert):
        return "is not self-signed (root-cert.pem must hold root certificates)"
    return _cannot_sign(cert)


def _load_certs(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        certs = []
    if not certs:
        raise ValidationError(f"{what} holds no PEM certificate")
    return certs


def _read(path: Path) -> bytes:
    """A file's bytes; one line naming the file when it cannot be read (permissions, an I/O error)."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValidationError(f"cannot read {path}: {err.strerror or err}; check its permissions") from err


def _load_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as err:
        # Never echo the file: it is a private key.
        raise ValidationError(f"{path} is not an unencrypted PEM private key") from err


def _same_public_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)
    except AttributeError:
        return False


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _subject(cert: x509.Certificate) -> str:
    return f"'{cert.subject.rfc4514_string()}'"


def _fps(certs: Sequence[x509.Certificate]) -> str:
    return ", ".join(f"sha256 {_fingerprint(c)[:16]}" for c in certs)


def _describe(m: _Material, fp: str) -> str:
    root = next(r for r in m.roots if _fingerprint(r) == fp)
    return f"{_subject(root)} sha256 {fp[:16]}"


def untrusted_ca(workdir: Path, cluster: str) -> Path:
    """`cluster`'s CA files under a root of their own, one the lab's clusters do not trust (the root-mismatch
    faults): generated once in `workdir`/other-root and reused; returns that cluster's folder."""
    out = workdir / "other-root"
    if not (out / cluster / "ca-cert.pem").exists():
        generate(out, [cluster])
    return out / cluster
