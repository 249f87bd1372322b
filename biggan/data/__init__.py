"""Input pipelines for biggan-jax: sources, preprocessing, cache, sharded iterators.

    config.data = data.default_data_config(); config.data.source = 'folder'; ...
    it = data.make_pipeline(config.data, local_batch_size=B // jax.process_count(), seed=0,
                            process_index=jax.process_index(),
                            process_count=jax.process_count(), run_dir=workdir)
    batch = next(it)          # {'image': uint8 (b, r, r, 3), 'label': int32 (b,)}
    x = data.to_model_range(batch['image'])   # on device: float32 in [-1, 1]
    state = it.get_state()    # JSON-able; it.set_state(state) on resume

TFDS is imported only when source == 'tfds' (biggan.data.tfds_source).
"""

from biggan.data.cache import CacheSource, build_cache, read_manifest
from biggan.data.digits import DIGITS_COUNT, DIGITS_NUM_CLASSES, digits_arrays
from biggan.data.pipeline import ShardedBatchIterator, make_pipeline
from biggan.data.preprocess import (
    CorruptImageError,
    center_crop_box,
    crop_and_resize,
    load_image_file,
    to_model_range,
    to_rgb,
)
from biggan.data.source_config import (
    SOURCES,
    default_data_config,
    make_source,
    save_or_check_class_mapping,
)
from biggan.data.sources import (
    DataSourceError,
    DigitsSource,
    FolderSource,
    ImageSource,
    scan_image_folder,
)

__all__ = [
    "CacheSource",
    "CorruptImageError",
    "DIGITS_COUNT",
    "DIGITS_NUM_CLASSES",
    "DataSourceError",
    "DigitsSource",
    "FolderSource",
    "ImageSource",
    "SOURCES",
    "ShardedBatchIterator",
    "build_cache",
    "center_crop_box",
    "crop_and_resize",
    "default_data_config",
    "digits_arrays",
    "load_image_file",
    "make_pipeline",
    "make_source",
    "read_manifest",
    "save_or_check_class_mapping",
    "scan_image_folder",
    "to_model_range",
    "to_rgb",
]
