"""Magic-byte sniffing and full-decode validation."""

from __future__ import annotations

import hashlib

import pytest

from harvest.validate import Rejected, sniff, validate_image, validate_or_reason
from tests.harvest.loopweb import bomb_png, encode, jpeg

LIMIT = 89_478_485


@pytest.mark.parametrize(
    "fmt,name",
    [
        ("JPEG", "JPEG"),
        ("PNG", "PNG"),
        ("WEBP", "WEBP"),
        ("GIF", "GIF"),
        ("BMP", "BMP"),
        ("TIFF", "TIFF"),
    ],
)
def test_sniff_real_encodings(fmt: str, name: str) -> None:
    assert sniff(encode(fmt, 40, 40)[:16]) == name


def test_sniff_refuses_non_images() -> None:
    assert (
        sniff(b"<!DOCTYPE html>") is None and sniff(b"") is None and sniff(b"RIFF1234WAVE") is None
    )


def test_valid_jpeg_info() -> None:
    data = jpeg(320, 240)
    info = validate_image(data, LIMIT, 32)
    assert (info.format, info.width, info.height, info.nbytes) == ("jpeg", 320, 240, len(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "data,code",
    [
        (b"<html><body>not an image</body></html>", "not_image"),
        (encode("GIF", 1, 1), "too_small"),
        (bomb_png(), "bomb"),
        (jpeg(300, 200)[:3000], "decode_error"),
        (encode("PNG", 64, 64)[:60], "decode_error"),
    ],
)
def test_rejections(data: bytes, code: str) -> None:
    with pytest.raises(Rejected) as e:
        validate_image(data, LIMIT, 32)
    assert e.value.code == code
    assert validate_or_reason(data, LIMIT, 32)[0] == code


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(Rejected) as e:
        validate_image(jpeg(320, 240), 320 * 240 - 1, 32)
    assert e.value.code == "bomb"
    # a small crawl limit must not lower Pillow's process-wide guard (export and training
    # decode in the same process); a larger one raises it so Pillow accepts what we allow
    assert Image.MAX_IMAGE_PIXELS == 1_000_000
    big = jpeg(1500, 1400)  # 2.1 M pixels: over twice Pillow's limit as set above
    assert validate_image(big, 3_000_000, 32).width == 1500
    assert Image.MAX_IMAGE_PIXELS == 3_000_000
