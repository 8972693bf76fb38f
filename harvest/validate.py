"""Image validation: format from magic bytes, header size checks, then a full Pillow decode."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

# Pillow format names, keyed by what the bytes start with (never trust Content-Type).
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


_quiet = False


class Rejected(Exception):
    """The content is not an acceptable image; `code` is the candidate's reason code."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass
class ImageInfo:
    sha256: str
    format: str
    width: int
    height: int
    nbytes: int


def sniff(head: bytes) -> str | None:
    """The image format the first bytes announce (Pillow's name), or None when not an image."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def validate_image(data: bytes, max_pixels: int, min_side: int, digest: bool = True) -> ImageInfo:
    """Check and fully decode `data`; returns its ImageInfo or raises Rejected with a reason.

    The pixel count is checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing. The full decode (not just the header) catches truncated and corrupt files.
    Runs in worker threads/processes: it takes and returns only plain data. With digest=False
    the sha256 is left empty for a caller that hashes anyway (the blob store does).
    """
    from PIL import Image

    global _quiet
    if not _quiet:
        import warnings

        # Our own pixel check below reports bombs; Pillow's warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        _quiet = True
    fmt = sniff(data[:16])
    if fmt is None:
        raise Rejected("not_image", f"starts with {data[:12]!r}")
    # Pillow's guard is process-wide and raises at open() above twice its value; our check below
    # is the limit. It is only ever raised, so Pillow never refuses what the setting allows:
    # lowering it would also make other stages in this process (export, training) refuse images.
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise Rejected("bomb", f"{w}x{h} exceeds {max_pixels} pixels")
            if min(w, h) < min_side:
                raise Rejected("too_small", f"{w}x{h}, minimum side {min_side}")
            im.load()
    except Rejected:
        raise
    except Image.DecompressionBombError as e:
        raise Rejected("bomb", str(e)[:200]) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        MemoryError,
        Image.UnidentifiedImageError,
    ) as e:
        raise Rejected("decode_error", f"{type(e).__name__}: {str(e)[:200]}") from None
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest() if digest else "",
        format=fmt.lower(),
        width=w,
        height=h,
        nbytes=len(data),
    )


def validate_or_reason(
    data: bytes, max_pixels: int, min_side: int, digest: bool = True
) -> ImageInfo | tuple[str, str]:
    """validate_image for executors: returns (code, detail) instead of raising across processes."""
    try:
        return validate_image(data, max_pixels, min_side, digest)
    except Rejected as e:
        return (e.code, e.detail)
