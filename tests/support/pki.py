"""Certificates for the TLS tests, made at test time with the openssl command line.

``make_pki(folder)`` writes a CA, a broker certificate for 127.0.0.1 / localhost signed by it
(with its key, as the broker's PEM keystore), a client certificate signed by the same CA (its key
plain and encrypted with ``CLIENT_KEY_PASSWORD``), and a client certificate from another CA that
the broker does not trust. Keys are RSA 2048 in PKCS#8, which the broker's PEM keystore reads.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLIENT_KEY_PASSWORD = "client-key-pass-4f1c"  # noqa: S105 - a test key's password
DAYS = "2"


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker_keystore: Path
    """The broker's key followed by its certificate (PEM)."""
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path
    """``client_key`` encrypted with ``CLIENT_KEY_PASSWORD`` (PKCS#8, AES-256)."""
    untrusted_cert: Path
    untrusted_key: Path


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return key, cert


def _signed(folder: Path, name: str, ca: tuple[Path, Path], *extensions: str) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    options = [item for ext in extensions for item in ("-addext", ext)]
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", *options,
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
        "-days", DAYS, "-copy_extensions", "copy", "-out", str(cert),
    )  # fmt: skip
    return key, cert


def make_pki(folder: Path) -> Pki:
    """Write the certificates and keys into ``folder``; needs the openssl command."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    broker_key, broker_cert = _signed(
        folder, "localhost", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth"
    )
    keystore = folder / "broker-keystore.pem"
    keystore.write_text(broker_key.read_text() + broker_cert.read_text())
    client_key, client_cert = _signed(folder, "signal-sync", ca, "extendedKeyUsage=clientAuth")
    encrypted = folder / "signal-sync-encrypted.key"
    _openssl(
        "pkcs8", "-topk8", "-in", str(client_key), "-out", str(encrypted), "-v2", "aes-256-cbc",
        "-passout", f"pass:{CLIENT_KEY_PASSWORD}",
    )  # fmt: skip
    other_ca = _ca(folder, "untrusted-ca")
    untrusted_key, untrusted_cert = _signed(folder, "intruder", other_ca, "extendedKeyUsage=clientAuth")
    return Pki(ca[1], keystore, client_cert, client_key, encrypted, untrusted_cert, untrusted_key)
