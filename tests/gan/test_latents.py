"""Latent samplers against closed-form densities and moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from biggan.gan import latents

N = 200_000


@pytest.mark.parametrize("threshold", [2.0, 1.0, 0.5, 0.04])
def test_truncated_normal_is_the_truncated_density(threshold):
    z = np.asarray(
        jax.jit(lambda k: latents.truncated_normal(k, (20_000,), threshold))(jax.random.key(7)),
        np.float64,
    )
    assert np.abs(z).max() <= threshold
    ks = stats.kstest(z, stats.truncnorm(-threshold, threshold).cdf)
    assert ks.pvalue > 1e-3, ks
    # re-sampling, not clipping: no atom at ±threshold (clipping N(0,1) at 0.5 would put ~62% there)
    assert np.mean(np.abs(z) >= threshold * (1 - 1e-6)) < 1e-3
    # the same test rejects clipping, so it has teeth
    clipped = np.clip(np.random.default_rng(0).normal(size=20_000), -threshold, threshold)
    assert stats.kstest(clipped, stats.truncnorm(-threshold, threshold).cdf).pvalue < 1e-6


def test_truncation_none_is_normal_and_bad_threshold_raises():
    z = np.asarray(latents.truncated_normal(jax.random.key(0), (20_000,), None))
    assert stats.kstest(z, "norm").pvalue > 1e-3
    with pytest.raises(ValueError, match="threshold must be > 0"):
        latents.truncated_normal(jax.random.key(0), (3,), 0.0)


def test_tfhub_convention():
    t = 0.4
    z = np.asarray(latents.tfhub_truncated_latent(jax.random.key(1), (20_000,), t), np.float64)
    assert np.abs(z).max() <= 2 * t + 1e-6
    assert stats.kstest(z / t, stats.truncnorm(-2, 2).cdf).pvalue > 1e-3
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            latents.tfhub_truncated_latent(jax.random.key(1), (3,), bad)


def _moments(name, shape=(N // 100, 100), **kw):
    z = np.asarray(latents.sample_latent(name, jax.random.key(11), shape, **kw), np.float64)
    return z, z.mean(), z.var()


CENSORED_VAR = 0.5 - 1 / (2 * np.pi)


@pytest.mark.parametrize(
    "name,mean,var,support",
    [
        ("normal", 0.0, 1.0, None),
        ("uniform", 0.0, 1 / 3, (-1, 1)),
        ("bernoulli01", 0.5, 0.25, {0.0, 1.0}),
        ("bernoulli_pm1", 0.0, 1.0, {-1.0, 1.0}),
        ("censored_normal", 1 / np.sqrt(2 * np.pi), CENSORED_VAR, (0, np.inf)),
        ("categorical3", 0.0, 2 / 3, {-1.0, 0.0, 1.0}),
        ("normal_times_bernoulli", 0.0, 0.5, None),
    ],
)
def test_sampler_moments(name, mean, var, support):
    z, m, v = _moments(name)
    se_m = np.sqrt(var / z.size)
    assert abs(m - mean) < 5 * se_m + 1e-12, (m, mean)
    se_v = np.std((z - m) ** 2) / np.sqrt(z.size)  # standard error of the variance estimate
    assert abs(v - var) < 5 * se_v + 1e-12, (v, var, se_v)
    if isinstance(support, set):
        assert set(np.unique(z)) == support
    elif support is not None:
        assert z.min() >= support[0] and z.max() <= support[1]
    if name == "censored_normal":
        np.testing.assert_allclose(np.mean(z == 0), 0.5, atol=0.005)
    if name == "categorical3":
        np.testing.assert_allclose([np.mean(z == c) for c in (-1, 0, 1)], 1 / 3, atol=0.005)


def test_normal_bernoulli_half():
    z = np.asarray(
        latents.sample_latent("normal_bernoulli_half", jax.random.key(2), (4000, 121)), np.float64
    )
    zn, zb = z[:, :61], z[:, 61:]
    assert set(np.unique(zb)) == {0.0, 1.0}
    assert abs(zn.mean()) < 0.01 and abs(zn.var() - 1) < 0.01
    assert abs(zb.mean() - 0.5) < 0.005
    assert len(np.unique(zn)) > 1000


def test_variance_annealing_schedule():
    sample = jax.jit(
        lambda k, s: latents.sample_latent(
            "variance_annealing", k, (2000, 100), step=s, anneal_steps=1000
        )
    )
    for step, sigma in [(0, 2.0), (500, 1.5), (1000, 1.0), (5000, 1.0)]:
        np.testing.assert_allclose(latents.annealed_sigma(step, 1000), sigma, rtol=1e-6)
        z = np.asarray(sample(jax.random.key(step), step), np.float64)
        assert abs(z.std() - sigma) < 0.01 * sigma


def test_per_sample_variance():
    lo, hi = 0.5, 2.0
    z = np.asarray(
        latents.sample_latent(
            "per_sample_variance", jax.random.key(4), (3000, 400), sigma_low=lo, sigma_high=hi
        ),
        np.float64,
    )
    # E z² = E σ² = (hi³ − lo³) / (3 (hi − lo)) for σ ~ U[lo, hi]
    # rows share σ, so the standard error comes from the 3000 per-row means of z²
    row_sq = np.mean(z**2, axis=1)
    se = row_sq.std() / np.sqrt(row_sq.size)
    assert abs(row_sq.mean() - (hi**3 - lo**3) / (3 * (hi - lo))) < 5 * se
    row_std = z.std(axis=1)  # one σ per sample: row stds are ~ U[lo, hi]
    assert stats.kstest(row_std, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-4
    assert row_std.min() > lo * 0.85 and row_std.max() < hi * 1.15


def test_registry():
    with pytest.raises(ValueError, match="valid names: normal, uniform"):
        latents.sample_latent("gaussian", jax.random.key(0), (2, 3))
    kw = {
        "variance_annealing": dict(step=0, anneal_steps=10),
        "truncated_normal": dict(threshold=0.5),
        "tfhub_truncated": dict(truncation=0.5),
    }
    for name in latents.LATENT_NAMES:
        z = latents.sample_latent(name, jax.random.key(0), (4, 6), **kw.get(name, {}))
        assert z.shape == (4, 6) and z.dtype == jnp.float32
