"""The FID Inception-v3 ("inception-2015-12-05" of Heusel et al. 2017, with pytorch-fid's weights)
as pure JAX functions over a params pytree.

This is the network pytorch-fid builds with `fid_inception_v3()` (torchvision's Inception3 with the
TF patches: average pools that ignore padding, a max pool in the last block, 1008 classes) and the
weights it distributes as `pt_inception-2015-12-05-6726825d.pth`. Outputs: pool3 (2048-d, for
FID/KID/PR), logits (1008-way, with the fc bias, as torch's `fc`) and unbiased logits (pool3 @ W, no
bias) — the quantity the original TF Inception Score code and torch-fidelity feed to the softmax.

Input protocol (identical to computing FID with pytorch-fid on PNGs of the samples):
  1. float samples in [-1, 1] are quantised to uint8: floor((x + 1) * 127.5 + 0.5) clipped to [0, 255]
     (uint8 input is used as is; 1-channel input is repeated to RGB);
  2. x = u8 / 255 (torchvision ToTensor);
  3. bilinear resize to 299x299 exactly as torch `F.interpolate(mode='bilinear', align_corners=False)`
     (half-pixel centres, source index clamped at 0, no antialiasing, also when downsampling);
  4. x = 2x - 1, the [-1, 1] range the TF graph expects.

Layout: NHWC activations, HWIO kernels; the batch norms (eps 0.001) are folded into the conv kernels
and biases at load time. Convolutions run at `Precision.HIGHEST` so TPU/GPU do not drop to bf16
passes.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from biggan.evaluation import metrics
from biggan.evaluation.feature_network import FeatureNetwork
from biggan.runtime import storage
from biggan.sampling.images import to_uint8

INCEPTION_NAME = metrics.INCEPTION_NAME  # feature-network name stored in moments files
INCEPTION_INPUT_SIZE = 299
POOL3_DIM = metrics.POOL3_DIM
NUM_LOGITS = 1008
BN_EPS = 1e-3

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
# From pytorch_fid/inception.py (FID_WEIGHTS_URL), pytorch-fid 0.3.0.
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
)
# torch.hub file-name convention: the suffix is the first 8 hex digits of the file's SHA-256.
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV = "BIGGAN_INCEPTION_WEIGHTS"
_PRECISION = lax.Precision.HIGHEST


def default_weights_path() -> str:
    """$BIGGAN_INCEPTION_WEIGHTS, else ~/.cache/biggan/pt_inception-2015-12-05-6726825d.pth."""
    return os.environ.get(WEIGHTS_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "biggan", WEIGHTS_FILENAME
    )


# ----------------------------------------------------------------------------------------------
# Architecture table: every BasicConv2d (conv without bias + BN + ReLU) as torch name -> shape.
# ----------------------------------------------------------------------------------------------


def _conv_table() -> dict[str, tuple[int, int, int, int]]:
    """torch module path of each conv -> (in_channels, out_channels, kernel_h, kernel_w)."""
    table: dict[str, tuple[int, int, int, int]] = {}

    def add(name, cin, cout, kh, kw=None):
        table[name] = (cin, cout, kh, kh if kw is None else kw)

    add("Conv2d_1a_3x3", 3, 32, 3)
    add("Conv2d_2a_3x3", 32, 32, 3)
    add("Conv2d_2b_3x3", 32, 64, 3)
    add("Conv2d_3b_1x1", 64, 80, 1)
    add("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        add(f"{name}.branch1x1", cin, 64, 1)
        add(f"{name}.branch5x5_1", cin, 48, 1)
        add(f"{name}.branch5x5_2", 48, 64, 5)
        add(f"{name}.branch3x3dbl_1", cin, 64, 1)
        add(f"{name}.branch3x3dbl_2", 64, 96, 3)
        add(f"{name}.branch3x3dbl_3", 96, 96, 3)
        add(f"{name}.branch_pool", cin, pool, 1)
    add("Mixed_6a.branch3x3", 288, 384, 3)
    add("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    add("Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    add("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        add(f"{name}.branch1x1", 768, 192, 1)
        add(f"{name}.branch7x7_1", 768, c7, 1)
        add(f"{name}.branch7x7_2", c7, c7, 1, 7)
        add(f"{name}.branch7x7_3", c7, 192, 7, 1)
        add(f"{name}.branch7x7dbl_1", 768, c7, 1)
        add(f"{name}.branch7x7dbl_2", c7, c7, 7, 1)
        add(f"{name}.branch7x7dbl_3", c7, c7, 1, 7)
        add(f"{name}.branch7x7dbl_4", c7, c7, 7, 1)
        add(f"{name}.branch7x7dbl_5", c7, 192, 1, 7)
        add(f"{name}.branch_pool", 768, 192, 1)
    add("Mixed_7a.branch3x3_1", 768, 192, 1)
    add("Mixed_7a.branch3x3_2", 192, 320, 3)
    add("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    add("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    add("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    add("Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        add(f"{name}.branch1x1", cin, 320, 1)
        add(f"{name}.branch3x3_1", cin, 384, 1)
        add(f"{name}.branch3x3_2a", 384, 384, 1, 3)
        add(f"{name}.branch3x3_2b", 384, 384, 3, 1)
        add(f"{name}.branch3x3dbl_1", cin, 448, 1)
        add(f"{name}.branch3x3dbl_2", 448, 384, 3)
        add(f"{name}.branch3x3dbl_3a", 384, 384, 1, 3)
        add(f"{name}.branch3x3dbl_3b", 384, 384, 3, 1)
        add(f"{name}.branch_pool", cin, 192, 1)
    return table


CONV_TABLE = _conv_table()


def expected_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the state dict pytorch-fid's FID Inception loads (`num_batches_tracked`
    aside)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (cin, cout, kh, kw) in CONV_TABLE.items():
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{stat}"] = (cout,)
    shapes["fc.weight"] = (NUM_LOGITS, POOL3_DIM)
    shapes["fc.bias"] = (NUM_LOGITS,)
    return shapes


# Optional keys: BN step counters that newer torch writes and older files lack; unused in eval.
_OPTIONAL_KEY_SUFFIX = ".bn.num_batches_tracked"


def params_from_state_dict(state_dict: Mapping[str, object], dtype=jnp.float32) -> dict:
    """Map a pytorch-fid FID-Inception state dict (torch tensors or arrays) to the JAX params
    pytree.

    Checks the exact key set and every shape; raises ValueError naming missing keys, unexpected keys
    and shape mismatches. Folds each BN into its conv: kernel * gamma/sqrt(var+eps), beta -
    mean*scale.
    """
    expected = expected_state_dict_shapes()
    arrays = {k: _to_numpy(v) for k, v in state_dict.items()}
    optional = {f"{name}{_OPTIONAL_KEY_SUFFIX}" for name in CONV_TABLE}
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected) - optional)
    bad_shapes = sorted(
        f"{k}: got {tuple(arrays[k].shape)}, expected {expected[k]}"
        for k in set(expected) & set(arrays)
        if tuple(arrays[k].shape) != expected[k]
    )
    if missing or unexpected or bad_shapes:

        def show(items):
            return (
                ", ".join(items[:10]) + (f", ... ({len(items)} in all)" if len(items) > 10 else "")
            ) or "none"

        raise ValueError(
            "not a pytorch-fid FID Inception (inception-2015-12-05) state dict: "
            f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}; "
            f"wrong shapes: {show(bad_shapes)}. Use the file {WEIGHTS_FILENAME} from {WEIGHTS_URL} "
            "(torchvision's ImageNet Inception is a different network and gives different numbers)."
        )

    params: dict = {}
    for name in CONV_TABLE:
        weight = arrays[f"{name}.conv.weight"].astype(np.float64)
        gamma, beta, mean, var = (
            arrays[f"{name}.bn.{s}"].astype(np.float64)
            for s in ("weight", "bias", "running_mean", "running_var")
        )
        scale = gamma / np.sqrt(var + BN_EPS)
        kernel = np.transpose(weight, (2, 3, 1, 0)) * scale  # OIHW -> HWIO, BN scale per output
        params[name] = {
            "kernel": jnp.asarray(kernel, dtype),
            "bias": jnp.asarray(beta - mean * scale, dtype),
        }
    params["fc"] = {
        "kernel": jnp.asarray(arrays["fc.weight"].T, dtype),
        "bias": jnp.asarray(arrays["fc.bias"], dtype),
    }
    return params


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_inception_params(
    path: str | os.PathLike | None = None, *, verify_checksum: bool = True
) -> dict:
    """Read pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (default:
    `default_weights_path()`).

    torch is imported here only (the file is a torch pickle). With `verify_checksum`, the file's
    SHA-256 must start with 6726825d (the prefix in its name).
    """
    path = os.fspath(path) if path is not None else default_weights_path()
    if not storage.isfile(path):
        raise FileNotFoundError(
            f"FID Inception weights not found at {path!r}. This machine may be offline, so nothing is "
            f"downloaded: fetch {WEIGHTS_URL} (the file pytorch-fid uses; its SHA-256 starts with "
            f"{WEIGHTS_SHA256_PREFIX}) and put it at {default_weights_path()!r}, or point "
            f"${WEIGHTS_ENV} / --inception_weights at it."
        )
    if verify_checksum:
        digest = _sha256(path)
        if not digest.startswith(WEIGHTS_SHA256_PREFIX):
            raise ValueError(
                f"{path!r} has SHA-256 {digest}, expected one starting with {WEIGHTS_SHA256_PREFIX} "
                f"(the file {WEIGHTS_FILENAME} from {WEIGHTS_URL}); re-download it, or pass "
                "verify_checksum=False for a converted copy you trust."
            )
    import torch  # lazily: torch is only needed to unpickle this one file

    state_dict = torch.load(
        io.BytesIO(storage.read_bytes(path)), map_location="cpu", weights_only=True
    )
    return params_from_state_dict(state_dict)


def _sha256(path: str) -> str:
    return hashlib.sha256(storage.read_bytes(path)).hexdigest()


# ----------------------------------------------------------------------------------------------
# Input protocol.
# ----------------------------------------------------------------------------------------------


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of torch bilinear interpolation, align_corners=False, no antialiasing."""
    scale = np.float32(in_size) / np.float32(out_size)  # torch: input_size / output_size
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))  # torch clamps negative source coordinates to 0
    lo = np.floor(src).astype(np.int64)
    lo = np.minimum(lo, in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo.astype(np.float32)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lo), np.float32(1.0) - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


def resize_bilinear_like_torch(images, size: int):
    """NHWC float resize to (size, size) matching torch F.interpolate(bilinear,
    align_corners=False)."""
    _, height, width, _ = images.shape
    rows = jnp.asarray(_bilinear_matrix(height, size))
    cols = jnp.asarray(_bilinear_matrix(width, size))
    return jnp.einsum("oh,nhwc,pw->nopc", rows, images, cols, precision=_PRECISION)


def preprocess(images):
    """Samples (float in [-1, 1] or uint8, NHWC, 1 or 3 channels) -> the network's 299x299 input."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"Inception input has shape {images.shape}; expected NHWC with 1 or 3 "
            "channels (images in [-1, 1] or uint8)"
        )
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    if images.dtype != jnp.uint8:
        images = to_uint8(images)
    x = images.astype(jnp.float32) / 255.0
    x = resize_bilinear_like_torch(x, INCEPTION_INPUT_SIZE)
    return 2.0 * x - 1.0


# ----------------------------------------------------------------------------------------------
# Network.
# ----------------------------------------------------------------------------------------------


def _conv(params, name, x, stride=1, padding=(0, 0)):
    p = params[name]
    y = lax.conv_general_dilated(
        x,
        p["kernel"],
        (stride, stride),
        [(padding[0], padding[0]), (padding[1], padding[1])],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=_PRECISION,
    )
    return jax.nn.relu(y + p["bias"])


def _max_pool(x, stride, padding=0):
    pad = [(0, 0), (padding, padding), (padding, padding), (0, 0)]
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def _avg_pool_3x3_same_excluding_pad(x):
    # TF's average pool divides by the number of real (unpadded) pixels: count_include_pad=False.
    pad = [(0, 0), (1, 1), (1, 1), (0, 0)]
    total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = lax.reduce_window(ones, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
    return total / count


def _block_a(params, name, x):
    b1 = _conv(params, f"{name}.branch1x1", x)
    b5 = _conv(
        params, f"{name}.branch5x5_2", _conv(params, f"{name}.branch5x5_1", x), padding=(2, 2)
    )
    b3 = _conv(params, f"{name}.branch3x3dbl_1", x)
    b3 = _conv(params, f"{name}.branch3x3dbl_2", b3, padding=(1, 1))
    b3 = _conv(params, f"{name}.branch3x3dbl_3", b3, padding=(1, 1))
    bp = _conv(params, f"{name}.branch_pool", _avg_pool_3x3_same_excluding_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


def _block_b(params, name, x):
    b3 = _conv(params, f"{name}.branch3x3", x, stride=2)
    bd = _conv(params, f"{name}.branch3x3dbl_1", x)
    bd = _conv(params, f"{name}.branch3x3dbl_2", bd, padding=(1, 1))
    bd = _conv(params, f"{name}.branch3x3dbl_3", bd, stride=2)
    return jnp.concatenate([b3, bd, _max_pool(x, 2)], axis=-1)


def _block_c(params, name, x):
    b1 = _conv(params, f"{name}.branch1x1", x)
    b7 = _conv(params, f"{name}.branch7x7_1", x)
    b7 = _conv(params, f"{name}.branch7x7_2", b7, padding=(0, 3))
    b7 = _conv(params, f"{name}.branch7x7_3", b7, padding=(3, 0))
    bd = _conv(params, f"{name}.branch7x7dbl_1", x)
    bd = _conv(params, f"{name}.branch7x7dbl_2", bd, padding=(3, 0))
    bd = _conv(params, f"{name}.branch7x7dbl_3", bd, padding=(0, 3))
    bd = _conv(params, f"{name}.branch7x7dbl_4", bd, padding=(3, 0))
    bd = _conv(params, f"{name}.branch7x7dbl_5", bd, padding=(0, 3))
    bp = _conv(params, f"{name}.branch_pool", _avg_pool_3x3_same_excluding_pad(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


def _block_d(params, name, x):
    b3 = _conv(params, f"{name}.branch3x3_2", _conv(params, f"{name}.branch3x3_1", x), stride=2)
    b7 = _conv(params, f"{name}.branch7x7x3_1", x)
    b7 = _conv(params, f"{name}.branch7x7x3_2", b7, padding=(0, 3))
    b7 = _conv(params, f"{name}.branch7x7x3_3", b7, padding=(3, 0))
    b7 = _conv(params, f"{name}.branch7x7x3_4", b7, stride=2)
    return jnp.concatenate([b3, b7, _max_pool(x, 2)], axis=-1)


def _block_e(params, name, x, *, max_pool_branch: bool):
    b1 = _conv(params, f"{name}.branch1x1", x)
    b3 = _conv(params, f"{name}.branch3x3_1", x)
    b3 = jnp.concatenate(
        [
            _conv(params, f"{name}.branch3x3_2a", b3, padding=(0, 1)),
            _conv(params, f"{name}.branch3x3_2b", b3, padding=(1, 0)),
        ],
        axis=-1,
    )
    bd = _conv(params, f"{name}.branch3x3dbl_1", x)
    bd = _conv(params, f"{name}.branch3x3dbl_2", bd, padding=(1, 1))
    bd = jnp.concatenate(
        [
            _conv(params, f"{name}.branch3x3dbl_3a", bd, padding=(0, 1)),
            _conv(params, f"{name}.branch3x3dbl_3b", bd, padding=(1, 0)),
        ],
        axis=-1,
    )
    # The TF graph's last block (Mixed_7c) pools with max, not average (pytorch-fid
    # FIDInceptionE_2).
    pooled = _max_pool(x, 1, padding=1) if max_pool_branch else _avg_pool_3x3_same_excluding_pad(x)
    bp = _conv(params, f"{name}.branch_pool", pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def inception_apply(params, x):
    """The network on preprocessed input (N, 299, 299, 3) in [-1, 1].

    Returns dict(pool3 (N, 2048), logits (N, 1008) = pool3 W + b, logits_unbiased = pool3 W).
    """
    x = _conv(params, "Conv2d_1a_3x3", x, stride=2)
    x = _conv(params, "Conv2d_2a_3x3", x)
    x = _conv(params, "Conv2d_2b_3x3", x, padding=(1, 1))
    x = _max_pool(x, 2)
    x = _conv(params, "Conv2d_3b_1x1", x)
    x = _conv(params, "Conv2d_4a_3x3", x)
    x = _max_pool(x, 2)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = _block_a(params, name, x)
    x = _block_b(params, "Mixed_6a", x)
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = _block_c(params, name, x)
    x = _block_d(params, "Mixed_7a", x)
    x = _block_e(params, "Mixed_7b", x, max_pool_branch=False)
    x = _block_e(params, "Mixed_7c", x, max_pool_branch=True)
    pool3 = jnp.mean(x, axis=(1, 2))
    logits_unbiased = jnp.dot(pool3, params["fc"]["kernel"], precision=_PRECISION)
    return {
        "pool3": pool3,
        "logits": logits_unbiased + params["fc"]["bias"],
        "logits_unbiased": logits_unbiased,
    }


def inception_features(params, images):
    """Samples -> (pool3 features for FID, unbiased logits for IS). Pure; jit/shard it."""
    out = inception_apply(params, preprocess(images))
    return out["pool3"], out["logits_unbiased"]


def inception_feature_network(
    weights_path: str | os.PathLike | None = None, *, batch_size: int = 200, mesh=None, params=None
):
    """The FID Inception as a sharded `biggan.evaluation.feature_network.FeatureNetwork` (params:
    already loaded ones)."""
    if params is None:
        params = load_inception_params(weights_path)
    return FeatureNetwork(
        INCEPTION_NAME,
        inception_features,
        params,
        feature_dim=POOL3_DIM,
        num_classes=NUM_LOGITS,
        batch_size=batch_size,
        mesh=mesh,
    )
