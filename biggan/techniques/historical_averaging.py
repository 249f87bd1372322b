"""Historical averaging (Salimans et al. 2016 §3.3): each network's loss += w·‖θ − mean of its past
θ‖², the mean (a constant; exact, or an EMA with `historical_averaging_decay`) kept in
TrainState.extras and updated with θ after each update. [train.historical_averaging_weight]

Two techniques, one per network, so that each has one state entry (`historical_average_d`, `_g`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from biggan.gan.regularisers import PyTree
from biggan.techniques.base import Technique, nonnegative


class HistoricalAverage(NamedTuple):
    """Running mean of past parameters (a pytree like the params) and how many were averaged."""

    mean: PyTree
    count: jax.Array


def historical_average_init(params: PyTree) -> HistoricalAverage:
    """Start the average at the initial parameters (count 1). A copy: no buffer shared with `params`
    (a jitted step that donates its state must not see one buffer twice)."""
    return HistoricalAverage(
        jax.tree.map(lambda p: jnp.array(p, jnp.float32, copy=True), params),
        jnp.ones((), jnp.int32),
    )


def historical_average_update(
    state: HistoricalAverage, params: PyTree, decay: float | None = None
) -> HistoricalAverage:
    """Fold the current params into the average: exact mean of all past params
    (m ← m + (θ − m)/(n + 1)) or, with `decay`, an exponential average (m ← d·m + (1 − d)·θ)."""
    n = state.count.astype(jnp.float32)
    w = (1.0 / (n + 1.0)) if decay is None else (1.0 - decay)
    mean = jax.tree.map(lambda m, p: m + w * (p.astype(jnp.float32) - m), state.mean, params)
    return HistoricalAverage(mean, state.count + 1)


def historical_average_penalty(
    params: PyTree, state: HistoricalAverage, weight: float = 1.0
) -> jax.Array:
    """weight · Σ ‖θ − mean of past θ‖² (Salimans et al. 2016). The mean is a constant."""
    sq = jax.tree.map(
        lambda p, m: jnp.sum(jnp.square(p.astype(jnp.float32) - jax.lax.stop_gradient(m))),
        params,
        state.mean,
    )
    return weight * sum(jax.tree.leaves(sq), jnp.zeros((), jnp.float32))


class HistoricalAveragingD(Technique):
    name = "historical_average_d"
    network = "d"
    config_keys = {
        "train.historical_averaging_weight": 0.0,  # + w·‖θ − mean of past θ‖² in D's and G's losses
        # 0: exact mean of all past θ; d ∈ (0, 1): exponential, m ← d·m + (1−d)·θ
        "train.historical_averaging_decay": 0.0,
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.historical_averaging_weight)

    def check(self) -> None:
        t = self.train
        nonnegative(t, "historical_averaging_weight")
        if not 0.0 <= t.historical_averaging_decay < 1.0:
            raise ValueError(
                f"train.historical_averaging_decay={t.historical_averaging_decay} must be in [0, 1) "
                f"(0 = exact mean of all past parameters)"
            )

    def init_state(self, g_params=None, d_params=None):
        return historical_average_init(d_params if self.network == "d" else g_params)._asdict()

    def penalty(self, params, state):
        average = HistoricalAverage(**state)
        return {
            self.name: historical_average_penalty(
                params, average, self.train.historical_averaging_weight
            )
        }

    def updated(self, params, state):
        """The average of every value the parameters have taken, this one included."""
        average = historical_average_update(
            HistoricalAverage(**state), params, self.train.historical_averaging_decay or None
        )
        return params, average._asdict()

    d_param_terms = penalty
    after_d_update = updated


class HistoricalAveragingG(HistoricalAveragingD):
    name = "historical_average_g"
    network = "g"
    d_param_terms = Technique.d_param_terms
    after_d_update = Technique.after_d_update
    g_param_terms = HistoricalAveragingD.penalty
    after_g_update = HistoricalAveragingD.updated
