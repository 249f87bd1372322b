"""Sample-quality metrics (paper §4): Inception Score, FID, KID, improved precision & recall.

Everything here works on features/logits as numpy arrays and computes in float64. FID statistics are
accumulated in a streaming way (`FeatureMoments`: n, sum, sum of outer products), so 50k samples
never need to be held at once. Moments files (`save_moments`/`load_moments`) record which feature
network and which image resolution produced them, and refuse to be mixed.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from biggan.runtime import storage

MOMENTS_FORMAT_VERSION = 1
# The FID Inception's pool3 features (biggan/evaluation/inception.py): the feature network of the
# pytorch-fid / TTUR statistics files, which record nothing but mu and sigma.
INCEPTION_NAME = "inception-2015-12-05/pool3"
POOL3_DIM = 2048
MOMENT_FORMATS = ("biggan", "pytorch-fid")


class FIDSampleSizeWarning(UserWarning):
    """FID computed from fewer samples than feature dimensions: the covariance is rank-deficient."""


# ----------------------------------------------------------------------------------------------
# Inception Score.
# ----------------------------------------------------------------------------------------------


def _log_softmax64(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits have shape {logits.shape}; expected (num_samples, num_classes)")
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _split_score(count, sum_p, sum_p_log_p) -> float:
    # E_x KL(p(y|x) || p(y)) = E_x[sum_y p log p] - sum_y p(y) log p(y), with p(y) = E_x p(y|x).
    p_y = sum_p / count
    p_y_log_p_y = np.where(p_y > 0, p_y * np.log(np.where(p_y > 0, p_y, 1.0)), 0.0)
    return float(np.exp(sum_p_log_p / count - p_y_log_p_y.sum()))


def _split_ends(num_samples: int, num_splits: int) -> np.ndarray:
    # Split k holds samples [k N // s, (k + 1) N // s), as torch-fidelity (without its shuffle).
    if not 1 <= num_splits <= num_samples:
        raise ValueError(
            f"num_splits={num_splits} with {num_samples} samples; expected "
            "1 <= num_splits <= num_samples (the paper uses 10 splits of 50,000)"
        )
    return (np.arange(1, num_splits + 1) * num_samples) // num_splits


def inception_score(logits, num_splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over `num_splits` consecutive splits of the samples: (mean,
    std)."""
    log_p = _log_softmax64(logits)
    ends = _split_ends(log_p.shape[0], num_splits)
    scores = []
    for start, end in zip(np.concatenate([[0], ends[:-1]]), ends):
        part = log_p[start:end]
        p = np.exp(part)
        scores.append(_split_score(len(part), p.sum(axis=0), (p * part).sum()))
    return float(np.mean(scores)), float(np.std(scores))


class InceptionScoreAccumulator:
    """Streaming Inception Score over `num_samples` samples fed in order, same splits as
    `inception_score`: per split it keeps only n, sum_x p(y|x) and sum_x sum_y p log p."""

    def __init__(self, num_samples: int, num_classes: int, num_splits: int = 10):
        self.split_ends = _split_ends(num_samples, num_splits)
        self.num_samples = num_samples
        self.count = np.zeros(num_splits, np.int64)
        self.sum_p = np.zeros((num_splits, num_classes), np.float64)
        self.sum_p_log_p = np.zeros(num_splits, np.float64)
        self.seen = 0

    def update(self, logits) -> None:
        log_p = _log_softmax64(logits)
        n = log_p.shape[0]
        if self.seen + n > self.num_samples:
            raise ValueError(
                f"InceptionScoreAccumulator got {self.seen + n} samples, more than the "
                f"num_samples={self.num_samples} it was created for"
            )
        split = np.searchsorted(self.split_ends, np.arange(self.seen, self.seen + n), side="right")
        p = np.exp(log_p)
        np.add.at(self.count, split, 1)
        np.add.at(self.sum_p, split, p)
        np.add.at(self.sum_p_log_p, split, (p * log_p).sum(axis=1))
        self.seen += n

    def result(self) -> tuple[float, float]:
        if self.seen != self.num_samples:
            raise ValueError(
                f"InceptionScoreAccumulator saw {self.seen} of the {self.num_samples} "
                "samples it was created for; feed them all before asking for the score"
            )
        scores = [
            _split_score(c, s, q) for c, s, q in zip(self.count, self.sum_p, self.sum_p_log_p)
        ]
        return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------------------------
# Fréchet distance and streaming moments.
# ----------------------------------------------------------------------------------------------


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """Tr sqrt(Σ1 Σ2) for symmetric PSD Σ1, Σ2, via eigendecompositions.

    Σ1Σ2 is similar to Σ1^½ Σ2 Σ1^½ (symmetric PSD), so Tr sqrt(Σ1Σ2) = Σ_i sqrt(λ_i(Σ1^½ Σ2 Σ1^½)).
    Unlike scipy's `sqrtm` of the non-symmetric product, this cannot produce complex or NaN results
    on singular covariances, so no eps-offset retry is needed.
    """
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    middle = (middle + middle.T) / 2  # remove rounding asymmetry before eigvalsh
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) in float64."""
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"Fréchet distance got mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
            f"sigma2 {sigma2.shape}; expected (d,), (d, d) twice with the same d"
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"Fréchet distance: {name} has non-finite entries (NaN/inf features?)")
    diff = mu1 - mu2
    return float(
        diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )


class FeatureMoments:
    """Streaming mean/covariance of features: n, Σx and Σxxᵀ in float64 (never the features)."""

    def __init__(self, feature_dim: int):
        self.feature_dim = int(feature_dim)
        self.n = 0
        self.sum = np.zeros(self.feature_dim, np.float64)
        self.sum_outer = np.zeros((self.feature_dim, self.feature_dim), np.float64)

    def update(self, features) -> None:
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ValueError(f"features have shape {x.shape}; expected (batch, {self.feature_dim})")
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x

    def merge(self, other: FeatureMoments) -> None:
        if other.feature_dim != self.feature_dim:
            raise ValueError(
                f"cannot merge moments of dimension {other.feature_dim} into {self.feature_dim}"
            )
        self.n += other.n
        self.sum += other.sum
        self.sum_outer += other.sum_outer

    def mean(self) -> np.ndarray:
        if self.n < 1:
            raise ValueError("FeatureMoments is empty: update() it with features first")
        return self.sum / self.n

    def covariance(self) -> np.ndarray:
        """Unbiased (n − 1) covariance, as np.cov(rowvar=False) (pytorch-fid)."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 samples, got n={self.n}")
        mu = self.mean()
        cov = (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (cov + cov.T) / 2


@dataclasses.dataclass
class Moments:
    """Gaussian fit of a feature distribution plus where it came from."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    feature_network: str
    resolution: int
    description: str = ""
    features: np.ndarray | None = None  # optional subset of the feature vectors (for KID and PR)
    # images left out as corrupt (not saved)
    skipped: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_accumulator(
        cls, acc: FeatureMoments, feature_network: str, resolution: int, description: str = ""
    ) -> Moments:
        return cls(
            acc.mean(), acc.covariance(), acc.n, feature_network, int(resolution), description
        )


def save_moments(path: str | os.PathLike, moments: Moments, format: str = "biggan") -> None:
    """Write an .npz: mu, sigma (float64), n, feature_network, resolution, description,
    format_version and, if present, features (float32). format "pytorch-fid": mu and sigma alone,
    what pytorch-fid's --save-stats and TTUR's fid.py write and read (Inception pool3 moments only)."""
    if format == "pytorch-fid":
        if moments.feature_network != INCEPTION_NAME:
            raise ValueError(
                f"--format pytorch-fid holds FID Inception (pool3) moments; these are of "
                f"{moments.feature_network!r}"
            )
        storage.save_npz(
            path, mu=np.asarray(moments.mu, np.float64), sigma=np.asarray(moments.sigma, np.float64)
        )
        return
    if format != "biggan":
        raise ValueError(f"moments format {format!r}; expected one of {', '.join(MOMENT_FORMATS)}")
    extra = (
        {} if moments.features is None else {"features": np.asarray(moments.features, np.float32)}
    )
    storage.save_npz(
        path,
        mu=np.asarray(moments.mu, np.float64),
        sigma=np.asarray(moments.sigma, np.float64),
        n=np.int64(moments.n),
        feature_network=np.str_(moments.feature_network),
        resolution=np.int64(moments.resolution),
        description=np.str_(moments.description),
        format_version=np.int64(MOMENTS_FORMAT_VERSION),
        **extra,
    )


def load_moments(
    path: str | os.PathLike, *, feature_network: str | None = None, resolution: int | None = None
) -> Moments:
    """Read a moments file; refuse it if it was made by another feature network or resolution."""
    path = os.fspath(path)
    if not storage.isfile(path):
        raise FileNotFoundError(
            f"moments file {path!r} does not exist; create it with "
            "`python -m biggan.evaluate moments --data DIR_OR_NAME --out FILE`"
        )
    f = storage.load_npz(path)
    missing = [k for k in ("mu", "sigma", "n", "feature_network", "resolution") if k not in f]
    if set(f) == {"mu", "sigma"} and np.shape(f["mu"]) == (POOL3_DIM,):
        # pytorch-fid / TTUR statistics: the FID Inception's pool3 moments; sample count and image
        # resolution are not recorded (n 0 and resolution 0 stand for "unknown")
        moments = Moments(
            mu=f["mu"],
            sigma=f["sigma"],
            n=0,
            feature_network=INCEPTION_NAME,
            resolution=0,
            description="pytorch-fid/TTUR statistics (mu, sigma only)",
        )
        if feature_network is not None and feature_network != INCEPTION_NAME:
            raise ValueError(
                f"moments file {path!r} holds pytorch-fid/TTUR Inception statistics, but "
                f"{feature_network!r} is in use; evaluate with the FID Inception"
            )
        return moments
    if missing:
        raise ValueError(
            f"moments file {path!r} lacks {missing} (found {sorted(f)}); it was not written "
            "by biggan.evaluate, so the feature network and resolution it was computed with are "
            "unknown. Re-create it with `python -m biggan.evaluate moments`."
        )
    moments = Moments(
        mu=f["mu"],
        sigma=f["sigma"],
        n=int(f["n"]),
        feature_network=str(f["feature_network"]),
        resolution=int(f["resolution"]),
        description=str(f["description"]) if "description" in f else "",
        features=f.get("features"),
    )
    if feature_network is not None and moments.feature_network != feature_network:
        raise ValueError(
            f"moments file {path!r} was computed with feature network {moments.feature_network!r}, "
            f"but {feature_network!r} is in use; FIDs across feature networks are meaningless. Use "
            f"moments made with {feature_network!r} (or evaluate with {moments.feature_network!r})."
        )
    if resolution is not None and moments.resolution and moments.resolution != int(resolution):
        raise ValueError(
            f"moments file {path!r} is for {moments.resolution}x{moments.resolution} images, but the "
            f"samples are {resolution}x{resolution}; recompute the reference moments at {resolution} "
            f"(`python -m biggan.evaluate moments --resolution {resolution} ...`)."
        )
    return moments


def fid_from_moments(generated: Moments, reference: Moments) -> float:
    """FID between two labelled Gaussian fits; warns when either used fewer samples than
    dimensions."""
    if generated.feature_network != reference.feature_network:
        raise ValueError(
            f"FID between moments of feature networks {generated.feature_network!r} and "
            f"{reference.feature_network!r}; both must come from the same network"
        )
    if (
        generated.resolution
        and reference.resolution
        and generated.resolution != reference.resolution
    ):
        raise ValueError(
            f"FID between {generated.resolution}px samples and {reference.resolution}px "
            "reference moments; recompute the reference at the sample resolution"
        )
    dim = np.asarray(generated.mu).shape[0]
    for which, m in (("generated", generated), ("reference", reference)):
        if 0 < m.n < dim:  # 0: not recorded (a pytorch-fid/TTUR file)
            warnings.warn(
                f"FID from {m.n} {which} samples < feature dimension {dim}: the covariance is "
                "rank-deficient and the FID is strongly biased upwards; use >= 50,000 samples for "
                "numbers comparable with the paper (§4: 50k samples).",
                FIDSampleSizeWarning,
                stacklevel=2,
            )
    return frechet_distance(generated.mu, generated.sigma, reference.mu, reference.sigma)


# ----------------------------------------------------------------------------------------------
# KID and improved precision & recall.
# ----------------------------------------------------------------------------------------------


def _as_features(name, x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} has shape {x.shape}; expected (num_samples, feature_dim)")
    return x


def polynomial_mmd2_unbiased(x, y, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD² with k(a, b) = (aᵀb / d + coef0)^degree (Bińkowski et al. 2018)."""
    x, y = _as_features("x", x), _as_features("y", y)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2 or y.shape[1] != d:
        raise ValueError(
            f"MMD needs two sets of >= 2 samples of equal dimension; got {x.shape}, {y.shape}"
        )
    k_xx = (x @ x.T / d + coef0) ** degree
    k_yy = (y @ y.T / d + coef0) ** degree
    k_xy = (x @ y.T / d + coef0) ** degree
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2.0 * k_xy.mean()
    )


def kernel_inception_distance(
    features1,
    features2,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: mean and std of unbiased polynomial MMD² over random subsets (drawn without
    replacement)."""
    f1, f2 = _as_features("features1", features1), _as_features("features2", features2)
    if subset_size > min(len(f1), len(f2)) or subset_size < 2:
        raise ValueError(
            f"KID subset_size={subset_size} with {len(f1)} and {len(f2)} samples; expected "
            f"2 <= subset_size <= {min(len(f1), len(f2))}: pass a smaller subset_size"
        )
    rng = np.random.default_rng(seed)
    values = [
        polynomial_mmd2_unbiased(
            f1[rng.choice(len(f1), subset_size, replace=False)],
            f2[rng.choice(len(f2), subset_size, replace=False)],
            degree,
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _squared_distances(a, b) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def knn_radii(features, k: int = 3, batch_size: int = 1000) -> np.ndarray:
    """Distance from each sample to its k-th nearest other sample (the k-NN hypersphere radius)."""
    f = _as_features("features", features)
    if not 1 <= k < len(f):
        raise ValueError(f"k={k} nearest neighbours need more than k samples; got {len(f)}")
    radii = np.empty(len(f))
    for start in range(0, len(f), batch_size):
        d2 = _squared_distances(f[start : start + batch_size], f)
        # Index k of the sorted row is the k-th neighbour: index 0 is the sample itself (distance
        # 0).
        radii[start : start + batch_size] = np.partition(d2, k, axis=1)[:, k]
    return np.sqrt(radii)


def _coverage(queries, support, radii, batch_size) -> float:
    """Fraction of queries inside at least one support hypersphere ||q − s|| <= r_s."""
    inside = 0
    r2 = radii**2
    for start in range(0, len(queries), batch_size):
        d2 = _squared_distances(queries[start : start + batch_size], support)
        inside += int(np.any(d2 <= r2[None, :], axis=1).sum())
    return inside / len(queries)


def _feature_pair(real_features, fake_features) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets as (N, D) float arrays of one dimension D."""
    real, fake = (
        _as_features("real_features", real_features),
        _as_features("fake_features", fake_features),
    )
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real features {real.shape} and fake features {fake.shape} differ in dimension"
        )
    return real, fake


def precision_recall(
    real_features, fake_features, *, k: int = 3, batch_size: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds (k = 3).

    precision: fraction of fakes inside the real manifold; recall: fraction of reals inside the fake
    one.
    """
    real, fake = _feature_pair(real_features, fake_features)
    precision = _coverage(fake, real, knn_radii(real, k, batch_size), batch_size)
    recall = _coverage(real, fake, knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


def density_coverage(
    real_features, fake_features, *, k: int = 5, batch_size: int = 1000
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, §3; k = 5 their default) with the reals' k-NN balls.

    density: (1/k)·mean over fakes of the number of real balls containing the fake (can exceed 1);
    coverage: fraction of reals whose ball contains at least one fake. Strict inequalities, as the
    authors' `prdc` package (ties have probability zero for continuous features).
    """
    real, fake = _feature_pair(real_features, fake_features)
    r2 = knn_radii(real, k, batch_size) ** 2
    inside = 0  # Σ over fakes of the number of real balls holding them
    nearest_fake = np.full(len(real), np.inf)  # each real's squared distance to its nearest fake
    for start in range(0, len(fake), batch_size):
        d2 = _squared_distances(real, fake[start : start + batch_size])  # (reals, fakes)
        inside += int((d2 < r2[:, None]).sum())
        nearest_fake = np.minimum(nearest_fake, d2.min(axis=1))
    return inside / (k * len(fake)), float(np.mean(nearest_fake < r2))
