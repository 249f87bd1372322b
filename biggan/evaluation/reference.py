"""Reference moments of a dataset (the paper: the training set), the statistics FID compares a
generator's samples with: datasets as chunks of images (digits, folders, caches, TFDS, .npz), their
features and moments, written in the format biggan.evaluation.metrics reads. The command line is
`python -m biggan.evaluate moments`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from biggan.data import CorruptImageError, make_source, read_manifest, source_config
from biggan.evaluation import metrics
from biggan.evaluation.feature_network import FeatureNetwork
from biggan.runtime import distributed

log = logging.getLogger(__name__)


def check_process_local(feature_net: FeatureNetwork) -> None:
    """Multi-process evaluation runs the feature network inside each process: its mesh must be
    local."""
    if jax.process_count() == 1:
        return
    foreign = [d for d in feature_net.mesh.devices.flat if d.process_index != jax.process_index()]
    if foreign:
        raise ValueError(
            f"feature network {feature_net.name!r} runs on a mesh with devices of other "
            f"processes ({foreign[0]}, ...), but multi-process evaluation featurises each "
            "process's chunks on its own devices; build it with "
            "mesh=distributed.local_mesh()"
        )


def compute_moments(
    batches: Iterable[np.ndarray],
    feature_net: FeatureNetwork,
    *,
    description: str = "",
    keep_features: int = 10_000,
    total: int | None = None,
    progress: bool = True,
) -> metrics.Moments:
    """Moments of `feature_net` features over image batches (uint8 or [-1, 1] floats, one
    resolution).

    The first `keep_features` feature vectors are stored too (for KID and precision/recall).
    One process (see `compute_moments_of_chunks` for a multi-process job)."""
    chunks = (
        {"features": feature_net(images)[0], "resolution": np.int64(images.shape[1])}
        for images in batches
    )
    return moments_from_chunks(
        chunks,
        feature_net,
        description=description,
        keep_features=keep_features,
        total=total,
        progress=progress,
    )


def compute_moments_of_chunks(
    load_chunk: Callable[[int, int], tuple[np.ndarray, list]],
    count: int,
    feature_net: FeatureNetwork,
    *,
    batch_size: int,
    description: str = "",
    keep_features: int = 10_000,
    progress: bool = True,
) -> metrics.Moments:
    """`compute_moments` of images 0..count-1, `load_chunk(start, num)` giving (the readable images
    of start..start+num-1, the locations of those it skipped as corrupt) — see `data_chunks`.

    Multi-process: the chunks are dealt to the processes (`distributed.chunk_results_in_order`), so
    every process gets the moments of one process reading all chunks (a collective: all must call).
    The moments' `skipped` lists every skipped image."""
    check_process_local(feature_net)

    def features_of_chunk(start, num):
        images, skipped = load_chunk(start, num)
        images = np.asarray(images)
        if images.shape[0] + len(skipped) != num:
            raise ValueError(
                f"load_chunk({start}, {num}) returned {images.shape[0]} images and "
                f"{len(skipped)} skipped"
            )
        chunk = {"skipped": np.asarray(skipped, dtype=np.str_)}
        if len(images):
            chunk.update(features=feature_net(images)[0], resolution=np.int64(images.shape[1]))
        return chunk

    chunks = distributed.chunk_results_in_order(features_of_chunk, count, batch_size, what="images")
    return moments_from_chunks(
        chunks,
        feature_net,
        description=description,
        keep_features=keep_features,
        total=count,
        progress=progress,
    )


def moments_from_chunks(
    chunks: Iterable[dict], feature_net, *, description, keep_features, total, progress
) -> metrics.Moments:
    acc = metrics.FeatureMoments(feature_net.feature_dim)
    kept: list[np.ndarray] = []
    num_kept = 0
    resolution = None
    skipped: list[str] = []
    with tqdm(
        total=total,
        desc=f"moments ({feature_net.name})",
        unit="img",
        disable=not progress or jax.process_index() != 0,
    ) as bar:
        for chunk in chunks:
            skipped.extend(str(where) for where in chunk.get("skipped", ()))
            bar.update(len(chunk.get("skipped", ())))
            if "features" not in chunk:
                continue
            features = chunk["features"]
            if resolution is None:
                resolution = int(chunk["resolution"])
            elif int(chunk["resolution"]) != resolution:
                raise ValueError(
                    f"image batches mix resolutions {resolution} and {int(chunk['resolution'])}"
                )
            acc.update(features)
            if num_kept < keep_features:
                kept.append(features[: keep_features - num_kept])
                num_kept += len(kept[-1])
            bar.update(len(features))
    if resolution is None:
        raise ValueError("compute_moments got no images")
    moments = metrics.Moments.from_accumulator(acc, feature_net.name, resolution, description)
    moments.features = np.concatenate(kept) if kept else None
    moments.skipped = skipped
    return moments


def iterate_array(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


DATA_SPEC_HELP = (
    f"a data.source spec: {source_config.SOURCE_SPEC_HELP} (a bare existing DIR means folder:DIR)"
)


def data_section(data: str | None = None, *, resolution: int | None = None, config=None):
    """The `data` config section to read reference images from: `data` a source spec
    (`DATA_SPEC_HELP`), else a training config's data section (the paper's FID reference is the
    training set). The resolution: `resolution`, else the config's model.resolution, else a cache's
    own, else 32 for digits."""
    if data:
        if data != "digits" and ":" not in data and os.path.isdir(data):
            data = f"folder:{data}"
        section = source_config.data_config_from_spec(data, 0)
    elif config is not None:
        section = ml_collections.ConfigDict(config.data.to_dict())
    else:
        raise ValueError(
            f"no data: pass --data ({DATA_SPEC_HELP}) or --config (a training config file)"
        )
    if resolution is None and config is not None:
        resolution = config.model.resolution
    if resolution is None and section.source == "cache":
        resolution = read_manifest(section.path)["resolution"]
    if resolution is None and section.source == "digits":
        resolution = 32
    if resolution is None:
        raise ValueError(
            f"--data {data!r} ({section.source}): pass --resolution (the sample resolution; images are "
            "centre-cropped and resized to it as for training) or --config (its model.resolution)"
        )
    section.resolution = int(resolution)
    return section


def data_chunks(
    data: str | None = None,
    *,
    resolution: int | None = None,
    max_images: int | None = None,
    config=None,
) -> tuple[Callable[[int, int], tuple[np.ndarray, list]], int, str]:
    """(load(start, num) -> (uint8 NHWC images of start..start+num-1 that decode, the locations of
    those that do not), number of images, description) of `data_section(data, ...)`: random access,
    for chunks dealt to several processes. Corrupt images are skipped and reported, as the training
    pipeline does."""
    section = data_section(data, resolution=resolution, config=config)
    source = make_source(section)
    count = min(len(source), max_images or len(source))
    arrays = source.arrays()
    if arrays is not None:
        return (
            (lambda start, num: (np.asarray(arrays[0][start : start + num]), [])),
            count,
            source.description,
        )

    def load_one(index):
        try:
            return source.load(index)[0]
        except CorruptImageError as error:
            log.warning("skipping corrupt or unreadable image %s (%s)", error.where, error.cause)
            return error

    def load(start, num):
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
            results = list(pool.map(load_one, range(start, start + num)))
        images = [r for r in results if not isinstance(r, CorruptImageError)]
        skipped = [r.where for r in results if isinstance(r, CorruptImageError)]
        shape = (0, section.resolution, section.resolution, 3)
        return (np.stack(images) if images else np.zeros(shape, np.uint8)), skipped

    return load, count, source.description


def data_batches(
    data: str | None = None,
    *,
    resolution: int | None = None,
    batch_size: int,
    max_images: int | None = None,
    config=None,
) -> tuple[Iterable[np.ndarray], int, str]:
    """`data_chunks` as consecutive uint8 NHWC batches (corrupt images left out): (batches, count,
    description)."""
    load, count, description = data_chunks(
        data, resolution=resolution, max_images=max_images, config=config
    )
    batches = (
        load(start, min(batch_size, count - start))[0] for start in range(0, count, batch_size)
    )
    return batches, count, description
