"""Makes Tests/Fixtures/images/: small PNG files of every colour type and bit depth, and resize cases,
each with what Pillow 10.1.0 (the version the official Vim code pins) makes of it.

Development tool only (needs numpy and pillow==10.1.0); the tests read its committed outputs.
Run from the repository root:  python3 tools/make_image_fixtures.py
"""
import os
import struct
import zlib

import numpy as np
import PIL
from PIL import Image

assert PIL.__version__ == "10.1.0", "the fixtures must come from Pillow 10.1.0"
out = "Tests/Fixtures/images"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(2026)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, colour_type, depth, rows, extra=b"", palette=None, trns=None):
    """A PNG written by hand, so that every colour type and depth (and gamma chunks) can be made."""
    raw = b"".join(b"\x00" + row for row in rows)
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)) + extra
    if palette is not None:
        body += chunk(b"PLTE", palette)
    if trns is not None:
        body += chunk(b"tRNS", trns)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def save(name, data):
    path = f"{out}/{name}.png"
    with open(path, "wb") as f:
        f.write(data)
    rgb = np.array(Image.open(path).convert("RGB"))
    np.save(f"{out}/{name}_rgb.npy", rgb)


w, h = 7, 5
grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
save("grey8", png(w, h, 0, 8, [r.tobytes() for r in grey]))
grey16 = rng.integers(0, 65536, (h, w)).astype(">u2")
grey16[0, :4] = [0, 100, 255, 256]
save("grey16", png(w, h, 0, 16, [r.tobytes() for r in grey16]))
packed = rng.integers(0, 256, (h, 1), dtype=np.uint8)
save("grey1", png(w, h, 0, 1, [r.tobytes() for r in packed]))
save("grey4", png(w, h, 0, 4, [rng.integers(0, 256, 4, dtype=np.uint8).tobytes() for _ in range(h)]))
grey_alpha = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
save("grey_alpha8", png(w, h, 4, 8, [r.tobytes() for r in grey_alpha]))
grey_alpha16 = rng.integers(0, 65536, (h, w, 2)).astype(">u2")
save("grey_alpha16", png(w, h, 4, 16, [r.tobytes() for r in grey_alpha16]))
rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
save("rgb8", png(w, h, 2, 8, [r.tobytes() for r in rgb]))
rgb16 = rng.integers(0, 65536, (h, w, 3)).astype(">u2")
save("rgb16", png(w, h, 2, 16, [r.tobytes() for r in rgb16]))
rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
save("rgba8", png(w, h, 6, 8, [r.tobytes() for r in rgba]))
rgba16 = rng.integers(0, 65536, (h, w, 4)).astype(">u2")
save("rgba16", png(w, h, 6, 16, [r.tobytes() for r in rgba16]))
palette = rng.integers(0, 256, 16 * 3, dtype=np.uint8).tobytes()
indices = rng.integers(0, 16, (h, w), dtype=np.uint8)
save("palette8", png(w, h, 3, 8, [r.tobytes() for r in indices], palette=palette))
save("palette8_transparent", png(w, h, 3, 8, [r.tobytes() for r in indices], palette=palette, trns=bytes(range(0, 160, 10))))
save("rgb8_gamma", png(w, h, 2, 8, [r.tobytes() for r in rgb], extra=chunk(b"gAMA", struct.pack(">I", 100000))))

# Resize cases: a random image through PIL's bicubic resize to larger, smaller and one-axis sizes.
source = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
Image.fromarray(source).save(f"{out}/resize_source.png")
for width, height in [(80, 50), (11, 7), (37, 60), (15, 23), (256, 3), (1, 1)]:
    resized = np.array(Image.fromarray(source).resize((width, height), Image.BICUBIC))
    np.save(f"{out}/resize_{width}x{height}.npy", resized)
print("wrote", len(os.listdir(out)), "files to", out)

# A small ImageNet-layout folder of 32x32 images (the micro model's input size): crops of the fixture
# photos, 3 classes x 8 images, for calibration and evaluation tests.
photos = "Tests/Fixtures/photos"
folder = "Tests/Fixtures/images32"
for label, name in enumerate(["chelsea.jpg", "coffee_progressive.jpg", "rocket.png"]):
    image = Image.open(f"{photos}/{name}").convert("RGB")
    os.makedirs(f"{folder}/class{label}", exist_ok=True)
    for k in range(8):
        left = int(rng.integers(0, image.width - 96))
        top = int(rng.integers(0, image.height - 96))
        crop = image.crop((left, top, left + 96, top + 96)).resize((32, 32), Image.BICUBIC)
        crop.save(f"{folder}/class{label}/{k:02d}.png")
print("wrote", folder)
