"""S3 blob store cost per put and get: imnet's S3Store against the HEAD-then-PUT it replaced.

Starts a throwaway SeaweedFS S3 server on loopback (tests/_servers.py) and stores N distinct
blobs of the crawl's typical size, then reads them back. For each variant it prints the client's
CPU per operation, the S3 server's CPU per operation (both matter: on one machine they share the
cores), and the ratio old / new. The "old" rows run the calls the store made before (a HEAD to
skip known blobs, then the PUT; botocore's CRC check on every GET) on the same client settings.

    python bench/blobstore_s3.py [--n 2000] [--size 11000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import _servers  # noqa: E402
from _scalemeasure import tree_cpu  # noqa: E402

from imnet.core.blobstore import S3Store, sha256_hex  # noqa: E402
from imnet.core.settings import Settings  # noqa: E402


def measure(label: str, fn, n: int, server_pid: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    c0, s0, w0 = time.process_time(), tree_cpu(server_pid), time.perf_counter()
    fn()
    c1, s1, w1 = time.process_time(), tree_cpu(server_pid), time.perf_counter()
    row = {
        "client_ms": (c1 - c0) * 1e3 / n,
        "server_ms": (s1 - s0) * 1e3 / n,
        "wall_ms": (w1 - w0) * 1e3 / n,
    }
    print(
        f"{label:34s} client {row['client_ms']:6.2f} ms/op  server {row['server_ms']:6.2f} ms/op"
        f"  wall {row['wall_ms']:6.2f} ms/op"
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="blobs per variant")
    ap.add_argument("--size", type=int, default=11_000, help="bytes per blob")
    args = ap.parse_args()
    if args.n < 1 or args.size < 1:
        print("blobstore_s3: --n and --size must be positive", file=sys.stderr)
        return 2
    srv = _servers.start_s3()
    try:
        settings = Settings(
            s3_endpoint_url=srv.endpoint,
            s3_access_key=srv.access_key,
            s3_secret_key=srv.secret_key,
        )
        rows = {}
        blobs = {v: [os.urandom(args.size) for _ in range(args.n)] for v in ("old", "new")}
        new_store = S3Store(f"s3://{srv.create_bucket()}", settings)
        old_store = S3Store(f"s3://{srv.create_bucket()}", settings)
        old_client = old_store.client
        pid = srv.proc.pid

        def old_put(data: bytes) -> None:
            digest = sha256_hex(data)
            if old_store.exists(digest):
                return
            old_client.put_object(
                Bucket=old_store.bucket,
                Key=old_store._key(digest),
                Body=data,
                ChecksumSHA256=__import__("base64").b64encode(bytes.fromhex(digest)).decode(),
                ContentType="application/octet-stream",
            )

        print(f"{args.n} distinct blobs of {args.size} bytes per variant, SeaweedFS on loopback")
        rows["old put"] = measure(
            "put, old (HEAD + PUT)", lambda: [old_put(b) for b in blobs["old"]], args.n, pid
        )
        rows["new put"] = measure(
            "put, new (one conditional PUT)",
            lambda: [new_store.put(b, sync=False) for b in blobs["new"]],
            args.n,
            pid,
        )
        rows["new put again"] = measure(
            "put of a stored blob, new",
            lambda: [new_store.put(b, sync=False) for b in blobs["new"]],
            args.n,
            pid,
        )
        keys = [sha256_hex(b) for b in blobs["new"]]
        for k in keys[:3]:
            assert new_store.get(k) == blobs["new"][keys.index(k)]

        def old_get() -> None:
            for b in blobs["old"]:
                digest = sha256_hex(b)
                obj = old_client.get_object(
                    Bucket=old_store.bucket, Key=old_store._key(digest), ChecksumMode="ENABLED"
                )
                assert sha256_hex(obj["Body"].read()) == digest

        rows["old get"] = measure("get, old (botocore CRC + SHA-256)", old_get, args.n, pid)
        rows["new get"] = measure(
            "get, new (SHA-256 only)", lambda: [new_store.get(k) for k in keys], args.n, pid
        )
        for op in ("put", "get"):
            o, n = rows[f"old {op}"], rows[f"new {op}"]
            print(
                f"ratio old/new {op}: client CPU {o['client_ms'] / n['client_ms']:.2f}x, "
                f"client+server CPU {(o['client_ms'] + o['server_ms']) / (n['client_ms'] + n['server_ms']):.2f}x"
            )
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
