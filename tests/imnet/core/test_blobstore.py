"""Blob store on file:// and on a real S3-compatible server (SeaweedFS) over loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imnet.core.blobstore import BlobError, FileStore, key_for, open_store, sha256_hex
from imnet.core.settings import Settings


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'blobs'}")
    srv = request.getfixturevalue("s3_server")
    bucket = srv.create_bucket()
    settings = Settings(
        s3_endpoint_url=srv.endpoint, s3_access_key=srv.access_key, s3_secret_key=srv.secret_key
    )
    return open_store(f"s3://{bucket}/imnet/blobs", settings)


def test_put_get_exists_iter(store) -> None:  # type: ignore[no-untyped-def]
    datas = [os.urandom(1000 + i) for i in range(5)]
    keys = [store.put(d) for d in datas]
    assert keys == [sha256_hex(d) for d in datas]
    assert store.put(datas[0]) == keys[0]  # idempotent
    for k, d in zip(keys, datas, strict=True):
        assert store.exists(k)
        assert store.get(k) == d
    assert sorted(store.iter()) == sorted(keys)
    missing = sha256_hex(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(BlobError, match="missing|not readable"):
        store.get(missing)
    store.delete(keys[0])
    assert not store.exists(keys[0])


def test_put_refuses_wrong_hash(store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlobError, match="does not match"):
        store.put(b"abc", sha256=sha256_hex(b"abd"))


def test_key_layout() -> None:
    h = sha256_hex(b"x")
    assert key_for(h) == f"{h[:2]}/{h[2:4]}/{h}"
    with pytest.raises(BlobError):
        key_for("../../etc/passwd")


def test_file_interrupted_write_leaves_nothing_visible(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = FileStore(tmp_path)
    data = os.urandom(4096)

    def boom(fd: int) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        store.put(data)
    monkeypatch.undo()
    assert not store.exists(sha256_hex(data))
    assert list(store.iter()) == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temp file left behind
    assert store.put(data) == sha256_hex(data)  # and a retry succeeds


def test_deferred_sync_flushes_each_batch(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """put(sync=False) defers durability to sync(); the fallback fsyncs every file and dir."""
    import imnet.core.blobstore as bs

    store = FileStore(tmp_path)
    datas = [os.urandom(2048 + i) for i in range(3)]
    keys = [store.put(d, sync=False) for d in datas]
    assert [store.get(k) for k in keys] == datas  # readable at once, before the sync

    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(bs, "_syncfs", lambda path: False)  # take the portable path
    monkeypatch.setattr(os, "fsync", record)
    store.sync()
    files = {str(store.path(k)) for k in keys}
    dirs = {str(store.path(k).parent) for k in keys} | {
        str(store.path(k).parent.parent) for k in keys
    }
    assert files | dirs == set(synced)
    synced.clear()
    store.sync()  # nothing new since the last sync: nothing to do
    assert synced == []


def test_syncfs_path_runs_on_linux(tmp_path: Path) -> None:
    import sys

    import imnet.core.blobstore as bs

    store = FileStore(tmp_path)
    store.put(b"x" * 100, sync=False)
    store.sync()
    assert store._unsynced == []
    assert bs._syncfs(tmp_path) is sys.platform.startswith("linux")


def test_torn_blob_is_rewritten(tmp_path: Path) -> None:
    """A file cut short (a power cut before its sync) does not count as already stored."""
    store = FileStore(tmp_path)
    data = os.urandom(5000)
    key = store.put(data)
    store.path(key).write_bytes(data[:100])
    assert store.put(data) == key
    assert store.get(key) == data


def test_s3_interrupted_upload_leaves_no_object(s3_server) -> None:  # type: ignore[no-untyped-def]
    """A PUT cut off mid-body (client dies) must not leave a partial object under the key."""
    import socket

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    bucket = s3_server.create_bucket()
    settings = Settings(
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
    )
    store = open_store(f"s3://{bucket}/p", settings)
    data = os.urandom(256 * 1024)
    sha = sha256_hex(data)
    url = f"{s3_server.endpoint}/{bucket}/p/{key_for(sha)}"
    req = AWSRequest(
        method="PUT",
        url=url,
        data=data,
        headers={"Content-Length": str(len(data)), "x-amz-content-sha256": sha},
    )
    S3SigV4Auth(
        Credentials(s3_server.access_key, s3_server.secret_key), "s3", "us-east-1"
    ).add_auth(req)
    head = f"PUT /{bucket}/p/{key_for(sha)} HTTP/1.1\r\nHost: 127.0.0.1:{s3_server.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "host")
    with socket.create_connection(("127.0.0.1", s3_server.port)) as s:
        s.sendall(head.encode() + b"\r\n" + data[: len(data) // 3])
        s.shutdown(socket.SHUT_WR)  # the uploader dies a third of the way through
        s.settimeout(10)
        try:
            s.recv(1024)
        except OSError:
            pass
    assert not store.exists(sha)
    assert list(store.iter()) == []
    assert store.put(data) == sha and store.get(sha) == data


def test_s3_refuses_unknown_keys(s3_server) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_server.create_bucket()
    bad = Settings(
        s3_endpoint_url=s3_server.endpoint, s3_access_key="nobody", s3_secret_key="wrong"
    )
    with pytest.raises(BlobError):
        open_store(f"s3://{bucket}", bad).put(b"data")


def test_open_store_rejects_unknown_scheme() -> None:
    with pytest.raises(BlobError, match="unsupported"):
        open_store("ftp://x/y")


def test_s3_server_takes_a_bucket_per_test(s3_server) -> None:  # type: ignore[no-untyped-def]
    """The tests' SeaweedFS gives every bucket volumes of its own: with its default sizing (free
    disk / 1 GiB) the 16th bucket's first PUT failed on a disk with 16 GiB free."""
    settings = Settings(
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
    )
    for i in range(40):
        data = f"bucket {i}".encode()
        store = open_store(f"s3://{s3_server.create_bucket()}/p", settings)
        assert store.get(store.put(data)) == data
