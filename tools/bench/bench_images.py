"""Clipboard image conversion: a 1280x720 Paeth-filtered PNG -> BMP, Pillow vs the pure-Python
decoder, and what importing Pillow costs a process (PSS, measured in a fresh interpreter).

    .venv/bin/python tools/bench/bench_images.py [--runs N] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
sys.path[:0] = [SRC, str(Path(__file__).resolve().parent)]

from import_cost import import_cost_mb  # noqa: E402

from concierge.actors.clipboard import images  # noqa: E402


def paeth_png(width: int, height: int, seed: int = 7) -> bytes:
    """An RGB screenshot-like image (flat areas, gradients, noise), every row Paeth-filtered."""
    rng = random.Random(seed)
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            if (x // 160 + y // 90) % 3 == 0:
                row += bytes((x % 256, y % 256, (x + y) % 256))
            elif (x // 160 + y // 90) % 3 == 1:
                row += b"\xf0\xf0\xf0"
            else:
                row += bytes(rng.randrange(256) for _ in range(3))
        rows.append(row)
    raw = bytearray()
    prev = bytearray(width * 3)
    for row in rows:
        out = bytearray(len(row))
        for i in range(len(row)):
            a = row[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[i] = (row[i] - pred) & 0xFF
        raw += b"\x04" + out
        prev = row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return images.PNG_SIG + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def timed(fn, data: bytes, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(data)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    png = paeth_png(width, height)
    from concierge.actors.clipboard.images_pil import decode_png_pil

    assert decode_png_pil(png)[2] == images.decode_png_pure(png)[2], "the two decoders disagree"
    pure = timed(images.decode_png_pure, png, max(1, args.runs // 2))
    pil = timed(decode_png_pil, png, args.runs)
    to_bmp = timed(images.png_to_bmp, png, args.runs)
    extra_mb = import_cost_mb("import concierge.actors.clipboard.images_pil", path=(SRC,))
    slow, fast = statistics.median(pure), statistics.median(pil)
    print(f"{width}x{height} Paeth PNG ({len(png)} bytes), medians:")
    print(f"  decode, pure Python : {slow * 1000:8.1f} ms")
    print(f"  decode, Pillow      : {fast * 1000:8.1f} ms  ({slow / fast:.0f}x)")
    print(f"  png_to_bmp (Pillow) : {statistics.median(to_bmp) * 1000:8.1f} ms")
    print(f"  importing Pillow's PNG decoder: +{extra_mb:.1f} MB PSS (at the first conversion only)")


if __name__ == "__main__":
    main()
