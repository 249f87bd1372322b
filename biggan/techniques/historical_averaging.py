"""Historical averaging (Salimans et al. 2016 §3.3): each network's loss += w·‖θ − mean of its past θ‖², the
mean (a constant; exact, or an EMA with `historical_averaging_decay`) kept in TrainState.extras and updated
with θ after each update. [train.historical_averaging_weight]

Two techniques, one per network, so that each has one state entry (`historical_average_d`, `_g`).
"""
from __future__ import annotations

from biggan import regularisers
from biggan.techniques.base import Technique, nonnegative


class HistoricalAveragingD(Technique):
    name = "historical_average_d"
    network = "d"

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("historical_averaging_weight", 0.0))

    def check(self) -> None:
        t = self.train
        nonnegative(t, "historical_averaging_weight")
        if not 0.0 <= t.historical_averaging_decay < 1.0:
            raise ValueError(f"train.historical_averaging_decay={t.historical_averaging_decay} must be in [0, 1) "
                             f"(0 = exact mean of all past parameters)")

    def init_state(self, g_params=None, d_params=None):
        return regularisers.historical_average_init(d_params if self.network == "d" else g_params)._asdict()

    def penalty(self, params, state):
        average = regularisers.HistoricalAverage(**state)
        return {self.name: regularisers.historical_average_penalty(params, average,
                                                                   self.train.historical_averaging_weight)}

    def updated(self, params, state):
        """The average of every value the parameters have taken, this one included."""
        average = regularisers.historical_average_update(regularisers.HistoricalAverage(**state), params,
                                                         self.train.historical_averaging_decay or None)
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
