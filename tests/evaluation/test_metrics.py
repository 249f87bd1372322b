"""IS, FID, KID, precision/recall and moments files against closed forms and public
implementations."""

import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biggan.evaluation import metrics
from biggan.evaluation.feature_network import FeatureNetwork


def _import_reference(module):
    """A reference implementation (torch-fidelity / pytorch-fid), tolerating PyPI's CUDA torchvision
    next to CPU torch: its C ops cannot load, so the registration modules that need them are stubbed
    (see tests/evaluation/test_inception.py)."""
    pytest.importorskip("torch")
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[name] = types.ModuleType(name)
    return pytest.importorskip(module)


def _random_covariance(rng, d, rank=None):
    a = rng.normal(size=(d, rank or 2 * d))
    return a @ a.T / a.shape[1]


# ---------------------------------------------------------------------------- Inception Score


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = metrics.inception_score(np.zeros((100, 7)), num_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 10, 1008])
def test_inception_score_of_confident_evenly_spread_predictions_is_k(num_classes):
    labels = np.arange(20 * num_classes) % num_classes  # every split sees every class equally often
    logits = np.where(np.eye(num_classes)[labels] > 0, 100.0, -100.0)
    mean, std = metrics.inception_score(logits, num_splits=10)
    assert mean == pytest.approx(num_classes, rel=1e-9) and std == pytest.approx(0, abs=1e-6)


def test_inception_score_hand_computed_two_samples():
    # One split, p1 = (1, 0), p2 = (1/2, 1/2): p(y) = (3/4, 1/4),
    # KL1 = log(4/3), KL2 = 1/2 log(2/3) + 1/2 log(2); IS = exp((KL1 + KL2) / 2).
    logits = np.log(np.array([[1.0, 1e-300], [0.5, 0.5]]))
    expected = np.exp((np.log(4 / 3) + 0.5 * np.log(2 / 3) + 0.5 * np.log(2)) / 2)
    assert metrics.inception_score(logits, num_splits=1)[0] == pytest.approx(expected, rel=1e-12)


def test_inception_score_matches_torch_fidelity_and_streaming():
    torch_fidelity_isc = _import_reference("torch_fidelity.metric_isc")
    import torch

    logits = np.random.default_rng(0).normal(size=(1003, 50)) * 3  # N not divisible by the splits
    theirs = torch_fidelity_isc.isc_features_to_metric(
        torch.from_numpy(logits), splits=10, shuffle=False
    )
    ours = metrics.inception_score(logits, num_splits=10)
    assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
    assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-8)

    acc = metrics.InceptionScoreAccumulator(len(logits), 50, num_splits=10)
    for start in range(0, len(logits), 64):  # batches straddle split boundaries
        acc.update(logits[start : start + 64])
    assert acc.result() == pytest.approx(ours, rel=1e-10)


def test_inception_score_accumulator_refuses_wrong_counts():
    acc = metrics.InceptionScoreAccumulator(10, 3, num_splits=2)
    acc.update(np.zeros((6, 3)))
    with pytest.raises(ValueError, match="saw 6 of the 10"):
        acc.result()
    with pytest.raises(ValueError, match="more than the num_samples=10"):
        acc.update(np.zeros((5, 3)))


# ---------------------------------------------------------------------------- FID


def test_fid_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=64), _random_covariance(rng, 64)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    singular = _random_covariance(rng, 64, rank=10)  # rank-deficient, as with n < d samples
    # The square root turns rounding noise eps on the 54 zero eigenvalues into sqrt(eps) ~ 1e-7
    # each.
    fid = metrics.frechet_distance(mu, singular, mu, singular)
    assert fid == pytest.approx(0.0, abs=1e-7 * np.trace(singular))


def test_fid_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    s1, s2 = rng.uniform(0.1, 3, 32), rng.uniform(0.1, 3, 32)
    closed_form = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    # Rotate both by the same orthogonal matrix: non-diagonal covariances, same distance.
    q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    fid = metrics.frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert fid == pytest.approx(closed_form, rel=1e-10)


def test_fid_matches_pytorch_fid_on_full_rank_and_singular_covariances():
    fid_score = _import_reference("pytorch_fid.fid_score")
    rng = np.random.default_rng(2)
    for rank in (None, 20):  # 20 < d = 48: pytorch-fid's eps-offset retry path
        mu1, mu2 = rng.normal(size=48), rng.normal(size=48)
        s1, s2 = _random_covariance(rng, 48, rank), _random_covariance(rng, 48, rank)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
        assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
            theirs, rel=1e-6, abs=1e-6
        )


def test_streaming_moments_equal_batch_computation():
    rng = np.random.default_rng(3)
    features = (rng.normal(size=(1000, 16)) * rng.uniform(0.1, 5, 16) + 3).astype(np.float32)
    acc = metrics.FeatureMoments(16)
    other = metrics.FeatureMoments(16)
    for start in range(0, 700, 97):
        acc.update(features[start : min(start + 97, 700)])
    other.update(features[700:])
    acc.merge(other)
    assert acc.n == 1000
    np.testing.assert_allclose(acc.mean(), features.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        acc.covariance(), np.cov(features.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12
    )


def test_fid_warns_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(4)
    acc = metrics.FeatureMoments(32)
    acc.update(rng.normal(size=(20, 32)))
    small = metrics.Moments.from_accumulator(acc, "net", 32)
    big_acc = metrics.FeatureMoments(32)
    big_acc.update(rng.normal(size=(200, 32)))
    big = metrics.Moments.from_accumulator(big_acc, "net", 32)
    with pytest.warns(
        metrics.FIDSampleSizeWarning, match="20 generated samples < feature dimension 32"
    ):
        metrics.fid_from_moments(small, big)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.fid_from_moments(big, big)  # enough samples: no warning


# ---------------------------------------------------------------------------- moments files


def test_moments_file_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(5)
    moments = metrics.Moments(
        rng.normal(size=8),
        _random_covariance(rng, 8),
        123,
        "inception-x/pool3",
        128,
        "folder:/data",
    )
    path = tmp_path / "ref.npz"
    metrics.save_moments(path, moments)
    loaded = metrics.load_moments(path, feature_network="inception-x/pool3", resolution=128)
    np.testing.assert_array_equal(loaded.mu, moments.mu)
    np.testing.assert_array_equal(loaded.sigma, moments.sigma)
    assert (loaded.n, loaded.feature_network, loaded.resolution, loaded.description) == (
        123,
        "inception-x/pool3",
        128,
        "folder:/data",
    )
    with pytest.raises(ValueError, match="for 128x128 images, but the samples are 256x256"):
        metrics.load_moments(path, resolution=256)
    with pytest.raises(ValueError, match="computed with feature network 'inception-x/pool3'"):
        metrics.load_moments(path, feature_network="digits-cnn-v1/penultimate")
    other_res = metrics.Moments(moments.mu, moments.sigma, 123, "inception-x/pool3", 64)
    with pytest.raises(ValueError, match="64px samples and 128px reference"):
        metrics.fid_from_moments(other_res, loaded)
    unlabelled = tmp_path / "pytorch_fid_style.npz"
    np.savez(unlabelled, mu=moments.mu, sigma=moments.sigma)
    with pytest.raises(ValueError, match="lacks"):
        metrics.load_moments(unlabelled)


# ---------------------------------------------------------------------------- KID


def test_kid_of_point_masses_matches_closed_form():
    a, b = 0.7, -1.3  # d = 1, k(x, y) = (x y + 1)^3
    x, y = np.full((50, 1), a), np.full((40, 1), b)
    expected = (a * a + 1) ** 3 + (b * b + 1) ** 3 - 2 * (a * b + 1) ** 3
    assert metrics.polynomial_mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=5, subset_size=30)
    assert mean == pytest.approx(expected, rel=1e-12) and std == pytest.approx(0, abs=1e-12)


def test_mmd_matches_brute_force_and_torch_fidelity():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))

    def k(a, b):
        return (a @ b / 5 + 1) ** 3

    m = len(x)
    brute = (
        sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        + sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    )
    ours = metrics.polynomial_mmd2_unbiased(x, y)
    assert ours == pytest.approx(brute, rel=1e-12)
    kid = _import_reference("torch_fidelity.metric_kid")
    kw = dict(kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    theirs = kid.mmd2(
        kid.kernel_poly(x, x, **kw), kid.kernel_poly(x, y, **kw), kid.kernel_poly(y, y, **kw)
    )
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_kid_is_near_zero_for_same_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(7)
    x, y, z = (
        rng.normal(size=(600, 8)),
        rng.normal(size=(600, 8)),
        rng.normal(1.0, 1.0, size=(600, 8)),
    )
    same, same_std = metrics.kernel_inception_distance(x, y, num_subsets=20, subset_size=300)
    shifted, _ = metrics.kernel_inception_distance(x, z, num_subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3 and shifted > 100 * abs(same)
    with pytest.raises(ValueError, match="subset_size=1000"):
        metrics.kernel_inception_distance(x, y)


# ---------------------------------------------------------------------------- precision & recall


def test_precision_recall_identical_and_disjoint_sets():
    x = np.random.default_rng(8).normal(size=(200, 10))
    assert metrics.precision_recall(x, x) == (1.0, 1.0)
    assert metrics.precision_recall(x, x + 1000.0) == (0.0, 0.0)


def test_precision_recall_hand_computed_1d():
    real = np.arange(5.0)[:, None]  # k=1 radii: all 1
    fake = np.array([[0.5], [10.0]])  # 0.5 is inside; 10 is 6 away from the nearest real
    # fake radii (k=1, two points): 9.5 each -> every real is within 9.5 of 0.5.
    assert metrics.precision_recall(real, fake, k=1) == (0.5, 1.0)
    np.testing.assert_allclose(metrics.knn_radii(real, k=3), [3, 2, 2, 2, 3])


def test_precision_recall_matches_torch_fidelity():
    prc = _import_reference("torch_fidelity.metric_prc")
    import torch

    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(300, 6)), rng.normal(0.4, 1.3, size=(250, 6))
    theirs = prc.calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), 3)
    ours = metrics.precision_recall(real, fake, k=3, batch_size=128)
    assert ours == pytest.approx(theirs, abs=1e-6)  # theirs is a float32 mean; 1/N = 4e-3
    assert 0.2 < ours[0] < 0.95 and 0.2 < ours[1] < 0.999  # a non-trivial case


def test_density_and_coverage_match_the_authors_prdc():
    """Naeem et al.'s own package (prdc 0.2, PyPI) on the same features; a batch size that does not divide
    the set sizes exercises the chunking. Its distances are sklearn's float64 Euclidean distances, ours
    float64 from squared norms; density is a count over k·N_fake (a multiple of 1/1250 here) and coverage
    a fraction of N_real, so equal counts give equal values to the last bit and 1e-6 catches one
    differing count."""
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(300, 8)), rng.normal(0.3, 1.2, size=(250, 8))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
        theirs = prdc.compute_prdc(real, fake, nearest_k=5)
    density, coverage = metrics.density_coverage(real, fake, k=5, batch_size=96)
    assert density == pytest.approx(theirs["density"], abs=1e-6)
    assert coverage == pytest.approx(theirs["coverage"], abs=1e-6)
    assert 0.2 < density < 1.5 and 0.2 < coverage < 0.99  # a non-trivial case
    # identical sets: every fake sits in its own real's ball and in k others' on average; coverage 1
    same_density, same_coverage = metrics.density_coverage(real, real, k=5)
    assert same_coverage == 1.0 and same_density > 0.9


@pytest.mark.slow  # scipy's sqrtm of a 2048² covariance (pytorch-fid's FID), ~10 s
def test_pytorch_fid_statistics_files_are_read_and_written(tmp_path):
    """A pytorch-fid statistics file (`np.savez_compressed(path, mu=mu, sigma=sigma)`, its save_fid_stats;
    mu/sigma as its calculate_activation_statistics computes them) read by our load_moments gives the FID
    pytorch-fid's calculate_frechet_distance computes for the same generated features; ours written with
    format "pytorch-fid" is what pytorch-fid's compute_statistics_of_path reads back."""
    fid_score = _import_reference("pytorch_fid.fid_score")
    rng = np.random.default_rng(13)
    real = rng.normal(size=(2500, metrics.POOL3_DIM)) @ (0.05 * rng.normal(size=(2048, 2048)))
    fake = real[:2400] * 1.1 + 0.05
    mu, sigma = np.mean(real, axis=0), np.cov(real, rowvar=False)
    np.savez_compressed(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    reference = metrics.load_moments(
        tmp_path / "stats.npz", feature_network=metrics.INCEPTION_NAME, resolution=128
    )
    assert reference.n == 0 and reference.resolution == 0  # not recorded in such files
    acc = metrics.FeatureMoments(metrics.POOL3_DIM)
    acc.update(fake)
    generated = metrics.Moments.from_accumulator(acc, metrics.INCEPTION_NAME, 128)
    theirs = fid_score.calculate_frechet_distance(
        np.mean(fake, axis=0), np.cov(fake, rowvar=False), mu, sigma
    )
    # both float64; scipy's sqrtm vs our eigendecompositions (BUILD_NOTES: agree to 1e-6)
    assert metrics.fid_from_moments(generated, reference) == pytest.approx(theirs, rel=1e-6)
    metrics.save_moments(tmp_path / "ours.npz", reference, format="pytorch-fid")
    back_mu, back_sigma = fid_score.compute_statistics_of_path(
        str(tmp_path / "ours.npz"), None, 50, 2048, "cpu"
    )
    np.testing.assert_array_equal(back_mu, mu)
    np.testing.assert_array_equal(back_sigma, sigma)
    with pytest.raises(ValueError, match="FID Inception"):
        metrics.load_moments(tmp_path / "stats.npz", feature_network="digits-cnn-v1/penultimate")


# ---------------------------------------------------------------------------- sharded features


def test_feature_network_shards_batch_on_data_axis_and_pads():
    assert len(jax.devices()) == 8  # tests/conftest.py simulates 8 CPU devices
    w = jnp.asarray(np.random.default_rng(10).normal(size=(12, 5)), jnp.float32)

    def apply_fn(params, images):
        flat = images.reshape(images.shape[0], -1)
        return jnp.tanh(flat @ params), flat @ params

    net = FeatureNetwork("toy", apply_fn, w, feature_dim=5, num_classes=5, batch_size=16)
    images = np.random.default_rng(11).normal(size=(37, 2, 2, 3)).astype(np.float32)
    features, logits = net(images)
    assert features.shape == (37, 5) and logits.shape == (37, 5)
    np.testing.assert_allclose(logits, images.reshape(37, -1) @ np.asarray(w), rtol=1e-5, atol=1e-5)
    assert net.mesh.axis_names == ("data",) and net.mesh.devices.size == 8
    assert net.input_sharding.spec == jax.sharding.PartitionSpec("data")
    assert net.batch_size == 16
