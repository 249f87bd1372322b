"""Evaluation library (paper §4 and appendix D; Heusel et al. 2017 for FID, Salimans et al. 2016 for
IS): IS/FID(/KID/PR) of a generator, truncation sweeps, the in-training evaluator (the reference
moments they compare with: reference.py). The command line is biggan/evaluate.py.

  evaluate_generator(sample_fn, feature_net, reference_moments, num_samples, ...) -> dict
  score_sampler(sampler, feature_net, ...), sweep_sampler(sampler, feature_net, truncations, ...)
  make_feature_network(name)
  make_training_evaluator(config, workdir) -> evaluator(generator, step)

A sampler is anything with `.sample(num, *, truncation, seed, batch_size, classes=None)` returning
float32 NHWC in [-1, 1] (`biggan.sampling.sampler.load_sampler(checkpoint_dir)` gives one).

Multi-process: the work is split by chunks of `batch_size`
(biggan.runtime.distributed.chunk_results_in_order): chunk k goes to process k mod P, each process
samples and featurises its chunks on its own devices, and every round the chunks are all-gathered
and fed to the accumulators in chunk order, so every process holds the metrics of the 1-process run
with the same seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm import tqdm

from biggan.data import digits_arrays
from biggan.evaluation import digits_classifier, inception, metrics
from biggan.evaluation.feature_network import FeatureNetwork
from biggan.evaluation.reference import check_process_local, compute_moments, iterate_array
from biggan.runtime import distributed, storage
from biggan.sampling import sampler as sampling

log = logging.getLogger(__name__)

# Kinds accepted on the command line -> the feature-network name stored in moments files.
FEATURE_NETWORK_KINDS = {
    "inception": inception.INCEPTION_NAME,
    "digits": digits_classifier.DIGITS_CLASSIFIER_NAME,
}


def make_feature_network(
    name: str,
    *,
    inception_weights: str | None = None,
    digits_cache_dir: str | None = None,
    batch_size: int | None = None,
    mesh=None,
) -> FeatureNetwork:
    """'inception' / 'digits', or a full feature-network name as stored in a moments file."""
    name = FEATURE_NETWORK_KINDS.get(name, name)
    if name == inception.INCEPTION_NAME:
        return inception.inception_feature_network(
            inception_weights, batch_size=batch_size or 200, mesh=mesh
        )
    if name == digits_classifier.DIGITS_CLASSIFIER_NAME:
        classifier = digits_classifier.load_or_train_digits_classifier(digits_cache_dir)
        return classifier.feature_network(batch_size=batch_size or 512, mesh=mesh)
    raise ValueError(
        f"unknown feature network {name!r}; expected one of {sorted(FEATURE_NETWORK_KINDS)} "
        f"or {sorted(FEATURE_NETWORK_KINDS.values())}"
    )


def evaluate_generator(
    sample_fn: Callable,
    feature_net: FeatureNetwork,
    reference_moments: metrics.Moments | None,
    num_samples: int,
    *,
    batch_size: int = 500,
    num_splits: int = 10,
    reference_features: np.ndarray | None = None,
    kid_subset_size: int = 1000,
    kid_num_subsets: int = 100,
    pr_k: int = 3,
    max_kept_features: int = 10_000,
    kid_and_pr: bool = True,
    progress: bool = True,
    desc: str = "evaluate",
) -> dict:
    """Metrics of `num_samples` generated samples, streamed in chunks of `batch_size`
    (multi-process: chunk k is sampled and featurised by process k mod P, see
    `distributed.chunk_results_in_order`; a collective, every process gets the same result;
    `feature_net` must run on this process's devices, `distributed.local_mesh()`).

    `sample_fn(start, num)` returns images (NHWC, [-1, 1] float or uint8) for samples
    start..start+num, or (images, class labels); it should be deterministic in (start, num) for
    reproducible numbers. Returns a dict with num_samples, feature_network, is_mean, is_std and,
    when available, fid (reference moments), kid_mean/kid_std/precision/recall (reference features:
    given, or stored in the moments file; `kid_and_pr=False` skips them, e.g. in the training loop,
    as KID over 2048-d Inception features costs tens of seconds of host time) and class_accuracy
    (labels + a classifier of the dataset's classes).
    """
    if reference_moments is not None and reference_moments.feature_network != feature_net.name:
        raise ValueError(
            f"reference moments were computed with {reference_moments.feature_network!r} but "
            f"the feature network is {feature_net.name!r}; use matching ones"
        )
    if reference_features is None and reference_moments is not None:
        reference_features = reference_moments.features
    if not kid_and_pr:
        reference_features = None
    check_process_local(feature_net)

    def compute(start, num):
        # Per chunk, inside one process: sample, check, featurise (metrics need all chunks: see
        # below).
        out = sample_fn(start, num)
        images, labels = out if isinstance(out, tuple) else (out, None)
        images = np.asarray(images)
        if images.shape[0] != num:
            raise ValueError(f"sample_fn({start}, {num}) returned {images.shape[0]} images")
        resolution = int(images.shape[1])
        if reference_moments is not None and reference_moments.resolution != resolution:
            raise ValueError(
                f"samples are {resolution}x{resolution} but the reference moments are "
                f"for {reference_moments.resolution}x{reference_moments.resolution}; "
                "recompute them at the sample resolution"
            )
        features, logits = feature_net(images)
        chunk = {"features": features, "logits": logits, "resolution": np.int64(resolution)}
        if labels is not None:
            chunk["labels"] = np.asarray(labels)
        return chunk

    moments = metrics.FeatureMoments(feature_net.feature_dim)
    scores = metrics.InceptionScoreAccumulator(num_samples, feature_net.num_classes, num_splits)
    kept: list[np.ndarray] = []
    num_kept = 0
    correct = labelled = 0
    resolution = None
    with tqdm(
        total=num_samples, desc=desc, unit="img", disable=not progress or jax.process_index() != 0
    ) as bar:
        # In chunk order on every process (multi-process: gathered each round), so the streaming
        # sums, the IS splits and the kept features are those of a 1-process run.
        for chunk in distributed.chunk_results_in_order(
            compute, num_samples, batch_size, what="samples"
        ):
            features, logits, labels = chunk["features"], chunk["logits"], chunk.get("labels")
            if resolution is None:
                resolution = int(chunk["resolution"])
            moments.update(features)
            scores.update(logits)
            if reference_features is not None and num_kept < max_kept_features:
                kept.append(features[: max_kept_features - num_kept])
                num_kept += len(kept[-1])
            if labels is not None and feature_net.predicts_dataset_classes:
                correct += int(np.sum(np.argmax(logits, axis=1) == labels))
                labelled += len(labels)
            bar.update(len(features))
    is_mean, is_std = scores.result()
    result = {
        "num_samples": num_samples,
        "feature_network": feature_net.name,
        "is_mean": is_mean,
        "is_std": is_std,
    }
    if reference_moments is not None:
        generated = metrics.Moments.from_accumulator(moments, feature_net.name, resolution)
        result["fid"] = metrics.fid_from_moments(generated, reference_moments)
    if reference_features is not None:
        fake = np.concatenate(kept)
        n = min(len(fake), len(reference_features))  # equal set sizes: PR depends on them
        result["kid_mean"], result["kid_std"] = metrics.kernel_inception_distance(
            fake,
            reference_features,
            num_subsets=kid_num_subsets,
            subset_size=min(kid_subset_size, n),
        )
        result["precision"], result["recall"] = metrics.precision_recall(
            reference_features[:n], fake[:n], k=pr_k
        )
        result["density"], result["coverage"] = metrics.density_coverage(
            reference_features[:n], fake[:n], k=5
        )
    if labelled:
        result["class_accuracy"] = correct / labelled
    return result


def make_training_evaluator(config, workdir):
    """`evaluator(generator, step) -> metrics` for the training loop: the EMA generator with
    standing statistics (paper appendix C.1), balanced classes, fixed latents. Digits (no Inception
    weights offline): the digits classifier's features give a Fréchet distance and the
    recognised-class accuracy."""
    eval_dir = os.path.join(workdir, "eval")
    if config.data.source == "digits":
        classifier = distributed.process_zero_first(
            lambda: digits_classifier.load_or_train_digits_classifier(
                eval_dir, log=lambda *a: None
            ),
            "digits classifier",
        )
        feature_net = classifier.feature_network(mesh=distributed.local_mesh())
        moments_path = os.path.join(eval_dir, "digits_reference_moments.npz")

        def load_or_compute_reference():
            if storage.exists(moments_path):
                return metrics.load_moments(moments_path, feature_network=feature_net.name)
            images, _ = digits_arrays(config.data.resolution)
            moments = compute_moments(
                iterate_array(images, 500),
                feature_net,
                description="digits",
                total=len(images),
                progress=False,
            )
            if jax.process_index() == 0:
                metrics.save_moments(moments_path, moments)
            return moments

        reference = distributed.process_zero_first(
            load_or_compute_reference, "digits reference moments"
        )
    else:
        feature_net = inception.inception_feature_network(
            config.eval.inception_weights or None, mesh=distributed.local_mesh()
        )
        if not config.eval.reference_moments:
            raise ValueError(
                "log.eval_every > 0 needs eval.reference_moments: compute them once with "
                "`python -m biggan.evaluate moments --data ... --out moments.npz` and pass "
                "--config.eval.reference_moments=moments.npz (or set --config.log.eval_every=0)"
            )
        reference = metrics.load_moments(
            config.eval.reference_moments,
            feature_network=feature_net.name,
            resolution=config.model.resolution,
        )
    num_classes, dim_z = config.model.num_classes, config.model.dim_z
    truncation = config.eval.truncation or None
    # the run's own latent (paper appendix E), as everywhere it samples
    latent = sampling.latent_of(config)
    sampling.check_latent_truncation(latent, truncation)

    def evaluator(generator, step):
        # Multi-process: each process samples its own chunks (evaluate_generator) on its own devices
        # (the Sampler copies G there). The forward and standing-statistics programs are compiled
        # once per run.
        sampler = sampling.Sampler(config, generator, cache_dir=None, progress=False)

        def sample_fn(start, num):
            z = np.asarray(
                sampling.sample_latents(
                    jax.random.fold_in(jax.random.key(2024), start),
                    num,
                    dim_z,
                    truncation,
                    latent=latent,
                )
            )
            if not num_classes:  # unconditional: no labels, so no class accuracy
                y = np.zeros(num, np.int32)
                return sampler.generate(z, y, truncation, batch_size=500)
            y = (np.arange(start, start + num) % num_classes).astype(np.int32)
            return sampler.generate(z, y, truncation, batch_size=500), y

        result = evaluate_generator(
            sample_fn,
            feature_net,
            reference,
            config.eval.num_samples,
            kid_and_pr=False,
            progress=False,
            desc=f"eval@{step}",
        )
        renamed = {"fid": result.get("fid"), "is": result["is_mean"]}
        if "class_accuracy" in result:
            renamed["classifier_accuracy"] = result["class_accuracy"]
        return {k: float(v) for k, v in renamed.items() if v is not None}

    return evaluator


def _chunk_seed(seed: int, start: int) -> int:
    # Independent, reproducible streams per chunk (not seed + start, which would overlap across
    # seeds).
    return int(np.random.SeedSequence([seed, start]).generate_state(1)[0])


def score_sampler(
    sampler,
    feature_net: FeatureNetwork,
    *,
    num_samples: int = 50_000,
    truncation: float | None = None,
    seed: int = 0,
    batch_size: int = 500,
    reference_moments: metrics.Moments | None = None,
    num_classes: int | None = None,
    progress: bool = True,
    **kwargs,
) -> dict:
    """`evaluate_generator` for a sampler object at one truncation (None: none, for our models;
    paper §3.1: a threshold for our models, t of z = t·truncnorm(−2, 2) for released ones — the
    sampler knows which).

    Classes are balanced (sample i gets class i mod num_classes; num_classes defaults to
    `sampler.num_classes`, else the sampler picks classes itself)."""
    num_classes = num_classes or getattr(sampler, "num_classes", None)

    def sample_fn(start, num):
        classes = None
        if num_classes:
            classes = ((start + np.arange(num)) % num_classes).astype(np.int32)
        images = sampler.sample(
            num,
            truncation=truncation,
            seed=_chunk_seed(seed, start),
            batch_size=batch_size,
            classes=classes,
        )
        return (images, classes) if classes is not None else images

    desc = "no truncation" if truncation is None else f"truncation {truncation:g}"
    result = evaluate_generator(
        sample_fn,
        feature_net,
        reference_moments,
        num_samples,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
        **kwargs,
    )
    return {"truncation": truncation, **result}


def sweep_sampler(
    sampler,
    feature_net: FeatureNetwork,
    truncations: Sequence[float],
    *,
    progress: bool = True,
    **kwargs,
) -> list[dict]:
    """`score_sampler` at each truncation: the diversity–fidelity curve of the paper's fig. 17."""
    return [
        score_sampler(sampler, feature_net, truncation=float(t), progress=progress, **kwargs)
        for t in tqdm(truncations, desc="truncation sweep", unit="truncation", disable=not progress)
    ]
