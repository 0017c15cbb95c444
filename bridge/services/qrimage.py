"""Reading a receiving QR code (收款码) out of an uploaded picture: zxing-cpp over Pillow, both optional.

Installed with `pip install 'paybridge[qr-upload]'`; without them `AVAILABLE` is False and the
dashboard asks for the pasted URL instead.
"""

from __future__ import annotations

import io

from bridge.errors import BadRequest

__all__ = ["AVAILABLE", "MAX_BYTES", "MAX_PIXELS", "decode_qr"]

MAX_BYTES = 4 * 1024 * 1024  # a phone screenshot fits; a decompression bomb does not get far
MAX_PIXELS = 4096 * 4096

try:
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    AVAILABLE = True
except ImportError:  # the optional extra is not installed
    AVAILABLE = False


def decode_qr(data: bytes) -> str:
    """The text of the one QR code in a PNG/JPEG/WebP picture; BadRequest if there is none or several."""
    if not AVAILABLE:
        raise BadRequest("QR pictures cannot be read here (install paybridge[qr-upload]); paste the URL", "qr_upload")
    if not data:
        raise BadRequest("choose a picture of the QR code", "invalid_image")
    if len(data) > MAX_BYTES:
        raise BadRequest(f"the picture is larger than {MAX_BYTES // 1024 // 1024} MiB", "invalid_image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise BadRequest("the picture has too many pixels (at most 4096 x 4096)", "invalid_image")
            img.load()
            codes = zxingcpp.read_barcodes(
                img.convert("L"), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        raise BadRequest("this file is not a picture we can read (PNG, JPEG or WebP)", "invalid_image") from None
    texts = sorted({c.text for c in codes if c.text})
    if not texts:
        raise BadRequest("no QR code found in the picture; crop it closer or paste the URL", "no_qr_found")
    if len(texts) > 1:
        raise BadRequest("the picture holds several QR codes; crop it to one", "several_qr_codes")
    return texts[0]
