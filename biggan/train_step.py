"""The BigGAN train step: a pure function of (state, batch, rng), jitted once.

One step = `num_d_steps` D updates, each on its own real batch with fresh z and y, then one G update
(paper table 1 row 8, appendix C). Each update averages gradients over `num_accumulations` micro-batches (lax.scan); batch norm
statistics are those of each micro-batch, as in BigGAN-PyTorch's accumulation (a micro-batch is what
one forward pass sees). G's EMA copy follows G exactly before `ema_start` and decays after it.

The ablation switches (README, Ablations) (config.train, config.model) add terms, and state in TrainState.extras; at
their neutral values the step is the plain one bit for bit (tests/test_ablation.py,
tests/test_techniques_in_step.py). The techniques of biggan/techniques/registry.py (DiffAugment, ADA, LeCam,
CR/bCR/zCR, FreezeD) plug in through the hooks of biggan/techniques/base.py, called here in registry order;
the earlier catalogue is still wired in by hand.
"""
from __future__ import annotations

import ast
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from biggan import latents, losses, models, regularisers
from biggan.techniques import catalogue, registry
from biggan.techniques.base import DContext, GContext
from biggan.data import to_model_range
from biggan.sharding import DATA_AXIS


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes. `*_state` holds SN vectors and BN statistics (not trained)."""
    step: jax.Array
    g_params: Any
    g_state: Any
    d_params: Any
    d_state: Any
    ema_params: Any
    g_opt: Any
    d_opt: Any
    # State of the catalogue techniques that have one, keyed by name (HIST_D, HIST_G, REPLAY); empty — no
    # leaves, so the default config's state, trees and checkpoints are unchanged — when they are off.
    extras: dict = flax.struct.field(default_factory=dict)


# TrainState.extras keys.
HIST_D, HIST_G, REPLAY = "historical_average_d", "historical_average_g", "replay"


@flax.struct.dataclass
class Models:
    """Static structure of G and D (nnx graph definitions), shared by init, the step and sampling."""
    g_graphdef: Any = flax.struct.field(pytree_node=False)
    d_graphdef: Any = flax.struct.field(pytree_node=False)


def make_optimizers(t: ml_collections.ConfigDict):
    # Adam with β1 = 0, β2 = 0.999 (paper appendix C); separate learning rates (TTUR in the paper's sense).
    g_tx = optax.adam(t.lr_g, b1=t.beta1_g, b2=t.beta2, eps=t.adam_eps)
    d_tx = optax.adam(t.lr_d, b1=t.beta1_d, b2=t.beta2, eps=t.adam_eps)
    return g_tx, d_tx


def init_state(config: ml_collections.ConfigDict, rng) -> tuple[Models, TrainState]:
    """Build G and D from `config.model` and return their graph definitions and the initial state."""
    t = config.train
    g_key, d_key = jax.random.split(rng)
    G = models.make_generator(config.model, nnx.Rngs(g_key))
    # .get here and below: a workdir's config.json written before these keys existed still loads.
    pack = t.get("pacgan_pack", 1)
    D = models.make_discriminator(config.model, nnx.Rngs(d_key),
                                  in_channels=catalogue.pacgan_in_channels(3, pack))
    g_graphdef, g_params, g_state = nnx.split(G, nnx.Param, ...)
    d_graphdef, d_params, d_state = nnx.split(D, nnx.Param, ...)
    g_tx, d_tx = make_optimizers(t)
    extras = technique_state(config, g_params, d_params)
    state = TrainState(step=jnp.zeros((), jnp.int32), g_params=g_params, g_state=g_state, d_params=d_params,
                       d_state=d_state, ema_params=jax.tree.map(jnp.copy, g_params), g_opt=g_tx.init(g_params),
                       d_opt=d_tx.init(d_params), extras=extras)
    return Models(g_graphdef, d_graphdef), state


def technique_state(config: ml_collections.ConfigDict, g_params, d_params, extras=None) -> dict:
    """TrainState.extras for the switched-on catalogue techniques: the entries of `extras` are kept, missing
    ones start now (historical averages at the given params, an empty replay buffer)."""
    t, m = config.train, config.model
    extras = dict(extras or {})
    if t.get("historical_averaging_weight", 0.0) and HIST_D not in extras:
        extras[HIST_D] = regularisers.historical_average_init(d_params)._asdict()
        extras[HIST_G] = regularisers.historical_average_init(g_params)._asdict()
    if t.get("replay_capacity", 0) and REPLAY not in extras:
        extras[REPLAY] = catalogue.replay_init(t.replay_capacity, (m.resolution, m.resolution, 3),
                                                models.DTYPES[m.dtype])._asdict()
    for technique in registry.enabled(config):  # the interface's techniques (biggan/techniques/base.py)
        if technique.uses("init_state") and technique.name not in extras:
            extras[technique.name] = technique.init_state()
    return extras


def merge(graphdef, params, state):
    """An nnx module from its graph definition, params and state (fresh Variables, safe inside a trace)."""
    return nnx.merge(graphdef, params, state, copy=True)


def split(module):
    """The non-trainable state (SN vectors, BN statistics) of a module after a forward pass."""
    return nnx.state(module, nnx.Not(nnx.Param))


def ortho_filter(path: str, leaf) -> bool:
    # Not the shared class embedding (G's `shared_embed`), not 1-d parameters (paper §3.1).
    return regularisers.default_weight_filter(path, leaf, exclude=("shared_embed", "class_embed"))


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
    """Mean loss, gradient and aux over micro-batches (leading axis of `micro_inputs`), via lax.scan.

    `loss_fn(params, *states, *micro_input) -> (loss, (aux, *new_states))`; the states (SN vectors,
    BN statistics) are threaded through the micro-batches in order.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    n = jax.tree.leaves(micro_inputs)[0].shape[0]

    def body(acc, xs):
        grads_sum, states, loss_sum, aux_sum = acc
        (loss, (aux, *new_states)), grads = grad_fn(params, *states, *xs)
        return (jax.tree.map(jnp.add, grads_sum, grads), tuple(new_states), loss_sum + loss,
                jax.tree.map(jnp.add, aux_sum, aux)), None

    first = jax.tree.map(lambda a: a[0], micro_inputs)
    aux_shape = jax.eval_shape(lambda: grad_fn(params, *carry_states, *first)[0][1][0])
    init = (jax.tree.map(jnp.zeros_like, params), tuple(carry_states), jnp.zeros(()),
            jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape))
    (grads, states, loss, aux), _ = scan_or_unroll(body, init, micro_inputs, unroll)
    return jax.tree.map(lambda g: g / n, grads), states, loss / n, jax.tree.map(lambda a: a / n, aux)


def parse_kwargs(text: str, what: str) -> dict:
    """"k=v,k=v" → {k: literal v} (config strings that stay overridable from the command line)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{what}={text!r}: expected comma-separated key=value pairs, e.g. 'a=1,b=0.5'")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()  # a bare word is a string
    return out


def check_toolkit(t: ml_collections.ConfigDict) -> None:
    """Refuse contradictory ablation switches before tracing."""
    for key in ("r1_gamma", "dragan_weight", "gp_weight", "sigma0_reg_strength", "sigma0_clamp",
                "sigma0_clamp_ratio", "instance_noise_sigma", "feature_matching_weight", "label_smoothing",
                "historical_averaging_weight", "replay_capacity", "unrolled_d_steps"):
        if t[key] < 0:
            raise ValueError(f"train.{key}={t[key]} must be ≥ 0 (0 switches it off)")
    if t.sigma0_reg_strength and bool(t.sigma0_target) == bool(t.sigma0_ratio):
        raise ValueError(f"train.sigma0_reg_strength={t.sigma0_reg_strength} needs exactly one of "
                         f"train.sigma0_target (fixed σ) or train.sigma0_ratio (r·σ1); got "
                         f"sigma0_target={t.sigma0_target}, sigma0_ratio={t.sigma0_ratio}")
    if t.sigma0_clamp and t.sigma0_clamp_ratio:
        raise ValueError(f"set one of train.sigma0_clamp={t.sigma0_clamp} and train.sigma0_clamp_ratio="
                         f"{t.sigma0_clamp_ratio}, not both")
    if t.latent not in latents.LATENT_NAMES:
        raise ValueError(f"train.latent={t.latent!r} is not a latent distribution; valid: "
                         f"{', '.join(latents.LATENT_NAMES)}")
    check_techniques(t)


def check_techniques(t: ml_collections.ConfigDict) -> None:
    """Refuse bad values of the catalogue technique switches, naming the key and the fix."""
    micro = micro_batch_size(t)
    for key in ("replay_capacity", "unrolled_d_steps", "pacgan_pack"):
        if int(t[key]) != t[key]:
            raise ValueError(f"train.{key}={t[key]} must be a whole number")
    if not 0.0 <= t.label_noise <= 1.0:
        raise ValueError(f"train.label_noise={t.label_noise} is a probability: set it in [0, 1] (0 = off; "
                         f"Salimans et al.'s noisy labels flip 5%, i.e. 0.05)")
    if (t.label_noise or t.soft_labels) and not losses.has_targets(t.loss):
        which = "train.label_noise" if t.label_noise else "train.soft_labels"
        raise ValueError(f"{which} acts on D's real/fake targets, but train.loss={t.loss!r} has none; use a "
                         f"loss with targets (train.loss=non_saturating, minimax or least_squares) or switch "
                         f"{which} off")
    if t.soft_labels and t.label_smoothing:
        raise ValueError(f"train.soft_labels draws the real target from U[0.7, 1.2], which replaces "
                         f"train.label_smoothing={t.label_smoothing}; set one of them, not both")
    if not 0.0 <= t.historical_averaging_decay < 1.0:
        raise ValueError(f"train.historical_averaging_decay={t.historical_averaging_decay} must be in [0, 1) "
                         f"(0 = exact mean of all past parameters)")
    if not 0.0 <= t.replay_fraction <= 1.0:
        raise ValueError(f"train.replay_fraction={t.replay_fraction} must be in [0, 1]")
    if t.replay_capacity or t.replay_fraction:
        if not t.replay_capacity:
            raise ValueError(f"train.replay_fraction={t.replay_fraction} needs a replay buffer: set "
                             f"train.replay_capacity (e.g. {10 * micro}) or train.replay_fraction=0")
        if round(t.replay_fraction * micro) < 1:
            raise ValueError(f"train.replay_capacity={t.replay_capacity} with train.replay_fraction="
                             f"{t.replay_fraction} replays round({t.replay_fraction}·{micro}) = 0 of the {micro} "
                             f"fakes of a micro-batch; raise train.replay_fraction to ≥ {0.5 / micro:.3g}, or set "
                             f"train.replay_capacity=0")
        if t.replay_capacity < micro:
            raise ValueError(f"train.replay_capacity={t.replay_capacity} is smaller than one micro-batch of "
                             f"{micro} fakes, which is added to it at once; use train.replay_capacity ≥ {micro}")
    if t.pacgan_pack < 1 or micro % t.pacgan_pack:
        raise ValueError(f"train.pacgan_pack={t.pacgan_pack} must be ≥ 1 (1 = off) and divide the micro-batch "
                         f"of {micro} (train.batch_size / train.num_accumulations) so that every pack is all "
                         f"real or all fake; choose a divisor of {micro}")


def micro_batch_size(t: ml_collections.ConfigDict) -> int:
    """train.batch_size is the global batch of one update; it is split into num_accumulations micro-batches."""
    if t.batch_size % t.num_accumulations:
        raise ValueError(f"train.batch_size={t.batch_size} is not divisible by train.num_accumulations="
                         f"{t.num_accumulations}")
    return t.batch_size // t.num_accumulations


def make_train_step(config: ml_collections.ConfigDict, mdl: Models, mesh=None, unroll=None):
    """Return `train_step(state, batch, rng) -> (state, metrics)`, to be wrapped in jax.jit.

    batch: {'image': uint8 (num_d_steps, num_accumulations, B, H, W, 3), 'label': int (same leading dims)}.
    """
    t, m = config.train, config.model
    check_toolkit(t)
    active = registry.enabled(config)  # switched-on techniques of biggan/techniques/, in hook order
    augmenter = next((tech for tech in active if tech.uses("augment")), None)
    stateful = [tech for tech in active if tech.uses("init_state")]
    d_term_techniques = [tech for tech in active if tech.uses("d_terms")]
    g_term_techniques = [tech for tech in active if tech.uses("g_terms")]
    update_techniques = [tech for tech in active if tech.uses("d_updates")]
    g_tx, d_tx = make_optimizers(t)
    loss_options = dict(margin=t.hinge_margin, real_target=1.0 - t.label_smoothing)
    noisy_targets = bool(t.label_noise or t.soft_labels)
    if noisy_targets:
        # Soft and noisy labels (ganhacks): each target flipped with probability label_noise; soft_labels
        # draws them from U[0.7, 1.2] (real) and U[0, 0.3] (fake). The D loss then takes a key.
        loss_options.update(noisy_labels=True, flip_prob=float(t.label_noise), soft_labels=bool(t.soft_labels))
    d_loss_fn, g_loss_fn = losses.get_loss(t.loss, **loss_options)
    g_needs_real = losses.canonical_loss_name(t.loss) in losses.G_LOSS_NEEDS_REAL
    latent_kwargs = parse_kwargs(t.latent_kwargs, "train.latent_kwargs")
    keep = m.d_dropout_keep
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"model.d_dropout_keep={keep} must be in (0, 1] (1.0 = no dropout)")
    dtype = models.DTYPES[m.dtype]
    micro_batch = micro_batch_size(t)
    pack = int(t.pacgan_pack)
    hist_weight, hist_decay = t.historical_averaging_weight, (t.historical_averaging_decay or None)
    replay = bool(t.replay_capacity)
    unrolled_steps = int(t.unrolled_d_steps)
    python_loops = loops_unrolled(unroll)

    def constrain(x):  # keep generated tensors sharded like the data
        if mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(DATA_AXIS)))

    def sample_zy(rng, batch_size, step):
        kz, ky = jax.random.split(rng)
        if t.latent == "normal" and not latent_kwargs:
            z = jax.random.normal(kz, (batch_size, m.dim_z), jnp.float32)
        else:  # appendix E latents; variance annealing follows the training step
            kw = dict(latent_kwargs, step=step) if t.latent == "variance_annealing" else latent_kwargs
            z = latents.sample_latent(t.latent, kz, (batch_size, m.dim_z), **kw).astype(jnp.float32)
        y = jax.random.randint(ky, (batch_size,), 0, m.num_classes)
        return constrain(z), constrain(y)

    # Extra randomness comes from fold_in(rng, tag) so that `rng` itself draws z and y exactly as
    # without the toolkit (the default config's step is bit-identical; tests/test_ablation.py).
    NOISE, DROPOUT, PENALTY, LABELS, REPLAY_DRAW, UNROLL, AUGMENT, TECHNIQUE = 1, 2, 3, 4, 5, 6, 7, 8

    def packed(x, y):
        """PacGAN (Lin et al. 2018): D scores packs of `pack` consecutive samples stacked on
        channels (pack_samples). A projection D needs one class per pack, and the samples of a pack have
        their own classes: we project with the FIRST sample's label (our choice; the paper's D is
        unconditional). Packs never mix real and fake: the micro-batch is a multiple of `pack`."""
        if pack == 1:
            return x, y
        return catalogue.pack_samples(x, pack), y[::pack]

    def augmented(x, rng, tech):
        """The D-input augmentation of DiffAugment or ADA (one key per batch: parameters are per sample)."""
        if augmenter is None:
            return x
        return augmenter.augment(x, jax.random.fold_in(rng, AUGMENT), tech.get(augmenter.name))

    def d_logits(D, x, y, rng, step, tech, groups=1):
        """D(x, y) in training mode with the optional D-input augmentation, instance noise and feature dropout
        (paper §4.2). `groups`: x is that many equal batches (all fake / all real) for minibatch discrimination.
        `tech`: the interface techniques' states."""
        x = augmented(x, rng, tech)
        if t.instance_noise_sigma:
            sigma = (catalogue.instance_noise_sigma(step, t.instance_noise_sigma, t.instance_noise_anneal_steps)
                     if t.instance_noise_anneal_steps else t.instance_noise_sigma)
            x = catalogue.add_instance_noise(jax.random.fold_in(rng, NOISE), x, sigma)
        x, y = packed(x, y)
        if keep == 1.0:
            return D(x, y, train=True, groups=groups)
        h = catalogue.feature_dropout(jax.random.fold_in(rng, DROPOUT), D.features(x, train=True), keep, True)
        return D.head(h, y, train=True, groups=groups)

    def d_penalties(d_params, d_state, real, fake, labels, rng, tech):
        """Gradient penalties on D (R1: paper §4.2; WGAN-GP, DRAGAN). A fresh copy of D from the same params and state: its SN
        power iteration gives the same normalised weights as the main pass, and its state is dropped.
        Under PacGAN the penalised input is the pack. With minibatch discrimination D's output for one
        sample also depends on the others of its batch, so ∇_x Σ D holds those cross terms too. With a
        D-input augmentation D scores T(x) and the gradient is taken w.r.t. x (as stylegan2-ada-pytorch's R1)."""
        fake = packed(fake, labels)[0] if t.gp_weight else fake
        real, labels = packed(real, labels)
        key = jax.random.fold_in(rng, PENALTY)

        def d_fn(x):  # (no augmentation under PacGAN: registry refuses the pair)
            D = merge(mdl.d_graphdef, d_params, d_state)
            return D(augmented(x, key, tech), labels, train=True)
        terms = {}
        if t.r1_gamma:
            terms["r1_penalty"] = regularisers.r1_penalty(d_fn, real, t.r1_gamma)
        if t.dragan_weight:
            terms["dragan_penalty"] = regularisers.dragan_penalty(d_fn, jax.random.fold_in(key, 0), real,
                                                                  t.dragan_weight)
        if t.gp_weight:
            # Interpolates of (real_i, fake_i) are scored under the real label (conditional WGAN-GP).
            terms["gp_penalty"] = regularisers.wgan_gp_penalty(d_fn, jax.random.fold_in(key, 1), real,
                                                               fake.astype(real.dtype), t.gp_weight)
        return terms

    def fresh_d(d_params, d_state):
        """D's logits from a fresh copy (its SN state is dropped), PacGAN packing included, no augmentation."""
        return lambda x, y: merge(mdl.d_graphdef, d_params, d_state)(*packed(x, y), train=True)

    def fresh_g(g_params, g_state):
        """G's training-mode images from a fresh copy (its BN statistics are dropped)."""
        return lambda z, y: merge(mdl.g_graphdef, g_params, g_state)(z, y, train=True)

    def d_micro_loss(d_params, d_state, g_params, g_state, buffer, tech, images, labels, rng, step):
        G = merge(mdl.g_graphdef, g_params, g_state)
        D = merge(mdl.d_graphdef, d_params, d_state)
        z, y_fake = sample_zy(rng, images.shape[0], step)
        fake = jax.lax.stop_gradient(G(z, y_fake, train=True))
        real = to_model_range(images, dtype)
        if buffer is not None:
            # Experience replay (Pfau & Vinyals 2016; ganhacks): the first round(replay_fraction·B) fakes are replaced by past
            # fakes (with their labels) while the buffer holds any; this micro-batch's fresh fakes join it.
            fresh, fresh_y = fake, y_fake
            fake, y_fake = catalogue.replay_mix(jax.random.fold_in(rng, REPLAY_DRAW), buffer, fake, y_fake,
                                                 t.replay_fraction)
            buffer = catalogue.replay_add(buffer, fresh, fresh_y)
        # One D pass over [fake; real] (D has no batch norm, so this equals two passes; SN steps once;
        # minibatch discrimination compares fakes with fakes and reals with reals: groups=2).
        out = d_logits(D, jnp.concatenate([fake.astype(real.dtype), real]), jnp.concatenate([y_fake, labels]),
                       rng, step, tech, groups=2)
        d_fake, d_real = jnp.split(out, 2)
        if noisy_targets:
            loss, aux = d_loss_fn(d_real, d_fake, rng=jax.random.fold_in(rng, LABELS))
        else:
            loss, aux = d_loss_fn(d_real, d_fake)
        penalties = d_penalties(d_params, d_state, real, fake, labels, rng, tech)
        if d_term_techniques:
            tech = dict(tech)
            ctx = DContext(real=real, fake=fake.astype(real.dtype), labels=labels, fake_labels=y_fake, z=z,
                           d_real=d_real, d_fake=d_fake, d_fn=fresh_d(d_params, d_state),
                           g_fn=lambda z, y: jax.lax.stop_gradient(fresh_g(g_params, g_state)(z, y)),
                           rng=None, step=step)
            for index, technique in enumerate(d_term_techniques):
                key = jax.random.fold_in(jax.random.fold_in(rng, TECHNIQUE), index)
                terms, new = technique.d_terms(ctx._replace(rng=key), tech.get(technique.name))
                penalties.update(terms)
                if technique.name in tech:
                    tech[technique.name] = new
        for value in penalties.values():
            loss = loss + value
        return loss, (dict(aux, **penalties), split(G), split(D), buffer, tech)

    def g_micro_loss(g_params, g_state, d_params, d_state, tech, rng, step, images=None, labels=None):
        G = merge(mdl.g_graphdef, g_params, g_state)
        D = merge(mdl.d_graphdef, d_params, d_state)
        z, y = sample_zy(rng, micro_batch, step)
        fake = G(z, y, train=True)
        if g_needs_real:
            # A relativistic G loss scores the step's last real micro-batch beside the fakes: one D pass over
            # [fake; real] as in D's step (SN steps once; groups=2 for minibatch discrimination). D(real) holds
            # no G parameter, so it only shifts G's targets.
            real = to_model_range(images, dtype)
            out = d_logits(D, jnp.concatenate([fake.astype(real.dtype), real]), jnp.concatenate([y, labels]),
                           rng, step, tech, groups=2)
            d_fake, d_real = jnp.split(out, 2)
            loss, aux = g_loss_fn(d_fake, jax.lax.stop_gradient(d_real)), {}
        else:
            d_fake = d_logits(D, fake, y, rng, step, tech)
            loss, aux = g_loss_fn(d_fake), {}
        if t.feature_matching_weight:
            # Salimans et al. 2016: match the mean of D's pooled features on a real batch (the last D
            # step's) — the real features are a constant for G.
            real = augmented(to_model_range(images, dtype), jax.random.fold_in(rng, TECHNIQUE), tech)
            f_real = jax.lax.stop_gradient(D.features(packed(real, labels)[0], train=True))
            fake_seen = augmented(fake.astype(real.dtype), jax.random.fold_in(rng, TECHNIQUE + 1), tech)
            fm = catalogue.feature_matching_loss(f_real, D.features(packed(fake_seen, y)[0], train=True))
            aux["feature_matching"] = fm
            loss = loss + t.feature_matching_weight * fm
        if g_term_techniques:
            ctx = GContext(z=z, labels=y, fake=fake, d_fake=d_fake, d_fn=fresh_d(d_params, d_state),
                           g_fn=fresh_g(g_params, g_state), rng=None, step=step)
            for index, technique in enumerate(g_term_techniques):
                key = jax.random.fold_in(jax.random.fold_in(rng, TECHNIQUE), index)
                terms = technique.g_terms(ctx._replace(rng=key), tech.get(technique.name))
                aux.update(terms)
                for value in terms.values():
                    loss = loss + value
        return loss, (aux, split(G), split(D))

    def g_param_regularisers(g_params):
        """Terms on G's weights added to its loss: ortho (paper eq. 3) and the σ0 regulariser (paper §4.1)."""
        terms = {}
        if t.ortho_beta:
            terms["ortho_penalty"] = ortho_penalty(g_params, t.ortho_beta)
        if t.sigma0_reg_strength:
            terms["sigma0_penalty"] = regularisers.sigma0_penalty(
                nnx.to_pure_dict(g_params), t.sigma0_reg_strength, sigma_target=t.sigma0_target or None,
                ratio=t.sigma0_ratio or None, leaf_filter=ortho_filter)
        return terms

    def clamp_g(g_params):
        """Partial-SVD clamp of every G weight's σ0 after the update (paper §4.1)."""
        pure = regularisers.sigma0_clamp(nnx.to_pure_dict(g_params), sigma_clamp=t.sigma0_clamp or None,
                                         ratio=t.sigma0_clamp_ratio or None, leaf_filter=ortho_filter)
        g_params = jax.tree.map(lambda x: x, g_params)  # a copy to write into
        nnx.replace_by_pure_dict(g_params, pure)
        return g_params

    def historical_average_term(params, extras, key):
        """Salimans et al. 2016 historical averaging: value and gradient of
        w·‖θ − mean of past θ‖² (the mean, a constant, lives in TrainState.extras[key])."""
        average = regularisers.HistoricalAverage(**extras[key])
        value, grads = jax.value_and_grad(regularisers.historical_average_penalty)(params, average, hist_weight)
        return average, value, grads

    def d_update(carry, xs, step):
        d_params, d_state, d_opt, g_state, g_params, extras = carry
        images, labels, rng = xs
        rngs = jax.random.split(rng, images.shape[0])

        def loss_fn(d_params, d_state, g_state, *rest):
            # The replay buffer and the interface techniques' states are threaded like a state when on.
            *threaded, images, labels, rng = rest
            buffer = threaded[0] if replay else None
            tech = threaded[-1] if stateful else {}
            loss, (aux, g_state_new, d_state_new, buffer_new, tech_new) = d_micro_loss(
                d_params, d_state, g_params, g_state, buffer, tech, images, labels, rng, step)
            return loss, ((aux, d_state_new, g_state_new) + ((buffer_new,) if replay else ())
                          + ((tech_new,) if stateful else ()))

        states = ((d_state, g_state) + ((catalogue.ReplayBuffer(**extras[REPLAY]),) if replay else ())
                  + ((technique_states(extras),) if stateful else ()))
        grads, states, loss, aux = accumulate_gradients(loss_fn, d_params, states, (images, labels, rngs), unroll)
        d_state, g_state = states[:2]
        metrics = dict(aux, d_loss=loss)
        extras = dict(extras)
        if hist_weight:
            average, metrics["historical_average_d"], hist_grads = historical_average_term(d_params, extras, HIST_D)
            grads = jax.tree.map(jnp.add, grads, hist_grads)
        updates, d_opt = d_tx.update(grads, d_opt, d_params)
        for technique in update_techniques:
            updates = technique.d_updates(updates)
        d_params = optax.apply_updates(d_params, updates)
        if hist_weight:  # the average of every value D's parameters have taken, this one included
            extras[HIST_D] = regularisers.historical_average_update(average, d_params, hist_decay)._asdict()
        if replay:
            extras[REPLAY] = states[2]._asdict()
        if stateful:
            extras.update(states[-1])
        return (d_params, d_state, d_opt, g_state, g_params, extras), metrics

    def unrolled_discriminator(state, rng, real_batch):
        """Unrolled GAN (Metz et al. 2017): D's params and SN state after `unrolled_d_steps`
        further D updates (the full update: optimiser, penalties, replay, historical averaging) on the
        current real batch with fresh z. First-order version: the unrolled D is a constant for G
        (stop_gradient), i.e. no gradient through the unrolling (Metz et al.'s full version
        differentiates through it). Everything the copy changes (D, its optimiser, G's BN statistics,
        the technique state) is discarded after G's update."""
        key = jax.random.fold_in(rng, UNROLL)
        images, labels = real_batch

        def d_step(carry, i):
            return d_update(carry, (images, labels, jax.random.fold_in(key, i)), state.step)[0]

        carry = (state.d_params, state.d_state, state.d_opt, state.g_state, state.g_params, state.extras)
        ahead = catalogue.unroll_discriminator(d_step, carry, unrolled_steps, unroll=python_loops)
        return jax.lax.stop_gradient(ahead[0]), ahead[1]

    def g_update(state, rng, real_batch):
        rngs = jax.random.split(rng, t.num_accumulations)
        if unrolled_steps:
            d_params, d_state_for_g = unrolled_discriminator(state, rng, real_batch)
        else:
            d_params, d_state_for_g = state.d_params, state.d_state

        def loss_fn(g_params, g_state, d_state, rng, *real):
            loss, (aux, g_state_new, d_state_new) = g_micro_loss(g_params, g_state, d_params, d_state,
                                                                 technique_states(state.extras), rng,
                                                                 state.step, *real)
            return loss, (aux, g_state_new, d_state_new)

        micro_inputs = (rngs,) + (real_batch if t.feature_matching_weight or g_needs_real else ())
        grads, (g_state, d_state), loss, aux = accumulate_gradients(
            loss_fn, state.g_params, (state.g_state, d_state_for_g), micro_inputs, unroll)
        if unrolled_steps:
            d_state = state.d_state  # G's pass went through the unrolled copy; the real D's SN state stays
        metrics = dict(aux, g_loss=loss)
        if t.ortho_beta or t.sigma0_reg_strength:
            # Ortho: the exact gradient of eq. 3's R (= 2× BigGAN-PyTorch's hand-written term; BUILD_NOTES).
            terms, vjp = jax.vjp(g_param_regularisers, state.g_params)
            (reg_grads,) = vjp({k: jnp.ones_like(v) for k, v in terms.items()})
            grads = jax.tree.map(jnp.add, grads, reg_grads)
            metrics.update(terms)
        extras = dict(state.extras)
        if hist_weight:
            average, metrics["historical_average_g"], hist_grads = historical_average_term(
                state.g_params, extras, HIST_G)
            grads = jax.tree.map(jnp.add, grads, hist_grads)
        updates, g_opt = g_tx.update(grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        if t.sigma0_clamp or t.sigma0_clamp_ratio:
            g_params = clamp_g(g_params)
        if hist_weight:
            extras[HIST_G] = regularisers.historical_average_update(average, g_params, hist_decay)._asdict()
        return g_params, g_state, d_state, g_opt, extras, metrics

    def technique_states(extras):
        """The interface techniques' states (TrainState.extras entries under their names)."""
        return {technique.name: extras[technique.name] for technique in stateful}

    def with_technique_state(state: TrainState) -> TrainState:
        """A state without the extras a switched-on technique needs (e.g. restored from a run that had it
        off, then changed by a rollback override) starts them now: the average at the current params,
        an empty replay buffer. Decided from the dict's keys, so at trace time."""
        extras = technique_state(config, state.g_params, state.d_params, state.extras)
        return state.replace(extras=extras) if extras.keys() != state.extras.keys() else state

    def train_step(state: TrainState, batch, rng):
        state = with_technique_state(state)
        d_rng, g_rng = jax.random.split(rng)
        d_rngs = jax.random.split(d_rng, t.num_d_steps)
        carry = (state.d_params, state.d_state, state.d_opt, state.g_state, state.g_params, state.extras)
        (d_params, d_state, d_opt, g_state, _, extras), d_metrics = scan_or_unroll(
            functools.partial(d_update, step=state.step), carry, (batch["image"], batch["label"], d_rngs), unroll)
        state = state.replace(d_params=d_params, d_state=d_state, d_opt=d_opt, g_state=g_state, extras=extras)
        g_params, g_state, d_state, g_opt, extras, g_metrics = g_update(state, g_rng,
                                                                        (batch["image"][-1], batch["label"][-1]))
        step = state.step + 1
        technique_metrics = {}
        for technique in active:
            if technique.uses("after_step"):
                extras[technique.name], logged = technique.after_step(extras[technique.name], step)
                technique_metrics.update(logged)
        # EMA of G's weights (paper appendix C): equal to G until ema_start, then decay.
        decay = jnp.where(step > t.ema_start, t.ema_decay, 0.0)
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_params, g_params)
        new_state = state.replace(step=step, g_params=g_params, g_state=g_state, d_state=d_state, g_opt=g_opt,
                                  ema_params=ema, extras=extras)
        metrics = {k: v[-1] for k, v in d_metrics.items()}  # the last D update of the step
        metrics.update(g_metrics)
        metrics.update(technique_metrics)
        metrics["all_finite"] = jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((g_params, d_params))]
            + [jnp.isfinite(v) for v in jax.tree.leaves(metrics)]))
        return new_state, metrics

    return train_step
