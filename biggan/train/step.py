"""The BigGAN train step: a pure function of (state, batch, rng), jitted once.

One step = `num_d_steps` D updates, each on its own real batch with fresh z and y, then one G update
(paper table 1 row 8, appendix C), then G's EMA. Each update averages gradients over
`num_accumulations` micro-batches; batch norm statistics are those of each micro-batch, as in
BigGAN-PyTorch's accumulation (a micro-batch is what one forward pass sees). G's EMA copy follows G
exactly before `ema_start` and decays after it.

`make_train_step` binds the step with what it uses (functools.partial over a `StepSetup`): the
models' structure, the enabled techniques, the losses, the optimisers and a few numbers, not the
config. Read top to bottom: `train_step` composes `d_update`, `g_update` and `ema_update`; each
update is one screen in the order the maths happens; the pieces both updates share follow. Every
technique of biggan/techniques/registry.py plugs in through the hooks of biggan/techniques/base.py,
called in registry order; with none enabled the step is the plain one bit for bit
(tests/test_ablation.py, tests/techniques/test_techniques_in_step.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from biggan import core_config
from biggan.data import to_model_range
from biggan.gan import latents, losses, regularisers
from biggan.models import factory as models
from biggan.runtime.sharding import DATA_AXIS
from biggan.techniques import registry
from biggan.techniques.base import DContext, GContext, micro_batch_size, nonnegative, whole
from biggan.train.loops import (
    accumulate_gradients,
    loops_unrolled,
    scan_or_unroll,
    unroll_discriminator,
)
from biggan.train.state import (
    Models,
    TrainState,
    make_optimizers,
    merge,
    split,
    with_technique_state,
)

# Randomness the step draws itself comes from fold_in(rng, tag), so that `rng` draws z and y exactly
# as without the techniques (whose keys fold their own `rng_tag`; the default step is
# bit-identical).
UNROLL = 6


@dataclasses.dataclass(frozen=True, eq=False)
class StepSetup:
    """What the step is bound with: the models' structure, the enabled techniques (registry order),
    the losses and optimisers, and the numbers it reads."""

    mdl: Models
    techniques: tuple
    d_loss_fn: Callable
    g_loss_fn: Callable
    d_tx: optax.GradientTransformation
    g_tx: optax.GradientTransformation
    latent_fn: Callable  # (key, n, step) -> z (paper: N(0, I); appendix E's alternatives)
    num_classes: int
    num_d_steps: int
    num_accumulations: int
    micro_batch: int
    ortho_beta: float
    unrolled_d_steps: int
    ema_decay: float
    ema_start: int
    dtype: Any
    g_needs_real: bool  # a relativistic G loss scores the real micro-batch beside the fakes
    g_reads_real: bool  # ... or a technique's G term reads it
    mesh: Any = None
    unroll: Any = None

    def using(self, hook: str) -> tuple:
        return tuple(technique for technique in self.techniques if technique.uses(hook))

    @functools.cached_property
    def noisy_labels(self):
        """The technique whose loss options make D's loss draw targets (it then takes that
        technique's key)."""
        return next((t for t in self.techniques if t.loss_options().get("noisy_labels")), None)

    @functools.cached_property
    def stateful(self) -> tuple:
        return self.using("init_state")

    @functools.cached_property
    def threaded(self) -> tuple:
        """The stateful techniques whose state D's micro-batches change (replay, ADA's counts,
        LeCam's anchors): only these are carried through the micro-batch loop; the others are
        constants there."""
        return tuple(t for t in self.stateful if t.uses("d_fakes") or t.uses("d_terms"))


def make_train_step(config: ml_collections.ConfigDict, mdl: Models, mesh=None, unroll=None):
    """Return `train_step(state, batch, rng) -> (state, metrics)`, to be wrapped in jax.jit.

    batch: {'image': uint8 (num_d_steps, num_accumulations, B, H, W, 3), 'label': int (same leading
    dims)}.
    """
    t, m = config.train, config.model
    check_toolkit(config)
    techniques = tuple(registry.enabled(config))  # the switched-on techniques, in hook order
    g_tx, d_tx = make_optimizers(t)
    loss_options = dict(margin=t.hinge_margin, real_target=1.0)
    for technique in techniques:
        loss_options.update(technique.loss_options())
    d_loss_fn, g_loss_fn = losses.get_loss(t.loss, **loss_options)
    latent, dim_z = t.latent, m.dim_z
    latent_kwargs = core_config.parse_kwargs(t.latent_kwargs, "train.latent_kwargs")

    def latent_fn(key, n, step):
        if latent == "normal" and not latent_kwargs:
            return jax.random.normal(key, (n, dim_z), jnp.float32)
        # appendix E latents; variance annealing follows the training step
        kwargs = dict(latent_kwargs, step=step) if latent == "variance_annealing" else latent_kwargs
        return latents.sample_latent(latent, key, (n, dim_z), **kwargs).astype(jnp.float32)

    g_needs_real = losses.canonical_loss_name(t.loss) in losses.G_LOSS_NEEDS_REAL
    setup = StepSetup(
        mdl=mdl, techniques=techniques, d_loss_fn=d_loss_fn, g_loss_fn=g_loss_fn, d_tx=d_tx, g_tx=g_tx,
        latent_fn=latent_fn, num_classes=m.num_classes, num_d_steps=t.num_d_steps,
        num_accumulations=t.num_accumulations, micro_batch=micro_batch_size(t), ortho_beta=t.ortho_beta,
        unrolled_d_steps=int(t.unrolled_d_steps), ema_decay=t.ema_decay, ema_start=t.ema_start,
        dtype=models.DTYPES[m.dtype], g_needs_real=g_needs_real,
        g_reads_real=g_needs_real or any(technique.needs_real_in_g for technique in techniques),
        mesh=mesh, unroll=unroll,
    )  # fmt: skip
    return functools.partial(train_step, setup)


def check_toolkit(config: ml_collections.ConfigDict) -> None:
    """Refuse bad or contradictory switches before tracing (each technique checks its own keys)."""
    t = config.train
    micro_batch_size(t)
    whole(t, "unrolled_d_steps")
    nonnegative(t, "unrolled_d_steps")
    if t.latent not in latents.LATENT_NAMES:
        raise ValueError(
            f"train.latent={t.latent!r} is not a latent distribution; valid: "
            f"{', '.join(latents.LATENT_NAMES)}"
        )
    registry.enabled(config)


def train_step(setup: StepSetup, state: TrainState, batch, rng):
    """`num_d_steps` D updates, one G update, the EMA; the techniques' after-step hooks."""
    state = with_technique_state(setup.techniques, state)
    d_rng, g_rng = jax.random.split(rng)
    carry = d_carry(state)
    d_inputs = (batch["image"], batch["label"], jax.random.split(d_rng, setup.num_d_steps))
    (d_params, d_state, d_opt, g_state, _, extras), d_metrics = scan_or_unroll(
        functools.partial(d_update, setup, step=state.step), carry, d_inputs, setup.unroll
    )
    state = state.replace(
        d_params=d_params, d_state=d_state, d_opt=d_opt, g_state=g_state, extras=extras
    )
    # G's update sees the step's last real micro-batch when its loss or a technique scores reals.
    g_params, g_state, d_state, g_opt, extras, g_metrics = g_update(
        setup, state, g_rng, (batch["image"][-1], batch["label"][-1])
    )
    step = state.step + 1
    technique_metrics = {}
    for technique in setup.using("after_step"):
        extras[technique.name], logged = technique.after_step(extras[technique.name], step)
        technique_metrics.update(logged)
    ema = ema_update(state.ema_params, g_params, step, setup.ema_decay, setup.ema_start)
    new_state = state.replace(
        step=step, g_params=g_params, g_state=g_state, d_state=d_state, g_opt=g_opt,
        ema_params=ema, extras=extras,
    )  # fmt: skip
    metrics = {k: v[-1] for k, v in d_metrics.items()}  # the last D update of the step
    metrics.update(g_metrics)
    metrics.update(technique_metrics)
    finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((g_params, d_params))]
    finite += [jnp.isfinite(v) for v in jax.tree.leaves(metrics)]
    metrics["all_finite"] = jnp.all(jnp.stack(finite))
    return new_state, metrics


def d_update(setup: StepSetup, carry, xs, step):
    """One D update: the mean gradient of D's loss over the micro-batches of `xs` (images, labels,
    key), each scored beside as many fresh fakes, then the techniques' terms on D's weights, the
    optimiser and the update hooks. `carry`: D's params, SN state and optimiser, G's BN state and
    params, the extras."""
    d_params, d_state, d_opt, g_state, g_params, extras = carry
    images, labels, rng = xs
    # The technique states D's micro-batches change are threaded through them like a model state.
    threaded = {t.name: extras[t.name] for t in setup.threaded}
    constant = {t.name: extras[t.name] for t in setup.stateful if t.name not in threaded}

    def micro_batch_loss(d_params, states, micro_batch):
        d_state, g_state, tech = states
        images, labels, rng = micro_batch
        tech = dict(constant, **tech)
        G = merge(setup.mdl.g_graphdef, g_params, g_state)
        D = merge(setup.mdl.d_graphdef, d_params, d_state)
        z, y_fake = sample_zy(setup, rng, images.shape[0], step)
        fake = jax.lax.stop_gradient(G(z, y_fake, train=True))
        real = to_model_range(images, setup.dtype)
        for technique in setup.using("d_fakes"):  # experience replay swaps in past fakes
            name = technique.name
            fake, y_fake, tech[name] = technique.d_fakes(
                fake, y_fake, technique.key(rng), tech[name]
            )
        fake = fake.astype(real.dtype)
        # One D pass over [fake; real] (D has no batch norm, so this equals two passes; SN steps
        # once; minibatch discrimination compares fakes with fakes and reals with reals: groups=2).
        both = (jnp.concatenate([fake, real]), jnp.concatenate([y_fake, labels]))
        d_fake, d_real = jnp.split(d_logits(setup, D, *both, rng, step, tech, groups=2), 2)
        noisy = {} if setup.noisy_labels is None else {"rng": setup.noisy_labels.key(rng)}
        loss, aux = setup.d_loss_fn(d_real, d_fake, **noisy)
        terms = {}
        # gradient penalties, LeCam, consistency: this micro-batch's terms
        if setup.using("d_terms"):
            states_before = dict(tech)
            ctx = DContext(
                real=real, fake=fake, labels=labels, fake_labels=y_fake, z=z, d_real=d_real,
                d_fake=d_fake, d_fn=fresh_d(setup, d_params, d_state),
                d_viewed_fn=fresh_d(setup, d_params, d_state, view=False),
                view=functools.partial(viewed, setup),
                augment=lambda x, key: augmented(setup, x, key, states_before),
                g_fn=lambda z, y: jax.lax.stop_gradient(fresh_g(setup, g_params, g_state)(z, y)),
                rng=None, step=step,
            )  # fmt: skip
            for technique in setup.using("d_terms"):
                key = technique.key(rng) if technique.rng_tag is not None else None
                new_terms, new = technique.d_terms(ctx._replace(rng=key), tech.get(technique.name))
                terms.update(new_terms)
                if technique.name in tech:
                    tech[technique.name] = new
        for value in terms.values():
            loss = loss + value
        changed = {name: tech[name] for name in threaded}
        return loss, (dict(aux, **terms), (split(D), split(G), changed))

    micro_batches = (images, labels, jax.random.split(rng, images.shape[0]))
    grads, (d_state, g_state, changed), loss, aux = accumulate_gradients(
        micro_batch_loss, d_params, (d_state, g_state, threaded), micro_batches, setup.unroll
    )
    extras = dict(extras, **changed)
    metrics = dict(aux, d_loss=loss)
    if setup.using("d_param_terms"):  # historical averaging
        weight_terms = lambda p: param_terms(setup, "d_param_terms", p, extras)
        grads = with_param_terms(weight_terms, d_params, grads, metrics)
    updates, d_opt = setup.d_tx.update(grads, d_opt, d_params)
    for technique in setup.using("d_updates"):  # FreezeD
        updates = technique.d_updates(updates)
    d_params = optax.apply_updates(d_params, updates)
    for technique in setup.using("after_d_update"):
        d_params, extras[technique.name] = technique.after_d_update(
            d_params, extras.get(technique.name)
        )
    return (d_params, d_state, d_opt, g_state, g_params, extras), metrics


def g_update(setup: StepSetup, state, rng, real_batch):
    """One G update against the current D (or one unrolled further): the mean gradient of G's loss
    over `num_accumulations` micro-batches of fresh fakes, then ortho (paper eq. 3) and the
    techniques' terms on G's weights, the optimiser and the update hooks. Returns G's params, BN
    state and optimiser, D's SN state after G's passes, the extras and the metrics."""
    if setup.unrolled_d_steps:
        d_params, d_state_for_g = unrolled_discriminator(setup, state, rng, real_batch)
    else:
        d_params, d_state_for_g = state.d_params, state.d_state
    tech = {t.name: state.extras[t.name] for t in setup.stateful}

    def micro_batch_loss(g_params, states, micro_batch):
        g_state, d_state = states
        rng, *real_micro_batch = micro_batch
        images, labels = real_micro_batch or (None, None)
        G = merge(setup.mdl.g_graphdef, g_params, g_state)
        D = merge(setup.mdl.d_graphdef, d_params, d_state)
        z, y = sample_zy(setup, rng, setup.micro_batch, state.step)
        fake = G(z, y, train=True)
        real = None if images is None else to_model_range(images, setup.dtype)
        if setup.g_needs_real:
            # A relativistic G loss scores the real micro-batch beside the fakes: one D pass over
            # [fake; real] as in D's update. D(real) holds no G parameter, so it only shifts G's
            # targets.
            both = (jnp.concatenate([fake.astype(real.dtype), real]), jnp.concatenate([y, labels]))
            d_fake, d_real = jnp.split(
                d_logits(setup, D, *both, rng, state.step, tech, groups=2), 2
            )
            loss, aux = setup.g_loss_fn(d_fake, jax.lax.stop_gradient(d_real)), {}
        else:
            d_fake = d_logits(setup, D, fake, y, rng, state.step, tech)
            loss, aux = setup.g_loss_fn(d_fake), {}
        if setup.using("g_terms"):  # feature matching, zCR's G term
            ctx = GContext(
                z=z, labels=y, fake=fake, d_fake=d_fake, real=real, real_labels=labels,
                d_fn=fresh_d(setup, d_params, d_state),
                d_features_fn=lambda x, y: merge(setup.mdl.d_graphdef, d_params, d_state).features(
                    viewed(setup, x, y)[0], train=True
                ),
                augment=lambda x, key: augmented(setup, x, key, tech),
                g_fn=fresh_g(setup, g_params, g_state), rng=None, step=state.step,
            )  # fmt: skip
            for technique in setup.using("g_terms"):
                key = technique.key(rng) if technique.rng_tag is not None else None
                terms = technique.g_terms(ctx._replace(rng=key), tech.get(technique.name))
                aux.update(terms)
                for value in terms.values():
                    loss = loss + value
        return loss, (aux, (split(G), split(D)))

    micro_batches = (jax.random.split(rng, setup.num_accumulations),)
    micro_batches += real_batch if setup.g_reads_real else ()
    grads, (g_state, d_state), loss, aux = accumulate_gradients(
        micro_batch_loss,
        state.g_params,
        (state.g_state, d_state_for_g),
        micro_batches,
        setup.unroll,
    )
    # G's passes went through the unrolled copy; the real D's SN state stays
    if setup.unrolled_d_steps:
        d_state = state.d_state
    metrics = dict(aux, g_loss=loss)
    extras = dict(state.extras)
    if setup.ortho_beta or setup.using("g_param_terms"):  # ortho, then σ0 and historical averaging
        weight_terms = lambda p: dict(
            {"ortho_penalty": ortho_penalty(p, setup.ortho_beta)} if setup.ortho_beta else {},
            **param_terms(setup, "g_param_terms", p, extras),
        )
        grads = with_param_terms(weight_terms, state.g_params, grads, metrics)
    updates, g_opt = setup.g_tx.update(grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    for technique in setup.using("after_g_update"):  # σ0 clamp
        g_params, extras[technique.name] = technique.after_g_update(
            g_params, extras.get(technique.name)
        )
    return g_params, g_state, d_state, g_opt, extras, metrics


def d_carry(state: TrainState) -> tuple:
    """What a D update reads and writes: D's params, SN state and optimiser, G's BN state and
    params, the technique states."""
    return (
        state.d_params,
        state.d_state,
        state.d_opt,
        state.g_state,
        state.g_params,
        state.extras,
    )


def ema_update(ema_params, g_params, step, decay, start):
    """EMA of G's weights (paper appendix C): equal to G until `start`, then `decay`."""
    decay = jnp.where(step > start, decay, 0.0)
    return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_params, g_params)


# ------------------------------------------------------------------ what both updates share


def sample_zy(setup: StepSetup, rng, batch_size, step):
    """Fresh z and y for `batch_size` fakes, sharded like the data."""
    kz, ky = jax.random.split(rng)
    z = setup.latent_fn(kz, batch_size, step)
    y = jax.random.randint(ky, (batch_size,), 0, setup.num_classes)
    if setup.mesh is None:
        return z, y
    sharded = NamedSharding(setup.mesh, P(DATA_AXIS))
    return jax.lax.with_sharding_constraint(z, sharded), jax.lax.with_sharding_constraint(
        y, sharded
    )


def d_logits(setup: StepSetup, D, x, y, rng, step, tech, groups=1):
    """D(x, y) in training mode after the D-input hooks (augmentation, instance noise, view) and
    with the feature hooks (dropout, paper §4.2). `groups`: x is that many equal batches (all fake /
    all real) for minibatch discrimination. `tech`: the techniques' states."""
    x = augmented(setup, x, rng, tech)
    for technique in setup.using("perturb"):
        x = technique.perturb(x, technique.key(rng), step)
    x, y = viewed(setup, x, y)
    feature_hooks = setup.using("d_features")
    if not feature_hooks:
        return D(x, y, train=True, groups=groups)
    h = D.features(x, train=True)
    for technique in feature_hooks:
        h = technique.d_features(h, technique.key(rng))
    return D.head(h, y, train=True, groups=groups)


def viewed(setup: StepSetup, x, y):
    """How D sees a batch (`d_view` hooks: PacGAN's packs)."""
    for technique in setup.using("d_view"):
        x, y = technique.d_view(x, y)
    return x, y


def augmented(setup: StepSetup, x, rng, tech):
    """The D-input augmentation of DiffAugment or ADA (one at most; one key per batch, per-sample
    draws)."""
    for technique in setup.using("augment"):
        x = technique.augment(x, technique.key(rng), tech.get(technique.name))
    return x


def fresh_d(setup: StepSetup, d_params, d_state, view=True):
    """D's logits from a fresh copy (its SN state is dropped), through the view hooks unless `view`
    is off, no augmentation."""

    def d_fn(x, y):
        D = merge(setup.mdl.d_graphdef, d_params, d_state)
        return D(*viewed(setup, x, y), train=True) if view else D(x, y, train=True)

    return d_fn


def fresh_g(setup: StepSetup, g_params, g_state):
    """G's training-mode images from a fresh copy (its BN statistics are dropped)."""
    return lambda z, y: merge(setup.mdl.g_graphdef, g_params, g_state)(z, y, train=True)


def ortho_penalty(g_params, beta):
    return regularisers.ortho_penalty(nnx.to_pure_dict(g_params), beta, regularisers.ortho_filter)


def param_terms(setup: StepSetup, hook: str, params, extras) -> dict:
    """The enabled techniques' terms on one network's weights (`hook`: d_param_terms or
    g_param_terms)."""
    terms = {}
    for technique in setup.using(hook):
        terms.update(getattr(technique, hook)(params, extras.get(technique.name)))
    return terms


def with_param_terms(param_terms_fn, params, grads, metrics):
    """Add the exact gradient of the parameter terms to `grads`, and the terms to `metrics`."""
    # Ortho: the exact gradient of eq. 3's R (= 2× BigGAN-PyTorch's hand-written term; BUILD_NOTES).
    terms, vjp = jax.vjp(param_terms_fn, params)
    (term_grads,) = vjp({k: jnp.ones_like(v) for k, v in terms.items()})
    metrics.update(terms)
    return jax.tree.map(jnp.add, grads, term_grads)


# ------------------------------------------------------------------ unrolled D (Metz et al. 2017)


def unrolled_discriminator(setup: StepSetup, state, rng, real_batch):
    """D's params and SN state after `unrolled_d_steps` further D updates (the full update:
    optimiser, penalties, techniques) on the current real batch with fresh z. First-order version:
    the unrolled D is a constant for G (stop_gradient), i.e. no gradient through the unrolling (Metz
    et al.'s full version differentiates through it). Everything the copy changes (D, its optimiser,
    G's BN statistics, the technique states) is discarded after G's update."""
    key = jax.random.fold_in(rng, UNROLL)
    images, labels = real_batch

    def d_step(carry, i):
        return d_update(setup, carry, (images, labels, jax.random.fold_in(key, i)), state.step)[0]

    carry = d_carry(state)
    ahead = unroll_discriminator(
        d_step, carry, setup.unrolled_d_steps, unroll=loops_unrolled(setup.unroll)
    )
    return jax.lax.stop_gradient(ahead[0]), ahead[1]
