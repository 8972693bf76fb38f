"""Content-addressed blob store chosen by URL: `file://DIR` or `s3://bucket/prefix` (boto3)."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from imnet.settings import Settings


class BlobError(RuntimeError):
    """A blob could not be stored or read; the message says which and why."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_for(sha256: str) -> str:
    """`ab/cd/<sha256>`: two levels of fan-out keep directories and S3 listings small."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BlobError(f"not a sha256 hex digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class BlobStore(Protocol):
    url: str

    def put(self, data: bytes, sha256: str | None = None) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def iter(self) -> Iterator[str]: ...
    def delete(self, sha256: str) -> None: ...


class FileStore:
    """Blobs as files; a write goes to a temp file in the same directory, then an atomic rename."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.root.resolve()}"

    def path(self, sha256: str) -> Path:
        return self.root / key_for(sha256)

    def put(self, data: bytes, sha256: str | None = None) -> str:
        digest = sha256_hex(data)
        if sha256 is not None and sha256 != digest:
            raise BlobError(f"content hash {digest} does not match the given {sha256}")
        dest = self.path(digest)
        if dest.exists():
            return digest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"blob {sha256} is missing from {self.url}") from None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def iter(self) -> Iterator[str]:
        for p in sorted(self.root.glob("??/??/*")):
            if not p.name.startswith(".tmp-") and len(p.name) == 64:
                yield p.name

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class S3Store:
    """Blobs as S3 objects; one PUT carrying its SHA-256 checksum, so a torn upload never lands."""

    def __init__(self, url: str, settings: Settings) -> None:
        parts = urlsplit(url)
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=64,
            ),
        )

    def _key(self, sha256: str) -> str:
        k = key_for(sha256)
        return f"{self.prefix}/{k}" if self.prefix else k

    def put(self, data: bytes, sha256: str | None = None) -> str:
        digest = sha256_hex(data)
        if sha256 is not None and sha256 != digest:
            raise BlobError(f"content hash {digest} does not match the given {sha256}")
        if self.exists(digest):
            return digest
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(digest),
                Body=data,
                ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
                ContentType="application/octet-stream",
            )
        except Exception as e:
            raise BlobError(f"upload of {digest} to {self.url} failed: {e}") from None
        return digest

    def get(self, sha256: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256))
            data = obj["Body"].read()
        except ClientError as e:
            raise BlobError(f"blob {sha256} not readable from {self.url}: {e}") from None
        if sha256_hex(data) != sha256:
            raise BlobError(f"blob {sha256} in {self.url} is corrupt (hash mismatch)")
        return data

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise BlobError(f"cannot check blob {sha256} in {self.url}: {e}") from None

    def iter(self) -> Iterator[str]:
        pager = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        for page in pager.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if len(name) == 64:
                    yield name

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)


def open_store(url: str, settings: Settings | None = None) -> FileStore | S3Store:
    """The blob store for a URL: `file:///abs/dir`, `file://rel/dir` or `s3://bucket/prefix`."""
    if url.startswith("file://"):
        return FileStore(url[len("file://") :])
    if url.startswith("s3://"):
        return S3Store(url, settings or Settings())
    raise BlobError(f"unsupported blob store URL {url!r} (use file:// or s3://)")
