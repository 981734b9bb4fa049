"""PNG <-> BMP conversion for owners that offer only one of them.

PNG decoding uses Pillow when it is installed (imported at the first conversion, never at
start): it is ~30x faster than unfiltering in Python (a 1280x720 Paeth-filtered screenshot
takes 1.7 s by hand, so a 4K one would pass the 10 s clipboard read timeout) and reads every
PNG variant (palette, 1-, 2-, 4- and 16-bit, interlaced). Without Pillow the pure-Python decoder
below is the fallback: non-interlaced 8-bit PNG (grey, grey+alpha, RGB, RGBA, palette). BMP
writing and reading (uncompressed 24/32-bit, BI_RGB / BI_BITFIELDS) are pure Python either way
(byte slicing in C, zlib in C). Both paths refuse images over :data:`MAX_PIXELS` before decoding.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIG = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 64 * 1024 * 1024


class ImageError(ValueError):
    """The image cannot be converted (unsupported variant or corrupt)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rgba_rows: list[bytes], alpha: bool) -> bytes:
    """Encode rows of RGBA (alpha=True) or RGB pixels as a PNG with filter 0."""
    raw = b"".join(b"\0" + row for row in rgba_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return PNG_SIG + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def _unfilter(data: bytes, width: int, height: int, bpp: int) -> list[bytearray]:
    stride = width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind = data[pos]
        row = bytearray(data[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if len(row) != stride:
            raise ImageError("truncated PNG data")
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + pred) & 0xFF
        elif kind != 0:
            raise ImageError(f"bad PNG filter {kind}")
        rows.append(row)
        prev = row
    return rows


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode a PNG to (width, height, RGBA rows top-down): Pillow if present, else by hand."""
    if not data.startswith(PNG_SIG):
        raise ImageError("not a PNG")
    try:
        from concierge.actors.clipboard.images_pil import decode_png_pil  # noqa: PLC0415 - Pillow, lazily
    except ImportError:
        return decode_png_pure(data)
    return decode_png_pil(data)


def decode_png_pure(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode a PNG to (width, height, RGBA rows top-down) in Python (the fallback)."""
    if not data.startswith(PNG_SIG):
        raise ImageError("not a PNG")
    pos, idat, palette, trns = 8, [], b"", b""
    width = height = depth = color = interlace = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if depth != 8 or interlace or color not in (0, 2, 3, 4, 6) or width * height > MAX_PIXELS:
        raise ImageError(f"unsupported PNG (depth {depth}, colour {color}, interlace {interlace})")
    bpp = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    rows = _unfilter(zlib.decompress(b"".join(idat)), width, height, bpp)
    out: list[bytes] = []
    for row in rows:
        if color == 6:
            out.append(bytes(row))
        elif color == 2:
            rgba = bytearray(width * 4)
            rgba[0::4], rgba[1::4], rgba[2::4] = row[0::3], row[1::3], row[2::3]
            rgba[3::4] = b"\xff" * width
            out.append(bytes(rgba))
        elif color in (0, 4):
            grey = row[0::bpp]
            rgba = bytearray(width * 4)
            rgba[0::4] = rgba[1::4] = rgba[2::4] = grey
            rgba[3::4] = row[1::2] if color == 4 else b"\xff" * width
            out.append(bytes(rgba))
        else:
            pixels = bytearray()
            for index in row:
                rgb = palette[index * 3 : index * 3 + 3] or b"\0\0\0"
                pixels += rgb + (trns[index : index + 1] or b"\xff")
            out.append(bytes(pixels))
    return width, height, out


def png_to_bmp(data: bytes) -> bytes:
    """PNG -> 32-bit BI_BITFIELDS BMP (BITMAPV4 header, keeps alpha), bottom-up."""
    width, height, rows = decode_png(data)
    body = bytearray()
    for row in reversed(rows):
        bgra = bytearray(len(row))
        bgra[0::4], bgra[1::4], bgra[2::4], bgra[3::4] = row[2::4], row[1::4], row[0::4], row[3::4]
        body += bgra
    dib = (
        struct.pack("<IiiHHIIiiII", 108, width, height, 1, 32, 3, len(body), 2835, 2835, 0, 0)
        + struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)
        + b"BGRs"
        + bytes(48)
    )
    offset = 14 + len(dib)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + dib + bytes(body)


def bmp_to_png(data: bytes) -> bytes:
    """24/32-bit uncompressed BMP (with or without file header) -> PNG."""
    if data.startswith(b"BM"):
        data = data[14:]
    if len(data) < 40:
        raise ImageError("BMP too short")
    size, width, height, _planes, bpp, compression = struct.unpack("<IiiHHI", data[:20])
    if bpp not in (24, 32) or compression not in (0, 3) or width <= 0 or height == 0:
        raise ImageError(f"unsupported BMP ({bpp} bpp, compression {compression})")
    if width * abs(height) > MAX_PIXELS:
        raise ImageError("BMP too large")
    masks = (0x00FF0000, 0x0000FF00, 0x000000FF)
    pixel_start = size
    if compression == 3:
        if size == 40:
            masks = struct.unpack("<III", data[40:52])
            pixel_start = 52
        else:
            masks = struct.unpack("<III", data[40:52])
    if masks != (0x00FF0000, 0x0000FF00, 0x000000FF):
        raise ImageError("unsupported BMP channel masks")
    stride = (width * bpp // 8 + 3) & ~3
    pixels = data[pixel_start:]
    rows: list[bytes] = []
    alpha = bpp == 32
    for y in range(abs(height)):
        src = pixels[y * stride : y * stride + width * bpp // 8]
        if len(src) != width * bpp // 8:
            raise ImageError("truncated BMP")
        step = bpp // 8
        out = bytearray(width * (4 if alpha else 3))
        n = 4 if alpha else 3
        out[0::n], out[1::n], out[2::n] = src[2::step], src[1::step], src[0::step]
        if alpha:
            out[3::4] = src[3::4]
        rows.append(bytes(out))
    if height > 0:
        rows.reverse()
    if alpha and all(row[3::4].count(0) == width for row in rows):
        rows = [_opaque(r) for r in rows]  # alpha channel unused (BI_RGB): make opaque
    return encode_png(width, abs(height), rows, alpha)


def _opaque(row: bytes) -> bytes:
    out = bytearray(row)
    out[3::4] = b"\xff" * (len(row) // 4)
    return bytes(out)


def convert(data: bytes, have: int, want: int) -> bytes:
    """Convert between SPICE image types (2 = PNG, 3 = BMP); identity when equal."""
    if have == want:
        return data
    if (have, want) == (2, 3):
        return png_to_bmp(data)
    if (have, want) == (3, 2):
        return bmp_to_png(data)
    raise ImageError(f"no conversion from type {have} to {want}")
