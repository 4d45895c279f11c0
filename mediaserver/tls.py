"""The server side of TLS for RTMPS ingest: a certificate and key pair loaded into a context.

A bottom module (standard library only) so that settings can check the pair at load, with the
same code that ingest later loads it with, and name the setting that is wrong: an operator who
swapped the two paths, pointed at a missing file or kept the key of an older certificate gets
told which one, at start or at a SIGHUP reload, instead of a TLS error on every connection.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

CERT_SETTING = "rtmp.tls_cert_file"
KEY_SETTING = "rtmp.tls_key_file"

_PEM_CERT = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


class TlsFilesError(ValueError):
    """The certificate or key cannot be used; ``key`` is the setting to fix."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ServerTls:
    """A loaded pair: the context new connections are made with, and what the logs show."""

    context: ssl.SSLContext
    fingerprint: str  # SHA-256 of the leaf certificate (DER), hex pairs joined by ':'


def _read(key: str, path: str) -> str:
    if not path:
        raise TlsFilesError(key, "is required when rtmp.tls_port is set")
    try:
        return Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise TlsFilesError(key, f"file not found: {path}") from None
    except IsADirectoryError:
        raise TlsFilesError(key, f"{path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TlsFilesError(key, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TlsFilesError(key, f"{path} is not a PEM file (binary content)") from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def load_server_tls(cert_file: str, key_file: str) -> ServerTls:
    """Load and check the pair (TLS 1.2 and newer only); TlsFilesError names the bad file."""
    cert_pem = _read(CERT_SETTING, cert_file)
    key_pem = _read(KEY_SETTING, key_file)
    start = cert_pem.find(_PEM_CERT)
    end = cert_pem.find(_PEM_END, start)
    if start < 0 or end < 0:
        raise TlsFilesError(CERT_SETTING, f"{cert_file} holds no PEM certificate")
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem[start : end + len(_PEM_END)] + "\n")
    except ValueError as exc:
        raise TlsFilesError(CERT_SETTING, f"{cert_file}: bad PEM certificate: {exc}") from None
    try:  # parses it as X.509, so a broken certificate is not blamed on the key below
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)
    except ssl.SSLError as exc:
        raise TlsFilesError(CERT_SETTING, f"{cert_file}: bad certificate: {exc.reason}") from None
    if "PRIVATE KEY-----" not in key_pem:
        raise TlsFilesError(KEY_SETTING, f"{key_file} holds no PEM private key")
    if "ENCRYPTED" in key_pem:
        raise TlsFilesError(KEY_SETTING, f"{key_file} is encrypted; give an unencrypted key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFilesError(
                KEY_SETTING, f"{key_file} is not the key of the certificate in {cert_file}"
            ) from None
        raise TlsFilesError(KEY_SETTING, f"{key_file}: bad private key: {exc.reason}") from None
    except OSError as exc:  # a file replaced between the reads above and this one
        raise TlsFilesError(CERT_SETTING, f"cannot load the pair: {exc}") from None
    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    return ServerTls(context, fingerprint)
