"""The paper's §4.1 conditioning of G's weights by their top singular value σ0, with its maths:

  σ0 regulariser   a term pulling each G weight's σ0 towards a fixed σ or r·σ1 [train.sigma0_reg_strength,
                   train.sigma0_target | train.sigma0_ratio]
  σ0 clamp         after each G update, σ0 ← min(σ0, max(c, r·σ1)) by partial SVD [train.sigma0_clamp |
                   train.sigma0_clamp_ratio]

Both act on the weights of ortho reg (regularisers.ortho_filter: not the shared embedding, not 1-d).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from biggan.gan import regularisers
from biggan.gan.regularisers import (
    LeafFilter,
    PyTree,
    default_weight_filter,
    gram_side,
    map_with_path,
    matrix_as_weight,
    named_leaves,
    weight_as_matrix,
)
from biggan.techniques.base import Technique, nonnegative


def top_singular_pairs(w_mat: jax.Array, k: int = 2) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(σ (k,), U (rows, k), V (cols, k)) of the k largest singular triplets of a matrix, via the
    eigen-decomposition of its smaller Gram matrix. No gradient (stop_gradient applied)."""
    w_mat = jax.lax.stop_gradient(w_mat.astype(jnp.float32))
    gram, rows = gram_side(w_mat)
    evals, evecs = jnp.linalg.eigh(gram)
    evals, evecs = evals[::-1][:k], evecs[:, ::-1][:, :k]
    s = jnp.sqrt(jnp.maximum(evals, 0.0))
    safe = jnp.where(s > 0, s, 1.0)
    if rows:
        u = evecs
        v = (w_mat.T @ u) / safe
    else:
        v = evecs
        u = (w_mat @ v) / safe
    return s, u, v


def _clamp_target(s: jax.Array, sigma_target: float | None, ratio: float | None) -> jax.Array:
    if (sigma_target is None) == (ratio is None):
        raise ValueError(
            "give exactly one of sigma_target (fixed σ_reg) or ratio (r·sg(σ1)); "
            f"got sigma_target={sigma_target}, ratio={ratio}."
        )
    if sigma_target is not None:
        return jnp.asarray(sigma_target, jnp.float32)
    if s.shape[0] < 2:
        raise ValueError(
            "ratio (r·sg(σ1)) needs a weight with at least 2 singular values; this one has 1. "
            "Use sigma_target or exclude the leaf with leaf_filter."
        )
    return ratio * jax.lax.stop_gradient(s[1])


def sigma0_penalty_matrix(
    w_mat: jax.Array,
    sigma_target: float | None = None,
    ratio: float | None = None,
    one_sided: bool = False,
) -> jax.Array:
    """(σ0 − σ_target)² for one matrix (one_sided: relu(σ0 − σ_target)²), σ_target = σ_reg or
    r·sg(σ1). σ0 = u0ᵀ W v0 with the singular vectors held constant, whose gradient u0 v0ᵀ is the
    exact ∂σ0/∂W (for a simple σ0)."""
    s, u, v = top_singular_pairs(w_mat, 2)
    sigma0 = u[:, 0] @ (w_mat.astype(jnp.float32) @ v[:, 0])
    diff = sigma0 - _clamp_target(s, sigma_target, ratio)
    return jnp.square(jax.nn.relu(diff) if one_sided else diff)


def sigma0_penalty(
    params: PyTree,
    strength: float,
    sigma_target: float | None = None,
    ratio: float | None = None,
    one_sided: bool = False,
    leaf_filter: LeafFilter = default_weight_filter,
) -> jax.Array:
    """strength · Σ_W (σ0(W) − σ_target)²: paper §4.1 regularisation of each weight's top
    singular value towards a fixed σ_reg or r·sg(σ1). The paper gives no formula; the squared
    distance is our reading of "regularise towards" (one_sided=True only penalises σ0 above)."""
    total = jnp.zeros((), jnp.float32)
    for path, leaf in named_leaves(params):
        if leaf_filter(path, leaf):
            total = total + sigma0_penalty_matrix(
                weight_as_matrix(leaf, path), sigma_target, ratio, one_sided
            )
    return strength * total


def sigma0_clamp_matrix(
    w_mat: jax.Array, sigma_clamp: float | None = None, ratio: float | None = None
) -> jax.Array:
    """W ← W − max(0, σ0 − σ_clamp)·u0 v0ᵀ (paper §4.1, written there as v0 u0ᵀ for the
    transposed layout): σ0 becomes min(σ0, max(σ_clamp, σ1)); the other singular triplets are
    unchanged. σ_clamp = fixed value or r·sg(σ1)."""
    s, u, v = top_singular_pairs(w_mat, 2)
    excess = jax.nn.relu(s[0] - _clamp_target(s, sigma_clamp, ratio))
    return (w_mat - excess * jnp.outer(u[:, 0], v[:, 0])).astype(w_mat.dtype)


def sigma0_clamp(
    params: PyTree,
    sigma_clamp: float | None = None,
    ratio: float | None = None,
    leaf_filter: LeafFilter = default_weight_filter,
) -> PyTree:
    """Apply `sigma0_clamp_matrix` to every accepted leaf (after the optimiser step)."""

    def clamp_leaf(path, leaf):
        if not leaf_filter(path, leaf):
            return leaf
        m = sigma0_clamp_matrix(weight_as_matrix(leaf, path), sigma_clamp, ratio)
        return matrix_as_weight(m, leaf.shape, path)

    return map_with_path(clamp_leaf, params)


class Sigma0Regulariser(Technique):
    name = "sigma0_reg"
    config_keys = {
        # regularise G's σ0 towards sigma0_target or sigma0_ratio·sg(σ1)
        "train.sigma0_reg_strength": 0.0,
        "train.sigma0_target": 0.0,  # 0: use sigma0_ratio
        "train.sigma0_ratio": 0.0,
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.sigma0_reg_strength)

    def check(self) -> None:
        t = self.train
        nonnegative(t, "sigma0_reg_strength")
        if bool(t.sigma0_target) == bool(t.sigma0_ratio):
            raise ValueError(
                f"train.sigma0_reg_strength={t.sigma0_reg_strength} needs exactly one of "
                f"train.sigma0_target (fixed σ) or train.sigma0_ratio (r·σ1); got "
                f"sigma0_target={t.sigma0_target}, sigma0_ratio={t.sigma0_ratio}"
            )

    def g_param_terms(self, params, state):
        t = self.train
        return {
            "sigma0_penalty": sigma0_penalty(
                nnx.to_pure_dict(params),
                t.sigma0_reg_strength,
                sigma_target=t.sigma0_target or None,
                ratio=t.sigma0_ratio or None,
                leaf_filter=regularisers.ortho_filter,
            )
        }


class Sigma0Clamp(Technique):
    name = "sigma0_clamp"
    config_keys = {
        "train.sigma0_clamp": 0.0,  # after each G update clamp G's σ0 to this (0: off) ...
        "train.sigma0_clamp_ratio": 0.0,  # ... or to ratio·σ1 (0: off)
    }

    @staticmethod
    def enabled(config) -> bool:
        return bool(config.train.sigma0_clamp or config.train.sigma0_clamp_ratio)

    def check(self) -> None:
        t = self.train
        nonnegative(t, "sigma0_clamp", "sigma0_clamp_ratio")
        if t.sigma0_clamp and t.sigma0_clamp_ratio:
            raise ValueError(
                f"set one of train.sigma0_clamp={t.sigma0_clamp} and train.sigma0_clamp_ratio="
                f"{t.sigma0_clamp_ratio}, not both"
            )

    def after_g_update(self, params, state):
        t = self.train
        pure = sigma0_clamp(
            nnx.to_pure_dict(params),
            sigma_clamp=t.sigma0_clamp or None,
            ratio=t.sigma0_clamp_ratio or None,
            leaf_filter=regularisers.ortho_filter,
        )
        params = jax.tree.map(lambda x: x, params)  # a copy to write into
        nnx.replace_by_pure_dict(params, pure)
        return params, state
