"""The ablation toolkit: switches wired into the train step, collapse monitor, study runner."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import stepping
from flax import nnx
from legacy_modules import load_module_at
from stepping import leaves, random_batch

from biggan import ablate, core_config
from biggan import config as cfg
from biggan.data import to_model_range
from biggan.gan import latents, regularisers
from biggan.sampling import images
from biggan.techniques import penalties, sigma0
from biggan.train import collapse
from biggan.train import state as train_state
from biggan.train import step as ts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# train_step.py as committed before the toolkit existed: the reference for "default config
# unchanged".
PRE_TOOLKIT_COMMIT = "85ad4d68a07c3eaa1000b3e926aeb4bab809f779"


# the step-tracing tests' size
small_config = functools.partial(stepping.tiny_config, ch=4, batch_size=4)


def one_step(c, step_module=ts, seed=0, edit_state=None):
    mdl, state = train_state.init_state(c, jax.random.key(0))
    if edit_state is not None:
        state = edit_state(state)
    new, metrics = jax.jit(step_module.make_train_step(c, mdl))(
        state, random_batch(c, seed), jax.random.key(7)
    )
    return mdl, state, new, {k: np.asarray(v) for k, v in metrics.items()}


def load_pre_toolkit_train_step():
    return load_module_at(PRE_TOOLKIT_COMMIT, "biggan/train_step.py", "pre_toolkit_train_step")


def test_default_step_is_bit_identical_to_the_pre_toolkit_step():
    c = small_config(num_d_steps=2)
    old = load_pre_toolkit_train_step()
    _, _, new_old, m_old = one_step(c, old)
    _, _, new_new, m_new = one_step(c)
    assert sorted(m_old) == sorted(m_new)  # no new metric for switches at their neutral value
    for k in m_old:
        np.testing.assert_array_equal(m_new[k], m_old[k], err_msg=k)
    for a, b in zip(
        leaves((new_new.g_params, new_new.d_params, new_new.g_state, new_new.d_state)),
        leaves((new_old.g_params, new_old.d_params, new_old.g_state, new_old.d_state)),
    ):
        np.testing.assert_array_equal(a, b)


def test_every_switch_defaults_to_neutral():
    t = cfg.base_config().train
    neutral = dict(
        hinge_margin=1.0,
        latent="normal",
        latent_kwargs="",
        label_smoothing=0.0,
        r1_gamma=0.0,
        dragan_weight=0.0,
        gp_weight=0.0,
        sigma0_reg_strength=0.0,
        sigma0_clamp=0.0,
        sigma0_clamp_ratio=0.0,
        instance_noise_sigma=0.0,
        feature_matching_weight=0.0,
        rollback_steps=0,
    )
    assert {k: t[k] for k in neutral} == neutral
    assert cfg.base_config().model.d_dropout_keep == 1.0
    assert cfg.base_config().log.collapse_window == 0


# --------------------------------------------------------------------------- per-switch wiring
# One compiled step with every numeric switch on (compiles cost ~1 min here); the rest are traced only
# (jax.eval_shape), which is enough to show a value reaches the function it configures.


def d_on_initial_state(mdl, state):
    return nnx.merge(mdl.d_graphdef, state.d_params, state.d_state, copy=True)


def trace_step(c):
    """Metric shapes of one step, traced but not compiled (fast)."""
    mdl, state = train_state.init_state(c, jax.random.key(0))
    _, metrics = jax.eval_shape(
        ts.make_train_step(c, mdl), state, random_batch(c), jax.random.key(7)
    )
    return metrics


def g_weight_matrices(g_params):
    pure = nnx.to_pure_dict(g_params)
    return {
        p: np.asarray(regularisers.weight_as_matrix(w, p))
        for p, w in regularisers.named_leaves(pure)
        if regularisers.ortho_filter(p, w)
    }


@pytest.mark.slow
def test_penalties_and_sigma0_switches_in_one_step():
    clamp = 0.5
    c = small_config(
        r1_gamma=3.0,
        dragan_weight=10.0,
        gp_weight=5.0,
        sigma0_reg_strength=0.1,
        sigma0_target=0.5,
        sigma0_clamp=clamp,
        feature_matching_weight=1.0,
    )
    spiked = []

    def spike(state):
        # Orthogonal init gives σ0 = σ1 = 1 everywhere, where the clamp (σ0 ← min(σ0, max(c, σ1)))
        # has nothing to do: add a rank-1 spike (σ0 ≈ 4) to one G weight so that it has.
        pure = nnx.to_pure_dict(state.g_params)
        path, w = next(
            (p, w)
            for p, w in regularisers.named_leaves(pure)
            if regularisers.ortho_filter(p, w) and w.ndim == 2
        )
        u = np.ones(w.shape[0]) / np.sqrt(w.shape[0])
        v = np.ones(w.shape[1]) / np.sqrt(w.shape[1])
        node = pure
        for k in path.split("/")[:-1]:
            node = node[int(k) if k.isdigit() and int(k) in node else k]
        node[path.split("/")[-1]] = w + 4.0 * np.outer(u, v).astype(np.float32)
        g_params = jax.tree.map(lambda x: x, state.g_params)
        nnx.replace_by_pure_dict(g_params, pure)
        spiked.append(path)
        return state.replace(g_params=g_params)

    mdl, state, new, m = one_step(c, edit_state=spike)
    batch = random_batch(c)
    real = to_model_range(jnp.asarray(batch["image"][0, 0]), jnp.float32)
    labels = jnp.asarray(batch["label"][0, 0])
    # R1 equals penalties.r1_penalty of D (before the update) on the same real batch.
    expected_r1 = penalties.r1_penalty(
        lambda x: d_on_initial_state(mdl, state)(x, labels, train=True), real, 3.0
    )
    assert float(expected_r1) > 0
    np.testing.assert_allclose(m["r1_penalty"], expected_r1, rtol=1e-4)
    # Every penalty is in D's loss: d_loss = hinge + R1 + DRAGAN + GP.
    assert m["dragan_penalty"] > 0 and m["gp_penalty"] > 0
    np.testing.assert_allclose(
        m["d_loss"],
        m["d_loss_real"]
        + m["d_loss_fake"]
        + m["r1_penalty"]
        + m["dragan_penalty"]
        + m["gp_penalty"],
        rtol=1e-5,
    )
    # σ0 regulariser: the value of sigma0.sigma0_penalty on G's weights before the update.
    expected_s0 = sigma0.sigma0_penalty(
        nnx.to_pure_dict(state.g_params),
        0.1,
        sigma_target=0.5,
        leaf_filter=regularisers.ortho_filter,
    )
    np.testing.assert_allclose(m["sigma0_penalty"], expected_s0, rtol=1e-4)
    assert m["feature_matching"] > 0
    # σ0 clamp: after the step every G weight has σ0 ≤ max(clamp, σ1) (numpy SVD), and it had work
    # to do.
    before, after = g_weight_matrices(state.g_params), g_weight_matrices(new.g_params)
    # the spike is there before the step
    assert np.linalg.svd(before[spiked[0]], compute_uv=False)[0] > 3.0
    for path, w in after.items():
        s = np.linalg.svd(w, compute_uv=False)
        assert s[0] <= max(clamp, s[1]) * (1 + 1e-3) + 1e-5, path  # ... and clamped after it


@pytest.mark.slow
def test_each_switch_adds_its_metric_and_no_other():
    base = set(trace_step(small_config()))
    for switch, key in (
        (dict(r1_gamma=1.0), "r1_penalty"),
        (dict(dragan_weight=1.0), "dragan_penalty"),
        (dict(gp_weight=1.0), "gp_penalty"),
        (dict(feature_matching_weight=1.0), "feature_matching"),
        (dict(sigma0_reg_strength=1.0, sigma0_ratio=0.5), "sigma0_penalty"),
    ):
        assert set(trace_step(small_config(**switch))) - base == {key}, switch
    assert "ortho_penalty" not in trace_step(small_config(ortho_beta=0.0))


@pytest.mark.slow  # traces the step several times (~10 s idle, ~50 s on the shared 2 cores)
def test_loss_options_reach_get_loss(monkeypatch):
    from biggan.gan import losses

    calls = []
    real_get_loss = losses.get_loss
    monkeypatch.setattr(
        losses, "get_loss", lambda name, **kw: calls.append((name, kw)) or real_get_loss(name, **kw)
    )
    trace_step(small_config(hinge_margin=2.0))
    trace_step(small_config(loss="non_saturating", label_smoothing=0.1))
    assert calls == [
        ("hinge", dict(margin=2.0, real_target=1.0)),
        ("non_saturating", dict(margin=1.0, real_target=0.9)),
    ]
    with pytest.raises(ValueError, match="label smoothing"):
        trace_step(small_config(label_smoothing=0.1))  # hinge has no targets


@pytest.mark.slow  # traces the step several times (~10 s idle, ~50 s on the shared 2 cores)
def test_latent_name_and_kwargs_reach_the_sampler(monkeypatch):
    calls = []
    real_sampler = latents.sample_latent

    def recording(name, rng, shape, **kw):
        calls.append((name, shape, sorted(kw)))
        return real_sampler(name, rng, shape, **kw)

    monkeypatch.setattr(latents, "sample_latent", recording)
    trace_step(
        small_config(latent="variance_annealing", latent_kwargs="anneal_steps=100,sigma_start=2.0")
    )
    assert calls and all(n == "variance_annealing" for n, _, _ in calls)
    # the step is passed
    assert all(kw == ["anneal_steps", "sigma_start", "step"] for _, _, kw in calls)
    calls.clear()
    trace_step(small_config(latent="bernoulli_pm1"))
    assert {n for n, _, _ in calls} == {"bernoulli_pm1"} and calls[0][1] == (4, 16)
    with pytest.raises(ValueError, match="latent"):
        trace_step(small_config(latent="gaussian"))


@pytest.mark.slow  # traces the step several times (~10 s idle, ~50 s on the shared 2 cores)
def test_dropout_and_instance_noise_reach_d(monkeypatch):
    from biggan.techniques import dropout, instance_noise

    seen = []
    real_dropout, real_noise = dropout.feature_dropout, instance_noise.add_instance_noise
    monkeypatch.setattr(
        dropout,
        "feature_dropout",
        lambda rng, h, keep, train: (
            seen.append(("dropout", keep)) or real_dropout(rng, h, keep, train)
        ),
    )
    monkeypatch.setattr(
        instance_noise,
        "add_instance_noise",
        lambda rng, x, sigma: seen.append(("noise", x.shape[0])) or real_noise(rng, x, sigma),
    )
    c = small_config(instance_noise_sigma=0.1, instance_noise_anneal_steps=10)
    c.model.d_dropout_keep = 0.5
    trace_step(c)
    # D update: one pass over [fake; real] (8); G update: fakes (4). Both get noise and dropout.
    # (Sets: with lax.scan, accumulate_gradients traces each loss once more for its aux shapes.)
    assert set(seen) == {("dropout", 0.5), ("noise", 4), ("noise", 8)}
    c.model.d_dropout_keep = 0.0
    with pytest.raises(ValueError, match="d_dropout_keep"):
        trace_step(c)


def test_contradictory_switches_are_refused():
    with pytest.raises(ValueError, match="exactly one"):
        trace_step(small_config(sigma0_reg_strength=0.1))
    with pytest.raises(ValueError, match="not both"):
        trace_step(small_config(sigma0_clamp=1.0, sigma0_clamp_ratio=0.5))
    with pytest.raises(ValueError, match="r1_gamma"):
        trace_step(small_config(r1_gamma=-1.0))


def test_parse_kwargs():
    assert core_config.parse_kwargs("anneal_steps=100, sigma_start=2.0,name=x", "w") == dict(
        anneal_steps=100, sigma_start=2.0, name="x"
    )
    assert core_config.parse_kwargs("", "w") == {}
    with pytest.raises(ValueError, match="key=value"):
        core_config.parse_kwargs("anneal_steps", "train.latent_kwargs")


# --------------------------------------------------------------------------- collapse monitor


def feed(monitor, sigma, d, g):
    events = [monitor.update(i + 1, s, dl, gl) for i, (s, dl, gl) in enumerate(zip(sigma, d, g))]
    return [e.step for e in events if e]


def test_collapse_rule_on_synthetic_series():
    n = 30
    rng = np.random.default_rng(0)
    # slow growth + noise: no collapse
    sigma = 1.0 + 0.01 * np.arange(n) + 0.02 * rng.standard_normal(n)
    d = 1.0 + 0.1 * rng.standard_normal(n)
    g = 0.5 + 0.1 * rng.standard_normal(n)
    assert feed(collapse.CollapseMonitor(window=5, sigma_jump=1.5), sigma, d, g) == []
    # A sharp σ0 jump at point 20 (×2 the trailing median) is flagged there.
    jump = sigma.copy()
    jump[19:] *= 2.0
    assert feed(collapse.CollapseMonitor(window=5, sigma_jump=1.5), jump, d, g)[0] == 20
    # D loss to ~0 while G loss spikes (+3 over its median), σ0 steady: flagged at point 25.
    d2, g2 = d.copy(), g.copy()
    d2[24:], g2[24:] = 0.01, 3.5
    assert feed(collapse.CollapseMonitor(window=5, sigma_jump=1.5), sigma, d2, g2)[0] == 25
    # D loss near 0 alone (a strong D, G loss unchanged) is not a collapse.
    d3 = d.copy()
    d3[24:] = 0.01
    assert feed(collapse.CollapseMonitor(window=5, sigma_jump=1.5), sigma, d3, g) == []
    # No verdict before a full window of history.
    assert (
        feed(collapse.CollapseMonitor(window=5, sigma_jump=1.5), [1, 1, 1, 100], [1] * 4, [0] * 4)
        == []
    )
    # The forced flag (tests of the rollback path) fires once.
    m = collapse.CollapseMonitor(window=50, force_step=3)
    assert feed(m, [1] * 5, [1] * 5, [0] * 5) == [3] and m.update(3, 1, 1, 0) is None
    with pytest.raises(ValueError, match="collapse_window"):
        collapse.CollapseMonitor(window=0)


def test_sigma0_max_is_the_largest_top_singular_value():
    c = small_config()
    mdl, state = train_state.init_state(c, jax.random.key(0))
    expected = max(
        np.linalg.svd(w, compute_uv=False)[0] for w in g_weight_matrices(state.g_params).values()
    )
    np.testing.assert_allclose(
        collapse.make_sigma0_max_fn(regularisers.ortho_filter)(state.g_params), expected, rtol=1e-4
    )


def test_pick_rollback_step_and_overrides():
    assert collapse.pick_rollback_step([2, 4, 6, 8], flagged_step=9, rollback_steps=4) == 4
    with pytest.raises(RuntimeError, match="keep_checkpoints"):
        collapse.pick_rollback_step([6, 8], flagged_step=9, rollback_steps=4)
    c = cfg.base_config()
    collapse.apply_overrides(c, core_config.parse_kwargs("train.lr_g=2.5e-5,model.hier=False", "w"))
    assert c.train.lr_g == 2.5e-5 and c.model.hier is False
    with pytest.raises(KeyError, match="lr_q"):
        collapse.apply_overrides(c, {"train.lr_q": 1.0})


@pytest.mark.slow
def test_forced_collapse_rolls_back_and_continues_with_the_override(tmp_path, monkeypatch):
    """Checkpoints every 2 steps, an evaluation every 3 (a stand-in evaluator: FID 10 at step 3, 20
    elsewhere), a collapse forced at step 5, rolled back ≥ 3 steps: to step 2. Step 3 was saved
    because it was evaluated, is the best, and is newer than the target: its EMA generator is
    exported before the rollback deletes it."""
    from biggan import checkpoints
    from biggan.evaluation import evaluator as evaluation
    from biggan.sampling import export
    from biggan.train import loop as trainer

    evaluated = []
    monkeypatch.setattr(
        evaluation,
        "make_training_evaluator",
        lambda config, workdir: (
            lambda generator, step: evaluated.append(step) or {"fid": 10.0 if step == 3 else 20.0}
        ),
    )

    def config():
        c = small_config()
        # The override also switches on a technique with state (LeCam's anchors), which step 2's
        # checkpoint lacks.
        c.train.update(
            batch_size=8,
            num_steps=6,
            rollback_steps=3,
            rollback_overrides="train.lr_g=1e-5,train.lecam_weight=0.1",
        )
        c.log.update(
            log_every=1,
            sv_every=0,
            sample_every=0,
            checkpoint_every=2,
            keep_checkpoints=5,
            collapse_window=3,
            collapse_force_step=5,
            eval_every=3,
            best_metric="fid",
        )
        return c

    c = config()
    lr_before = c.train.lr_g
    result = trainer.train(c, str(tmp_path), progress=False)
    assert result["step"] == 6 and result["lr_g"] == 1e-5 and "lecam_penalty" in result
    (rb,) = collapse.read_rollbacks(str(tmp_path))
    assert rb["flagged_step"] == 5 and rb["restored_step"] == 2
    assert rb["overrides"] == {"train.lr_g": 1e-5, "train.lecam_weight": 0.1}
    steps = [
        json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl") if '"d_loss"' in line
    ]
    assert steps == [1, 2, 3, 4, 5, 3, 4, 5, 6]  # steps 3..5 trained twice: after the rollback to 2
    assert evaluated == [3, 3, 6]
    # The best checkpoint before the rollback survives as an exported generator of the config that
    # trained it.
    kept = tmp_path / "best_before_rollback" / "step_0000003"
    assert export.is_exported_generator(str(kept))
    assert export.load_config(str(kept)).train.lr_g == lr_before
    # config.json holds the override (sample.py and biggan.evaluate rebuild the run from it); every
    # evaluated step was saved and scored.
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr_g"] == 1e-5
    ckpt = checkpoints.Checkpointer(str(tmp_path), best_metric="fid")
    assert ckpt.all_steps() == [2, 3, 4, 6] and ckpt.best_step() == 3
    # Resuming from the rollback target before any newer save (as after a crash then): the run keeps
    # its override (LeCam on), the checkpoint has no LeCam state, and LeCam starts from the restored
    # step.
    ckpt.delete_newer_than(2)
    ckpt.close()
    c = config()
    c.train.num_steps = 4
    result = trainer.train(c, str(tmp_path), progress=False)
    assert result["step"] == 4 and result["lr_g"] == 1e-5 and "lecam_penalty" in result


# --------------------------------------------------------------------------- the study runner


def fake_study(tmp_path):
    ablation = ml_collections.ConfigDict(
        dict(
            metrics=("fid", "g_loss"),
            variants=dict(base=ablate.variant({}), lower_lr=ablate.variant({"train.lr_g": 1e-5})),
        )
    )
    return small_config(), ablation, str(tmp_path / "study")


def test_study_runs_every_variant_and_seed_skips_finished_and_tabulates(tmp_path):
    base, ablation, study = fake_study(tmp_path)
    seen = []

    def fake_train(config, workdir):
        seen.append((config.train.lr_g, config.seed, os.path.relpath(workdir, study)))
        fid = 100 * config.train.lr_g / 1e-5 + config.seed
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:  # evaluations at steps 1 and 2
            f.write(json.dumps({"step": 1, "fid": 2 * fid, "g_loss": 3.0}) + "\n")
            f.write(json.dumps({"step": 2, "fid": fid}) + "\n")
        for step in (1, 2):  # sample grids as the trainer writes them: the sheet takes the last one
            os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
            images.save_grid(
                np.full((4, 8, 8, 3), 40 * step, np.uint8),
                os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                ncol=2,
            )
        return {"fid": fid, "g_loss": 1.0, "step": 2, "preempted": False}

    rows = ablate.run_study(base, ablation, study, 2, train_fn=fake_train, log=lambda *a: None)
    lr = base.train.lr_g
    assert sorted(seen) == sorted(
        [
            (lr, 0, "base/seed_0"),
            (1e-5, 0, "lower_lr/seed_0"),
            (lr, 1, "base/seed_1"),
            (1e-5, 1, "lower_lr/seed_1"),
        ]
    )
    row = {r["variant"]: r for r in rows}["lower_lr"]
    assert row["fid_mean"] == pytest.approx(100.5) and row["fid_std"] == pytest.approx(
        np.std([100, 101], ddof=1)
    )
    assert row["seeds_done"] == 2
    md = open(os.path.join(study, "results.md")).read()
    assert "| lower_lr | train.lr_g=1e-05 | 2/2 | 100.5 ± 0.71 | 1 ± 0 |" in md
    assert "lower_lr" in open(os.path.join(study, "results.csv")).read()
    # The curves: every evaluated step of every seed, drawn in study_curves.png.
    curves = ablate.study_curves(study, ablate.variant_overrides(ablation), 2, ("fid",))
    assert curves["lower_lr"] == {"fid": {1: [200.0, 202.0], 2: [100.0, 101.0]}}
    assert os.path.getsize(os.path.join(study, "study_curves.png")) > 1000
    # study_samples.png: each variant's last grid of its first seed.
    grids = ablate.final_sample_grids(study, ablate.variant_overrides(ablation), 2)
    assert grids == {
        f"{v} (seed 0, step 2)": os.path.join(study, v, "seed_0", "samples", "step_0000002.png")
        for v in ("base", "lower_lr")
    }
    assert os.path.getsize(os.path.join(study, "study_samples.png")) > 1000
    # A second invocation trains nothing (all finished); a preempted run stays unfinished.
    seen.clear()
    ablate.run_study(
        base,
        ablation,
        study,
        3,
        train_fn=lambda c, w: {"preempted": True, "step": 1},
        log=lambda *a: None,
    )
    assert not os.path.exists(os.path.join(study, "base", "seed_2", "result.json"))


def test_study_cli_list_jobs_and_bad_keys(tmp_path, capsys):
    assert ablate.main([os.path.join(REPO, "configs/digits_ablation.py"), "--list"]) == 0
    out = capsys.readouterr().out
    assert (
        "no_shared_embedding: --config.model.shared=False" in out
        and "baseline: (base config)" in out
    )
    assert (
        ablate.main(
            [
                os.path.join(REPO, "configs/digits_ablation.py"),
                "--seeds",
                "2",
                "--jobs",
                "--workdir",
                str(tmp_path),
            ]
        )
        == 0
    )
    jobs = capsys.readouterr().out.strip().splitlines()
    assert len(jobs) == 8 and all("--only" in j and "--seed_index" in j for j in jobs)
    with pytest.raises(KeyError, match="did you mean train.lr_g"):
        ablate.apply_overrides(small_config(), {"train.lr_gg": 1.0})
