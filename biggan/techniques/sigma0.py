"""The paper's §4.1 conditioning of G's weights by their top singular value σ0 (biggan/regularisers.py):

  σ0 regulariser   a term pulling each G weight's σ0 towards a fixed σ or r·σ1 [train.sigma0_reg_strength,
                   train.sigma0_target | train.sigma0_ratio]
  σ0 clamp         after each G update, σ0 ← min(σ0, max(c, r·σ1)) by partial SVD [train.sigma0_clamp |
                   train.sigma0_clamp_ratio]

Both act on the weights of ortho reg (regularisers.ortho_filter: not the shared embedding, not 1-d).
"""
from __future__ import annotations

import jax
from flax import nnx

from biggan import regularisers
from biggan.techniques.base import Technique, nonnegative


class Sigma0Regulariser(Technique):
    name = "sigma0_reg"

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("sigma0_reg_strength", 0.0))

    def check(self) -> None:
        t = self.train
        nonnegative(t, "sigma0_reg_strength")
        if bool(t.sigma0_target) == bool(t.sigma0_ratio):
            raise ValueError(f"train.sigma0_reg_strength={t.sigma0_reg_strength} needs exactly one of "
                             f"train.sigma0_target (fixed σ) or train.sigma0_ratio (r·σ1); got "
                             f"sigma0_target={t.sigma0_target}, sigma0_ratio={t.sigma0_ratio}")

    def g_param_terms(self, params, state):
        t = self.train
        return {"sigma0_penalty": regularisers.sigma0_penalty(
            nnx.to_pure_dict(params), t.sigma0_reg_strength, sigma_target=t.sigma0_target or None,
            ratio=t.sigma0_ratio or None, leaf_filter=regularisers.ortho_filter)}


class Sigma0Clamp(Technique):
    name = "sigma0_clamp"

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.get("sigma0_clamp", 0.0) or config.train.get("sigma0_clamp_ratio", 0.0))

    def check(self) -> None:
        t = self.train
        nonnegative(t, "sigma0_clamp", "sigma0_clamp_ratio")
        if t.sigma0_clamp and t.sigma0_clamp_ratio:
            raise ValueError(f"set one of train.sigma0_clamp={t.sigma0_clamp} and train.sigma0_clamp_ratio="
                             f"{t.sigma0_clamp_ratio}, not both")

    def after_g_update(self, params, state):
        t = self.train
        pure = regularisers.sigma0_clamp(nnx.to_pure_dict(params), sigma_clamp=t.sigma0_clamp or None,
                                         ratio=t.sigma0_clamp_ratio or None, leaf_filter=regularisers.ortho_filter)
        params = jax.tree.map(lambda x: x, params)  # a copy to write into
        nnx.replace_by_pure_dict(params, pure)
        return params, state
