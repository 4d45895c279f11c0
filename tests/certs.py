"""Self-signed certificates for the TLS tests, made by the openssl CLI (make test installs it).

One maker for every test that needs a pair (RTMPS ingest and destinations, the nginx front):
an EC P-256 certificate that is its own CA, valid for a day.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

LOCAL_NAMES = "DNS:localhost,IP:127.0.0.1"


def self_signed(
    cert: Path, key: Path, *, common_name: str = "localhost", alt_names: str | None = LOCAL_NAMES
) -> tuple[Path, Path]:
    """Write a certificate for ``common_name`` (and ``alt_names``, None for none) and its key."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is missing: run `make test`, which installs it"
    args = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    args += ["-nodes", "-days", "1", "-subj", f"/CN={common_name}"]
    if alt_names:
        args += ["-addext", f"subjectAltName={alt_names}"]
    subprocess.run([*args, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
