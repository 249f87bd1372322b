"""Image folders for the data tests: random JPEGs of assorted sizes per class, and broken files."""

import io
import os

import numpy as np
from PIL import Image


def noise_image(rng, width, height, mode="RGB"):
    channels = {"RGB": 3, "L": None, "RGBA": 4}[mode]
    shape = (height, width) if channels is None else (height, width, channels)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


def make_folder(root, counts, *, seed=0, sizes=((40, 30), (30, 52), (47, 47), (64, 33))):
    """ROOT/<class>/<k>.jpg random JPEGs of assorted (non-square) sizes; returns root."""
    rng = np.random.default_rng(seed)
    for c, (name, count) in enumerate(counts.items()):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for k in range(count):
            w, h = sizes[(k + c) % len(sizes)]
            noise_image(rng, w, h).save(os.path.join(root, name, f"{k:03d}.jpg"), quality=90)
    return str(root)


def add_bad_files(root):
    good = io.BytesIO()
    noise_image(np.random.default_rng(9), 60, 40).save(good, format="JPEG")
    with open(os.path.join(root, "a", "truncated.jpg"), "wb") as f:
        f.write(good.getvalue()[: len(good.getvalue()) // 2])
    with open(os.path.join(root, "b", "garbage.jpg"), "wb") as f:
        f.write(b"this is not an image" * 10)
    open(os.path.join(root, "b", "empty.png"), "wb").close()
    return {
        os.path.join(root, "a", "truncated.jpg"),
        os.path.join(root, "b", "garbage.jpg"),
        os.path.join(root, "b", "empty.png"),
    }
