"""Catalogue techniques wired into the train step as switches: minibatch discrimination, noisy
labels, historical averaging, experience replay, PacGAN packing, unrolled D steps.

The mathematics of each piece is tested in test_techniques.py / test_regularisers.py /
test_losses.py; here: what is new in the pieces (soft=False targets, minibatch groups), the wiring,
and that the default step is unchanged. Compiles cost ~20-50 s each on 2 shared cores, so one step
carries every switch and each is checked by hand on that step.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from legacy_modules import load_module_at
from stepping import leaves, random_batch, tiny_config

from biggan import checkpoints
from biggan import config as cfg
from biggan.data import to_model_range
from biggan.gan import losses
from biggan.models import factory as models
from biggan.runtime import sharding
from biggan.techniques import pacgan, registry
from biggan.train import state as train_state
from biggan.train import step as ts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The last commit before these switches existed: the reference for "default step unchanged".
BEFORE_COMMIT = "8ad0227f4d8043d4b03a691f587b4ea41c1793d2"
NEUTRAL = dict(
    label_noise=0.0,
    soft_labels=False,
    historical_averaging_weight=0.0,
    historical_averaging_decay=0.0,
    replay_capacity=0,
    replay_fraction=0.0,
    pacgan_pack=1,
    unrolled_d_steps=0,
)


# --------------------------------------------------------------------------- defaults and refusals


def test_new_switches_default_to_neutral():
    c = cfg.base_config()
    assert {k: c.train[k] for k in NEUTRAL} == NEUTRAL
    assert c.model.d_minibatch_kernels == 0
    _, state = train_state.init_state(tiny_config(), jax.random.key(0))
    # no new leaves in the default state
    assert state.extras == {} and jax.tree.leaves(state.extras) == []


@pytest.mark.parametrize(
    "train,match",
    [
        (
            dict(label_noise=0.05),
            r"train.label_noise acts on D's real/fake targets, but train.loss='hinge'",
        ),
        (
            dict(loss="wasserstein", soft_labels=True),
            r"train.soft_labels .* train.loss='wasserstein' has none",
        ),
        (dict(loss="non_saturating", label_noise=1.5), r"train.label_noise=1.5 is a probability"),
        (dict(loss="non_saturating", soft_labels=True, label_smoothing=0.1), "not both"),
        (
            dict(historical_averaging_weight=-1.0),
            r"train.historical_averaging_weight=-1.0 must be ≥ 0",
        ),
        (
            dict(historical_averaging_weight=1.0, historical_averaging_decay=1.0),
            r"historical_averaging_decay=1.0",
        ),
        (
            dict(replay_fraction=0.5),
            r"train.replay_fraction=0.5 needs a replay buffer: set train.replay_capacity",
        ),
        (dict(replay_capacity=64), r"replays round\(0.0·8\) = 0 .* raise train.replay_fraction"),
        (
            dict(replay_capacity=4, replay_fraction=0.5),
            r"train.replay_capacity=4 is smaller than one micro-batch of 8",
        ),
        (
            dict(replay_capacity=64, replay_fraction=1.5),
            r"train.replay_fraction=1.5 must be in \[0, 1\]",
        ),
        (dict(pacgan_pack=3), r"train.pacgan_pack=3 must .* divide the micro-batch of 8"),
        (dict(pacgan_pack=0), r"train.pacgan_pack=0 must be ≥ 1"),
        (dict(batch_size=8, num_accumulations=2, pacgan_pack=8), r"divide the micro-batch of 4"),
        (dict(unrolled_d_steps=-2), r"train.unrolled_d_steps=-2 must be ≥ 0"),
    ],
)
def test_bad_values_are_refused_naming_the_key(train, match):
    with pytest.raises(ValueError, match=match):
        ts.check_toolkit(tiny_config(**train))


def test_good_values_pass_the_check():
    ts.check_toolkit(
        tiny_config(
            loss="least_squares",
            label_noise=0.05,
            soft_labels=True,
            pacgan_pack=4,
            historical_averaging_weight=0.1,
            historical_averaging_decay=0.99,
            replay_capacity=8,
            replay_fraction=0.5,
            unrolled_d_steps=3,
        )
    )
    with pytest.raises(ValueError, match=r"model.d_minibatch_kernels=-1 must be ≥ 0"):
        c = tiny_config()
        c.model.d_minibatch_kernels = -1
        models.make_discriminator(c.model, nnx.Rngs(0))


# --------------------------------------------------------------------------- noisy labels (hard targets)


def test_flipped_hard_targets_and_their_loss():
    n, p = 20000, 0.1
    t_real, t_fake = (
        np.asarray(t)
        for t in losses._targets(
            jax.random.key(0), n, n, 0.9, True, (0.7, 1.2), (0.0, 0.3), p, soft=False
        )
    )
    # Only the two plain values occur (no soft draws): one-sided 0.9 for real, 0 for fake, swapped
    # when flipped.
    assert set(np.unique(t_real)) == {0.0, np.float32(0.9)} and set(np.unique(t_fake)) == {
        0.0,
        np.float32(0.9),
    }
    assert abs(np.mean(t_real == 0.0) - p) < 0.007 and abs(np.mean(t_fake != 0.0) - p) < 0.007
    # p = 0: the plain targets; p = 1: every target swapped.
    r0, f0 = losses._targets(
        jax.random.key(1), 5, 5, 1.0, True, (0.7, 1.2), (0.0, 0.3), 0.0, soft=False
    )
    r1, f1 = losses._targets(
        jax.random.key(1), 5, 5, 1.0, True, (0.7, 1.2), (0.0, 0.3), 1.0, soft=False
    )
    np.testing.assert_array_equal(r0, 1.0), np.testing.assert_array_equal(f0, 0.0)
    np.testing.assert_array_equal(r1, 0.0), np.testing.assert_array_equal(f1, 1.0)
    # The BCE and least-squares D losses use exactly these targets (by hand, float64).
    d_real, d_fake = np.array([1.5, -0.3, 0.2, 2.0]), np.array([-1.0, 0.4, 0.0])
    key = jax.random.key(2)
    tr, tf = (
        np.asarray(t, np.float64)
        for t in losses._targets(key, 4, 3, 1.0, True, (0.7, 1.2), (0.0, 0.3), 0.5, soft=False)
    )
    sp = lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)
    bce = lambda x, t: t * sp(-x) + (1 - t) * sp(x)
    d_loss, _ = losses.get_loss(
        "non_saturating", noisy_labels=True, flip_prob=0.5, soft_labels=False
    )
    loss, _ = d_loss(jnp.asarray(d_real, jnp.float32), jnp.asarray(d_fake, jnp.float32), rng=key)
    np.testing.assert_allclose(loss, bce(d_real, tr).mean() + bce(d_fake, tf).mean(), rtol=1e-5)
    d_ls, _ = losses.get_loss("least_squares", noisy_labels=True, flip_prob=0.5, soft_labels=False)
    loss, _ = d_ls(jnp.asarray(d_real, jnp.float32), jnp.asarray(d_fake, jnp.float32), rng=key)
    np.testing.assert_allclose(
        loss, 0.5 * np.mean((d_real - tr) ** 2) + 0.5 * np.mean((d_fake - tf) ** 2), rtol=1e-5
    )


def test_label_switches_reach_get_loss(monkeypatch):
    calls = []
    real_get_loss = losses.get_loss
    monkeypatch.setattr(
        losses, "get_loss", lambda name, **kw: calls.append((name, kw)) or real_get_loss(name, **kw)
    )
    c = tiny_config(loss="minimax", label_noise=0.05, soft_labels=True)
    mdl, _ = jax.eval_shape(lambda: train_state.init_state(c, jax.random.key(0)))
    ts.make_train_step(c, mdl)
    ts.make_train_step(tiny_config(), mdl)
    assert calls == [
        (
            "minimax",
            dict(margin=1.0, real_target=1.0, noisy_labels=True, flip_prob=0.05, soft_labels=True),
        ),
        ("hinge", dict(margin=1.0, real_target=1.0)),
    ]  # neutral: the call of the default step


# --------------------------------------------------------------------------- minibatch discrimination in D


@pytest.mark.parametrize("arch", ["biggan", "biggan_deep"])
def test_minibatch_discrimination_in_the_d_head(arch):
    c = tiny_config()
    c.model.update(arch=arch, ch_d=4, d_minibatch_kernels=3, d_minibatch_kernel_dim=2)
    D = models.make_discriminator(c.model, nnx.Rngs(0))
    c.model.d_minibatch_kernels = 0
    plain = models.make_discriminator(c.model, nnx.Rngs(0))
    a = D.feature_dim
    # Parameters: + T (A×B×C) + B more inputs of the linear output; nothing else.
    assert models.count_params(D) - models.count_params(plain) == a * 3 * 2 + 3
    assert D.linear.kernel.shape == (a + 3, 1) and D.minibatch.T.shape == (a, 3, 2)
    # Small T so that the similarities are not all exp(−large) = 0.
    D.minibatch.T[...] = 1e-3 * jax.random.normal(jax.random.key(1), (a, 3, 2))
    x = jax.random.uniform(jax.random.key(2), (6, 32, 32, 3), minval=-1, maxval=1)
    y = jnp.array([0, 1, 2, 3, 4, 5])
    h = np.asarray(D.features(x, train=False), np.float64)
    # o(i)_b = Σ_{j≠i in i's group} exp(−‖M_i,b − M_j,b‖_1), M = h·T, by hand in numpy; groups of 3.
    M = np.einsum("na,abc->nbc", h, np.asarray(D.minibatch.T[...], np.float64))
    o = np.zeros((6, 3))
    for i in range(6):
        for j in range(6):
            if i != j and i // 3 == j // 3:
                o[i] += np.exp(-np.abs(M[i] - M[j]).sum(-1))
    assert o.min() > 0.1  # the minibatch features are not negligible
    # The head: linear([h, o]) + ⟨embed(y), h⟩ — the projection on h alone.
    expected = np.asarray(
        D.linear(jnp.asarray(np.concatenate([h, o], 1), jnp.float32), train=False)
    )[:, 0] + np.sum(np.asarray(D.embed(y, train=False)) * h, axis=1)
    np.testing.assert_allclose(D(x, y, train=False, groups=2), expected, rtol=1e-4, atol=1e-4)
    # groups=2 scores [first half; second half] as two separate minibatches.
    both = np.asarray(D(x, y, train=False, groups=2))
    np.testing.assert_allclose(both[:3], D(x[:3], y[:3], train=False), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both[3:], D(x[3:], y[3:], train=False), rtol=1e-5, atol=1e-5)
    # one group of 6 differs
    assert np.abs(both[:3] - np.asarray(D(x, y, train=False))[:3]).max() > 1e-4


@pytest.mark.parametrize(
    "arch,path", [("biggan", "biggan/biggan.py"), ("biggan_deep", "biggan/biggan_deep.py")]
)
def test_switches_off_d_is_the_d_of_before(arch, path):
    """With minibatch discrimination off and 3 input channels, D's parameters and state (init
    included) are those of the code before the switches existed."""
    before = load_module_at(BEFORE_COMMIT, path, f"before_{arch}")
    m = cfg.base_config().model
    m.update(arch=arch, resolution=32, ch_d=4, num_classes=10, d_attn=())
    old = before.Discriminator(resolution=32, ch=4, num_classes=10, attn_res=(), rngs=nnx.Rngs(3))
    new = models.make_discriminator(m, nnx.Rngs(3))
    old_flat, new_flat = nnx.to_flat_state(nnx.state(old)), nnx.to_flat_state(nnx.state(new))
    assert [p for p, _ in old_flat] == [p for p, _ in new_flat]
    for a, b in zip(leaves(nnx.state(old)), leaves(nnx.state(new))):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- TrainState.extras


def test_extras_are_built_checkpointed_and_restored(tmp_path):
    c = tiny_config(
        historical_averaging_weight=0.1, replay_capacity=16, replay_fraction=0.25, pacgan_pack=2
    )
    mdl, state = train_state.init_state(c, jax.random.key(0))
    assert set(state.extras) == {train_state.HIST_D, train_state.HIST_G, train_state.REPLAY}
    for key, params in ((train_state.HIST_D, state.d_params), (train_state.HIST_G, state.g_params)):
        assert int(state.extras[key]["count"]) == 1
        for m_, p in zip(leaves(state.extras[key]["mean"]), leaves(params)):
            np.testing.assert_array_equal(m_, p)
    assert (
        state.extras[train_state.REPLAY]["images"].shape == (16, 32, 32, 3)
        and int(state.extras[train_state.REPLAY]["size"]) == 0
    )
    # PacGAN: D's first convolution reads 3·m channels.
    D = nnx.merge(mdl.d_graphdef, state.d_params, state.d_state)
    assert D.blocks[0].conv1.kernel.shape[2] == 6 and D.in_channels == 6
    with pytest.raises(ValueError, match=r"expected \(batch, 32, 32, 6\) \(2 samples packed"):
        D(jnp.zeros((2, 32, 32, 3)), jnp.zeros((2,), jnp.int32), train=False)
    # Orbax round trip into the trainer's abstract state (what resuming does).
    mesh = sharding.make_mesh()
    state = state.replace(
        extras=dict(
            state.extras,
            replay=dict(state.extras[train_state.REPLAY], size=jnp.asarray(5, jnp.int32)),
        )
    )
    ckpt = checkpoints.Checkpointer(str(tmp_path))
    ckpt.save(1, sharding.replicate(state, mesh), {"position": 0}, wait=True)
    restored, _ = ckpt.restore(1, train_state.abstract_state(c, mesh))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(leaves(restored), leaves(state)):
        np.testing.assert_array_equal(a, b)
    # A rollback override may switch techniques on or off after a checkpoint was written: the
    # restore takes the entries the checkpoint holds and the config keeps (historical averaging off:
    # dropped; LeCam on: not stored, so it starts when the step runs).
    changed = tiny_config(replay_capacity=16, replay_fraction=0.25, pacgan_pack=2, lecam_weight=0.1)
    restored, _ = ckpt.restore(1, train_state.abstract_state(changed, mesh))
    ckpt.close()
    assert (
        set(restored.extras) == {train_state.REPLAY}
        and int(restored.extras[train_state.REPLAY]["size"]) == 5
    )
    assert set(
        train_state.technique_state(
            registry.enabled(changed), restored.g_params, restored.d_params, restored.extras
        )
    ) == {train_state.REPLAY, "lecam"}


# --------------------------------------------------------------------------- the step


@pytest.fixture(scope="module")
def default_step():
    c = tiny_config()
    mdl, state = train_state.init_state(c, jax.random.key(0))
    new, metrics = jax.jit(ts.make_train_step(c, mdl))(state, random_batch(c), jax.random.key(7))
    return new, {k: np.asarray(v) for k, v in metrics.items()}


@pytest.mark.slow
def test_default_step_is_bit_identical_to_the_step_before_the_switches(default_step):
    before = load_module_at(BEFORE_COMMIT, "biggan/train_step.py", "before_switches_train_step")
    c = tiny_config(**NEUTRAL)  # every new switch written out at its neutral value
    c.model.update(d_minibatch_kernels=0, d_minibatch_kernel_dim=7)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    new_old, m_old = jax.jit(before.make_train_step(c, mdl))(
        state, random_batch(c), jax.random.key(7)
    )
    new_new, m_new = default_step
    assert sorted(m_old) == sorted(m_new)  # no new metric at the neutral values
    for k in m_old:
        np.testing.assert_array_equal(m_new[k], m_old[k], err_msg=k)
    parts = lambda s: (
        s.g_params,
        s.d_params,
        s.g_state,
        s.d_state,
        s.ema_params,
        s.g_opt,
        s.d_opt,
        s.extras,
    )
    assert jax.tree.structure(parts(new_new)) == jax.tree.structure(parts(new_old))
    for a, b in zip(leaves(parts(new_new)), leaves(parts(new_old))):
        np.testing.assert_array_equal(a, b)


def d_of(mdl, params, state):
    return nnx.merge(mdl.d_graphdef, params, state, copy=True)


def softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


@pytest.mark.slow
def test_every_switch_in_one_step_by_hand(default_step, monkeypatch):
    """One step with all six switches on, each checked against a hand computation from the initial
    state: PacGAN m=2, minibatch discrimination, every target flipped (label_noise=1), historical
    averaging, replay of a pre-filled buffer (fraction 1: every fake replayed), one unrolled D
    step."""
    w = 0.5
    c = tiny_config(
        loss="non_saturating",
        label_noise=1.0,
        pacgan_pack=2,
        historical_averaging_weight=w,
        replay_capacity=16,
        replay_fraction=1.0,
        unrolled_d_steps=1,
        ortho_beta=0.0,
    )
    c.model.update(d_minibatch_kernels=4, d_minibatch_kernel_dim=3)
    mdl, state = train_state.init_state(c, jax.random.key(0))
    # Pre-fill: replay buffer full of one image of class 3; historical means off the current params.
    const = jnp.full((16, 32, 32, 3), 0.25, jnp.float32)
    hist_d = jax.tree.map(lambda p: p + 0.01, state.d_params)
    hist_g = jax.tree.map(lambda p: p - 0.02, state.g_params)
    state = state.replace(
        extras={
            train_state.REPLAY: dict(
                images=const,
                labels=jnp.full((16,), 3, jnp.int32),
                size=jnp.asarray(16, jnp.int32),
                next=jnp.asarray(0, jnp.int32),
            ),
            train_state.HIST_D: dict(mean=hist_d, count=jnp.asarray(1, jnp.int32)),
            train_state.HIST_G: dict(mean=hist_g, count=jnp.asarray(1, jnp.int32)),
        }
    )
    captured = []
    real_unroll = ts.unroll_discriminator

    def capturing_unroll(fn, carry, k, unroll=False):
        out = real_unroll(fn, carry, k, unroll)
        jax.debug.callback(lambda p, s: captured.append((p, s)), out[0], out[1])
        captured.append(("k", k))
        return out

    monkeypatch.setattr(ts, "unroll_discriminator", capturing_unroll)
    batch, rng = random_batch(c), jax.random.key(7)
    new, m = jax.jit(ts.make_train_step(c, mdl))(state, batch, rng)
    jax.effects_barrier()
    m = {k: np.asarray(v) for k, v in m.items()}
    assert bool(m["all_finite"])
    new_default, m_default = default_step
    assert any(
        np.abs(a - b).max() > 0 for a, b in zip(leaves(new.g_params), leaves(new_default.g_params))
    )

    real = to_model_range(jnp.asarray(batch["image"][0, 0]), jnp.float32)
    labels = jnp.asarray(batch["label"][0, 0])
    # PacGAN + minibatch discrimination: the reals are scored as 4 packs of 2 (first label of each
    # pack), compared with each other only (the fakes are another group).
    d_real = np.asarray(
        d_of(mdl, state.d_params, state.d_state)(
            pacgan.pack_samples(real, 2), labels[::2], train=True
        )
    )
    np.testing.assert_allclose(m["d_real_mean"], d_real.mean(), rtol=1e-5, atol=1e-5)
    # Replay with fraction 1: every fake is the buffered image of class 3.
    d_fake = np.asarray(
        d_of(mdl, state.d_params, state.d_state)(
            pacgan.pack_samples(const[:8], 2), jnp.full((4,), 3), train=True
        )
    )
    np.testing.assert_allclose(m["d_fake_mean"], d_fake.mean(), rtol=1e-5, atol=1e-5)
    # label_noise = 1: every target flipped, reals → 0 and fakes → 1 (unflipped values differ).
    np.testing.assert_allclose(m["d_loss_real"], softplus(d_real).mean(), rtol=1e-5)
    np.testing.assert_allclose(m["d_loss_fake"], softplus(-d_fake).mean(), rtol=1e-5)
    assert abs(softplus(d_real).mean() - softplus(-d_real).mean()) > 1e-3
    # The buffer took this step's 8 fresh fakes (with their classes) at slots 0..7.
    d_rng, g_rng = jax.random.split(rng)
    kz, ky = jax.random.split(jax.random.split(jax.random.split(d_rng, 1)[0], 1)[0])
    z, y = (
        jax.random.normal(kz, (8, c.model.dim_z)),
        jax.random.randint(ky, (8,), 0, c.model.num_classes),
    )
    G0 = nnx.merge(mdl.g_graphdef, state.g_params, state.g_state, copy=True)
    buf = new.extras[train_state.REPLAY]
    assert int(buf["size"]) == 16 and int(buf["next"]) == 8
    np.testing.assert_array_equal(buf["labels"], np.concatenate([np.asarray(y), np.full(8, 3)]))
    np.testing.assert_allclose(buf["images"][:8], G0(z, y, train=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(buf["images"][8:], const[8:])
    # Historical averaging: w·Σ‖θ − mean‖² (the edited mean) for D and G; then θ folds into the
    # mean.
    for key, before, after, edited, metric in (
        (train_state.HIST_D, state.d_params, new.d_params, hist_d, "historical_average_d"),
        (train_state.HIST_G, state.g_params, new.g_params, hist_g, "historical_average_g"),
    ):
        want = w * sum(
            float(np.sum((a.astype(np.float64) - b) ** 2))
            for a, b in zip(leaves(before), leaves(edited))
        )
        np.testing.assert_allclose(m[metric], want, rtol=1e-4)
        assert int(new.extras[key]["count"]) == 2
        for mean, e, p in zip(leaves(new.extras[key]["mean"]), leaves(edited), leaves(after)):
            np.testing.assert_allclose(mean, (e + p) / 2, rtol=1e-6, atol=1e-7)
    # Unrolled D: G's loss is the non-saturating loss against the D one update ahead (captured), not
    # against the D the step keeps.
    assert captured[0] == ("k", 1) and len(captured) == 2
    ahead_params, ahead_state = captured[1]
    assert (
        max(np.abs(a - b).max() for a, b in zip(leaves(ahead_params), leaves(new.d_params))) > 1e-6
    )
    kz, ky = jax.random.split(jax.random.split(g_rng, 1)[0])
    z, y = (
        jax.random.normal(kz, (8, c.model.dim_z)),
        jax.random.randint(ky, (8,), 0, c.model.num_classes),
    )
    fake = pacgan.pack_samples(G0(z, y, train=True), 2)
    against = lambda p, s: softplus(-np.asarray(d_of(mdl, p, s)(fake, y[::2], train=True))).mean()
    np.testing.assert_allclose(m["g_loss"], against(ahead_params, ahead_state), rtol=1e-5)
    assert abs(against(ahead_params, ahead_state) - against(new.d_params, new.d_state)) > 1e-5


def test_rahinge_trains_with_a_real_batch_in_the_g_step(monkeypatch):
    """train.loss=rahinge: the G step scores the step's last real micro-batch beside its fakes (one
    D pass) and feeds both to the relativistic G loss; three steps stay finite and move G."""
    captured = []
    real_get_loss = losses.get_loss

    def capturing_get_loss(name, **kw):
        d_loss, g_loss = real_get_loss(name, **kw)

        def g_loss_capturing(d_fake, d_real=None):
            jax.debug.callback(
                lambda f, r: captured.append((np.asarray(f), np.asarray(r))), d_fake, d_real
            )
            return g_loss(d_fake, d_real)

        return d_loss, g_loss_capturing

    monkeypatch.setattr(losses, "get_loss", capturing_get_loss)
    c = tiny_config(loss="rahinge")
    mdl, state = train_state.init_state(c, jax.random.key(0))
    step = jax.jit(ts.make_train_step(c, mdl))
    before = leaves(state.g_params)
    for i in range(3):
        state, m = step(state, random_batch(c, seed=i), jax.random.key(i))
        jax.effects_barrier()
        assert bool(m["all_finite"])
        d_fake, d_real = captured[-1]
        assert d_fake.shape == d_real.shape == (c.train.batch_size,)
        # The logged G loss is the relativistic average hinge of exactly these scores (paper's
        # margin 1).
        want = (
            np.maximum(0, 1 + (d_real - d_fake.mean())).mean()
            + np.maximum(0, 1 - (d_fake - d_real.mean())).mean()
        )
        np.testing.assert_allclose(m["g_loss"], want, rtol=1e-5)
        assert abs(want - np.maximum(0, 1 - d_fake).mean()) > 1e-4  # the real scores matter
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, leaves(state.g_params)))
