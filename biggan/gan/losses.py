"""GAN losses on discriminator logits (hinge default, paper §3; margin ablation; the catalogue in
README, Ablations).

Every loss takes raw D outputs ("logits", shape (B,)) and returns a scalar mean over the batch.
`get_loss(name, **options)` returns `(d_loss_fn, g_loss_fn)`:

    d_loss_fn(d_real, d_fake, rng=None) -> (loss, aux)   # aux: dict of scalars for logging
    g_loss_fn(d_fake, d_real=None)      -> loss          # d_real only for relativistic losses

Label techniques (Salimans et al. 2016; ganhacks) act on losses that have targets (non_saturating,
minimax, least_squares); asking for them with a target-free loss (hinge, wasserstein, rahinge)
raises. All functions are pure and jit-able (options are Python values fixed at construction).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
DLossFn = Callable[..., tuple[Array, dict]]
GLossFn = Callable[..., Array]


# --------------------------------------------------------------------------- metrics


def discriminator_accuracy(
    d_real: Array, d_fake: Array, threshold: float = 0.0
) -> tuple[Array, Array]:
    """Fraction of reals with D > threshold and of fakes with D < threshold (paper §4.2 memorisation
    test)."""
    acc_real = jnp.mean((d_real > threshold).astype(jnp.float32))
    acc_fake = jnp.mean((d_fake < threshold).astype(jnp.float32))
    return acc_real, acc_fake


def _aux(loss_real, loss_fake, d_real, d_fake, threshold=0.0) -> dict:
    acc_real, acc_fake = discriminator_accuracy(d_real, d_fake, threshold)
    return {
        "d_loss_real": loss_real,
        "d_loss_fake": loss_fake,
        "d_real_mean": jnp.mean(d_real),
        "d_fake_mean": jnp.mean(d_fake),
        "d_acc_real": acc_real,
        "d_acc_fake": acc_fake,
    }


def _check_logits(name: str, x: Array) -> None:
    if x.ndim != 1:
        raise ValueError(
            f"{name} must be D logits of shape (B,), got shape {x.shape}; "
            "squeeze D's (B, 1) output with x[:, 0] or x.reshape(-1)."
        )


# --------------------------------------------------------------------------- targets


def _targets(
    rng: Array | None,
    batch_real: int,
    batch_fake: int,
    real_target: float,
    noisy_labels: bool,
    real_range: tuple[float, float],
    fake_range: tuple[float, float],
    flip_prob: float,
    soft: bool = True,
) -> tuple[Array, Array]:
    """Per-sample targets for the real and fake halves of a D batch.

    Plain: real = real_target (1.0, or 0.9 for one-sided label smoothing), fake = 0.
    Noisy (ganhacks "soft and noisy labels"): each sample's target is swapped for the other side's
    with probability flip_prob; with `soft` the targets are drawn, real ~ U[real_range] and
    fake ~ U[fake_range], otherwise they are the plain real_target and 0 (flips only).
    """
    if not noisy_labels:
        return (
            jnp.full((batch_real,), real_target, jnp.float32),
            jnp.zeros((batch_fake,), jnp.float32),
        )
    if rng is None:
        raise ValueError(
            "noisy_labels=True needs a PRNG key: call d_loss_fn(d_real, d_fake, rng=key)."
        )
    k = jax.random.split(rng, 6)
    if soft:
        u = lambda key, n, lo_hi: jax.random.uniform(key, (n,), jnp.float32, lo_hi[0], lo_hi[1])
        as_real = lambda key, n: u(key, n, real_range)
        as_fake = lambda key, n: u(key, n, fake_range)
    else:
        as_real = lambda key, n: jnp.full((n,), real_target, jnp.float32)
        as_fake = lambda key, n: jnp.zeros((n,), jnp.float32)
    t_real = jnp.where(
        jax.random.bernoulli(k[0], flip_prob, (batch_real,)),
        as_fake(k[1], batch_real),
        as_real(k[2], batch_real),
    )
    t_fake = jnp.where(
        jax.random.bernoulli(k[3], flip_prob, (batch_fake,)),
        as_real(k[4], batch_fake),
        as_fake(k[5], batch_fake),
    )
    return t_real, t_fake


def _bce_with_logits(logits: Array, target: Array) -> Array:
    """Binary cross-entropy −[t log σ(x) + (1−t) log(1−σ(x))] = t·softplus(−x) +
    (1−t)·softplus(x)."""
    return target * jax.nn.softplus(-logits) + (1.0 - target) * jax.nn.softplus(logits)


# --------------------------------------------------------------------------- the losses


def hinge_d_loss(d_real: Array, d_fake: Array, margin: float = 1.0) -> tuple[Array, dict]:
    """L_D = E[relu(m − D(x))] + E[relu(m + D(G(z)))] (paper §3, m = 1; the margin is an ablation
    axis)."""
    loss_real = jnp.mean(jax.nn.relu(margin - d_real))
    loss_fake = jnp.mean(jax.nn.relu(margin + d_fake))
    return loss_real + loss_fake, _aux(loss_real, loss_fake, d_real, d_fake)


def hinge_g_loss(d_fake: Array, d_real: Array | None = None) -> Array:
    """L_G = −E[D(G(z))] (paper §3)."""
    del d_real
    return -jnp.mean(d_fake)


def wasserstein_d_loss(d_real: Array, d_fake: Array) -> tuple[Array, dict]:
    """WGAN critic loss E[D(G(z))] − E[D(x)] (pair it with a gradient penalty, regularisers.py)."""
    loss_real = -jnp.mean(d_real)
    loss_fake = jnp.mean(d_fake)
    return loss_real + loss_fake, _aux(loss_real, loss_fake, d_real, d_fake)


def wasserstein_g_loss(d_fake: Array, d_real: Array | None = None) -> Array:
    del d_real
    return -jnp.mean(d_fake)


def relativistic_average_hinge_d_loss(
    d_real: Array, d_fake: Array, margin: float = 1.0
) -> tuple[Array, dict]:
    """RaHinge (Jolicoeur-Martineau 2018): D̃r = D(x) − E D(G(z)), D̃f = D(G(z)) − E D(x);
    L_D = E relu(m − D̃r) + E relu(m + D̃f)."""
    rel_real = d_real - jnp.mean(d_fake)
    rel_fake = d_fake - jnp.mean(d_real)
    loss_real = jnp.mean(jax.nn.relu(margin - rel_real))
    loss_fake = jnp.mean(jax.nn.relu(margin + rel_fake))
    return loss_real + loss_fake, _aux(loss_real, loss_fake, d_real, d_fake)


def relativistic_average_hinge_g_loss(
    d_fake: Array, d_real: Array | None = None, margin: float = 1.0
) -> Array:
    """L_G = E relu(m + D̃r) + E relu(m − D̃f): the roles of real and fake swapped."""
    if d_real is None:
        raise ValueError(
            "the relativistic average hinge G loss needs d_real: call g_loss_fn(d_fake, d_real)."
        )
    rel_real = d_real - jnp.mean(d_fake)
    rel_fake = d_fake - jnp.mean(d_real)
    return jnp.mean(jax.nn.relu(margin + rel_real)) + jnp.mean(jax.nn.relu(margin - rel_fake))


def _make_bce_d_loss(target_options: dict) -> DLossFn:
    def d_loss(d_real, d_fake, rng=None):
        _check_logits("d_real", d_real)
        _check_logits("d_fake", d_fake)
        t_real, t_fake = _targets(rng, d_real.shape[0], d_fake.shape[0], **target_options)
        loss_real = jnp.mean(_bce_with_logits(d_real, t_real))
        loss_fake = jnp.mean(_bce_with_logits(d_fake, t_fake))
        return loss_real + loss_fake, _aux(loss_real, loss_fake, d_real, d_fake)

    return d_loss


def non_saturating_g_loss(d_fake: Array, d_real: Array | None = None) -> Array:
    """L_G = −E log σ(D(G(z))) = E softplus(−D(G(z))) (Goodfellow et al. 2014, the practical G
    loss)."""
    del d_real
    return jnp.mean(jax.nn.softplus(-d_fake))


def minimax_g_loss(d_fake: Array, d_real: Array | None = None) -> Array:
    """L_G = E log(1 − σ(D(G(z)))) = −E softplus(D(G(z))) (the saturating minimax game)."""
    del d_real
    return -jnp.mean(jax.nn.softplus(d_fake))


def _make_least_squares_d_loss(target_options: dict) -> DLossFn:
    def d_loss(d_real, d_fake, rng=None):
        _check_logits("d_real", d_real)
        _check_logits("d_fake", d_fake)
        t_real, t_fake = _targets(rng, d_real.shape[0], d_fake.shape[0], **target_options)
        loss_real = 0.5 * jnp.mean((d_real - t_real) ** 2)
        loss_fake = 0.5 * jnp.mean((d_fake - t_fake) ** 2)
        # LSGAN's D regresses to 1/0, so its decision threshold is 0.5, not 0.
        return loss_real + loss_fake, _aux(loss_real, loss_fake, d_real, d_fake, threshold=0.5)

    return d_loss


def least_squares_g_loss(d_fake: Array, d_real: Array | None = None) -> Array:
    """LSGAN (Mao et al. 2017, a=0, b=c=1): L_G = ½ E (D(G(z)) − 1)²."""
    del d_real
    return 0.5 * jnp.mean((d_fake - 1.0) ** 2)


# --------------------------------------------------------------------------- registry

_WITH_TARGETS = ("non_saturating", "minimax", "least_squares")
_WITH_MARGIN = ("hinge", "rahinge")
G_LOSS_NEEDS_REAL = ("rahinge",)  # relativistic G losses compare D(fake) with D(real)
LOSS_NAMES = ("hinge", "non_saturating", "minimax", "least_squares", "wasserstein", "rahinge")
_ALIASES = {
    "ns": "non_saturating",
    "nonsaturating": "non_saturating",
    "lsgan": "least_squares",
    "ls": "least_squares",
    "wgan": "wasserstein",
    "relativistic_average_hinge": "rahinge",
    "dcgan": "non_saturating",
}


def canonical_loss_name(name: str) -> str:
    """The LOSS_NAMES entry for a loss name or alias ('ns' → 'non_saturating')."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in LOSS_NAMES:
        raise ValueError(
            f"unknown GAN loss {name!r}; valid names: {', '.join(LOSS_NAMES)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})."
        )
    return key


def has_targets(name: str) -> bool:
    """Whether a loss has real/fake targets (so label smoothing / soft / noisy labels apply to
    it)."""
    return canonical_loss_name(name) in _WITH_TARGETS


def get_loss(
    name: str = "hinge",
    *,
    margin: float = 1.0,
    real_target: float = 1.0,
    noisy_labels: bool = False,
    noisy_real_range: tuple[float, float] = (0.7, 1.2),
    noisy_fake_range: tuple[float, float] = (0.0, 0.3),
    flip_prob: float = 0.05,
    soft_labels: bool = True,
) -> tuple[DLossFn, GLossFn]:
    """Return (d_loss_fn, g_loss_fn) for a loss name in LOSS_NAMES (aliases: ns, lsgan, wgan, …).

    margin: hinge / rahinge margin (1 in the paper). real_target: real label for target losses; 0.9
    is one-sided label smoothing (Salimans et al. 2016). noisy_labels: soft and noisy labels — real
    ~ U[0.7, 1.2], fake ~ U[0, 0.3], flip_prob (5%)
      flipped; the D loss then needs `rng=`. Only for non_saturating / minimax / least_squares.
      soft_labels=False keeps the plain targets (real_target, 0) and only flips them.
    """
    key = canonical_loss_name(name)
    uses_labels = noisy_labels or real_target != 1.0
    if uses_labels and key not in _WITH_TARGETS:
        raise ValueError(
            f"label smoothing / noisy labels need a loss with targets ({', '.join(_WITH_TARGETS)}); "
            f"{key!r} has none. Use real_target=1.0, noisy_labels=False, or another loss."
        )
    if margin != 1.0 and key not in _WITH_MARGIN:
        raise ValueError(f"margin={margin} only applies to {', '.join(_WITH_MARGIN)}, not {key!r}.")
    if margin <= 0:
        raise ValueError(f"hinge margin must be > 0, got {margin}.")
    if not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}.")
    target_options = dict(
        real_target=float(real_target),
        noisy_labels=bool(noisy_labels),
        real_range=tuple(noisy_real_range),
        fake_range=tuple(noisy_fake_range),
        flip_prob=float(flip_prob),
        soft=bool(soft_labels),
    )

    def checked(fn):
        def d_loss(d_real, d_fake, rng=None):
            del rng  # target-free losses use no randomness
            _check_logits("d_real", d_real)
            _check_logits("d_fake", d_fake)
            return fn(d_real, d_fake)

        return d_loss

    if key == "hinge":
        return checked(lambda r, f: hinge_d_loss(r, f, margin)), hinge_g_loss
    if key == "rahinge":
        return (
            checked(lambda r, f: relativistic_average_hinge_d_loss(r, f, margin)),
            lambda d_fake, d_real=None: relativistic_average_hinge_g_loss(d_fake, d_real, margin),
        )
    if key == "wasserstein":
        return checked(wasserstein_d_loss), wasserstein_g_loss
    if key == "non_saturating":
        return _make_bce_d_loss(target_options), non_saturating_g_loss
    if key == "minimax":
        return _make_bce_d_loss(target_options), minimax_g_loss
    return _make_least_squares_d_loss(target_options), least_squares_g_loss
