"""Images as people look at them: [-1, 1] floats quantised to uint8, and sample grids saved as PNG.

`to_uint8` is the one quantisation of the project: PNG grids, the FID Inception's input and the
digits classifier's input all go through it, so every consumer sees the pixels an image file would
hold.
"""

from __future__ import annotations

import io
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from biggan.runtime import storage


def to_uint8(images):
    """[-1, 1] floats -> uint8 as an image file would store them (round half up, clip); jit-able."""
    return jnp.clip(
        jnp.floor((jnp.asarray(images).astype(jnp.float32) + 1.0) * 127.5 + 0.5), 0, 255
    ).astype(jnp.uint8)


def image_grid(images, ncol: int, pad: int = 2) -> np.ndarray:
    """(N, H, W, 3) in [-1, 1] -> one uint8 grid image with `ncol` columns and white padding."""
    imgs = np.asarray(to_uint8(images))
    n, h, w, c = imgs.shape
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i, im in enumerate(imgs):
        r, col = divmod(i, ncol)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + col * (w + pad) : pad + col * (w + pad) + w,
        ] = im
    return grid


def save_grid(images, path, ncol: int, scale: int = 1) -> None:
    """Write `image_grid(images, ncol)` as a PNG, enlarged `scale` times (nearest neighbour)."""
    img = Image.fromarray(image_grid(images, ncol))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(
        buffer,
        format=Image.registered_extensions().get(
            os.path.splitext(os.fspath(path))[1].lower(), "PNG"
        ),
    )
    storage.write_bytes(path, buffer.getvalue())  # local or gs://
