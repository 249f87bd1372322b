"""A small CNN classifier of scikit-learn's digits: the offline stand-in for Inception.

The digits runs have no Inception weights offline, so they log a Fréchet distance in this
classifier's penultimate features (128-d) and the accuracy with which it recognises the requested
class in samples. It is trained once (seconds on CPU) on a fixed stratified 80% split of
`biggan.data.digits_arrays` and cached as an .npz in a directory; a cached file is re-used when
present.

Input: NHWC images, float in [-1, 1] (quantised to uint8 first, as Inception inputs are) or uint8, 1
or 3 channels (RGB is averaged to grey: the digits are grey), any resolution (resized to 32x32
bilinearly).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from biggan.data import digits_arrays
from biggan.evaluation.feature_network import FeatureNetwork
from biggan.runtime import storage
from biggan.sampling.images import to_uint8

DIGITS_CLASSIFIER_NAME = "digits-cnn-v1/penultimate"  # feature-network name stored in moments files
CLASSIFIER_RESOLUTION = 32
FEATURE_DIM = 128
NUM_CLASSES = 10
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "biggan", "digits_classifier")


class DigitsCNN(nnx.Module):
    """16x16 grey -> conv32 -> pool -> conv64 -> pool -> dense128 (features) -> dense10 (logits)."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
        self.hidden = nnx.Linear(4 * 4 * 64, FEATURE_DIM, rngs=rngs)
        self.head = nnx.Linear(FEATURE_DIM, NUM_CLASSES, rngs=rngs)

    def __call__(self, x):
        """x: (N, 32, 32, 1) in [-1, 1] -> (features (N, 128), logits (N, 10))."""
        # The digits carry 8x8 of information: average 32 -> 16 first, which costs nothing in
        # accuracy and makes training 4x cheaper.
        x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        features = nnx.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return features, self.head(features)


def preprocess(images):
    """Any NHWC digits-like batch (float [-1, 1] or uint8; 1 or 3 channels) -> (N, 32, 32, 1) in
    [-1, 1]."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"digits classifier input has shape {images.shape}; expected NHWC with 1 or 3 channels"
        )
    if images.dtype != jnp.uint8:  # the same uint8 quantisation as the Inception protocol
        images = to_uint8(images)
    x = images.astype(jnp.float32) / 127.5 - 1.0
    x = jnp.mean(x, axis=-1, keepdims=True)
    if x.shape[1:3] != (CLASSIFIER_RESOLUTION, CLASSIFIER_RESOLUTION):
        x = jax.image.resize(
            x, (x.shape[0], CLASSIFIER_RESOLUTION, CLASSIFIER_RESOLUTION, 1), "bilinear"
        )
    return x


def digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (test images, labels)): uint8 32x32 RGB, stratified 80/20, fixed
    seed."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn import is slow

    images, labels = digits_arrays(CLASSIFIER_RESOLUTION)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=_TEST_FRACTION, stratify=labels, random_state=_SPLIT_SEED
    )
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def _shift_augment(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    # Random translations by up to 2 px (background -1), so slightly off-centre samples still
    # classify.
    padded = np.pad(
        x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), constant_values=-1.0
    )
    out = np.empty_like(x)
    size = x.shape[1]
    for i, (dy, dx) in enumerate(rng.integers(0, 2 * max_shift + 1, (len(x), 2))):
        out[i] = padded[i, dy : dy + size, dx : dx + size]
    return out


def train_digits_classifier(
    *, seed: int = 0, epochs: int = 10, batch_size: int = 64, learning_rate: float = 2e-3, log=print
) -> tuple[DigitsCNN, float]:
    """Train on the 80% split; returns (model, test accuracy on the held-out 20%)."""
    (train_x, train_y), (test_x, test_y) = digits_split()
    train_x = np.asarray(preprocess(jnp.asarray(train_x)))
    test_x = np.asarray(preprocess(jnp.asarray(test_x)))
    model = DigitsCNN(nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        _, logits = nnx.merge(graphdef, params, copy=True)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    start = time.time()
    steps_per_epoch = len(train_x) // batch_size
    for epoch in range(epochs):
        order = rng.permutation(len(train_x))
        augmented = _shift_augment(train_x, rng)
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            params, opt_state, loss = step(params, opt_state, augmented[idx], train_y[idx])
        if log is not None and (epoch + 1) % 5 == 0:
            log(
                f"digits classifier epoch {epoch + 1}/{epochs}: loss {float(loss):.4f} "
                f"({(epoch + 1) * steps_per_epoch / (time.time() - start):.0f} steps/s)"
            )
    model = nnx.merge(graphdef, params)
    _, logits = jax.jit(lambda p, x: nnx.merge(graphdef, p, copy=True)(x))(params, test_x)
    accuracy = float(np.mean(np.argmax(np.asarray(logits), axis=1) == test_y))
    return model, accuracy


def _save(path: str, model: DigitsCNN, metadata: dict) -> None:
    flat = {}
    for keys, value in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model)))[0]:
        flat["/".join(str(k.key) for k in keys)] = np.asarray(value)
    # Written whole (local rename or one object): a concurrent reader never sees a half-written
    # file.
    storage.save_npz(path, __metadata__=np.str_(json.dumps(metadata)), **flat)


def _load(path: str) -> tuple[DigitsCNN, dict]:
    model = nnx.eval_shape(lambda: DigitsCNN(nnx.Rngs(0)))
    state = nnx.state(model)
    pure = nnx.to_pure_dict(state)
    f = storage.load_npz(path)
    metadata = json.loads(str(f["__metadata__"]))

    def fill(keys, leaf):
        name = "/".join(str(k.key) for k in keys)
        if name not in f or f[name].shape != leaf.shape:
            raise ValueError(
                f"cached digits classifier {path!r} has no array {name} of shape "
                f"{leaf.shape}; delete the file to retrain"
            )
        return jnp.asarray(f[name])

    pure = jax.tree_util.tree_map_with_path(fill, pure)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model, metadata


class DigitsClassifier:
    """Trained digits CNN: `features(images)`, `logits(images)`, `feature_network()` for metrics."""

    def __init__(self, model: DigitsCNN, test_accuracy: float, source: str):
        self.model = model
        self.test_accuracy = test_accuracy
        self.source = source  # 'trained' or the cache file path it was loaded from
        self.graphdef, self.params = nnx.split(model)
        self._apply = jax.jit(self.apply_fn)

    def apply_fn(self, params, images):
        """Pure (params, images) -> (features, logits), for jit / sharding."""
        return nnx.merge(self.graphdef, params, copy=True)(preprocess(images))

    def features(self, images) -> np.ndarray:
        return np.asarray(self._apply(self.params, jnp.asarray(images))[0])

    def logits(self, images) -> np.ndarray:
        return np.asarray(self._apply(self.params, jnp.asarray(images))[1])

    def feature_network(self, *, batch_size: int = 512, mesh=None):
        """This classifier as a sharded `biggan.evaluation.feature_network.FeatureNetwork`."""
        return FeatureNetwork(
            DIGITS_CLASSIFIER_NAME,
            self.apply_fn,
            self.params,
            feature_dim=FEATURE_DIM,
            num_classes=NUM_CLASSES,
            batch_size=batch_size,
            mesh=mesh,
            predicts_dataset_classes=True,
        )


def load_or_train_digits_classifier(
    cache_dir: str | os.PathLike | None = None, *, seed: int = 0, log=print
) -> DigitsClassifier:
    """The cached classifier in `cache_dir` (default ~/.cache/biggan/digits_classifier), else train
    one (about 10 s on CPU) and cache it there."""
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    path = os.path.join(cache_dir, f"digits_cnn_v1_seed{seed}.npz")
    if storage.isfile(path):
        model, metadata = _load(path)
        return DigitsClassifier(model, metadata["test_accuracy"], path)
    model, accuracy = train_digits_classifier(seed=seed, log=log)
    if log is not None:
        log(f"digits classifier: held-out accuracy {accuracy:.4f}; cached at {path}")
    _save(path, model, {"seed": seed, "test_accuracy": accuracy, "name": DIGITS_CLASSIFIER_NAME})
    return DigitsClassifier(model, accuracy, "trained")
