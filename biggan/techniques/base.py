"""The interface a training technique implements to plug into the train step (biggan/train_step.py).

A technique is a class with a config switch (`enabled`), a check of its config keys, optional state in
`TrainState.extras[name]`, and the hooks it uses; the others are inherited no-ops. The step calls the
hooks of the enabled techniques in the order of `biggan.techniques.REGISTRY`:

  augment(x, rng, state)          every image batch D scores, real and fake, in the D and the G step
                                  (differentiable: G's gradient flows through it)
  d_terms(ctx, state)             terms added to D's loss of one micro-batch, and the new state
  g_terms(ctx, state)             terms added to G's loss of one micro-batch
  d_updates(updates)              D's optimiser updates before they are applied (e.g. frozen layers)
  after_step(state, step)         once per train step after G's update: the new state and metrics to log

Terms are logged under their names. State is a dict of arrays (a pytree with a fixed structure, so it is
checkpointed with the rest of TrainState). A technique's randomness comes from the `rng` of its context:
a key folded from the step's own, so that switching it on leaves the draws of z, y and the others unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import ml_collections


class DContext(NamedTuple):
    """What D's loss of one micro-batch has computed, for `d_terms`. Images are in the model's range.

    `d_fn(x, y)`: D's logits in training mode from the same parameters (a fresh copy: its SN state is
    dropped), without the D-input augmentation. `g_fn(z, y)`: G's images in training mode, no gradient.
    `d_real`, `d_fake`: the main pass's logits (augmented inputs when an augmentation is on)."""
    real: jax.Array
    fake: jax.Array
    labels: jax.Array
    fake_labels: jax.Array
    z: jax.Array
    d_real: jax.Array
    d_fake: jax.Array
    d_fn: Callable
    g_fn: Callable
    rng: jax.Array
    step: jax.Array


class GContext(NamedTuple):
    """What G's loss of one micro-batch has computed, for `g_terms`. `g_fn(z, y)` is G in training mode
    from the parameters being differentiated (a fresh copy: its BN statistics are dropped)."""
    z: jax.Array
    labels: jax.Array
    fake: jax.Array
    d_fake: jax.Array
    d_fn: Callable
    g_fn: Callable
    rng: jax.Array
    step: jax.Array


class Technique:
    """Base class: every hook is a no-op. `name` keys its state in TrainState.extras and its metrics."""
    name: str = ""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.train = config.train

    @staticmethod
    def enabled(train: ml_collections.ConfigDict) -> bool:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ValueError naming the config key and the fix for a bad value."""

    def init_state(self) -> dict[str, Any] | None:
        return None

    def augment(self, x: jax.Array, rng: jax.Array, state) -> jax.Array:
        return x

    def d_terms(self, ctx: DContext, state) -> tuple[dict[str, jax.Array], Any]:
        return {}, state

    def g_terms(self, ctx: GContext, state) -> dict[str, jax.Array]:
        return {}

    def d_updates(self, updates):
        return updates

    def after_step(self, state, step: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        return state, {}

    # Which hooks a technique overrides: the step only builds what an enabled technique needs.
    def uses(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(Technique, hook)
