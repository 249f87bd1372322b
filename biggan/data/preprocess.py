"""Image preprocessing as in the paper: centre crop to a square, area resize, uint8 storage.

Host side (numpy / PIL): `load_image_file` and `crop_and_resize` turn any decodable image into a
uint8 ``(resolution, resolution, 3)`` RGB array. Device side (jax): `to_model_range` maps a uint8
batch to float in [-1, 1].

Resize filter: PIL ``Image.BOX`` when shrinking. BOX is an exact area-averaging resampler: each
output pixel is the mean of the input area it covers, fractional pixels weighted by overlap
(the same as TF's ``resize_area`` and OpenCV's ``INTER_AREA`` for shrinking). When the square crop
is smaller than the target (upscaling: area averaging degenerates to nearest neighbour there)
bilinear is used instead.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib

import jax.numpy as jnp
import numpy as np
from PIL import Image

from biggan.runtime import storage

# Errors that mean "this file is not a (complete) image": the example is skipped, counted and
# logged rather than ending the epoch. Our own bugs (TypeError, ...) are deliberately not here.
IMAGE_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

# Colour that transparent pixels are composited over when an image with alpha becomes RGB.
ALPHA_BACKGROUND = (255, 255, 255)


class CorruptImageError(Exception):
    """An example could not be decoded; the pipeline skips it (counted and logged)."""

    def __init__(self, where: str, cause: BaseException | str):
        super().__init__(f"{where}: {cause}")
        self.where = where
        self.cause = cause


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred square with side min(width, height).

    An odd surplus puts the extra pixel on the right/bottom (floor division), as
    BigGAN-PyTorch's CenterCropLongEdge and torchvision's CenterCrop do up to rounding.
    """
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 'RGB'. Alpha is composited over `ALPHA_BACKGROUND`; 16-bit is scaled to
    8-bit."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in ("RGBA", "LA", "La", "RGBa", "PA", "RGBX") or "A" in mode:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        # 16/32-bit integer or float grey (e.g. 16-bit PNG): PIL's own convert() clips instead of
        # scaling, which would turn most 16-bit images white.
        values = np.asarray(image)
        if mode.startswith("I;16") or (mode == "I" and values.size and values.max() > 255):
            values = values.astype(np.float64) / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    # 'L', '1', 'CMYK' (PIL undoes Adobe's inverted CMYK), 'YCbCr', 'LAB', 'HSV'.
    return image.convert("RGB")


def crop_and_resize(image: Image.Image, resolution: int) -> np.ndarray:
    """Centre crop along the long edge to a square, then area-resize to ``resolution``.

    Returns a uint8 ``(resolution, resolution, 3)`` RGB array.
    """
    image = to_rgb(image)
    box = center_crop_box(*image.size)
    side = box[2] - box[0]
    if side == resolution:
        out = image.crop(box) if image.size != (side, side) else image
    elif side > resolution:
        # resize(box=...) reads only the crop; with BOX no filter tap leaves the box, so this is
        # identical to crop() followed by resize() (checked in tests/data/test_data.py) without the
        # copy.
        out = image.resize((resolution, resolution), Image.BOX, box=box)
    else:
        # Bilinear taps would reach past the box edges (pixels outside the crop): crop first.
        out = image.crop(box).resize((resolution, resolution), Image.BILINEAR)
    array = np.asarray(out, dtype=np.uint8)
    if array.shape != (resolution, resolution, 3):  # defensive: PIL corner cases
        raise ValueError(
            f"crop_and_resize produced shape {array.shape}, expected {(resolution, resolution, 3)}"
        )
    return array


def load_image_file(
    path: str | os.PathLike, resolution: int, *, fast_jpeg: bool = False
) -> np.ndarray:
    """Decode one image file to uint8 ``(resolution, resolution, 3)``; raises `CorruptImageError`.

    fast_jpeg: let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT-domain downscaling) as long as
    the short side stays >= resolution. Several times faster on large JPEGs, but pixels differ
    slightly from the exact full-decode + area resize (off by default).
    """
    try:
        # Object storage: read the whole file, decode from memory.
        with Image.open(
            io.BytesIO(storage.read_bytes(path)) if storage.is_remote(path) else path
        ) as image:
            if fast_jpeg and image.format == "JPEG":
                width, height = image.size
                short = min(width, height)
                if short > resolution:
                    image.draft(
                        "RGB",
                        (
                            math.ceil(width * resolution / short),
                            math.ceil(height * resolution / short),
                        ),
                    )
            image.load()  # decode fully here so truncation errors surface as CorruptImageError
            return crop_and_resize(image, resolution)
    except IMAGE_DECODE_ERRORS as error:
        raise CorruptImageError(os.fspath(path), error) from error


def array_crop_and_resize(array: np.ndarray, resolution: int, where: str = "array") -> np.ndarray:
    """`crop_and_resize` for an already decoded uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W,
    4)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[-1] not in (3, 4))
    ):
        raise CorruptImageError(
            where,
            f"decoded image has shape {array.shape} dtype {array.dtype}; "
            "expected uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)",
        )
    if array.ndim == 3 and array.shape[-1] == 3 and array.shape[:2] == (resolution, resolution):
        return np.ascontiguousarray(array)  # already square at the target size: nothing to do
    return crop_and_resize(Image.fromarray(array), resolution)


def to_model_range(uint8_batch, dtype=jnp.float32):
    """uint8 images in [0, 255] -> ``dtype`` in [-1, 1] (x / 127.5 - 1). Traceable under jit."""
    # XLA turns the division into a multiply by the rounded reciprocal (255 -> 1.0000001): the
    # clip keeps the range exactly [-1, 1]. Computed in float32, then cast to the model dtype.
    x = jnp.asarray(uint8_batch).astype(jnp.float32) / 127.5 - 1.0
    return jnp.clip(x, -1.0, 1.0).astype(dtype)
