"""Development certificates and SuperNode keys of a federation (``twinmesh federation
certs``): a CA, the SuperLink's server certificate (SAN 127.0.0.1, ::1, localhost and any
extra host names) and one EC P-384 key pair per partner node in OpenSSH format (what
``flower-supernode --auth-supernode-private-key`` and ``flwr supernode register`` read).

A deployment uses certificates of its own CA; these are for a development federation.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertDir", "make_certs", "make_node_key"]

_VALID_DAYS = 365


@dataclass(frozen=True)
class CertDir:
    """The files of a directory made by :func:`make_certs`."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    def node_key(self, name: str) -> Path:
        return self.root / "nodes" / f"{name}.key"

    def node_public_key(self, name: str) -> Path:
        return self.root / "nodes" / f"{name}.pub"


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twinmesh development federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certs(
    out: Path, hosts: list[str] | None = None, nodes: list[str] | None = None
) -> CertDir:
    """A CA, a server certificate for ``hosts`` (plus 127.0.0.1, ::1, localhost) and a
    key pair per node name; files that exist are kept (run again to add nodes)."""
    certs = CertDir(out)
    now = dt.datetime.now(dt.UTC)
    if not certs.ca_cert.exists():
        ca_key = ec.generate_private_key(ec.SECP384R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("twinmesh federation CA"))
            .issuer_name(_name("twinmesh federation CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA384())
        )
        _write(out / "ca.key", _key_pem(ca_key), private=True)
        _write(certs.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
        for stale in (certs.server_cert, certs.server_key):
            stale.unlink(missing_ok=True)
    if not certs.server_cert.exists():
        loaded = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
        ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP384R1())
        names: list[x509.GeneralName] = []
        for host in ["127.0.0.1", "::1", "localhost", *(hosts or [])]:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name((hosts or ["localhost"])[0]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA384())
        )
        _write(certs.server_key, _key_pem(key), private=True)
        _write(certs.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    for node in nodes or []:
        if not certs.node_key(node).exists():
            make_node_key(certs.node_key(node), certs.node_public_key(node))
    return certs


def make_node_key(private_path: Path, public_path: Path) -> None:
    """An EC P-384 key pair in OpenSSH format (Flower's SuperNode authentication)."""
    key = ec.generate_private_key(ec.SECP384R1())
    _write(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    _write(
        public_path,
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n",
    )
