"""PNG decoding with Pillow (imported only when this module is: at the first conversion).

Raises ImportError when Pillow is absent (the caller falls back to the pure decoder) and
:class:`ImageError` for anything Pillow cannot read or that is too large, checked from the
header before any pixel is decoded.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from concierge.actors.clipboard.images import MAX_PIXELS, ImageError


def decode_png_pil(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGBA rows top-down) of any PNG Pillow reads."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            width, height = img.size
            if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
                raise ImageError(f"PNG of {width}x{height} pixels refused")
            img.load()
            rgba = img.convert("RGBA").tobytes()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(f"PNG not readable: {err}") from None
    stride = width * 4
    return width, height, [rgba[y * stride : (y + 1) * stride] for y in range(height)]
