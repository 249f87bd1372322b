"""The interface a training technique implements to plug into the train step (biggan/train/step.py).

A technique is a class with its config keys and their neutral defaults (`config_keys`, gathered into
the schema by `biggan.config.base_config`), a config switch (`enabled`), a check of its keys,
optional state in `TrainState.extras[name]`, and the hooks it uses; the others are inherited no-ops.
The step calls the hooks of the enabled techniques in the order of
`biggan.techniques.registry.REGISTRY`:

  loss_options()                  keyword arguments of losses.get_loss (target labels)
  d_fakes(fake, y, rng, state)    the fakes of D's micro-batch before D scores them, and the new state
  augment(x, rng, state)          every image batch D scores, real and fake, in the D and the G step, and the
                                  inputs of the gradient penalties (differentiable: G's gradient flows through)
  perturb(x, rng, step)           D's main-pass inputs after the augmentation (not the penalties' inputs)
  d_view(x, y)                    how D's main pass sees a batch (e.g. PacGAN's packs), after `perturb`
  d_features(h, rng)              D's pooled features before its head in the main pass
  d_terms(ctx, state)             terms added to D's loss of one micro-batch, and the new state
  g_terms(ctx, state)             terms added to G's loss of one micro-batch
  d_param_terms(params, state)    terms on D's (G's: g_param_terms) parameters added to its loss once per
                                  update; the step adds their exact gradient to the micro-batches' mean
  d_updates(updates)              D's optimiser updates before they are applied (e.g. frozen layers)
  after_d_update(params, state)   D's (G's: after_g_update) new parameters and the new state, after the update
  after_step(state, step)         once per train step after G's update: the new state and metrics to log

Terms are logged under their names. State is a dict of arrays (a pytree with a fixed structure, so
it is checkpointed with the rest of TrainState). A technique's randomness is `fold_in(micro-batch
key, rng_tag)`: switching it on leaves the draws of z, y and the other techniques unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import ml_collections


class DContext(NamedTuple):
    """What D's loss of one micro-batch has computed, for `d_terms`. Images are in the model's
    range.

    `d_fn(x, y)`: D's logits in training mode from the same parameters (a fresh copy: its SN state
    is dropped), through `d_view` but without the augmentation; `view(x, y)` is that view and
    `d_viewed_fn(x, y)` D on an already viewed batch. `augment(x, rng)`: the enabled augmentation
    (identity without one). `g_fn(z, y)`: G's images in training mode, no gradient. `d_real`,
    `d_fake`: the main pass's logits (augmented inputs when an augmentation is on)."""

    real: jax.Array
    fake: jax.Array
    labels: jax.Array
    fake_labels: jax.Array
    z: jax.Array
    d_real: jax.Array
    d_fake: jax.Array
    d_fn: Callable
    d_viewed_fn: Callable
    view: Callable
    augment: Callable
    g_fn: Callable
    rng: jax.Array
    step: jax.Array


class GContext(NamedTuple):
    """What G's loss of one micro-batch has computed, for `g_terms`. `g_fn(z, y)` is G in training
    mode from the parameters being differentiated (a fresh copy: its BN statistics are dropped).
    `real`, `real_labels`: the step's last real micro-batch when a technique `needs_real_in_g` (else
    None). `d_features_fn(x, y)`: D's pooled features (fresh copy, through `d_view`)."""

    z: jax.Array
    labels: jax.Array
    fake: jax.Array
    d_fake: jax.Array
    real: Any
    real_labels: Any
    d_fn: Callable
    d_features_fn: Callable
    augment: Callable
    g_fn: Callable
    rng: jax.Array
    step: jax.Array


class Technique:
    """Base class: every hook is a no-op. `name` keys its state in TrainState.extras and its
    metrics."""

    name: str = ""
    rng_tag: int | None = None  # folded into the micro-batch key for this technique's randomness
    needs_real_in_g: bool = False  # whether g_terms reads a real batch (GContext.real)
    # {"section.key": default}: the config keys this technique reads, each defaulting to "off" (the
    # step is then the paper's); biggan.config.base_config adds them to the schema.
    config_keys: dict[str, Any] = {}

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.train = config.train

    @staticmethod
    def enabled(config: ml_collections.ConfigDict) -> bool:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ValueError naming the config key and the fix for a bad value."""

    def key(self, rng: jax.Array) -> jax.Array:
        return jax.random.fold_in(rng, self.rng_tag)

    def init_state(self, g_params=None, d_params=None) -> dict[str, Any] | None:
        return None

    def loss_options(self) -> dict[str, Any]:
        return {}

    def d_fakes(self, fake, labels, rng, state):
        return fake, labels, state

    def augment(self, x: jax.Array, rng: jax.Array, state) -> jax.Array:
        return x

    def perturb(self, x: jax.Array, rng: jax.Array, step: jax.Array) -> jax.Array:
        return x

    def d_view(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return x, y

    def d_features(self, h: jax.Array, rng: jax.Array) -> jax.Array:
        return h

    def d_terms(self, ctx: DContext, state) -> tuple[dict[str, jax.Array], Any]:
        return {}, state

    def g_terms(self, ctx: GContext, state) -> dict[str, jax.Array]:
        return {}

    def d_param_terms(self, params, state) -> dict[str, jax.Array]:
        return {}

    def g_param_terms(self, params, state) -> dict[str, jax.Array]:
        return {}

    def d_updates(self, updates):
        return updates

    def after_d_update(self, params, state):
        return params, state

    def after_g_update(self, params, state):
        return params, state

    def after_step(self, state, step: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        return state, {}

    # Which hooks a technique overrides: the step only builds what an enabled technique needs.
    def uses(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Technique, hook)


def nonnegative(train: ml_collections.ConfigDict, *keys: str) -> None:
    """Refuse a negative strength: 0 is the switch's off."""
    for key in keys:
        if train[key] < 0:
            raise ValueError(f"train.{key}={train[key]} must be ≥ 0 (0 switches it off)")


def whole(train: ml_collections.ConfigDict, *keys: str) -> None:
    for key in keys:
        if int(train[key]) != train[key]:
            raise ValueError(f"train.{key}={train[key]} must be a whole number")


def micro_batch_size(t: ml_collections.ConfigDict) -> int:
    """train.batch_size is the global batch of one update; it is split into num_accumulations
    micro-batches."""
    if t.batch_size % t.num_accumulations:
        raise ValueError(
            f"train.batch_size={t.batch_size} is not divisible by train.num_accumulations="
            f"{t.num_accumulations}"
        )
    return t.batch_size // t.num_accumulations
