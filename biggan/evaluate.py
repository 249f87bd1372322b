"""Evaluation (SPEC §7): reference moments, IS/FID(/KID/PR) of a generator, truncation sweeps.

Library:
  evaluate_generator(sample_fn, feature_net, reference_moments, num_samples, ...) -> dict
  score_sampler(sampler, feature_net, ...), sweep_sampler(sampler, feature_net, truncations, ...)
  compute_moments(batches, feature_net, ...), make_feature_network(name)
CLI:
  python -m biggan.evaluate moments --data DIR_OR_digits --out moments.npz [--resolution R]
  python -m biggan.evaluate score --checkpoint DIR --num_samples 50000 --truncation 1.0 --moments F
  python -m biggan.evaluate sweep --checkpoint DIR --truncations 0.1:1.0:0.1 --moments F
A sampler is anything with `.sample(num, *, truncation, seed, batch_size, classes=None)` returning float32
NHWC in [-1, 1] (`biggan.sampling.load_sampler(checkpoint_dir)` gives one).

Multi-process (scripts/launch_local.py, a TPU pod, Slurm): the CLI joins the job like train.py (same flags,
or the JAX_* environment; biggan.distributed.initialize) and splits the work by chunks of `batch_size`:
chunk k goes to process k mod P, each process samples and featurises its chunks on its own devices, and
every round the chunks are all-gathered and fed to the accumulators in chunk order, so every process
holds the metrics of the 1-process run with the same seed. Only process 0 prints and writes.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from tqdm import tqdm

from biggan import digits_classifier, distributed, host_memory, inception, metrics

# Kinds accepted on the command line -> the feature-network name stored in moments files.
FEATURE_NETWORK_KINDS = {"inception": inception.INCEPTION_NAME,
                         "digits": digits_classifier.DIGITS_CLASSIFIER_NAME}


def make_feature_network(name: str, *, inception_weights: str | None = None,
                         digits_cache_dir: str | None = None, batch_size: int | None = None,
                         mesh=None) -> metrics.FeatureNetwork:
    """'inception' / 'digits', or a full feature-network name as stored in a moments file."""
    name = FEATURE_NETWORK_KINDS.get(name, name)
    if name == inception.INCEPTION_NAME:
        return inception.inception_feature_network(inception_weights, batch_size=batch_size or 200,
                                                   mesh=mesh)
    if name == digits_classifier.DIGITS_CLASSIFIER_NAME:
        classifier = digits_classifier.load_or_train_digits_classifier(digits_cache_dir)
        return classifier.feature_network(batch_size=batch_size or 512, mesh=mesh)
    raise ValueError(f"unknown feature network {name!r}; expected one of {sorted(FEATURE_NETWORK_KINDS)} "
                     f"or {sorted(FEATURE_NETWORK_KINDS.values())}")


# ----------------------------------------------------------------------------------------------
# Work split across processes.
# ----------------------------------------------------------------------------------------------

def deal_chunks(num_items: int, batch_size: int, process_count: int) -> list[list[tuple[int, int] | None]]:
    """Round-robin chunks: chunk k (items k·batch_size onwards, `num` of them) goes to process k mod P.

    Returns rounds[r][p] = (start, num) of chunk r·P + p, or None where the chunks ran out (only in the
    last round). Reading the rounds in order, processes in order, gives the chunks in item order.
    """
    if num_items < 0 or batch_size < 1 or process_count < 1:
        raise ValueError(f"deal_chunks(num_items={num_items}, batch_size={batch_size}, "
                         f"process_count={process_count}): expected num_items >= 0, batch_size >= 1 and "
                         "process_count >= 1")
    chunks = [(start, min(batch_size, num_items - start)) for start in range(0, num_items, batch_size)]
    return [[chunks[k] if k < len(chunks) else None for k in range(r, r + process_count)]
            for r in range(0, len(chunks), process_count)]


def chunk_results_in_order(compute: Callable[[int, int], dict], num_items: int, batch_size: int, *,
                           what: str = "items", process_index: int | None = None,
                           process_count: int | None = None,
                           allgather: Callable[[dict], list[dict]] | None = None) -> Iterator[dict]:
    """`compute(start, num) -> {name: numpy array}` of every chunk, yielded in chunk order on every process.

    One process: the chunks one after another, computed here. P processes (a collective: all must
    iterate to the end): each round every process computes its chunk of `deal_chunks` (one whose chunks
    ran out sends an empty dict), the results are all-gathered bit for bit and yielded in chunk order.
    An exception in one process's `compute` is raised on every process (none is left waiting).
    `process_index`/`process_count`/`allgather` default to JAX's and `distributed.allgather_arrays`.
    """
    process_count = jax.process_count() if process_count is None else process_count
    if process_count == 1:
        for start in range(0, num_items, batch_size):
            yield compute(start, min(batch_size, num_items - start))
        return
    process_index = jax.process_index() if process_index is None else process_index
    allgather = allgather or distributed.allgather_arrays
    for row in deal_chunks(num_items, batch_size, process_count):
        mine, local, error = row[process_index], {}, None
        if mine is not None:
            try:
                local = compute(*mine)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others heard of it
                error, local = e, {"__error__": np.str_(f"{type(e).__name__}: {e}")}
        gathered = allgather(local)
        failed = [p for p, g in enumerate(gathered) if "__error__" in g]
        if error is not None:
            raise error
        if failed:
            p = failed[0]
            start, num = row[p]
            raise RuntimeError(f"process {p} failed on {what} {start}..{start + num - 1}: "
                               f"{gathered[p]['__error__']} (its own output has the traceback)")
        for p, chunk in enumerate(row):
            if chunk is not None:
                yield gathered[p]


def _check_process_local(feature_net: metrics.FeatureNetwork) -> None:
    """Multi-process evaluation runs the feature network inside each process: its mesh must be local."""
    if jax.process_count() == 1:
        return
    foreign = [d for d in feature_net.mesh.devices.flat if d.process_index != jax.process_index()]
    if foreign:
        raise ValueError(f"feature network {feature_net.name!r} runs on a mesh with devices of other "
                         f"processes ({foreign[0]}, ...), but multi-process evaluation featurises each "
                         "process's chunks on its own devices; build it with "
                         "mesh=metrics.data_mesh(jax.local_devices())")


def local_mesh():
    """This process's devices as a 'data' mesh for a FeatureNetwork (None: all devices, one process)."""
    return metrics.data_mesh(jax.local_devices()) if jax.process_count() > 1 else None


def _process_zero_first(make: Callable, name: str):
    """`make()` on process 0, then on the others: what process 0 caches on first use (the trained digits
    classifier, reference moments) the others then read instead of writing the same file concurrently."""
    if jax.process_index() == 0:
        made = make()
    distributed.barrier(f"biggan.evaluate:{name}")
    if jax.process_index() != 0:
        made = make()
    return made


# ----------------------------------------------------------------------------------------------
# Reference moments.
# ----------------------------------------------------------------------------------------------

def compute_moments(batches: Iterable[np.ndarray], feature_net: metrics.FeatureNetwork, *,
                    description: str = "", keep_features: int = 10_000, total: int | None = None,
                    progress: bool = True) -> metrics.Moments:
    """Moments of `feature_net` features over image batches (uint8 or [-1, 1] floats, one resolution).

    The first `keep_features` feature vectors are stored too (for KID and precision/recall).
    One process (see `compute_moments_of_chunks` for a multi-process job)."""
    chunks = ({"features": feature_net(images)[0], "resolution": np.int64(images.shape[1])}
              for images in batches)
    return _moments_from_chunks(chunks, feature_net, description=description, keep_features=keep_features,
                                total=total, progress=progress)


def compute_moments_of_chunks(load_chunk: Callable[[int, int], np.ndarray], count: int,
                              feature_net: metrics.FeatureNetwork, *, batch_size: int, description: str = "",
                              keep_features: int = 10_000, progress: bool = True) -> metrics.Moments:
    """`compute_moments` of images 0..count-1, `load_chunk(start, num)` giving images start..start+num-1.

    Multi-process: the chunks are dealt to the processes (`chunk_results_in_order`), so every process
    gets the moments of one process reading all chunks (a collective: all must call)."""
    _check_process_local(feature_net)

    def features_of_chunk(start, num):
        images = np.asarray(load_chunk(start, num))
        if images.shape[0] != num:
            raise ValueError(f"load_chunk({start}, {num}) returned {images.shape[0]} images")
        return {"features": feature_net(images)[0], "resolution": np.int64(images.shape[1])}

    chunks = chunk_results_in_order(features_of_chunk, count, batch_size, what="images")
    return _moments_from_chunks(chunks, feature_net, description=description, keep_features=keep_features,
                                total=count, progress=progress)


def _moments_from_chunks(chunks: Iterable[dict], feature_net, *, description, keep_features, total,
                         progress) -> metrics.Moments:
    acc = metrics.FeatureMoments(feature_net.feature_dim)
    kept: list[np.ndarray] = []
    num_kept = 0
    resolution = None
    with tqdm(total=total, desc=f"moments ({feature_net.name})", unit="img",
              disable=not progress or jax.process_index() != 0) as bar:
        for chunk in chunks:
            features = chunk["features"]
            if resolution is None:
                resolution = int(chunk["resolution"])
            elif int(chunk["resolution"]) != resolution:
                raise ValueError(f"image batches mix resolutions {resolution} and {int(chunk['resolution'])}")
            acc.update(features)
            if num_kept < keep_features:
                kept.append(features[:keep_features - num_kept])
                num_kept += len(kept[-1])
            bar.update(len(features))
    if resolution is None:
        raise ValueError("compute_moments got no images")
    moments = metrics.Moments.from_accumulator(acc, feature_net.name, resolution, description)
    moments.features = np.concatenate(kept) if kept else None
    return moments


def _iterate_array(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


def data_chunks(data: str, *, resolution: int | None, max_images: int | None = None
                ) -> tuple[Callable[[int, int], np.ndarray], int, str]:
    """('digits' or an image folder) -> (load(start, num) -> uint8 NHWC images start..start+num-1,
    number of images, description): random access, for chunks dealt to several processes."""
    if data == "digits":
        from biggan.data import digits_arrays

        images, _ = digits_arrays(resolution or 32)
        images = images[:max_images]
        return (lambda start, num: images[start:start + num]), len(images), f"digits@{resolution or 32}"
    if not os.path.isdir(data):
        raise ValueError(f"--data {data!r} is neither 'digits' nor an existing image folder")
    if resolution is None:
        raise ValueError(f"--data {data!r} is a folder: pass --resolution (the sample resolution; images "
                         "are centre-cropped and resized to it as for training)")
    from concurrent.futures import ThreadPoolExecutor

    from biggan.data.sources import FolderSource

    source = FolderSource(data, resolution)
    count = min(len(source), max_images or len(source))

    def load(start, num):
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            return np.stack([image for image, _ in pool.map(source.load, range(start, start + num))])

    return load, count, source.description


def data_batches(data: str, *, resolution: int | None, batch_size: int, max_images: int | None = None
                 ) -> tuple[Iterable[np.ndarray], int, str]:
    """('digits' or an image folder) -> (uint8 NHWC batches, number of images, description)."""
    load, count, description = data_chunks(data, resolution=resolution, max_images=max_images)
    batches = (load(start, min(batch_size, count - start)) for start in range(0, count, batch_size))
    return batches, count, description


# ----------------------------------------------------------------------------------------------
# Generator evaluation.
# ----------------------------------------------------------------------------------------------

def evaluate_generator(sample_fn: Callable, feature_net: metrics.FeatureNetwork,
                       reference_moments: metrics.Moments | None, num_samples: int, *,
                       batch_size: int = 500, num_splits: int = 10,
                       reference_features: np.ndarray | None = None, kid_subset_size: int = 1000,
                       kid_num_subsets: int = 100, pr_k: int = 3, max_kept_features: int = 10_000,
                       kid_and_pr: bool = True, progress: bool = True, desc: str = "evaluate") -> dict:
    """Metrics of `num_samples` generated samples, streamed in chunks of `batch_size` (multi-process:
    chunk k is sampled and featurised by process k mod P, see `chunk_results_in_order`; a collective,
    every process gets the same result; `feature_net` must run on this process's devices, `local_mesh()`).

    `sample_fn(start, num)` returns images (NHWC, [-1, 1] float or uint8) for samples start..start+num,
    or (images, class labels); it should be deterministic in (start, num) for reproducible numbers.
    Returns a dict with num_samples, feature_network, is_mean, is_std and, when available,
    fid (reference moments), kid_mean/kid_std/precision/recall (reference features: given, or stored in
    the moments file; `kid_and_pr=False` skips them, e.g. in the training loop, as KID over 2048-d
    Inception features costs tens of seconds of host time) and class_accuracy (labels + a classifier
    of the dataset's classes).
    """
    if reference_moments is not None and reference_moments.feature_network != feature_net.name:
        raise ValueError(f"reference moments were computed with {reference_moments.feature_network!r} but "
                         f"the feature network is {feature_net.name!r}; use matching ones")
    if reference_features is None and reference_moments is not None:
        reference_features = reference_moments.features
    if not kid_and_pr:
        reference_features = None
    _check_process_local(feature_net)

    def compute(start, num):
        # Per chunk, inside one process: sample, check, featurise (metrics need all chunks: see below).
        out = sample_fn(start, num)
        images, labels = out if isinstance(out, tuple) else (out, None)
        images = np.asarray(images)
        if images.shape[0] != num:
            raise ValueError(f"sample_fn({start}, {num}) returned {images.shape[0]} images")
        resolution = int(images.shape[1])
        if reference_moments is not None and reference_moments.resolution != resolution:
            raise ValueError(f"samples are {resolution}x{resolution} but the reference moments are "
                             f"for {reference_moments.resolution}x{reference_moments.resolution}; "
                             "recompute them at the sample resolution")
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
    with tqdm(total=num_samples, desc=desc, unit="img", disable=not progress or jax.process_index() != 0) as bar:
        # In chunk order on every process (multi-process: gathered each round), so the streaming sums,
        # the IS splits and the kept features are those of a 1-process run.
        for chunk in chunk_results_in_order(compute, num_samples, batch_size, what="samples"):
            features, logits, labels = chunk["features"], chunk["logits"], chunk.get("labels")
            if resolution is None:
                resolution = int(chunk["resolution"])
            moments.update(features)
            scores.update(logits)
            if reference_features is not None and num_kept < max_kept_features:
                kept.append(features[:max_kept_features - num_kept])
                num_kept += len(kept[-1])
            if labels is not None and feature_net.predicts_dataset_classes:
                correct += int(np.sum(np.argmax(logits, axis=1) == labels))
                labelled += len(labels)
            bar.update(len(features))
    is_mean, is_std = scores.result()
    result = {"num_samples": num_samples, "feature_network": feature_net.name,
              "is_mean": is_mean, "is_std": is_std}
    if reference_moments is not None:
        generated = metrics.Moments.from_accumulator(moments, feature_net.name, resolution)
        result["fid"] = metrics.fid_from_moments(generated, reference_moments)
    if reference_features is not None:
        fake = np.concatenate(kept)
        n = min(len(fake), len(reference_features))  # equal set sizes: PR depends on them
        result["kid_mean"], result["kid_std"] = metrics.kernel_inception_distance(
            fake, reference_features, num_subsets=kid_num_subsets, subset_size=min(kid_subset_size, n))
        result["precision"], result["recall"] = metrics.precision_recall(
            reference_features[:n], fake[:n], k=pr_k)
    if labelled:
        result["class_accuracy"] = correct / labelled
    return result


def make_training_evaluator(config, workdir):
    """`evaluator(generator, step) -> metrics` for the training loop: the EMA generator with standing
    statistics (SPEC §5), balanced classes, fixed latents. Digits (no Inception weights offline): the
    digits classifier's features give a Fréchet distance and the recognised-class accuracy."""
    from biggan import sampling

    eval_dir = os.path.join(workdir, "eval")
    if config.data.source == "digits":
        from biggan.data import digits_arrays
        from biggan.digits_classifier import load_or_train_digits_classifier

        classifier = _process_zero_first(lambda: load_or_train_digits_classifier(eval_dir, log=lambda *a: None),
                                         "digits classifier")
        feature_net = classifier.feature_network(mesh=local_mesh())
        moments_path = os.path.join(eval_dir, "digits_reference_moments.npz")

        def load_or_compute_reference():
            if os.path.exists(moments_path):
                return metrics.load_moments(moments_path, feature_network=feature_net.name)
            images, _ = digits_arrays(config.data.resolution)
            moments = compute_moments(_iterate_array(images, 500), feature_net, description="digits",
                                      total=len(images), progress=False)
            if jax.process_index() == 0:
                metrics.save_moments(moments_path, moments)
            return moments

        reference = _process_zero_first(load_or_compute_reference, "digits reference moments")
    else:
        from biggan import inception
        feature_net = inception.inception_feature_network(config.eval.inception_weights or None,
                                                          mesh=local_mesh())
        if not config.eval.reference_moments:
            raise ValueError("log.eval_every > 0 needs eval.reference_moments: compute them once with "
                             "`python -m biggan.evaluate moments --data ... --out moments.npz` and pass "
                             "--config.eval.reference_moments=moments.npz (or set --config.log.eval_every=0)")
        reference = metrics.load_moments(config.eval.reference_moments, feature_network=feature_net.name,
                                         resolution=config.model.resolution)
    num_classes, dim_z = config.model.num_classes, config.model.dim_z
    truncation = config.eval.truncation or None

    def evaluator(generator, step):
        # Multi-process: each process samples its own chunks (evaluate_generator), so G must not be a
        # job-wide array that every process would have to enter together.
        sampler = sampling.Sampler(config, sampling.process_local_generator(generator), cache_dir=None)

        def sample_fn(start, num):
            z = np.asarray(sampling.sample_latents(jax.random.fold_in(jax.random.key(2024), start), num, dim_z,
                                                   truncation))
            y = (np.arange(start, start + num) % num_classes).astype(np.int32)
            return sampler.generate(z, y, truncation, batch_size=500), y

        result = evaluate_generator(sample_fn, feature_net, reference, config.eval.num_samples, kid_and_pr=False,
                                    progress=False, desc=f"eval@{step}")
        renamed = {"fid": result.get("fid"), "is": result["is_mean"]}
        if "class_accuracy" in result:
            renamed["classifier_accuracy"] = result["class_accuracy"]
        return {k: float(v) for k, v in renamed.items() if v is not None}

    return evaluator


def _chunk_seed(seed: int, start: int) -> int:
    # Independent, reproducible streams per chunk (not seed + start, which would overlap across seeds).
    return int(np.random.SeedSequence([seed, start]).generate_state(1)[0])


def score_sampler(sampler, feature_net: metrics.FeatureNetwork, *, num_samples: int = 50_000,
                  truncation: float | None = None, seed: int = 0, batch_size: int = 500,
                  reference_moments: metrics.Moments | None = None, num_classes: int | None = None,
                  progress: bool = True, **kwargs) -> dict:
    """`evaluate_generator` for a sampler object at one truncation (None: none, for our models; SPEC §5:
    a threshold for our models, t of z = t·truncnorm(−2, 2) for released ones — the sampler knows which).

    Classes are balanced (sample i gets class i mod num_classes; num_classes defaults to
    `sampler.num_classes`, else the sampler picks classes itself)."""
    num_classes = num_classes or getattr(sampler, "num_classes", None)

    def sample_fn(start, num):
        classes = None
        if num_classes:
            classes = ((start + np.arange(num)) % num_classes).astype(np.int32)
        images = sampler.sample(num, truncation=truncation, seed=_chunk_seed(seed, start),
                                batch_size=batch_size, classes=classes)
        return (images, classes) if classes is not None else images

    desc = "no truncation" if truncation is None else f"truncation {truncation:g}"
    result = evaluate_generator(sample_fn, feature_net, reference_moments, num_samples,
                                batch_size=batch_size, progress=progress, desc=desc, **kwargs)
    return {"truncation": truncation, **result}


def sweep_sampler(sampler, feature_net: metrics.FeatureNetwork, truncations: Sequence[float], *,
                  out_dir: str | None = None, progress: bool = True, **kwargs) -> list[dict]:
    """IS/FID over truncations (paper fig. 17); with `out_dir`, writes truncation_sweep.csv/.png."""
    rows = []
    for t in tqdm(truncations, desc="truncation sweep", unit="truncation", disable=not progress):
        rows.append(score_sampler(sampler, feature_net, truncation=float(t), progress=progress, **kwargs))
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        write_csv(os.path.join(out_dir, "truncation_sweep.csv"), rows)
        plot_sweep(os.path.join(out_dir, "truncation_sweep.png"), rows)
    return rows


def write_csv(path: str, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_sweep(path: str, rows: list[dict]) -> None:
    """FID against IS, one point per truncation, annotated (the paper's fig. 17 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    is_values = [r["is_mean"] for r in rows]
    if all("fid" in r for r in rows):
        y_values, y_label = [r["fid"] for r in rows], "FID"
    else:  # no reference moments: IS against truncation only
        y_values, y_label = [r["truncation"] for r in rows], "truncation"
    ax.plot(is_values, y_values, "o-")
    for r, x, y in zip(rows, is_values, y_values):
        ax.annotate(f"{r['truncation']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"IS ({rows[0]['feature_network']})")
    ax.set_ylabel(y_label)
    ax.set_title(f"Truncation sweep, {rows[0]['num_samples']} samples per point")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_truncations(text: str) -> list[float]:
    """'0.1:1.0:0.1' (start:stop:step, stop included) or '0.25,0.5,1.0'."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--truncations {text!r}: expected start:stop:step with step > 0 and "
                         "stop >= start (e.g. 0.1:1.0:0.1) or a comma list (e.g. 0.25,0.5,1.0)") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"--truncations {text!r} gives {values}; expected positive values")
    return values


# ----------------------------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------------------------

def _add_feature_args(parser):
    parser.add_argument("--feature_network", default="auto",
                        help="inception | digits | auto (moments: digits for --data digits, else inception; "
                             "score/sweep: the network named in --moments, else inception)")
    parser.add_argument("--inception_weights", default=None,
                        help="pt_inception-2015-12-05-6726825d.pth (default $BIGGAN_INCEPTION_WEIGHTS or "
                             "~/.cache/biggan/)")
    parser.add_argument("--digits_cache_dir", default=None,
                        help="where the digits classifier is cached "
                             "(default ~/.cache/biggan/digits_classifier)")
    parser.add_argument("--feature_batch_size", type=int, default=None)


def _truncation_arg(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _multiprocess_parser():
    """train.py's multi-process flags (biggan/distributed.py; scripts/launch_local.py appends them)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("multi-process (default: the JAX_* / cluster environment, else one "
                                      "process)")
    group.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    group.add_argument("--num_processes", type=int, default=None, help="number of processes")
    group.add_argument("--process_id", type=int, default=None, help="index of this process")
    group.add_argument("--local_device_count", type=int, default=None,
                       help="CPU only: simulated devices in this process")
    group.add_argument("--initialization_timeout", type=int, default=120,
                       help="seconds to wait for the coordinator")
    return parser


def _build_parser():
    parser = argparse.ArgumentParser(prog="python -m biggan.evaluate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    multiprocess = _multiprocess_parser()

    p = sub.add_parser("moments", help="reference moments of a dataset", parents=[multiprocess])
    p.add_argument("--data", required=True, help="'digits' or an image folder (ROOT/<class>/<image>)")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--resolution", type=int, default=None, help="image resolution (digits default 32)")
    p.add_argument("--batch_size", type=int, default=500)
    p.add_argument("--max_images", type=int, default=None)
    p.add_argument("--keep_features", type=int, default=10_000,
                   help="also store this many feature vectors (for KID and precision/recall)")
    _add_feature_args(p)

    for name, help_text in (("score", "IS/FID of a checkpoint at one truncation"),
                            ("sweep", "IS/FID over truncations: CSV + IS-vs-FID plot")):
        p = sub.add_parser(name, help=help_text, parents=[multiprocess])
        p.add_argument("--checkpoint", required=True)
        p.add_argument("--num_samples", type=int, default=50_000)
        p.add_argument("--moments", default=None, help="reference moments .npz (needed for FID)")
        p.add_argument("--batch_size", type=int, default=500)
        p.add_argument("--seed", type=int, default=0)
        if name == "score":
            p.add_argument("--truncation", type=_truncation_arg, default=None,
                           help="threshold (our models) or t (released models); default: none")
            p.add_argument("--out", default=None, help="also write the metrics as JSON here")
        else:
            p.add_argument("--truncations", default="0.1:1.0:0.1")
            p.add_argument("--out_dir", default=None, help="default: CHECKPOINT/truncation_sweep")
        _add_feature_args(p)
    return parser


def _feature_network_for(args, moments_path=None, data=None):
    kind = args.feature_network
    if kind == "auto":
        if moments_path is not None:
            with np.load(moments_path, allow_pickle=False) as f:
                kind = str(f["feature_network"]) if "feature_network" in f else "inception"
        else:
            kind = "digits" if data == "digits" else "inception"
    # Process 0 first: it trains and caches the digits classifier if needed; the others then read it.
    return _process_zero_first(
        lambda: make_feature_network(kind, inception_weights=args.inception_weights,
                                     digits_cache_dir=args.digits_cache_dir, batch_size=args.feature_batch_size,
                                     mesh=local_mesh()), "feature network")


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    host_memory.retain_freed_memory()  # before the first JAX computation (biggan/host_memory.py)
    # Join a multi-process job exactly like train.py (flags, else the environment; else a no-op).
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                           local_device_count=args.local_device_count, timeout=args.initialization_timeout)
    lead = jax.process_index() == 0  # prints and writes; every process computes the same results
    if args.command == "moments":
        feature_net = _feature_network_for(args, data=args.data)
        load_chunk, count, description = data_chunks(args.data, resolution=args.resolution,
                                                     max_images=args.max_images)
        moments = compute_moments_of_chunks(load_chunk, count, feature_net, batch_size=args.batch_size,
                                            description=description, keep_features=args.keep_features)
        if lead:
            metrics.save_moments(args.out, moments)
            print(f"wrote {args.out}: n={moments.n}, {moments.feature_network}, resolution {moments.resolution}")
        return 0

    truncations = parse_truncations(args.truncations) if args.command == "sweep" else None
    moments_path = args.moments
    feature_net = _feature_network_for(args, moments_path=moments_path)
    reference = metrics.load_moments(moments_path, feature_network=feature_net.name) if moments_path else None
    from biggan.sampling import load_sampler  # lazily: pulls in the generator stack

    # Every process loads the same checkpoint (a collective restore in a multi-process job); the
    # sampler then runs on this process's devices only (biggan.sampling.load_sampler).
    sampler = load_sampler(args.checkpoint)
    common = dict(num_samples=args.num_samples, seed=args.seed, batch_size=args.batch_size,
                  reference_moments=reference, progress=lead)
    if args.command == "score":
        result = score_sampler(sampler, feature_net, truncation=args.truncation, **common)
        if lead:
            print(json.dumps(result, indent=2))
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(result, f, indent=2)
        return 0
    out_dir = args.out_dir or os.path.join(args.checkpoint, "truncation_sweep")
    rows = sweep_sampler(sampler, feature_net, truncations, out_dir=out_dir if lead else None, **common)
    if lead:
        for row in rows:
            print(json.dumps(row))
        print(f"wrote {out_dir}/truncation_sweep.csv and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
