"""Content-addressed blob store chosen by URL: `file://DIR` or `s3://bucket/prefix` (boto3)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from imnet.core.settings import Settings

if TYPE_CHECKING:
    import ctypes


class BlobError(RuntimeError):
    """A blob could not be stored or read; the message says which and why."""


class BlobStoreUnreachable(BlobError):
    """The store itself cannot be used (no credentials, endpoint down): no blob will do better."""


_tmp_seq = itertools.count()
_TOKEN = os.urandom(4).hex()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_for(sha256: str) -> str:
    """`ab/cd/<sha256>`: two levels of fan-out keep directories and S3 listings small."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BlobError(f"not a sha256 hex digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class BlobStore(Protocol):
    url: str
    # True when put() is a cheap local write that may run on an event loop's thread.
    local: bool

    def put(self, data: bytes, sha256: str | None = None, sync: bool = True) -> str: ...
    def sync(self) -> None: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def iter(self) -> Iterator[str]: ...
    def delete(self, sha256: str) -> None: ...
    def check(self) -> None: ...


class FileStore:
    """Blobs as files; a write goes to a temp file in the same directory, then an atomic rename.

    `put(data)` is durable when it returns (file fsync before the rename). A bulk writer (the
    crawler) passes `sync=False` and calls `sync()` once per batch, before it records the batch
    in the database: one filesystem flush instead of one fsync per image, and no row ever points
    to a blob that a power cut could lose.
    """

    local = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.root.resolve()}"
        self._unsynced: list[Path] = []
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        return self.root / key_for(sha256)

    def put(self, data: bytes, sha256: str | None = None, sync: bool = True) -> str:
        digest = sha256_hex(data)
        if sha256 is not None and sha256 != digest:
            raise BlobError(f"content hash {digest} does not match the given {sha256}")
        dest = self.path(digest)
        # A missing file is new; one of the wrong size is a write a power cut tore before its
        # sync: both are written (again).
        with contextlib.suppress(FileNotFoundError):
            if dest.stat().st_size == len(data):
                return digest
        parent = dest.parent
        # Unique per machine (token), process and call, without mkstemp's random retries.
        tmp = parent / f".tmp-{_TOKEN}-{os.getpid()}-{next(_tmp_seq)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # first blob under this ab/cd/ prefix
            parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not sync:
            with self._lock:
                self._unsynced.append(dest)
        return digest

    def check(self) -> None:
        """Nothing to reach: a missing or unwritable directory is reported by the first put."""

    def sync(self) -> None:
        """Make every `put(..., sync=False)` so far durable (files and their directory entries)."""
        with self._lock:
            # Puts from other threads after this point land in the new list, synced next time.
            paths, self._unsynced = self._unsynced, []
        if not paths:
            return
        # One syncfs(2) for the batch where Linux has it: a single journal commit. It also waits
        # for other writers' dirty data on the same filesystem, so give blobs their own volume
        # on a shared machine. Elsewhere: fsync each file and directory.
        if _syncfs(self.root):
            return
        # Directories too (both fan-out levels), so new entries and renames survive a power cut.
        dirs = {p.parent for p in paths} | {p.parent.parent for p in paths}
        for d in [*paths, *dirs]:
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

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

    local = False

    def __init__(self, url: str, settings: Settings) -> None:
        parts = urlsplit(url)
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._settings = settings
        self.client = self._client(
            retries={"max_attempts": 3, "mode": "standard"},
            # botocore waits 60 s for a reply, four times: a hung endpoint held each
            # request four minutes. Blobs are images; 30 s is ample for one.
            connect_timeout=10,
            read_timeout=30,
            max_pool_connections=64,
            # get() checks every blob's SHA-256 itself; botocore's own CRC of each body on
            # top of that is CPU spent twice.
            response_checksum_validation="when_required",
        )

    def _client(self, **config: Any) -> Any:
        """A boto3 S3 client for this store's endpoint and keys, with these Config options."""
        import boto3
        from botocore.config import Config

        s = self._settings
        return boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint_url or None,
            region_name=s.s3_region,
            aws_access_key_id=s.s3_access_key or None,
            aws_secret_access_key=s.s3_secret_key or None,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def _key(self, sha256: str) -> str:
        k = key_for(sha256)
        return f"{self.prefix}/{k}" if self.prefix else k

    def put(self, data: bytes, sha256: str | None = None, sync: bool = True) -> str:
        """Upload unless present; an object is durable once its PUT succeeds (`sync` unused).

        One conditional PUT (`If-None-Match: *`), not a HEAD and then a PUT: each boto3 request
        costs ~2 ms of CPU, and the crawl stores millions of blobs (bench/blobstore_s3.py). A
        server that ignores the condition overwrites the key with the same bytes, which is
        harmless for content-addressed keys.
        """
        from botocore.exceptions import ClientError

        digest = sha256_hex(data)
        if sha256 is not None and sha256 != digest:
            raise BlobError(f"content hash {digest} does not match the given {sha256}")
        args = {
            "Bucket": self.bucket,
            "Key": self._key(digest),
            "Body": data,
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(digest)).decode(),
            "ContentType": "application/octet-stream",
        }
        try:
            self.client.put_object(IfNoneMatch="*", **args)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in {"PreconditionFailed", "412"}:
                return digest  # already stored
            if code != "ConditionalRequestConflict":
                raise BlobError(f"upload of {digest} to {self.url} failed: {e}") from None
            # A concurrent upload of the same key: ours carries the same bytes, so land it.
            try:
                self.client.put_object(**args)
            except Exception as e2:
                raise BlobError(f"upload of {digest} to {self.url} failed: {e2}") from None
        except Exception as e:
            raise BlobError(f"upload of {digest} to {self.url} failed: {e}") from None
        return digest

    def get(self, sha256: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256))
            data = obj["Body"].read()
        except ClientError as e:
            raise BlobError(f"blob {sha256} not readable from {self.url}: {e}") from None
        except BotoCoreError as e:  # no credentials, endpoint down: one line, not a traceback
            raise BlobStoreUnreachable(f"blob store {self.url} unusable: {e}") from None
        if sha256_hex(data) != sha256:
            raise BlobError(f"blob {sha256} in {self.url} is corrupt (hash mismatch)")
        return data

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise BlobError(f"cannot check blob {sha256} in {self.url}: {e}") from None
        except BotoCoreError as e:
            raise BlobStoreUnreachable(f"blob store {self.url} unusable: {e}") from None

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

    def sync(self) -> None:
        """Nothing to do: every put is durable when it returns."""

    def check(self) -> None:
        """Fail fast when the endpoint does not answer at all (refused, hung, unresolvable):
        one HEAD of the bucket, one try, short timeouts. An HTTP error answer (no bucket yet,
        no ListBucket right) means it is reachable: the requests that need more say so."""
        from botocore.exceptions import BotoCoreError, ClientError

        quick = self._client(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
        )
        try:
            quick.head_bucket(Bucket=self.bucket)
        except ClientError:
            return  # an HTTP answer, whatever it says: the endpoint is there
        except BotoCoreError as e:
            raise BlobStoreUnreachable(f"blob store {self.url} unusable: {e}") from None

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)


def _syncfs(path: Path) -> bool:
    """Flush the filesystem holding `path` (Linux syncfs(2)); False where the call is missing."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc = lib if hasattr(lib, "syncfs") else False
        except OSError:
            _libc = False
    if not _libc:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise BlobError(f"syncfs of {path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)
    return True


# libc once loaded, False where it has no syncfs, None before the first try.
_libc: ctypes.CDLL | Literal[False] | None = None


def open_store(url: str, settings: Settings | None = None) -> FileStore | S3Store:
    """The blob store for a URL: `file:///abs/dir`, `file://rel/dir` or `s3://bucket/prefix`."""
    if url.startswith("file://"):
        return FileStore(url[len("file://") :])
    if url.startswith("s3://"):
        return S3Store(url, settings or Settings())
    raise BlobError(f"unsupported blob store URL {url!r} (use file:// or s3://)")
