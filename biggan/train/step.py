"""The BigGAN train step: a pure function of (state, batch, rng), jitted once.

One step = `num_d_steps` D updates, each on its own real batch with fresh z and y, then one G update
(paper table 1 row 8, appendix C). Each update averages gradients over `num_accumulations` micro-batches (lax.scan); batch norm
statistics are those of each micro-batch, as in BigGAN-PyTorch's accumulation (a micro-batch is what
one forward pass sees). G's EMA copy follows G exactly before `ema_start` and decays after it.

The step is module-level functions of a `StepSetup` (the config, the models' structure, the enabled
techniques, losses, optimisers) bound once by `make_train_step` with functools.partial: `d_update`, `g_update`,
`ema_update`, and `train_step`, which composes them; unrolled D (`unrolled_discriminator`) wraps `d_update`.
Every technique of biggan/techniques/registry.py plugs in through the hooks of biggan/techniques/base.py,
called in registry order; with none enabled the step is the plain one bit for bit (tests/test_ablation.py,
tests/test_techniques_in_step.py).
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

from biggan import config as cfg
from biggan.data import to_model_range
from biggan.gan import latents, losses, regularisers
from biggan.gan.regularisers import ortho_filter
from biggan.models import factory as models
from biggan.runtime.sharding import DATA_AXIS
from biggan.techniques import registry
from biggan.techniques.base import DContext, GContext, micro_batch_size, nonnegative, whole
from biggan.train.state import (
    Models,
    TrainState,
    make_optimizers,
    merge,
    split,
    with_technique_state,
)


def ortho_penalty(g_params, beta):
    return regularisers.ortho_penalty(nnx.to_pure_dict(g_params), beta, ortho_filter)


def loops_unrolled(unroll=None) -> bool:
    """Whether the step's loops run as Python loops: `unroll`, or by default on CPU (scan_or_unroll)."""
    return jax.default_backend() == "cpu" if unroll is None else bool(unroll)


def scan_or_unroll(body, init, xs, unroll=None):
    """`lax.scan(body, init, xs)`, or the same loop unrolled in Python when `unroll` (default: on CPU).

    XLA:CPU runs convolutions inside a while-loop body ~40× slower than outside (jax 0.10.2, measured:
    the same D-block gradient twice took 5.1 s in lax.scan and 0.13 s unrolled; BUILD_NOTES). On TPU/GPU
    scan keeps compile time flat in the number of D steps and accumulations, so it stays the default there.
    """
    if not loops_unrolled(unroll):
        return jax.lax.scan(body, init, xs)
    n = jax.tree.leaves(xs)[0].shape[0]
    carry, outs = init, []
    for i in range(n):
        carry, out = body(carry, jax.tree.map(lambda a: a[i], xs))
        outs.append(out)
    stacked = None if outs[0] is None else jax.tree.map(lambda *a: jnp.stack(a), *outs)
    return carry, stacked


def accumulate_gradients(loss_fn, params, carry_states, micro_inputs, unroll=None):
    """Mean loss, gradient and aux over micro-batches (leading axis of `micro_inputs`), in `scan_or_unroll`.

    `loss_fn(params, *states, *micro_input) -> (loss, (aux, *new_states))`; the states (SN vectors,
    BN statistics) are threaded through the micro-batches in order.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    n = jax.tree.leaves(micro_inputs)[0].shape[0]

    def body(acc, xs):
        grads_sum, states, loss_sum, aux_sum = acc
        (loss, (aux, *new_states)), grads = grad_fn(params, *states, *xs)
        return (
            jax.tree.map(jnp.add, grads_sum, grads),
            tuple(new_states),
            loss_sum + loss,
            jax.tree.map(jnp.add, aux_sum, aux),
        ), None

    if loops_unrolled(unroll):
        # The first micro-batch's results start the sums (0 + x = x: the same sums as from zeros), so each
        # micro-batch's loss is traced once; the zeros of the scan below need the aux structure, which
        # jax.eval_shape gets by tracing the loss and its gradient once more (about half a CPU step's trace).
        (loss, (aux, *states)), grads = grad_fn(
            params, *carry_states, *jax.tree.map(lambda a: a[0], micro_inputs)
        )
        acc = (grads, tuple(states), loss, aux)
        if n > 1:
            acc, _ = scan_or_unroll(body, acc, jax.tree.map(lambda a: a[1:], micro_inputs), unroll)
        grads, states, loss, aux = acc
    else:
        first = jax.tree.map(lambda a: a[0], micro_inputs)
        aux_shape = jax.eval_shape(lambda: grad_fn(params, *carry_states, *first)[0][1][0])
        init = (
            jax.tree.map(jnp.zeros_like, params),
            tuple(carry_states),
            jnp.zeros(()),
            jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape),
        )
        (grads, states, loss, aux), _ = scan_or_unroll(body, init, micro_inputs, unroll)
    return (
        jax.tree.map(lambda g: g / n, grads),
        states,
        loss / n,
        jax.tree.map(lambda a: a / n, aux),
    )


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


@dataclasses.dataclass(frozen=True, eq=False)
class StepSetup:
    """What the step's functions read besides (state, batch, rng), fixed when the step is built: the
    config, the models' structure, the enabled techniques (registry order), the losses and optimisers."""

    config: ml_collections.ConfigDict
    mdl: Models
    mesh: Any
    unroll: Any
    techniques: tuple
    d_loss_fn: Any
    g_loss_fn: Any
    g_tx: Any
    d_tx: Any
    latent_kwargs: dict
    dtype: Any
    micro_batch: int
    g_needs_real: bool

    def using(self, hook: str) -> tuple:
        return tuple(technique for technique in self.techniques if technique.uses(hook))

    @functools.cached_property
    def noisy_labels(self):
        """The technique whose loss options make D's loss draw targets (it then takes that technique's key)."""
        return next(
            (tech for tech in self.techniques if tech.loss_options().get("noisy_labels")), None
        )

    @functools.cached_property
    def stateful(self) -> tuple:
        return self.using("init_state")

    @functools.cached_property
    def threaded(self) -> tuple:
        """The stateful techniques whose state D's micro-batches change (replay, ADA's counts, LeCam's anchors):
        only these are carried through the micro-batch loop; the others' states are constants there."""
        return tuple(t for t in self.stateful if t.uses("d_fakes") or t.uses("d_terms"))


# Randomness the step draws itself comes from fold_in(rng, tag), so that `rng` draws z and y exactly as without
# the techniques (whose keys fold their own `rng_tag`; the default step is bit-identical: tests/test_ablation.py).
UNROLL = 6


def constrain(setup: StepSetup, x):
    """Keep generated tensors sharded like the data."""
    if setup.mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(setup.mesh, P(DATA_AXIS)))


def sample_zy(setup: StepSetup, rng, batch_size, step):
    t, m = setup.config.train, setup.config.model
    kz, ky = jax.random.split(rng)
    if t.latent == "normal" and not setup.latent_kwargs:
        z = jax.random.normal(kz, (batch_size, m.dim_z), jnp.float32)
    else:  # appendix E latents; variance annealing follows the training step
        kw = (
            dict(setup.latent_kwargs, step=step)
            if t.latent == "variance_annealing"
            else setup.latent_kwargs
        )
        z = latents.sample_latent(t.latent, kz, (batch_size, m.dim_z), **kw).astype(jnp.float32)
    y = jax.random.randint(ky, (batch_size,), 0, m.num_classes)
    return constrain(setup, z), constrain(setup, y)


def viewed(setup: StepSetup, x, y):
    """How D sees a batch (`d_view` hooks: PacGAN's packs)."""
    for technique in setup.using("d_view"):
        x, y = technique.d_view(x, y)
    return x, y


def augmented(setup: StepSetup, x, rng, tech):
    """The D-input augmentation of DiffAugment or ADA (one at most; one key per batch, parameters per sample)."""
    for technique in setup.using("augment"):
        x = technique.augment(x, technique.key(rng), tech.get(technique.name))
    return x


def d_logits(setup: StepSetup, D, x, y, rng, step, tech, groups=1):
    """D(x, y) in training mode after the D-input hooks (augmentation, instance noise, view) and with the
    feature hooks (dropout, paper §4.2). `groups`: x is that many equal batches (all fake / all real) for
    minibatch discrimination. `tech`: the techniques' states."""
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


def fresh_d(setup: StepSetup, d_params, d_state, view=True):
    """D's logits from a fresh copy (its SN state is dropped), through the view hooks unless `view` is off,
    no augmentation."""

    def d_fn(x, y):
        D = merge(setup.mdl.d_graphdef, d_params, d_state)
        return D(*viewed(setup, x, y), train=True) if view else D(x, y, train=True)

    return d_fn


def fresh_g(setup: StepSetup, g_params, g_state):
    """G's training-mode images from a fresh copy (its BN statistics are dropped)."""
    return lambda z, y: merge(setup.mdl.g_graphdef, g_params, g_state)(z, y, train=True)


def d_micro_loss(
    setup: StepSetup, d_params, d_state, g_params, g_state, tech, images, labels, rng, step
):
    """D's loss on one micro-batch of reals and as many fresh fakes; `tech`: the techniques' states."""
    G = merge(setup.mdl.g_graphdef, g_params, g_state)
    D = merge(setup.mdl.d_graphdef, d_params, d_state)
    z, y_fake = sample_zy(setup, rng, images.shape[0], step)
    fake = jax.lax.stop_gradient(G(z, y_fake, train=True))
    real = to_model_range(images, setup.dtype)
    tech = dict(tech)
    for technique in setup.using("d_fakes"):
        fake, y_fake, tech[technique.name] = technique.d_fakes(
            fake, y_fake, technique.key(rng), tech[technique.name]
        )
    # One D pass over [fake; real] (D has no batch norm, so this equals two passes; SN steps once;
    # minibatch discrimination compares fakes with fakes and reals with reals: groups=2).
    out = d_logits(
        setup,
        D,
        jnp.concatenate([fake.astype(real.dtype), real]),
        jnp.concatenate([y_fake, labels]),
        rng,
        step,
        tech,
        groups=2,
    )
    d_fake, d_real = jnp.split(out, 2)
    if setup.noisy_labels is not None:
        loss, aux = setup.d_loss_fn(d_real, d_fake, rng=setup.noisy_labels.key(rng))
    else:
        loss, aux = setup.d_loss_fn(d_real, d_fake)
    terms = {}
    term_hooks = setup.using("d_terms")
    if term_hooks:
        states = dict(tech)
        ctx = DContext(
            real=real,
            fake=fake.astype(real.dtype),
            labels=labels,
            fake_labels=y_fake,
            z=z,
            d_real=d_real,
            d_fake=d_fake,
            d_fn=fresh_d(setup, d_params, d_state),
            d_viewed_fn=fresh_d(setup, d_params, d_state, view=False),
            view=functools.partial(viewed, setup),
            augment=lambda x, key: augmented(setup, x, key, states),
            g_fn=lambda z, y: jax.lax.stop_gradient(fresh_g(setup, g_params, g_state)(z, y)),
            rng=None,
            step=step,
        )
        for technique in term_hooks:
            key = technique.key(rng) if technique.rng_tag is not None else None
            new_terms, new = technique.d_terms(ctx._replace(rng=key), tech.get(technique.name))
            terms.update(new_terms)
            if technique.name in tech:
                tech[technique.name] = new
    for value in terms.values():
        loss = loss + value
    return loss, (dict(aux, **terms), split(G), split(D), tech)


def g_micro_loss(
    setup: StepSetup,
    g_params,
    g_state,
    d_params,
    d_state,
    tech,
    rng,
    step,
    images=None,
    labels=None,
):
    """G's loss on one micro-batch of fakes; the step's last real micro-batch when a loss or technique needs it."""
    G = merge(setup.mdl.g_graphdef, g_params, g_state)
    D = merge(setup.mdl.d_graphdef, d_params, d_state)
    z, y = sample_zy(setup, rng, setup.micro_batch, step)
    fake = G(z, y, train=True)
    real = None if images is None else to_model_range(images, setup.dtype)
    if setup.g_needs_real:
        # A relativistic G loss scores the real micro-batch beside the fakes: one D pass over [fake; real] as in
        # D's step (SN steps once; groups=2 for minibatch discrimination). D(real) holds no G parameter, so it
        # only shifts G's targets.
        out = d_logits(
            setup,
            D,
            jnp.concatenate([fake.astype(real.dtype), real]),
            jnp.concatenate([y, labels]),
            rng,
            step,
            tech,
            groups=2,
        )
        d_fake, d_real = jnp.split(out, 2)
        loss, aux = setup.g_loss_fn(d_fake, jax.lax.stop_gradient(d_real)), {}
    else:
        d_fake = d_logits(setup, D, fake, y, rng, step, tech)
        loss, aux = setup.g_loss_fn(d_fake), {}
    term_hooks = setup.using("g_terms")
    if term_hooks:

        def d_features_fn(x, y):
            return merge(setup.mdl.d_graphdef, d_params, d_state).features(
                viewed(setup, x, y)[0], train=True
            )

        ctx = GContext(
            z=z,
            labels=y,
            fake=fake,
            d_fake=d_fake,
            real=real,
            real_labels=labels,
            d_fn=fresh_d(setup, d_params, d_state),
            d_features_fn=d_features_fn,
            augment=lambda x, key: augmented(setup, x, key, tech),
            g_fn=fresh_g(setup, g_params, g_state),
            rng=None,
            step=step,
        )
        for technique in term_hooks:
            key = technique.key(rng) if technique.rng_tag is not None else None
            terms = technique.g_terms(ctx._replace(rng=key), tech.get(technique.name))
            aux.update(terms)
            for value in terms.values():
                loss = loss + value
    return loss, (aux, split(G), split(D))


def g_param_terms(setup: StepSetup, g_params, extras):
    """Terms on G's weights added to its loss: ortho (paper eq. 3), then the techniques' (σ0, historical)."""
    terms = {}
    if setup.config.train.ortho_beta:
        terms["ortho_penalty"] = ortho_penalty(g_params, setup.config.train.ortho_beta)
    for technique in setup.using("g_param_terms"):
        terms.update(technique.g_param_terms(g_params, extras.get(technique.name)))
    return terms


def d_param_terms(setup: StepSetup, d_params, extras):
    terms = {}
    for technique in setup.using("d_param_terms"):
        terms.update(technique.d_param_terms(d_params, extras.get(technique.name)))
    return terms


def with_param_terms(param_terms_fn, params, grads, metrics):
    """Add the exact gradient of the parameter terms to `grads`, and the terms to `metrics`."""
    # Ortho: the exact gradient of eq. 3's R (= 2× BigGAN-PyTorch's hand-written term; BUILD_NOTES).
    terms, vjp = jax.vjp(param_terms_fn, params)
    (term_grads,) = vjp({k: jnp.ones_like(v) for k, v in terms.items()})
    metrics.update(terms)
    return jax.tree.map(jnp.add, grads, term_grads)


def d_update(setup: StepSetup, carry, xs, step):
    """One D update: the mean gradient over the micro-batches of `xs` (images, labels, key), the parameter
    terms, the update hooks, the optimiser. `carry`: D's params, SN state and optimiser, G's BN state and
    params, the extras."""
    d_params, d_state, d_opt, g_state, g_params, extras = carry
    images, labels, rng = xs
    rngs = jax.random.split(rng, images.shape[0])
    threaded_names = [technique.name for technique in setup.threaded]
    constant = {k: v for k, v in technique_states(setup, extras).items() if k not in threaded_names}

    def loss_fn(d_params, d_state, g_state, *rest):
        # The states D's micro-batches change are threaded through them like a model state.
        *threaded, images, labels, rng = rest
        tech = dict(constant, **threaded[0]) if threaded_names else constant
        loss, (aux, g_state_new, d_state_new, tech_new) = d_micro_loss(
            setup, d_params, d_state, g_params, g_state, tech, images, labels, rng, step
        )
        changed = {name: tech_new[name] for name in threaded_names}
        return loss, (aux, d_state_new, g_state_new) + ((changed,) if threaded_names else ())

    states = (d_state, g_state) + (
        ({name: extras[name] for name in threaded_names},) if threaded_names else ()
    )
    grads, states, loss, aux = accumulate_gradients(
        loss_fn, d_params, states, (images, labels, rngs), setup.unroll
    )
    d_state, g_state = states[:2]
    extras = dict(extras)
    if threaded_names:
        extras.update(states[2])
    metrics = dict(aux, d_loss=loss)
    if setup.using("d_param_terms"):
        grads = with_param_terms(
            lambda p: d_param_terms(setup, p, extras), d_params, grads, metrics
        )
    updates, d_opt = setup.d_tx.update(grads, d_opt, d_params)
    for technique in setup.using("d_updates"):
        updates = technique.d_updates(updates)
    d_params = optax.apply_updates(d_params, updates)
    for technique in setup.using("after_d_update"):
        d_params, extras[technique.name] = technique.after_d_update(
            d_params, extras.get(technique.name)
        )
    return (d_params, d_state, d_opt, g_state, g_params, extras), metrics


def unrolled_discriminator(setup: StepSetup, state, rng, real_batch):
    """Unrolled GAN (Metz et al. 2017): D's params and SN state after `unrolled_d_steps` further D updates
    (the full update: optimiser, penalties, techniques) on the current real batch with fresh z. First-order
    version: the unrolled D is a constant for G (stop_gradient), i.e. no gradient through the unrolling (Metz
    et al.'s full version differentiates through it). Everything the copy changes (D, its optimiser, G's BN
    statistics, the technique states) is discarded after G's update."""
    key = jax.random.fold_in(rng, UNROLL)
    images, labels = real_batch

    def d_step(carry, i):
        return d_update(setup, carry, (images, labels, jax.random.fold_in(key, i)), state.step)[0]

    carry = (
        state.d_params,
        state.d_state,
        state.d_opt,
        state.g_state,
        state.g_params,
        state.extras,
    )
    ahead = unroll_discriminator(
        d_step, carry, int(setup.config.train.unrolled_d_steps), unroll=loops_unrolled(setup.unroll)
    )
    return jax.lax.stop_gradient(ahead[0]), ahead[1]


def g_update(setup: StepSetup, state, rng, real_batch):
    """One G update against the current D (or the unrolled one): returns G's params, BN state, optimiser,
    D's SN state after G's pass, the extras and the metrics."""
    t = setup.config.train
    rngs = jax.random.split(rng, t.num_accumulations)
    if t.unrolled_d_steps:
        d_params, d_state_for_g = unrolled_discriminator(setup, state, rng, real_batch)
    else:
        d_params, d_state_for_g = state.d_params, state.d_state
    tech = technique_states(setup, state.extras)

    def loss_fn(g_params, g_state, d_state, rng, *real):
        loss, (aux, g_state_new, d_state_new) = g_micro_loss(
            setup, g_params, g_state, d_params, d_state, tech, rng, state.step, *real
        )
        return loss, (aux, g_state_new, d_state_new)

    needs_real = setup.g_needs_real or any(
        technique.needs_real_in_g for technique in setup.techniques
    )
    micro_inputs = (rngs,) + (real_batch if needs_real else ())
    grads, (g_state, d_state), loss, aux = accumulate_gradients(
        loss_fn, state.g_params, (state.g_state, d_state_for_g), micro_inputs, setup.unroll
    )
    if t.unrolled_d_steps:
        d_state = (
            state.d_state
        )  # G's pass went through the unrolled copy; the real D's SN state stays
    metrics = dict(aux, g_loss=loss)
    extras = dict(state.extras)
    if t.ortho_beta or setup.using("g_param_terms"):
        grads = with_param_terms(
            lambda p: g_param_terms(setup, p, extras), state.g_params, grads, metrics
        )
    updates, g_opt = setup.g_tx.update(grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    for technique in setup.using("after_g_update"):
        g_params, extras[technique.name] = technique.after_g_update(
            g_params, extras.get(technique.name)
        )
    return g_params, g_state, d_state, g_opt, extras, metrics


def ema_update(ema_params, g_params, step, decay, start):
    """EMA of G's weights (paper appendix C): equal to G until `start`, then `decay`."""
    decay = jnp.where(step > start, decay, 0.0)
    return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_params, g_params)


def technique_states(setup: StepSetup, extras):
    """The stateful techniques' states (TrainState.extras entries under their names)."""
    return {technique.name: extras[technique.name] for technique in setup.stateful}


def train_step(setup: StepSetup, state: TrainState, batch, rng):
    """`num_d_steps` D updates, one G update, the EMA; the techniques' after-step hooks. Pure and jitted once."""
    t = setup.config.train
    state = with_technique_state(setup.config, state)
    d_rng, g_rng = jax.random.split(rng)
    d_rngs = jax.random.split(d_rng, t.num_d_steps)
    carry = (
        state.d_params,
        state.d_state,
        state.d_opt,
        state.g_state,
        state.g_params,
        state.extras,
    )
    (d_params, d_state, d_opt, g_state, _, extras), d_metrics = scan_or_unroll(
        functools.partial(d_update, setup, step=state.step),
        carry,
        (batch["image"], batch["label"], d_rngs),
        setup.unroll,
    )
    state = state.replace(
        d_params=d_params, d_state=d_state, d_opt=d_opt, g_state=g_state, extras=extras
    )
    g_params, g_state, d_state, g_opt, extras, g_metrics = g_update(
        setup, state, g_rng, (batch["image"][-1], batch["label"][-1])
    )
    step = state.step + 1
    technique_metrics = {}
    for technique in setup.using("after_step"):
        extras[technique.name], logged = technique.after_step(extras[technique.name], step)
        technique_metrics.update(logged)
    ema = ema_update(state.ema_params, g_params, step, t.ema_decay, t.ema_start)
    new_state = state.replace(
        step=step,
        g_params=g_params,
        g_state=g_state,
        d_state=d_state,
        g_opt=g_opt,
        ema_params=ema,
        extras=extras,
    )
    metrics = {k: v[-1] for k, v in d_metrics.items()}  # the last D update of the step
    metrics.update(g_metrics)
    metrics.update(technique_metrics)
    metrics["all_finite"] = jnp.all(
        jnp.stack(
            [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((g_params, d_params))]
            + [jnp.isfinite(v) for v in jax.tree.leaves(metrics)]
        )
    )
    return new_state, metrics


def make_train_step(config: ml_collections.ConfigDict, mdl: Models, mesh=None, unroll=None):
    """Return `train_step(state, batch, rng) -> (state, metrics)`, to be wrapped in jax.jit.

    batch: {'image': uint8 (num_d_steps, num_accumulations, B, H, W, 3), 'label': int (same leading dims)}.
    """
    t, m = config.train, config.model
    check_toolkit(config)
    techniques = tuple(
        registry.enabled(config)
    )  # switched-on techniques of biggan/techniques/, in hook order
    g_tx, d_tx = make_optimizers(t)
    loss_options = dict(margin=t.hinge_margin, real_target=1.0)
    for technique in techniques:
        loss_options.update(technique.loss_options())
    d_loss_fn, g_loss_fn = losses.get_loss(t.loss, **loss_options)
    setup = StepSetup(
        config=config,
        mdl=mdl,
        mesh=mesh,
        unroll=unroll,
        techniques=techniques,
        d_loss_fn=d_loss_fn,
        g_loss_fn=g_loss_fn,
        g_tx=g_tx,
        d_tx=d_tx,
        latent_kwargs=cfg.parse_kwargs(t.latent_kwargs, "train.latent_kwargs"),
        dtype=models.DTYPES[m.dtype],
        micro_batch=micro_batch_size(t),
        g_needs_real=losses.canonical_loss_name(t.loss) in losses.G_LOSS_NEEDS_REAL,
    )
    return functools.partial(train_step, setup)


def unroll_discriminator(d_step_fn: Callable, d_state, k: int, unroll: bool = False):
    """Apply `d_state = d_step_fn(d_state, i)` for i = 0 … k−1 with lax.scan and return the result
    (`unroll=True`: a Python loop with i a Python int — faster for convolutions on XLA:CPU, see
    train_step.scan_or_unroll).

    Unrolled GANs (Metz et al. 2017): at a G step, unroll k D updates from the current D (each step
    drawing its own batch, e.g. indexing a stacked batch with i inside d_step_fn) and compute G's
    loss against the unrolled D. Differentiating G's loss through this function backpropagates
    through the k D updates (the full unrolled gradient); wrap the result in jax.lax.stop_gradient
    for the cheaper surrogate. Only the real D update (outside) is kept; the unrolled state is
    discarded after the G step.
    """
    if k < 0:
        raise ValueError(f"unroll steps k must be ≥ 0, got {k}.")
    if unroll:
        for i in range(k):
            d_state = d_step_fn(d_state, i)
        return d_state
    final, _ = jax.lax.scan(lambda s, i: (d_step_fn(s, i), None), d_state, jnp.arange(k))
    return final
