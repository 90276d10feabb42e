"""Workload certificates issued the way istiod 1.7 issues them, for tests that need a sidecar's identity.

In a cluster istiod signs the sidecar's CSR with the `cacerts` intermediate. The shape below follows
istio/istio@1.7.8 security/pkg/pki/util/generate_cert.go (`genCertTemplateFromCSR`): empty subject,
keyUsage digitalSignature + keyEncipherment, extKeyUsage serverAuth + clientAuth, basicConstraints CA:false,
and a SAN extension holding the SPIFFE URI, marked critical because the subject is empty
(security/pkg/pki/util/san.go, `BuildSANExtension`). Go's x509 marks keyUsage and basicConstraints critical and
adds the issuer's key id as AKI. The TTL defaults to 24 h (security/pkg/cmd/constants.go,
`DefaultWorkloadCertTTL`). What the sidecar receives, and Envoy sends, is the leaf followed by the CA's
`cert-chain.pem` (security/pkg/pki/ca/ca.go, `SignWithCertChain`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

WORKLOAD_TTL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Workload:
    spiffe_id: str
    cert: x509.Certificate
    chain_pem: bytes  # leaf + cert-chain.pem, what the sidecar presents
    key_pem: bytes

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write `<name>-chain.pem` and `<name>-key.pem` (0600); returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        chain, key = directory / f"{name}-chain.pem", directory / f"{name}-key.pem"
        chain.write_bytes(self.chain_pem)
        key.touch(mode=0o600)
        key.write_bytes(self.key_pem)
        return chain, key


def issue(cluster_dir: Path, spiffe_id: str, *, ttl: dt.timedelta = WORKLOAD_TTL,
          with_chain: bool = True) -> Workload:
    """Sign a workload certificate for `spiffe_id` with the intermediate in `cluster_dir` (a cacerts directory)."""
    ca_cert = x509.load_pem_x509_certificate((cluster_dir / "ca-cert.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((cluster_dir / "ca-key.pem").read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the agent's default RSA size
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + ttl)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
    )
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = None  # the samples' intermediate has no SKI, and Go then writes no AKI
    if ski is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                        critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    leaf = cert.public_bytes(serialization.Encoding.PEM)
    chain = leaf + ((cluster_dir / "cert-chain.pem").read_bytes() if with_chain else b"")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return Workload(spiffe_id, cert, chain, key_pem)
