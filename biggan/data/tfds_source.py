"""TFDS datasets (imagenet2012, cifar10, ...) through `tfds.data_source` (random access).

Only this module imports tensorflow_datasets, and only when a TFDS source is built. Reading a
prepared dataset needs only `tensorflow-datasets` + `array-record` (no TensorFlow); PREPARING one
(`tfds build`) runs the TFDS builders, which need TensorFlow (`pip install tensorflow-cpu`). See
scripts/prepare_imagenet.sh, and the TF-free alternative there (extract to an image folder).

ImageNet manual download: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
``<data_dir>/downloads/manual/`` (default data_dir ``~/tensorflow_datasets``, or $TFDS_DATA_DIR),
then run ``tfds build imagenet2012 --file_format=array_record``.
"""

from __future__ import annotations

import os

import numpy as np

from biggan.data.preprocess import CorruptImageError, array_crop_and_resize
from biggan.data.sources import DataSourceError, ImageSource
from biggan.runtime import storage

IMAGENET_MANUAL_FILES = {
    "train": "ILSVRC2012_img_train.tar",
    "validation": "ILSVRC2012_img_val.tar",
}


def import_tfds():
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise DataSourceError(
            "data source 'tfds' needs the tensorflow-datasets package, which is not installed; "
            "install it with `pip install 'tensorflow-datasets>=4.9.9' 'array-record>=0.8'`, or use "
            "source='folder' / 'cache' / 'digits'."
        ) from error
    return tfds


def tfds_data_dir(data_dir: str | None) -> str:
    """The TFDS data dir actually used: the argument, else $TFDS_DATA_DIR, else
    ~/tensorflow_datasets."""
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def imagenet_manual_dir(data_dir: str | None = None) -> str:
    return os.path.join(tfds_data_dir(data_dir), "downloads", "manual")


def _not_prepared_message(name: str, split: str, data_dir: str | None, error: BaseException) -> str:
    base = (
        f"TFDS dataset {name!r} split {split!r} could not be opened for random access from "
        f"data dir {tfds_data_dir(data_dir)!r} ({type(error).__name__}: {error}). "
    )
    if name.split("/")[0].split(":")[0] == "imagenet2012":
        manual = imagenet_manual_dir(data_dir)
        missing = [
            os.path.join(manual, f)
            for f in IMAGENET_MANUAL_FILES.values()
            if not storage.isfile(os.path.join(manual, f))
        ]  # data_dir may be gs://
        if missing:
            return base + (
                "ImageNet must be downloaded by hand (image-net.org, ILSVRC2012): missing "
                + ", ".join(repr(m) for m in missing)
                + f". Put both tars in {manual!r}, then run "
                "`tfds build imagenet2012 --file_format=array_record` (needs `pip install tensorflow-cpu`;"
                " or scripts/prepare_imagenet.sh)."
            )
        return base + (
            "The ILSVRC tars are in place but the dataset is not prepared in array_record "
            "format: run `tfds build imagenet2012 --file_format=array_record` (needs "
            "`pip install tensorflow-cpu`; or scripts/prepare_imagenet.sh)."
        )
    return base + (
        f"Prepare it once with `tfds build {name} --file_format=array_record` (needs "
        "`pip install tensorflow-cpu` and network access for automatic downloads)."
    )


class TfdsSource(ImageSource):
    """A TFDS image-classification split, decoded by TFDS and cropped/resized by us."""

    def __init__(
        self,
        name: str,
        split: str,
        resolution: int,
        *,
        data_dir: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
    ):
        tfds = import_tfds()
        try:
            self._ds = tfds.data_source(
                name, split=split, data_dir=data_dir or None, download=False
            )
            info = self._ds.dataset_info
            label_feature = info.features[label_key]
        except Exception as error:  # TFDS raises many types here; all mean "not usable as given"
            raise DataSourceError(_not_prepared_message(name, split, data_dir, error)) from error
        if not hasattr(label_feature, "names"):
            raise DataSourceError(
                f"TFDS dataset {name!r}: feature {label_key!r} is not a ClassLabel "
                f"({label_feature}); expected an image classification dataset."
            )
        self.class_names = tuple(label_feature.names)
        self.resolution = int(resolution)
        self.description = f"tfds:{name}:{split}"
        self._image_key = image_key
        self._label_key = label_key
        if len(self._ds) == 0:
            raise DataSourceError(f"TFDS dataset {name!r} split {split!r} is empty.")

    def __len__(self) -> int:
        return len(self._ds)

    def where(self, index: int) -> str:
        return f"{self.description}[{index}]"

    def load(self, index: int) -> tuple[np.ndarray, int]:
        try:
            example = self._ds[index]
        except (OSError, ValueError, SyntaxError, EOFError) as error:  # undecodable record
            raise CorruptImageError(self.where(index), error) from error
        image = array_crop_and_resize(example[self._image_key], self.resolution, self.where(index))
        return image, int(example[self._label_key])
