"""Sampling: standing statistics, soft classes, class names, sample.py."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from stepping import tiny_config

import sample as sample_cli
from biggan.data import imagenet_classes
from biggan.evaluation import evaluator as evaluation
from biggan.models import factory as models
from biggan.sampling import export
from biggan.sampling import sampler as sampling


def sampling_config(num_classes=10):
    """The tiny config with attention at 16² in G (sampled with γ set, below) and 3 × 16
    standing-stats batches."""
    return tiny_config(
        model=dict(num_classes=num_classes, g_attn=(16,)),
        sample=dict(standing_stats_batches=3, standing_stats_batch_size=16),
    )


def trained_like_generator(c, seed=0):
    """A G whose BN running stats are far from the truth (as for an EMA G), so standing stats
    matter."""
    G = models.make_generator(c.model, nnx.Rngs(seed))
    for path, module in nnx.iter_modules(G):
        if hasattr(module, "gamma") and module.gamma is not None:
            module.gamma[...] = jnp.array(0.7)  # attention on
    return G


def test_standing_stats_make_samples_independent_of_batch_size():
    c = sampling_config()
    sampler = sampling.Sampler(c, trained_like_generator(c))
    z = np.asarray(jax.random.normal(jax.random.key(1), (32, 16)))
    y = np.arange(32) % 10
    one = sampler.generate(z, y, batch_size=1)
    many = sampler.generate(z, y, batch_size=32)
    np.testing.assert_allclose(one, many, atol=2e-5)
    # Standing statistics are the average of per-batch statistics: not the init (0, 1) running
    # stats.
    stats = sampling.standing_stats(
        sampler.generator, num_batches=2, batch_size=16, rng=jax.random.key(0)
    )
    assert any(np.abs(v).max() > 1e-3 for k, v in stats.items() if k.endswith("/mean"))


def test_standing_stats_are_the_mean_of_batch_statistics():
    c = sampling_config()
    G = trained_like_generator(c)
    key = jax.random.key(3)
    stats = sampling.standing_stats(G, num_batches=2, batch_size=8, rng=key)
    # Hand computation for the output BN: its input is the last block's output for each batch.
    per_batch = []
    for i in range(2):
        kz, ky = jax.random.split(jax.random.fold_in(key, i))
        z = jax.random.normal(kz, (8, 16))
        y = jax.random.randint(ky, (8,), 0, 10)
        g = nnx.clone(G)
        captured = {}
        original = type(g.output_bn).normalize

        def spy(self, x, train, captured=captured):
            captured["x"] = np.asarray(x, np.float64)
            return original(self, x, train)

        type(g.output_bn).normalize = spy
        try:
            g(z, y, train=True)
        finally:
            type(g.output_bn).normalize = original
        per_batch.append((captured["x"].mean((0, 1, 2)), captured["x"].var((0, 1, 2))))
    np.testing.assert_allclose(
        stats["output_bn/mean"], np.mean([m for m, _ in per_batch], 0), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        stats["output_bn/var"], np.mean([v for _, v in per_batch], 0), rtol=1e-4, atol=1e-5
    )


def test_one_hot_class_vector_equals_integer_label():
    c = sampling_config()
    G = trained_like_generator(c)
    z = jax.random.normal(jax.random.key(0), (3, 16))
    y = jnp.array([1, 4, 9])
    np.testing.assert_allclose(
        G(z, jax.nn.one_hot(y, 10), train=False), G(z, y, train=False), atol=1e-6
    )
    with pytest.raises(
        ValueError,
        match=r"float class vector has shape \(3, 7\); expected \(batch, num_classes=10\)",
    ):
        G(z, jnp.ones((3, 7)), train=False)


def test_imagenet_class_names():
    assert imagenet_classes.class_index("golden retriever") == 207
    assert imagenet_classes.class_index("Volcano") == 980
    assert imagenet_classes.class_index("12") == 12
    with pytest.raises(
        ValueError,
        match=r"unknown ImageNet class name 'golden retreiver'; closest: 'golden retriever' \(207\)",
    ):
        imagenet_classes.class_index("golden retreiver")
    with pytest.raises(ValueError, match=r"class index 1000 is outside \[0, 1000\)"):
        imagenet_classes.class_index(1000)
    with pytest.raises(ValueError, match="class names exist only for ImageNet-1k"):
        imagenet_classes.class_index("tench", num_classes=10)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    c = sampling_config(num_classes=1000)
    d = str(tmp_path_factory.mktemp("export") / "g")
    export.save_generator(d, c, trained_like_generator(c))
    return d


def test_sample_cli_png_npy_latents_and_interpolation(exported, tmp_path):
    png = tmp_path / "grid.png"
    sample_cli.main(
        [
            "--checkpoint",
            exported,
            "--n",
            "4",
            "--classes",
            "golden retriever,3",
            "--output",
            str(png),
        ]
    )
    assert png.stat().st_size > 0
    npy = tmp_path / "x.npy"
    z = np.asarray(jax.random.normal(jax.random.key(5), (3, 16)), np.float32)
    np.save(tmp_path / "z.npy", z)
    sample_cli.main(
        [
            "--checkpoint",
            exported,
            "--latents",
            str(tmp_path / "z.npy"),
            "--classes",
            "207",
            "--output",
            str(npy),
            "--batch_size",
            "2",
        ]
    )
    x = np.load(npy)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.float32 and np.abs(x).max() <= 1
    sampler = sampling.load_sampler(exported)
    # z used as given
    np.testing.assert_allclose(x, sampler.generate(z, np.full(3, 207), None), atol=1e-5)
    strip = tmp_path / "strip.npy"
    sample_cli.main(
        [
            "--checkpoint",
            exported,
            "--interpolate",
            "class",
            "--classes",
            "1,2",
            "--n",
            "2",
            "--steps",
            "4",
            "--output",
            str(strip),
        ]
    )
    s = np.load(strip)
    assert s.shape == (8, 32, 32, 3)
    # A class strip keeps z fixed: its ends are the two classes' images for that z.
    zr, yr = sample_cli.interpolation_inputs(sampler, 0, "class", [1, 2], 2, 4, None)
    end = sampler.generate(zr[3:4], np.array([2]), None)[0]
    np.testing.assert_allclose(s[3], end, atol=1e-5)
    # A truncation grid: one row per threshold, each the sampler's draw at that threshold with the
    # same seed.
    grid = tmp_path / "truncation.npy"
    sample_cli.main(
        [
            "--checkpoint",
            exported,
            "--truncation",
            "0.5:1.5:0.5",
            "--classes",
            "1,2",
            "--n",
            "2",
            "--output",
            str(grid),
        ]
    )
    g = np.load(grid)
    assert g.shape == (6, 32, 32, 3)
    for row, t in enumerate((0.5, 1.0, 1.5)):
        np.testing.assert_allclose(
            g[2 * row : 2 * row + 2],
            sampler.sample(2, truncation=t, seed=0, classes=[1, 2]),
            atol=1e-5,
            err_msg=f"row {row} (truncation {t})",
        )
    assert np.abs(g[:2] - g[4:]).max() > 1e-3  # the rows differ
    with pytest.raises(SystemExit):  # a grid needs sampled latents
        sample_cli.main(
            [
                "--checkpoint",
                exported,
                "--truncation",
                "0.5,1",
                "--latents",
                str(tmp_path / "z.npy"),
            ]
        )


def test_sample_cli_bad_input(exported, tmp_path, capsys):
    """Every user error: one line naming the problem and the fix, exit status 2, no traceback,
    nothing drawn."""
    np.save(tmp_path / "z_wrong.npy", np.zeros((2, 7), np.float32))
    cases = [
        (["--classes", "golden retreiver"], "closest: 'golden retriever' (207)"),
        (["--classes", "1000"], "class index 1000 is outside"),
        (
            ["--latents", str(tmp_path / "z_wrong.npy")],
            "latents have shape (2, 7); expected (n, 16)",
        ),
        (["--latents", "/nonexistent.npy"], "--latents /nonexistent.npy: no such file"),
        (["--truncation", "-1"], "expected positive values"),
        (["--sheet", "--interpolate", "z"], "--sheet and --interpolate draw different pictures"),
        (["--output", "x.gif"], "expected a .png/.jpg grid, a .npz or a .npy file"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            sample_cli.main(
                ["--checkpoint", exported, "--output", str(tmp_path / "never.png"), *args]
            )
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, (args, err)
        assert err.strip().splitlines()[-1].startswith("sample.py: error:") or "error:" in err
        assert not (tmp_path / "never.png").exists()
    # no directory; a directory that holds no model
    for missing in (
        "/nonexistent/dir",
        str(tmp_path),
    ):
        out = subprocess.run(
            [sys.executable, "sample.py", "--checkpoint", missing], capture_output=True, text=True
        )
        assert (
            out.returncode == 2 and "Traceback" not in out.stderr and "--checkpoint" in out.stderr
        ), out.stderr


def test_class_sheet_rows_are_classes_columns_share_latents(exported, tmp_path):
    sheet = tmp_path / "sheet.npz"
    sample_cli.main(
        [
            "--checkpoint",
            exported,
            "--sheet",
            "--classes",
            "1,207,980",
            "--n",
            "3",
            "--seed",
            "4",
            "--output",
            str(sheet),
        ]
    )
    saved = np.load(sheet)
    assert (
        saved["images"].shape == (9, 32, 32, 3)
        and list(saved["classes"]) == [1] * 3 + [207] * 3 + [980] * 3
    )
    z = saved["z"].reshape(3, 3, -1)
    # every row (class) uses the same latents, column by column
    np.testing.assert_array_equal(z[0], z[1])
    np.testing.assert_array_equal(z[0], z[2])
    sampler = sampling.load_sampler(exported)
    np.testing.assert_allclose(
        saved["images"][3:6], sampler.generate(z[1], np.full(3, 207), None), atol=1e-5
    )
    # no truncation (our models' default), recorded as NaN
    assert np.all(np.isnan(saved["truncation"]))


# Every jit trace and backend compilation reports its duration under these event names
# (jax._src.dispatch); a persistent-cache hit skips the backend compile but not the trace, so both
# are counted.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_events: list | None = None


def _record_compile_event(event, duration, **kwargs):
    if _compile_events is not None and event in COMPILE_EVENTS:
        _compile_events.append(event)


jax.monitoring.register_event_duration_secs_listener(_record_compile_event)


def compile_events(fn):
    """(fn(), the compile events it caused)."""
    global _compile_events
    _compile_events = []
    try:
        result = fn()
        return result, list(_compile_events)
    finally:
        _compile_events = None


@pytest.mark.slow
def test_evaluation_forward_is_batch_sharded_equals_one_device_and_compiles_once(tmp_path):
    assert jax.local_device_count() == 8  # tests/conftest.py
    c = sampling_config()
    generator = trained_like_generator(c)
    sharded = sampling.Sampler(c, generator)
    single = sampling.Sampler(
        c, generator, mesh=sampling.sharding.make_mesh(jax.local_devices()[:1])
    )
    assert sharded.mesh.devices.size == 8
    z = np.asarray(jax.random.normal(jax.random.key(1), (20, 16)))  # 20: padded to 24 for 8 devices
    y = np.arange(20) % 10

    # The compiled forward takes and returns the batch split over the 8 devices.
    sharded.prepare(None)
    graphdef, state = nnx.split(sharded.generator)
    (zs, ys), _ = sampling.sharding.shard_padded(sharded.mesh, z[:16], y[:16])
    compiled = sampling._eval_forward.lower(graphdef, sharded.mesh, state, zs, ys).compile()
    batch = sampling.sharding.batch_sharding(sharded.mesh)
    (_, z_in, y_in), _ = compiled.input_shardings
    assert z_in.is_equivalent_to(batch, 2) and y_in.is_equivalent_to(batch, 1)
    assert compiled.output_shardings.is_equivalent_to(batch, 4)
    assert len(zs.sharding.device_set) == 8

    # Same images as one device (standing statistics included): the batch and the BN statistics'
    # reductions are split differently, float32 rounding only (|x| <= 1 images).
    np.testing.assert_allclose(
        sharded.generate(z, y, batch_size=16),
        single.generate(z, y, batch_size=16),
        atol=1e-5,
        rtol=0,
    )

    # In training: the second evaluation (new Sampler, standing statistics, forward, features)
    # traces and compiles nothing.
    t = tiny_config(
        model=dict(num_classes=10),
        sample=dict(standing_stats_batches=2, standing_stats_batch_size=16),
    )
    t.eval.num_samples = 24
    evaluator = evaluation.make_training_evaluator(t, str(tmp_path))
    ema = models.make_generator(t.model, nnx.Rngs(0))
    first, events = compile_events(lambda: evaluator(ema, 1))
    assert events, "the first evaluation compiled nothing: the compile-event seam no longer works"
    second, events = compile_events(lambda: evaluator(ema, 2))
    assert events == [], events
    assert first == second


def test_sample_cli_never_starts_a_long_accumulation_unasked(tmp_path, capsys):
    c = sampling_config(num_classes=10)
    # the ImageNet configs' size
    c.sample.update(standing_stats_batches=100, standing_stats_batch_size=256)
    d = str(tmp_path / "g")
    export.save_generator(d, c, trained_like_generator(c))
    with pytest.raises(SystemExit) as exit_info:
        sample_cli.main(["--checkpoint", d, "--n", "2", "--output", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2
        and "25,600 training-mode samples" in err
        and "--standing_stats 100" in err
    )
    assert not (tmp_path / "x.png").exists()
    # Asked for: runs (announced), and is cached, so the default command then proceeds without
    # asking.
    sample_cli.main(
        [
            "--checkpoint",
            d,
            "--n",
            "2",
            "--standing_stats",
            "1",
            "--output",
            str(tmp_path / "x.png"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        "standing statistics (paper appendix C.1), 1 batches x 256" in err
        and (tmp_path / "x.png").exists()
    )
    assert os.path.exists(os.path.join(d, "standing_stats_t0_1x256.npz"))
    sample_cli.main(
        [
            "--checkpoint",
            d,
            "--n",
            "2",
            "--standing_stats",
            "0",
            "--output",
            str(tmp_path / "y.png"),
        ]
    )
    assert "stored in the weights" in capsys.readouterr().err


def test_a_latent_ablation_is_sampled_from_its_own_latent():
    """Paper appendix E: a run trained with train.latent draws that latent wherever it samples — the
    Sampler, its standing statistics, the trainer's sample grids (and the in-training evaluator,
    through the same sampling.sample_latents)."""
    from biggan.train import loop as trainer

    c = sampling_config()
    c.train.latent = "bernoulli01"
    G = trained_like_generator(c)
    sampler = sampling.Sampler(c, G)
    z = sampler.latents(64, seed=0)
    assert set(np.unique(z)) == {0.0, 1.0}
    grid_z, _ = trainer._fixed_grid_inputs(c, seed=0)
    assert set(np.unique(grid_z)) == {0.0, 1.0}
    # The Sampler's standing statistics are accumulated on that latent (same keys as
    # Sampler.prepare).
    sampler.prepare(None)
    key, latent = jax.random.key(12345), sampling.latent_of(c)
    own = sampling.standing_stats(G, num_batches=3, batch_size=16, rng=key, latent=latent)
    normal = sampling.standing_stats(G, num_batches=3, batch_size=16, rng=key)
    np.testing.assert_allclose(
        np.asarray(sampler.generator.output_bn.mean[...]),
        own["output_bn/mean"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert np.abs(own["output_bn/mean"] - normal["output_bn/mean"]).max() > 1e-3
    # truncation re-samples a normal latent only
    with pytest.raises(ValueError, match="appendix E"):
        sampler.check_truncation(0.5)
    # Variance annealing samples at the end of its schedule (σ_end).
    c.train.update(latent="variance_annealing", latent_kwargs="anneal_steps=100,sigma_end=0.5")
    z = sampling.Sampler(c, G).latents(4000, seed=1)
    assert abs(float(z.std()) - 0.5) < 0.01  # 4000 × 16 draws: the std's standard error is ~0.0014
