"""Clipboard image conversion: every PNG variant a clipboard may carry decodes to the right
pixels (Pillow), the pure-Python fallback agrees where it can and refuses the rest cleanly, and
oversized or corrupt images are refused before decoding.

The PNGs are written here by a small independent encoder (colour types, 1/8/16-bit depths,
Adam7 interlacing), not by Pillow, so the decoder is not checked against itself."""

from __future__ import annotations

import builtins
import struct
import zlib
from typing import Any

import pytest

from concierge.actors.clipboard import images

W, H = 13, 7  # odd sizes exercise partial bytes (1-bit rows) and every Adam7 pass
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def pack_row(samples: list[int], depth: int) -> bytes:
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        for j, s in enumerate(samples[i : i + per]):
            byte |= s << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


def write_png(grid: list[list[list[int]]], colour: int, depth: int, *, interlace: bool, extra: bytes = b"") -> bytes:
    """``grid[y][x]`` = the samples of one pixel for ``colour`` at ``depth`` bits."""
    height, width = len(grid), len(grid[0])
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            for y in range(y0, height, dy):
                xs = range(x0, width, dx)
                if xs:
                    raw += b"\0" + pack_row([s for x in xs for s in grid[y][x]], depth)
    else:
        raw = b"".join(b"\0" + pack_row([s for px in row for s in px], depth) for row in grid)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, int(interlace))
    return images.PNG_SIG + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def rgba_rows(grid: list[list[tuple[int, int, int, int]]]) -> list[bytes]:
    return [bytes(v for px in row for v in px) for row in grid]


def variants() -> list[Any]:
    rgb = [[(x * 19 % 256, y * 37 % 256, (x * y * 7) % 256) for x in range(W)] for y in range(H)]
    out = []
    for interlace in (False, True):
        tag = "interlaced" if interlace else "plain"
        expected = [[(*px, 255) for px in row] for row in rgb]
        out.append(pytest.param(write_png([[list(p) for p in r] for r in rgb], 2, 8, interlace=interlace),
                                expected, id=f"rgb8-{tag}"))  # fmt: skip
        wide = [[[v * 257 for v in px] for px in row] for row in rgb]  # 16-bit: high byte = the 8-bit value
        out.append(pytest.param(write_png(wide, 2, 16, interlace=interlace), expected, id=f"rgb16-{tag}"))
        bits = [[(x + y) % 2 for x in range(W)] for y in range(H)]
        mono = [[(255 * b, 255 * b, 255 * b, 255) for b in row] for row in bits]
        out.append(pytest.param(write_png([[[b] for b in r] for r in bits], 0, 1, interlace=interlace),
                                mono, id=f"grey1-{tag}"))  # fmt: skip
        palette = [(255, 0, 0), (0, 128, 0), (0, 0, 255), (250, 250, 10)]
        index = [[(x * 3 + y) % 4 for x in range(W)] for y in range(H)]
        plte = chunk(b"PLTE", bytes(v for p in palette for v in p)) + chunk(b"tRNS", bytes([255, 128, 0, 255]))
        alpha = (255, 128, 0, 255)
        pal = [[(*palette[i], alpha[i]) for i in row] for row in index]
        out.append(pytest.param(write_png([[[i] for i in r] for r in index], 3, 8, interlace=interlace, extra=plte),
                                pal, id=f"palette8-{tag}"))  # fmt: skip
        out.append(pytest.param(write_png([[[i] for i in r] for r in index], 3, 2, interlace=interlace, extra=plte),
                                pal, id=f"palette2-{tag}"))  # fmt: skip
    return out


@pytest.mark.parametrize(("png", "expected"), variants())
def test_every_png_variant_decodes_to_its_pixels(png: bytes, expected: list[list[tuple[int, ...]]]) -> None:
    pytest.importorskip("PIL")  # a dev dependency: always there in CI
    width, height, rows = images.decode_png(png)
    assert (width, height) == (W, H)
    assert rows == rgba_rows(expected)  # type: ignore[arg-type]
    bmp = images.png_to_bmp(png)
    assert bmp[:2] == b"BM" and images.decode_png(images.bmp_to_png(bmp))[2] == rows


@pytest.mark.parametrize(("png", "expected"), variants())
def test_the_pure_fallback_agrees_or_refuses_cleanly(png: bytes, expected: list[list[tuple[int, ...]]]) -> None:
    depth, interlace = png[24], png[28]
    if depth == 8 and not interlace:
        assert images.decode_png_pure(png)[2] == rgba_rows(expected)  # type: ignore[arg-type]
    else:
        with pytest.raises(images.ImageError, match="unsupported PNG"):
            images.decode_png_pure(png)


def test_without_pillow_the_fallback_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pillow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("PIL", "concierge.actors.clipboard.images_pil")):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pillow)
    png = variants()[0].values[0]
    assert images.decode_png(png)[:2] == (W, H)


def test_huge_and_corrupt_images_are_refused_before_decoding() -> None:
    pytest.importorskip("PIL")
    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0)  # 81 Mpx: over our 64, under Pillow's warning
    bomb = images.PNG_SIG + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(images.ImageError, match="refused"):
        images.decode_png(bomb)
    with pytest.raises(images.ImageError):
        images.decode_png(images.PNG_SIG + b"garbage" * 10)
