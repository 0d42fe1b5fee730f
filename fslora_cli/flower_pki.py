"""Throw-away credentials for one local Flower deployment: a CA, the SuperLink's TLS certificate
and one SuperNode authentication key pair per client, in a private directory (mode 0700, files 0600).

Flower 1.42 serves its Fleet, Control and Runtime APIs on one HTTPS port; SuperNodes verify the
SuperLink's certificate against the CA (``--root-certificates``) and, with ``--enable-supernode-auth``,
sign every Fleet request with their EC key (``--auth-supernode-private-key``, OpenSSH format) whose
public half must have been registered first (``flwr supernode register``). Nothing here outlives the
deployment: the directory is removed when it stops.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Credentials:
    """Paths of one deployment's credentials (all inside ``directory``)."""

    directory: str
    ca_cert: str
    server_cert: str
    server_key: str
    node_keys: list = field(default_factory=list)      # OpenSSH private key per client
    node_public: list = field(default_factory=list)    # OpenSSH public key per client


def _write_private(path: str, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def node_key_pair(directory: str, name: str) -> tuple[str, str]:
    """(private, public) key files of a SuperNode authentication key (EC P-256, OpenSSH format)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = _write_private(os.path.join(directory, f"{name}.key"), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    public = _write_private(os.path.join(directory, f"{name}.pub"), key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return private, public


def make_credentials(directory: str, n_nodes: int, *, days: int = 2) -> Credentials:
    """Create a CA, a SuperLink certificate for 127.0.0.1/localhost signed by it, and ``n_nodes``
    SuperNode key pairs, in ``directory`` (created with mode 0700; it must not exist yet).

    Parameters
    ----------
    directory : str
        New private directory for the files.
    n_nodes : int
        Number of SuperNode key pairs (node-0 ... node-{n_nodes-1}).
    days : int
        Validity of the certificates.

    Returns
    -------
    Credentials
        The file paths.
    """
    import ipaddress
    os.mkdir(directory, 0o700)
    os.chmod(directory, 0o700)   # whatever the umask
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("fslora throw-away CA")).issuer_name(_name("fslora throw-away CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOSTS[0])), x509.DNSName(HOSTS[1])])
    server = (x509.CertificateBuilder().subject_name(_name("fslora SuperLink")).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end).add_extension(san, critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
    creds = Credentials(
        directory,
        _write_private(os.path.join(directory, "ca.crt"), ca.public_bytes(serialization.Encoding.PEM)),
        _write_private(os.path.join(directory, "server.crt"), server.public_bytes(serialization.Encoding.PEM)),
        _write_private(os.path.join(directory, "server.key"), _pem_key(server_key)))
    for i in range(n_nodes):
        private, public = node_key_pair(directory, f"node-{i}")
        creds.node_keys.append(private)
        creds.node_public.append(public)
    return creds
