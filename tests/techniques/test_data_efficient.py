"""The data-efficient and consistency techniques (biggan/techniques/): DiffAugment, ADA, LeCam, CR,
bCR, zCR.

Each definition is checked against an independent statement: the augmentations against a torch
re-statement of the authors' index arithmetic (mit-han-lab/data-efficient-gans
DiffAugment_pytorch.py, PyTorch-StudioGAN src/utils/cr.py), fed the same random draws; ADA's p rule
against stylegan2-ada-pytorch's update written out in Python; LeCam against google/lecam-gan's
ema_losses + lecam_reg; CR and zCR against closed forms on a linear D and G. The step tests switch
each technique on in digits:runlocal.
"""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stepping import REPO, random_batch, tiny_config, tiny_flags

from biggan.techniques import ada, augment, lecam, registry
from biggan.techniques.base import DContext, GContext
from biggan.train import state as train_state
from biggan.train import step as ts

torch = pytest.importorskip("torch")
F = torch.nn.functional


# --------------------------------------------------------------------------- augmentations vs the authors' code


def reference(op, x, params):
    """The authors' operation (NCHW torch) with its random draws replaced by `params`."""
    x = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)
    n, _, h, w = x.shape
    if op in ("brightness", "saturation", "contrast"):
        u = torch.from_numpy(np.array(params["u"])).view(n, 1, 1, 1)
        if op == "brightness":
            out = x + (u - 0.5)
        elif op == "saturation":
            mean = x.mean(dim=1, keepdim=True)
            out = (x - mean) * (u * 2) + mean
        else:
            mean = x.mean(dim=[1, 2, 3], keepdim=True)
            out = (x - mean) * (u + 0.5) + mean
    elif op == "translation":  # DiffAugment rand_translation
        tx = torch.from_numpy(np.array(params["shift_h"])).long().view(n, 1, 1)
        ty = torch.from_numpy(np.array(params["shift_w"])).long().view(n, 1, 1)
        gb, gx, gy = torch.meshgrid(
            torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij"
        )
        gx = torch.clamp(gx + tx + 1, 0, h + 1)
        gy = torch.clamp(gy + ty + 1, 0, w + 1)
        pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
        out = pad.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)
    elif op == "cutout":  # DiffAugment rand_cutout
        size = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
        ox = torch.from_numpy(np.array(params["centre_h"])).long().view(n, 1, 1)
        oy = torch.from_numpy(np.array(params["centre_w"])).long().view(n, 1, 1)
        gb, gx, gy = torch.meshgrid(
            torch.arange(n), torch.arange(size[0]), torch.arange(size[1]), indexing="ij"
        )
        gx = torch.clamp(gx + ox - size[0] // 2, min=0, max=h - 1)
        gy = torch.clamp(gy + oy - size[1] // 2, min=0, max=w - 1)
        mask = torch.ones(n, h, w, dtype=x.dtype)
        mask[gb, gx, gy] = 0
        out = x * mask.unsqueeze(1)
    elif op == "flip":  # StudioGAN random_flip
        flip = torch.from_numpy(np.array(params["flip"])).view(n, 1, 1, 1)
        out = torch.where(flip, torch.flip(x, [3]), x)
    elif op == "reflect_translation":  # StudioGAN random_translation
        mx, my = int(h / 8), int(w / 8)
        tx = torch.from_numpy(np.array(params["shift_h"])).long().view(n, 1, 1)
        ty = torch.from_numpy(np.array(params["shift_w"])).long().view(n, 1, 1)
        gb, gx, gy = torch.meshgrid(
            torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij"
        )
        pad = F.pad(x, [my, my, mx, mx], mode="reflect")
        out = pad.permute(0, 2, 3, 1)[gb, gx + tx + mx, gy + ty + my].permute(0, 3, 1, 2)
    return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    "op",
    [
        "brightness",
        "saturation",
        "contrast",
        "translation",
        "cutout",
        "flip",
        "reflect_translation",
    ],
)
@pytest.mark.parametrize("size", [(32, 32), (15, 20)])
def test_operation_matches_the_authors_code(op, size):
    n = 64  # enough draws that every shift, border and centre case occurs for the 32² images
    x = jax.random.uniform(jax.random.key(1), (n,) + size + (3,), jnp.float32, -1.0, 1.0)
    params = augment.draw(op, jax.random.key(2), n, *size)
    ours = np.asarray(augment.apply(op, x, params))
    assert ours.shape == x.shape and ours.dtype == np.float32
    # Float32 arithmetic of the same formula in another order: a few ulps of values of magnitude ≤
    # ~4.
    np.testing.assert_allclose(ours, reference(op, x, params), rtol=0, atol=1e-5)


def test_draws_cover_the_authors_ranges():
    n, h, w = 4096, 32, 32
    key = jax.random.key(0)
    u = np.asarray(augment.draw("brightness", key, n, h, w)["u"])
    assert 0.0 <= u.min() and u.max() < 1.0
    shifts = augment.draw("translation", key, n, h, w)
    assert set(np.asarray(shifts["shift_h"]).tolist()) == set(range(-4, 5))  # int(32/8 + 0.5) = 4
    assert set(np.asarray(augment.draw("translation", key, n, 20, 20)["shift_h"]).tolist()) == set(
        range(-3, 4)
    )
    assert set(
        np.asarray(augment.draw("reflect_translation", key, n, 20, 20)["shift_w"]).tolist()
    ) == set(range(-2, 3))
    centres = np.asarray(augment.draw("cutout", key, n, h, w)["centre_h"])
    assert set(centres.tolist()) == set(range(0, 33))  # randint(0, 32 + (1 − 16 % 2))
    # An odd square (int(13/2 + 0.5) = 7) has its centre on the image: randint(0, 13 + 0).
    assert set(np.asarray(augment.draw("cutout", key, n, 13, 13)["centre_h"]).tolist()) == set(
        range(0, 13)
    )
    flips = np.asarray(augment.draw("flip", key, n, h, w)["flip"])
    assert abs(flips.mean() - 0.5) < 4 * 0.5 / np.sqrt(n)  # a fair coin, 4σ


def test_policy_parsing_names_the_key():
    assert augment.parse_policy("color, translation,cutout", "k") == (
        "brightness",
        "saturation",
        "contrast",
        "translation",
        "cutout",
    )
    with pytest.raises(ValueError, match=r"train.diffaug_policy='colour'.*unknown: colour"):
        augment.parse_policy("colour", "train.diffaug_policy")


def test_translation_gradient_is_the_reverse_shift():
    """∂/∂x Σ w·T(x) = Tᵀw: for a shift, the opposite shift of w (zero fill): G's gradient flows
    through."""
    n, h, w = 9, 32, 32  # shifts up to int(32/8 + 0.5) = 4
    x = jax.random.normal(jax.random.key(0), (n, h, w, 3))
    weights = jax.random.normal(jax.random.key(1), (n, h, w, 3))
    params = {"shift_h": jnp.arange(-4, 5), "shift_w": jnp.arange(4, -5, -1)}
    grad = jax.grad(lambda x: jnp.sum(weights * augment.apply("translation", x, params)))(x)
    weights, expected = np.asarray(weights), np.zeros((n, h, w, 3), np.float32)
    for i, (a, b) in enumerate(zip(range(-4, 5), range(4, -5, -1))):
        for r, c in itertools.product(range(h), range(w)):
            if 0 <= r - a < h and 0 <= c - b < w:  # out[r − a, c − b] = x[r, c]
                expected[i, r, c] = weights[i, r - a, c - b]
    np.testing.assert_array_equal(np.asarray(grad), expected)
    # The whole policy is differentiable: a nonzero, finite gradient reaches every sample.
    full = jax.grad(
        lambda x: jnp.sum(
            weights
            * augment.augment(
                x, jax.random.key(3), augment.parse_policy("color,translation,cutout", "k")
            )
        )
    )(x)
    assert np.all(np.isfinite(full)) and np.all(
        np.abs(np.asarray(full)).reshape(n, -1).max(axis=1) > 0
    )


def test_ada_gate_applies_each_operation_with_probability_p():
    x = jax.random.normal(jax.random.key(0), (4096, 8, 8, 3))
    ops = ("brightness",)
    assert np.array_equal(augment.augment(x, jax.random.key(5), ops, p=0.0), x)
    np.testing.assert_array_equal(
        augment.augment(x, jax.random.key(5), ops, p=1.0),
        augment.augment(x, jax.random.key(5), ops),
    )
    changed = np.any(
        np.asarray(augment.augment(x, jax.random.key(5), ops, p=0.3)) != np.asarray(x),
        axis=(1, 2, 3),
    )
    assert abs(changed.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4096)  # binomial, 4σ


# --------------------------------------------------------------------------- ADA's p


def test_ada_p_follows_the_authors_rule_on_a_scripted_run():
    """stylegan2-ada-pytorch training_loop.py: every ada_interval steps
    p ← max(p + sign(E[sign D(real)] − target)·(images in the interval)/(ada_kimg·1000), 0)."""
    interval, target, kimg, batch = 4, 0.6, 0.1, 8  # 100 images per unit of p: visible moves
    rng = np.random.default_rng(0)
    logits = [rng.normal(loc, 1.0, batch) for loc in [2.0] * 12 + [-1.0] * 24 + [3.0] * 8]
    state = {
        "p": jnp.float32(0.0),
        "sign_sum": jnp.float32(0.0),
        "count": jnp.float32(0.0),
        "rt": jnp.float32(0),
    }
    p, signs, seen, ps = 0.0, [], [], []
    for step, d_real in enumerate(logits, start=1):
        state = dict(
            state, sign_sum=state["sign_sum"] + np.sign(d_real).sum(), count=state["count"] + batch
        )
        state, logged = ada.ada_adjust(state, jnp.int32(step), interval, target, kimg)
        signs.extend(np.sign(d_real))
        if step % interval == 0:  # the authors' rule, in float64
            p = max(p + np.sign(np.mean(signs) - target) * batch * interval / (kimg * 1000), 0.0)
            signs = []
        ps.append(float(logged["ada_p"]))
        seen.append(p)
    np.testing.assert_allclose(ps, seen, rtol=0, atol=1e-6)
    # up, then down
    assert max(ps) == pytest.approx(0.96, abs=1e-6) and ps[-1] > 0 and min(ps[12:]) < max(ps)


# --------------------------------------------------------------------------- LeCam, CR, zCR on linear models


def linear_d(weights):
    return lambda x, y: x.reshape(x.shape[0], -1) @ weights


def d_context(**fields):
    base = dict(
        real=None,
        fake=None,
        labels=None,
        fake_labels=None,
        z=None,
        d_real=None,
        d_fake=None,
        d_fn=None,
        d_viewed_fn=None,
        view=None,
        augment=None,
        g_fn=None,
        rng=jax.random.key(0),
        step=jnp.int32(0),
    )
    return DContext(**dict(base, **fields))


def test_lecam_matches_the_authors_ema_and_regulariser():
    """google/lecam-gan: ema_losses.update (decay 0 before start_itr) on each batch's means, then
    lecam_reg = mean(relu(D_real − ema.D_fake)²) + mean(relu(ema.D_real − D_fake)²), times λ once
    itr ≥ start."""
    c = tiny_config(lecam_weight=0.3, lecam_decay=0.9, lecam_start=2)
    technique = registry.enabled(c)[0]
    assert isinstance(technique, lecam.LeCam)
    state = technique.init_state()
    rng = np.random.default_rng(1)
    ema_real = ema_fake = None
    for step in range(6):
        d_real, d_fake = (
            rng.normal(0.5, 1.0, 16).astype(np.float32),
            rng.normal(-0.5, 1.0, 16).astype(np.float32),
        )
        terms, state = technique.d_terms(
            d_context(d_real=jnp.asarray(d_real), d_fake=jnp.asarray(d_fake), step=jnp.int32(step)),
            state,
        )
        decay = 0.0 if step < 2 or ema_real is None else 0.9
        ema_real = (
            d_real.mean() if ema_real is None else decay * ema_real + (1 - decay) * d_real.mean()
        )
        ema_fake = (
            d_fake.mean() if ema_fake is None else decay * ema_fake + (1 - decay) * d_fake.mean()
        )
        expected = np.mean(np.maximum(d_real - ema_fake, 0) ** 2) + np.mean(
            np.maximum(ema_real - d_fake, 0) ** 2
        )
        expected = 0.3 * expected if step >= 2 else 0.0
        np.testing.assert_allclose(float(terms["lecam_penalty"]), expected, rtol=1e-5)
        np.testing.assert_allclose(
            [state["anchor_real"], state["anchor_fake"]], [ema_real, ema_fake], rtol=1e-5
        )
    # The anchors are constants: the gradient w.r.t. D's outputs is the regulariser's own.
    d_real, d_fake = jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, -1.0])
    grad = jax.grad(
        lambda r: technique.d_terms(d_context(d_real=r, d_fake=d_fake, step=jnp.int32(5)), state)[
            0
        ]["lecam_penalty"]
    )(d_real)
    new_state = technique.d_terms(
        d_context(d_real=d_real, d_fake=d_fake, step=jnp.int32(5)), state
    )[1]
    expected = 0.3 * 2 * np.maximum(np.asarray(d_real) - float(new_state["anchor_fake"]), 0) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


@pytest.mark.parametrize("bcr", [False, True])
def test_cr_on_a_linear_d_under_flips(bcr):
    """T = horizontal flip. A flip-symmetric linear D gives zero; an antisymmetric one gives D(T(x))
    = −D(x) exactly on the flipped samples: the term is λ/N·Σ_{flipped} (2·D(x))², for some subset
    of the batch."""
    c = tiny_config(cr_real_weight=10.0, cr_fake_weight=10.0 if bcr else 0.0, cr_augment="flip")
    (technique,) = registry.enabled(c)
    n, h, w = 5, 4, 6
    real = jax.random.normal(jax.random.key(0), (n, h, w, 3))
    fake = jax.random.normal(jax.random.key(1), (n, h, w, 3))
    base = np.asarray(jax.random.normal(jax.random.key(2), (h, w, 3)))
    for sign in (1.0, -1.0):
        weights = jnp.asarray((base + sign * base[:, ::-1]).reshape(-1))  # flip-(anti)symmetric
        d_fn = linear_d(weights)
        ctx = d_context(
            real=real, fake=fake, d_real=d_fn(real, None), d_fake=d_fn(fake, None), d_fn=d_fn
        )
        terms, _ = technique.d_terms(ctx, None)
        assert sorted(terms) == (
            ["cr_fake_penalty", "cr_real_penalty"] if bcr else ["cr_real_penalty"]
        )
        for name, scores in (("cr_real_penalty", ctx.d_real), ("cr_fake_penalty", ctx.d_fake)):
            if name not in terms:
                continue
            value = float(terms[name])
            if sign > 0:
                assert value == pytest.approx(0.0, abs=1e-4)
            else:
                candidates = [
                    10.0 / n * sum(4 * float(scores[i]) ** 2 for i in subset)
                    for k in range(n + 1)
                    for subset in itertools.combinations(range(n), k)
                ]
                assert min(abs(value - v) for v in candidates) <= 1e-4 * max(1.0, value)


def test_zcr_terms_on_a_linear_g_and_d():
    """G(z) = zA, D(x) = x·w: G(z) − G(z') = −σεA, so E[(D(G(z)) − D(G(z')))²] = σ²‖Aw‖² and E[mean
    over pixels (G(z) − G(z'))²] = σ²‖A‖²_F / pixels (ε ~ N(0, I)). A batch of 8192 puts the sample
    means within a few percent (each is a mean of 8192 scaled χ²₁ draws: relative std √(2/8192) ≈
    1.6%)."""
    c = tiny_config(zcr_d_weight=5.0, zcr_g_weight=0.5, zcr_sigma=0.03)
    (technique,) = registry.enabled(c)
    n, dim_z, h, w = 8192, 6, 2, 3
    a = jax.random.normal(jax.random.key(0), (dim_z, h * w * 3))
    weights = jax.random.normal(jax.random.key(1), (h * w * 3,))
    g_fn = lambda z, y: (z @ a).reshape(z.shape[0], h, w, 3)  # noqa: E731
    d_fn = linear_d(weights)
    z = jax.random.normal(jax.random.key(2), (n, dim_z))
    fake = g_fn(z, None)
    d_terms, _ = technique.d_terms(
        d_context(
            real=fake,
            fake=fake,
            z=z,
            d_fake=d_fn(fake, None),
            d_fn=d_fn,
            g_fn=g_fn,
            rng=jax.random.key(3),
        ),
        None,
    )
    g_terms = technique.g_terms(
        GContext(
            z=z,
            labels=None,
            fake=fake,
            d_fake=None,
            real=None,
            real_labels=None,
            d_fn=d_fn,
            d_features_fn=None,
            augment=None,
            g_fn=g_fn,
            rng=jax.random.key(4),
            step=jnp.int32(0),
        ),
        None,
    )
    a, weights = np.asarray(a, np.float64), np.asarray(weights, np.float64)
    expected_d = 5.0 * 0.03**2 * np.sum((a @ weights) ** 2)
    expected_g = -0.5 * 0.03**2 * np.sum(a**2) / (h * w * 3)
    assert float(d_terms["zcr_d_penalty"]) == pytest.approx(expected_d, rel=0.07)  # 4σ of 1.6%
    assert float(g_terms["zcr_g_penalty"]) == pytest.approx(expected_g, rel=0.07)


@pytest.mark.parametrize(
    "train,match",
    [
        (dict(ada_target=1.5), r"train.ada_target=1.5 .* in \(0, 1\)"),
        (dict(ada_target=0.6, diffaug_policy="color"), r"both augment D's inputs"),
        (
            dict(diffaug_policy="color", pacgan_pack=2),
            r"diffaug augments each image .* train.pacgan_pack=2",
        ),
        (dict(lecam_weight=0.3, lecam_decay=1.0), r"train.lecam_decay=1.0 in \[0, 1\)"),
        (dict(cr_real_weight=-1.0), r"train.cr_real_weight=-1.0"),
        (
            dict(cr_real_weight=10.0, cr_augment="flip,rotate"),
            r"train.cr_augment='flip,rotate'.*unknown: rotate",
        ),
        (
            dict(zcr_d_weight=5.0, replay_capacity=16, replay_fraction=0.5),
            r"zCR .* experience replay",
        ),
    ],
)
def test_bad_switches_are_refused(train, match):
    with pytest.raises(ValueError, match=match):
        registry.enabled(tiny_config(**train))


# --------------------------------------------------------------------------- in the step


@pytest.mark.slow  # two compiles of the tiny step (~40 s and ~90 s on 2 shared cores)
def test_each_switch_steps_and_stays_finite():
    """Every new switch in digits:runlocal's tiny step: ADA with CR, bCR and zCR (2 D steps × 2
    accumulations, p adjusted every step), then DiffAugment with LeCam, R1 and feature matching
    (augmented D inputs everywhere). Each term is logged and finite, the state is where the rules
    put it."""
    c = tiny_config(
        ada_target=0.6,
        ada_p_init=0.5,
        ada_interval=1,
        cr_real_weight=10.0,
        cr_fake_weight=10.0,
        zcr_d_weight=5.0,
        zcr_g_weight=0.5,
        num_d_steps=2,
        num_accumulations=2,
    )
    mdl, state = train_state.init_state(c, jax.random.key(0))
    assert set(state.extras) == {"ada"}
    new, metrics = jax.jit(ts.make_train_step(c, mdl))(state, random_batch(c), jax.random.key(7))
    for key in (
        "cr_real_penalty",
        "cr_fake_penalty",
        "zcr_d_penalty",
        "zcr_g_penalty",
        "ada_p",
        "ada_rt",
    ):
        assert np.isfinite(float(metrics[key])), key
    assert bool(metrics["all_finite"]) and float(metrics["zcr_g_penalty"]) < 0
    # p moved by sign(r_t − 0.6)·(2 D steps × 8 reals)/(500·1000) from 0.5; the sums restart.
    rt = float(new.extras["ada"]["rt"])
    assert float(new.extras["ada"]["p"]) == pytest.approx(
        0.5 + np.sign(rt - 0.6) * 16 / 500_000, abs=1e-7
    )
    assert float(new.extras["ada"]["count"]) == 0.0

    c = tiny_config(
        diffaug_policy="color,translation,cutout",
        lecam_weight=0.3,
        r1_gamma=1.0,
        feature_matching_weight=0.1,
    )
    mdl, state = train_state.init_state(c, jax.random.key(0))
    new, metrics = jax.jit(ts.make_train_step(c, mdl))(state, random_batch(c), jax.random.key(7))
    assert bool(metrics["all_finite"]) and float(metrics["lecam_penalty"]) > 0
    # The first update sets the anchors to the batch means of D's (augmented-input) logits.
    np.testing.assert_allclose(
        [new.extras["lecam"]["anchor_real"], new.extras["lecam"]["anchor_fake"]],
        [metrics["d_real_mean"], metrics["d_fake_mean"]],
        rtol=1e-5,
    )


@pytest.mark.slow  # one train.py run of 2 tiny steps (~60 s)
def test_train_py_with_ada_and_lecam(tmp_path):
    """The user's path: switches on the command line, the trainer donating the technique states
    (each a buffer of its own), a checkpoint holding them, the metrics."""
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        "--config",
        "configs/digits.py:runlocal",
        "--workdir",
        str(workdir),
        *tiny_flags(),
        "--config.train.ada_target=0.6",
        "--config.train.ada_interval=1",
        "--config.train.lecam_weight=0.3",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    steps = [line for line in lines if "lecam_penalty" in line]
    assert [line["step"] for line in steps] == [1, 2]
    assert all(np.isfinite(line["lecam_penalty"]) and np.isfinite(line["ada_p"]) for line in steps)
    # p starts at 0 and is floored there: it rises only if D's reals score positive more than 60% of
    # the time.
    assert all(line["ada_p"] >= 0 for line in steps)
    assert os.path.isdir(workdir / "checkpoints" / "2")
