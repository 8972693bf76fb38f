"""Turn one stored original into the exported JPEG: deterministic, optional shorter-side resize."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.settings import Settings

# Byte-for-byte reproducibility: the output depends only on the original's bytes and (resize,
# quality): fixed resampling filter, fixed JPEG settings (baseline, 4:2:0, no optimisation pass, no
# metadata except the ICC profile, which carries the colours' meaning), no timestamps. Originals are
# only read. With resize=0 an upright RGB or greyscale JPEG is copied verbatim (lossless, fastest);
# anything else is re-encoded. With resize=S the shorter side becomes exactly S (the AlexNet paper's
# preprocessing; smaller images are enlarged), decoding JPEGs at a reduced DCT scale first when that
# still leaves at least S pixels, which is most of the speed.


class EncodeError(ValueError):
    """The original could not be turned into a JPEG; the message is the reason."""


def target_size(width: int, height: int, resize: int) -> tuple[int, int]:
    if not resize or min(width, height) == resize:
        return width, height
    scale = resize / min(width, height)
    if width <= height:
        return resize, max(1, round(height * scale))
    return max(1, round(width * scale)), resize


def encode(data: bytes, resize: int = 0, quality: int = 90) -> tuple[bytes, int, int]:
    """(jpeg bytes, width, height) of the exported image; raises EncodeError."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            w0, h0 = im.size
            upright = im.getexif().get(0x0112, 1) in (None, 1)
            if not resize and im.format == "JPEG" and im.mode in ("RGB", "L") and upright:
                return data, w0, h0
            if resize and im.format == "JPEG":
                # Reduced-scale decode: the largest DCT scaling that keeps both sides >= the target
                # (the shorter side is the same before and after an EXIF rotation).
                need = target_size(w0, h0, resize)
                if need[0] < w0 and need[1] < h0:
                    im.draft("RGB", need)
            # An ICC profile describes RGB pixels only if the original was RGB.
            icc = im.info.get("icc_profile") if im.mode in ("RGB", "RGBA") else None
            pic: Image.Image = ImageOps.exif_transpose(im)
            if pic.mode in ("RGBA", "LA", "PA") or (pic.mode == "P" and "transparency" in pic.info):
                # Transparent pixels over white, as a browser shows them, not their hidden colour.
                rgba = pic.convert("RGBA")
                canvas = Image.new("RGB", rgba.size, (255, 255, 255))
                canvas.paste(rgba, mask=rgba.getchannel("A"))
                pic = canvas
            elif pic.mode != "RGB":
                pic = pic.convert("RGB")
            if resize:
                size = target_size(pic.width, pic.height, resize)
                if size != pic.size:
                    pic = pic.resize(size, Image.Resampling.BICUBIC)
            out = io.BytesIO()
            pic.save(
                out,
                "JPEG",
                quality=quality,
                optimize=False,
                progressive=False,
                subsampling="4:2:0",
                icc_profile=icc,
            )
            return out.getvalue(), pic.width, pic.height
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise EncodeError(f"unreadable: {type(e).__name__}: {e}"[:300]) from None


# -- worker processes -----------------------------------------------------------------------------
# A worker reads the original, encodes it, writes the staged file and hashes it; the parent gets
# back only a small record, so the parent's work per image is a row update, whatever the size.
_store: Any = None

Task = tuple[int, str, str, int, int]  # position, image sha256, staged path, resize, quality
Result = tuple[int, str | None, int, int, int, str | None]  # position, sha256, bytes, w, h, error


def init_worker(settings: Settings) -> None:
    global _store
    from imnet.core.blobstore import open_store

    _store = open_store(settings.resolved_blob_url(), settings)


def work(task: tuple[str, int, int]) -> tuple[str, bytes | None, int, int, str | None]:
    """(sha256, jpeg or None, width, height, error) for one image; never raises on bad input."""
    from imnet.core.blobstore import BlobError, BlobStoreUnreachable

    sha, resize, quality = task
    try:
        data = _store.get(sha)
    except BlobStoreUnreachable:
        raise  # stops the export (staged files are kept): leaving out every image is no export
    except BlobError as e:
        return sha, None, 0, 0, f"blob: {e}"[:300]
    try:
        jpeg, w, h = encode(data, resize, quality)
    except EncodeError as e:
        return sha, None, 0, 0, str(e)
    return sha, jpeg, w, h, None


def stage(task: Task) -> Result:
    """Encode one planned item into its staged file (written whole, then renamed into place, so
    a killed worker never leaves a truncated file under the final name)."""
    import hashlib
    import os

    pos, sha, path, resize, quality = task
    sha, jpeg, w, h, err = work((sha, resize, quality))
    if jpeg is None:
        return pos, None, 0, 0, 0, err
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(jpeg)
        os.replace(tmp, path)
    except FileNotFoundError:  # first file of its folder
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(jpeg)
        os.replace(tmp, path)
    return pos, hashlib.sha256(jpeg).hexdigest(), len(jpeg), w, h, None


def stage_many(tasks: list[Task]) -> list[Result]:
    return [stage(t) for t in tasks]


def spawn_pool(settings: Settings, workers: int) -> Any:
    """Spawned worker processes (nothing of this process, such as a database connection or a
    thread, is inherited), each with its own blob store."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=init_worker, initargs=(settings,)
    )


def stage_all(
    settings: Settings, tasks: Iterator[Task], workers: int, pool: Any = None, chunk: int = 16
) -> Iterator[list[Result]]:
    """Staged results, a chunk at a time, in task order. Tasks are taken from the iterator only
    as workers free up (a few chunks per worker in flight), so a keyset-paged task source keeps
    the memory bounded whatever the number of images. One worker runs inline here."""
    if pool is None:
        init_worker(settings)
        for batch in _batched(tasks, chunk):
            yield stage_many(batch)
        return
    from collections import deque

    inflight: deque[Any] = deque()
    for batch in _batched(tasks, chunk):
        inflight.append(pool.submit(stage_many, batch))
        while len(inflight) > 3 * workers:
            yield inflight.popleft().result()
    while inflight:
        yield inflight.popleft().result()


def _batched(it: Iterator[Task], n: int) -> Iterator[list[Task]]:
    batch: list[Task] = []
    for t in it:
        batch.append(t)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
