"""Training-collapse monitor (paper §4 and appendix G).

The paper sees a collapse as a sharp jump of G's top singular values σ0 together with D's loss
dropping towards zero and G's loss spiking. It gives no numeric rule, so ours is (documented,
configurable in `config.log.collapse_*`; off while collapse_window = 0):

    at a log point s, with W = the previous `window` log points (all of them must exist),
    flag if   σ0max(s) > sigma_jump × median_W(σ0max)                       (σ0 jump)
    or if     d_loss(s) < d_loss_floor  and  g_loss(s) > median_W(g_loss) + g_loss_jump   (D wins, G spikes)

σ0max = the largest top singular value over G's weight matrices (raw parameters, the same matrices
as ortho reg). A median over a trailing window ignores one-off noisy points in the history; the
absolute G-loss jump works for losses of either sign (hinge G loss is −E D(G(z))). `force_step`
flags at a given step (tests of the rollback path only).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from biggan import config as cfg
from biggan.gan import regularisers
from biggan.runtime import storage


@dataclasses.dataclass
class CollapseEvent:
    step: int
    reason: str


class CollapseMonitor:
    """Feed `update(step, sigma0_max, d_loss, g_loss)` at every log point; it returns a
    CollapseEvent (and stops to watch until `reset()`) or None."""

    def __init__(
        self,
        window: int,
        sigma_jump: float = 2.0,
        d_loss_floor: float = 0.05,
        g_loss_jump: float = 1.0,
        force_step: int = 0,
    ):
        if window < 1:
            raise ValueError(
                f"log.collapse_window={window} must be ≥ 1 to monitor (0 turns the monitor off)"
            )
        if sigma_jump <= 1.0:
            raise ValueError(
                f"log.collapse_sigma_jump={sigma_jump} must be > 1 (a ratio to the trailing median)"
            )
        self.window, self.sigma_jump = window, sigma_jump
        self.d_loss_floor, self.g_loss_jump, self.force_step = d_loss_floor, g_loss_jump, force_step
        self.reset()

    @classmethod
    def from_config(cls, log_config):
        return cls(
            log_config.collapse_window,
            log_config.collapse_sigma_jump,
            log_config.collapse_d_loss_floor,
            log_config.collapse_g_loss_jump,
            log_config.collapse_force_step,
        )

    def reset(self):
        """Forget the history (after a rollback the restored run starts a fresh window)."""
        self.history = collections.deque(maxlen=self.window)

    def check(self, sigma0_max: float, d_loss: float, g_loss: float) -> str | None:
        """The reason this point is a collapse given the current history, or None."""
        if len(self.history) < self.window:
            return None
        sig = np.median([h[0] for h in self.history])
        g_med = np.median([h[2] for h in self.history])
        if sigma0_max > self.sigma_jump * sig:
            return f"G σ0max {sigma0_max:.4g} > {self.sigma_jump} × trailing median {sig:.4g}"
        if d_loss < self.d_loss_floor and g_loss > g_med + self.g_loss_jump:
            return (
                f"D loss {d_loss:.4g} < {self.d_loss_floor} while G loss {g_loss:.4g} > trailing median "
                f"{g_med:.4g} + {self.g_loss_jump}"
            )
        return None

    def update(
        self, step: int, sigma0_max: float, d_loss: float, g_loss: float
    ) -> CollapseEvent | None:
        if self.force_step and step == self.force_step:
            self.force_step = 0  # once: the rolled-back run passes this step again
            return CollapseEvent(step, f"forced at step {step} (log.collapse_force_step)")
        reason = self.check(float(sigma0_max), float(d_loss), float(g_loss))
        self.history.append((float(sigma0_max), float(d_loss), float(g_loss)))
        return CollapseEvent(step, reason) if reason else None


def make_sigma0_max_fn(leaf_filter):
    """jit-ed `g_params -> max σ0 over G's accepted weight matrices` (exact, via the smaller Gram
    matrix)."""

    @jax.jit
    def sigma0_max(g_params):
        pure = nnx.to_pure_dict(g_params)
        s = [
            regularisers.top_singular_values(w, 1, name=p)[0]
            for p, w in regularisers.named_leaves(pure)
            if leaf_filter(p, w)
        ]
        return jnp.max(jnp.stack(s))

    return sigma0_max


def pick_rollback_step(available_steps, flagged_step: int, rollback_steps: int) -> int:
    """The newest checkpoint at least `rollback_steps` before the flagged step."""
    candidates = [s for s in available_steps if s <= flagged_step - rollback_steps]
    if not candidates:
        raise RuntimeError(
            f"collapse flagged at step {flagged_step} but no checkpoint is ≥ {rollback_steps} steps older "
            f"(kept checkpoints: {sorted(available_steps)}); keep more (log.keep_checkpoints), save more often "
            f"(log.checkpoint_every) or lower train.rollback_steps"
        )
    return max(candidates)


# --------------------------------------------------------------------------- rollback bookkeeping

ROLLBACK_LOG = "rollbacks.jsonl"


def apply_overrides(config, overrides: dict) -> None:
    """Set dotted keys (`{'train.lr_g': 2.5e-5}`) of `config` in place; unknown keys raise."""
    cfg.set_overrides(config, overrides, "train.rollback_overrides:")


def record_rollback(
    workdir: str, flagged_step: int, restored_step: int, reason: str, overrides: dict
) -> None:
    # Rewritten whole (object storage has no append): earlier rollbacks first.
    records = read_rollbacks(workdir) + [
        dict(
            flagged_step=flagged_step,
            restored_step=restored_step,
            reason=reason,
            overrides=overrides,
        )
    ]
    storage.write_text(
        os.path.join(workdir, ROLLBACK_LOG), "".join(json.dumps(r) + "\n" for r in records)
    )


def read_rollbacks(workdir: str) -> list[dict]:
    path = os.path.join(workdir, ROLLBACK_LOG)
    if not storage.exists(path):
        return []
    return [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]


def reapply_rollbacks(config, workdir: str) -> int:
    """On resume, apply the overrides of earlier rollbacks in this workdir again; returns how
    many."""
    rollbacks = read_rollbacks(workdir)
    for r in rollbacks:
        apply_overrides(config, r["overrides"])
    return len(rollbacks)


class CollapseError(RuntimeError):
    pass
