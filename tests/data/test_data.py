"""Tests for biggan.data on data generated here and TFDS mock data."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from image_folders import add_bad_files, make_folder, noise_image
from PIL import Image

from biggan import data
from biggan.data import digits
from biggan.data.__main__ import main as data_cli
from biggan.data.cache import _shrink_npy_rows
from biggan.data.sources import ArraySource


# ----------------------------------------------------------------------------- helpers
def _indexed_source(n, resolution=4):
    """ArraySource whose image i encodes i in its first pixel, so batches reveal example ids."""
    images = np.zeros((n, resolution, resolution, 3), np.uint8)
    ids = np.arange(n)
    images[:, 0, 0, 0] = ids % 256
    images[:, 0, 0, 1] = ids // 256
    images[:, 0, -1, 2] = 255  # marks the right edge, so a horizontal flip is visible
    return ArraySource(
        images, (ids % 5).astype(np.int32), [f"c{i}" for i in range(5)], f"indexed{n}"
    )


def _ids(batch):
    """Example ids of a batch from `_indexed_source` (flip-aware)."""
    flipped = batch["image"][:, 0, 0, 2] == 255
    first = np.where(flipped[:, None], batch["image"][:, 0, -1, :2], batch["image"][:, 0, 0, :2])
    return first[:, 0].astype(int) + 256 * first[:, 1].astype(int), flipped


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def _take_and_close(iterator, count):
    with iterator:
        return _take(iterator, count)


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


# ----------------------------------------------------------------------------- digits
def test_digits_arrays_shapes_and_values():
    from sklearn.datasets import load_digits

    reference = load_digits()
    # The file read without importing scikit-learn is what load_digits reads.
    raw_images, raw_labels = digits.load_digits_raw()
    np.testing.assert_array_equal(raw_images, reference.images)
    np.testing.assert_array_equal(raw_labels, reference.target)
    images, labels = data.digits_arrays(32)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, reference.target)
    # grey -> RGB by replication
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    # At 8x8 the values are exactly 0..16 scaled to 0..255.
    exact, _ = data.digits_arrays(8)
    np.testing.assert_array_equal(
        exact[..., 0], np.rint(reference.images * 255 / 16).astype(np.uint8)
    )
    # Upscaling keeps the picture: 4x4 block means of the 32px image track the 8px values.
    blocks = images[..., 0].astype(float).reshape(1797, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.abs(blocks - exact[..., 0]).mean() < 20
    with pytest.raises(ValueError, match="resolution"):
        data.digits_arrays(4)


# ----------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize(
    "size,resolution",
    [((300, 200), 64), ((201, 333), 32), ((97, 50), 64), ((64, 80), 64), ((33, 33), 32)],
)
def test_crop_and_resize_matches_pil_reference(size, resolution):
    rng = np.random.default_rng(1)
    image = noise_image(rng, *size)
    w, h = size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2  # centre crop along the long edge, computed here
    cropped = image.crop((left, top, left + s, top + s))
    filt = Image.BOX if s > resolution else Image.BILINEAR
    reference = np.asarray(
        cropped.resize((resolution, resolution), filt) if s != resolution else cropped
    )
    out = data.crop_and_resize(image, resolution)
    assert out.shape == (resolution, resolution, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, reference)


def test_box_resize_is_area_average():
    """Independent of PIL: an integer-factor shrink is the block mean (within rounding)."""
    rng = np.random.default_rng(2)
    array = rng.integers(0, 256, (256, 400, 3), dtype=np.uint8)  # H=256, W=400: crop x from 72
    out = data.crop_and_resize(Image.fromarray(array), 64)
    crop = array[:, 72 : 72 + 256].astype(np.float64)
    block_mean = crop.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    error = out - block_mean
    # PIL resamples in two separable passes, rounding half up to uint8 after each: off by at
    # most 1 (and +0.25 on average for a factor of 4, PIL's own rounding bias).
    assert np.abs(error).max() <= 1.0 and 0 <= error.mean() < 0.3
    # Emulating exactly that (rows first, round half up, then columns) reproduces it bit for bit.
    rows = np.floor(crop.reshape(256, 64, 4, 3).mean(axis=2) + 0.5)
    both = np.floor(rows.reshape(64, 4, 64, 3).mean(axis=1) + 0.5)
    np.testing.assert_array_equal(out, both)


def test_to_model_range():
    x = np.array([[0, 255, 51]], np.uint8)
    y = jax.jit(data.to_model_range)(x)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), [[-1.0, 1.0, 51 / 127.5 - 1]], rtol=0, atol=1e-7)
    assert data.to_model_range(x, jnp.bfloat16).dtype == jnp.bfloat16


def test_modes_become_rgb():
    grey = Image.fromarray(np.full((5, 7), 77, np.uint8), mode="L")
    np.testing.assert_array_equal(np.asarray(data.to_rgb(grey)), np.full((5, 7, 3), 77))
    cmyk = Image.new("CMYK", (2, 2), (255, 0, 0, 0))  # pure cyan ink
    np.testing.assert_array_equal(np.asarray(data.to_rgb(cmyk))[0, 0], [0, 255, 255])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: background (white)
    rgba[1, 0] = (0, 0, 0, 128)  # half black over white
    out = np.asarray(data.to_rgb(Image.fromarray(rgba, mode="RGBA")))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    assert np.all(np.abs(out[1, 0].astype(int) - 127) <= 1)
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    np.testing.assert_array_equal(np.asarray(data.to_rgb(palette))[1, 1], [200, 100, 50])
    sixteen = Image.fromarray(np.array([[0, 65535]], np.uint16))  # 16-bit grey
    np.testing.assert_array_equal(np.asarray(data.to_rgb(sixteen))[0], [[0, 0, 0], [255, 255, 255]])


def test_folder_decodes_all_modes_to_rgb(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "modes"
    (root / "x").mkdir(parents=True)
    noise_image(rng, 40, 30, "L").save(root / "x" / "grey.jpg")
    Image.new("CMYK", (30, 40), (0, 255, 0, 0)).save(root / "x" / "cmyk.jpg")  # magenta
    noise_image(rng, 35, 30, "RGBA").save(root / "x" / "alpha.png")
    noise_image(rng, 30, 30).convert("P").save(root / "x" / "palette.gif")
    source = data.FolderSource(root, 16)
    for i, path in enumerate(source.paths):
        image, label = source.load(i)
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8 and label == 0, path
    cmyk = source.load(source.paths.index(str(root / "x" / "cmyk.jpg")))[0]
    assert np.all(np.abs(cmyk.astype(int) - [255, 0, 255]) <= 8)


# ----------------------------------------------------------------------------- sharding, order
@pytest.mark.parametrize("n,processes", [(1797, 3), (1797, 4), (10, 3)])
def test_process_shards_disjoint_and_cover(n, processes):
    source = _indexed_source(n)
    for epoch in (0, 1):
        shards = [
            data.ShardedBatchIterator(
                source, local_batch_size=1, seed=5, process_index=p, process_count=processes
            ).epoch_order(epoch)[0]
            for p in range(processes)
        ]
        together = np.concatenate(shards)
        assert len(together) == n and len(np.unique(together)) == n  # disjoint and covering
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_batches_of_processes_cover_each_epoch():
    """Through the real iterators: 2 processes, one epoch each, ids disjoint and complete."""
    n, batch = 48, 6
    source = _indexed_source(n)
    seen = []
    for p in range(2):
        with data.ShardedBatchIterator(
            source, local_batch_size=batch, seed=3, process_index=p, process_count=2
        ) as it:
            ids = np.concatenate([_ids(b)[0] for b in _take(it, n // 2 // batch)])
            assert it.get_state()["epoch"] == 1 and it.get_state()["offset"] == 0
        seen.append(ids)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(np.concatenate(seen)) == list(range(n))
    # each epoch is reshuffled
    it = data.ShardedBatchIterator(source, local_batch_size=1, seed=3)
    assert not np.array_equal(it.epoch_order(0)[0], it.epoch_order(1)[0])
    other_seed = data.ShardedBatchIterator(source, local_batch_size=1, seed=4)
    assert not np.array_equal(it.epoch_order(0)[0], other_seed.epoch_order(0)[0])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_state_restore_replays_batches_across_epochs(prefetch):
    source = _indexed_source(50)  # batch 7 does not divide 50: batches straddle epochs
    kwargs = dict(local_batch_size=7, seed=11, random_flip=True, prefetch_batches=prefetch)
    with data.ShardedBatchIterator(source, **kwargs) as it:
        _take(it, 5)
        state = json.loads(json.dumps(it.get_state()))  # must survive JSON
        expected = _take(it, 12)  # crosses two epoch boundaries
    ids = np.concatenate([_ids(b)[0] for b in expected])
    flips = np.concatenate([_ids(b)[1] for b in expected])
    assert 0 < flips.mean() < 1  # flips on
    # A fresh iterator's stream: each epoch of 50 visits every id once, batches straddle epochs,
    # and batches 5..16 are the ones recorded above.
    stream = np.concatenate(
        [_ids(b)[0] for b in _take_and_close(data.ShardedBatchIterator(source, **kwargs), 17)]
    )
    assert sorted(stream[:50]) == list(range(50)) and sorted(stream[50:100]) == list(range(50))
    assert not np.array_equal(stream[:50], stream[50:100])  # reshuffled
    np.testing.assert_array_equal(stream[35:], ids)
    with data.ShardedBatchIterator(source, **kwargs) as resumed:
        resumed.set_state(state)
        _assert_same_batches(_take(resumed, 12), expected)
        # set_state also rewinds a running iterator
        resumed.set_state(state)
        _assert_same_batches(_take(resumed, 3), expected[:3])


def test_state_restore_decoding_source_with_threads(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 9, "b": 8})
    config = data.default_data_config()
    config.update(source="folder", path=root, resolution=16, random_flip=True, num_workers=3)
    with data.make_pipeline(config, local_batch_size=5, seed=2) as it:
        _take(it, 2)
        state = it.get_state()
        expected = _take(it, 6)  # 17 examples: crosses epoch boundaries
    config.prefetch_batches = 0
    config.num_workers = 1
    with data.make_pipeline(config, local_batch_size=5, seed=2) as resumed:
        resumed.set_state(state)
        _assert_same_batches(_take(resumed, 6), expected)


def test_set_state_rejects_other_layout():
    source = _indexed_source(20)
    state = data.ShardedBatchIterator(source, local_batch_size=2, seed=1).get_state()
    other = data.ShardedBatchIterator(source, local_batch_size=2, seed=2, process_count=2)
    with pytest.raises(ValueError, match="seed: saved 1 vs now 2"):
        other.set_state(state)


# ----------------------------------------------------------------------------- folder classes
def test_folder_class_mapping_is_sorted_and_checked_on_resume(tmp_path):
    root = make_folder(tmp_path / "f", {"b": 2, "a": 3, "C": 1, "10": 1, "9": 2})
    paths, labels, names = data.scan_image_folder(root)
    assert names == ("10", "9", "C", "a", "b")
    expected = [names.index(os.path.basename(os.path.dirname(p))) for p in paths]
    np.testing.assert_array_equal(labels, expected)
    config = data.default_data_config()
    config.update(source="folder", path=root, resolution=16)
    run_dir = tmp_path / "run"
    data.make_pipeline(config, local_batch_size=2, seed=0, run_dir=run_dir).close()
    saved = json.loads((run_dir / "data_classes.json").read_text())
    assert saved["mapping"] == {"10": 0, "9": 1, "C": 2, "a": 3, "b": 4}
    data.make_pipeline(config, local_batch_size=2, seed=0, run_dir=run_dir).close()  # same: ok
    make_folder(tmp_path / "f", {"Bb": 1})  # a new class shifts later indices
    with pytest.raises(data.DataSourceError, match=r"class mapping changed.*'a': 3.*'a': 4"):
        data.make_pipeline(config, local_batch_size=2, seed=0, run_dir=run_dir)


def test_folder_errors(tmp_path):
    with pytest.raises(data.DataSourceError, match="does not exist"):
        data.FolderSource(tmp_path / "missing", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataSourceError, match="no class sub-folders"):
        data.FolderSource(tmp_path / "empty", 16)
    root = make_folder(tmp_path / "f", {"a": 2})
    os.makedirs(os.path.join(root, "b"))
    open(os.path.join(root, "b", "notes.txt"), "w").close()
    with pytest.raises(data.DataSourceError, match=r"class folder '.*/f/b' contains no images"):
        data.FolderSource(root, 16)
    config = data.default_data_config()
    config.source = "nope"
    with pytest.raises(data.DataSourceError, match="expected one of"):
        data.make_source(config)


# ----------------------------------------------------------------------------- bad files
def test_corrupt_files_are_skipped_counted_and_logged(tmp_path, caplog):
    root = make_folder(tmp_path / "f", {"a": 5, "b": 5})
    bad = add_bad_files(root)
    folder = data.FolderSource(root, 16)
    good = sorted(folder.load(i)[0].tobytes() for i, p in enumerate(folder.paths) if p not in bad)
    config = data.default_data_config()
    config.update(source="folder", path=root, resolution=16, prefetch_batches=0)
    with caplog.at_level(logging.WARNING, logger="biggan.data"):
        with data.make_pipeline(config, local_batch_size=10, seed=0) as it:
            first = next(it)  # epoch 0 has 13 files, 10 decodable: this batch is exactly those 10
            assert sorted(image.tobytes() for image in first["image"]) == good
            assert sorted(first["label"]) == [0] * 5 + [1] * 5
            assert it.stats()["skipped"] <= 3
            second = next(it)  # from epoch 1: by now every bad file of epoch 0 has been met
            stats = it.stats()
    assert second["image"].shape == (10, 16, 16, 3)
    assert set(stats["skipped_paths"]) == bad and stats["skipped_files"] == 3
    assert 3 <= stats["skipped"] <= 6  # epoch 0's three, plus epoch 1's met so far
    for path in bad:
        assert path in caplog.text


def test_all_corrupt_shard_raises(tmp_path):
    os.makedirs(tmp_path / "f" / "a")
    for k in range(3):
        (tmp_path / "f" / "a" / f"{k}.jpg").write_bytes(b"junk")
    config = data.default_data_config()
    config.update(source="folder", path=str(tmp_path / "f"), resolution=8)
    with data.make_pipeline(config, local_batch_size=2, seed=0) as it:
        with pytest.raises(data.DataSourceError, match="failed to decode"):
            next(it)


# ----------------------------------------------------------------------------- cache
def test_cache_matches_folder_and_skips_corrupt(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 6, "b": 7})
    bad = add_bad_files(root)
    out = tmp_path / "cache"
    assert (
        data_cli(
            [
                "build-cache",
                "--source",
                f"folder:{root}",
                "--resolution",
                "16",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = data.read_manifest(out)
    assert manifest["count"] == 13 and manifest["resolution"] == 16
    assert set(manifest["skipped"]) == bad and manifest["class_names"] == ["a", "b"]
    images = np.load(out / "images.npy")  # header rewritten after skips: loads normally
    assert images.shape == (13, 16, 16, 3)
    folder = data.FolderSource(root, 16)
    good = [i for i, p in enumerate(folder.paths) if p not in bad]
    cache = data.CacheSource(out, 16)
    for row, i in enumerate(good):
        image, label = folder.load(i)
        np.testing.assert_array_equal(cache.arrays()[0][row], image)
        assert cache.arrays()[1][row] == label
    with pytest.raises(data.DataSourceError, match="holds 16px images but resolution=32"):
        data.CacheSource(out, 32)
    # exists: refused without --overwrite
    assert (
        data_cli(
            [
                "build-cache",
                "--source",
                f"folder:{root}",
                "--resolution",
                "16",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    with pytest.raises(data.DataSourceError, match="manifest.json is missing"):
        data.CacheSource(tmp_path / "nowhere")


def test_cache_pipeline_equals_folder_pipeline(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 6, "b": 5})
    out = tmp_path / "cache"
    data.build_cache(data.FolderSource(root, 16), out, progress=False)
    config = data.default_data_config()
    config.update(source="folder", path=root, resolution=16, random_flip=True)
    from_folder = _take_and_close(data.make_pipeline(config, local_batch_size=4, seed=7), 6)
    config.update(source="cache", path=str(out))
    from_cache = _take_and_close(data.make_pipeline(config, local_batch_size=4, seed=7), 6)
    _assert_same_batches(from_folder, from_cache)


def test_shrink_npy_rows(tmp_path):
    path = str(tmp_path / "x.npy")
    array = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(1000, 2, 3), version=(1, 0)
    )
    array[:] = np.arange(6000).reshape(1000, 2, 3) % 251
    array.flush()
    del array
    _shrink_npy_rows(path, 7)
    np.testing.assert_array_equal(np.load(path), (np.arange(6000).reshape(1000, 2, 3) % 251)[:7])


def test_digits_pipeline_and_cache(tmp_path):
    config = data.default_data_config()
    (batch,) = _take_and_close(data.make_pipeline(config, local_batch_size=16, seed=0), 1)
    assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32
    data.build_cache(data.DigitsSource(32), tmp_path / "c", progress=False)
    config.update(source="cache", path=str(tmp_path / "c"))
    _assert_same_batches(
        _take_and_close(data.make_pipeline(config, local_batch_size=16, seed=0), 1), [batch]
    )


def test_library_does_not_import_tfds():
    code = (
        "import sys, biggan.data as d; it = d.make_pipeline(d.default_data_config(), "
        "local_batch_size=2, seed=0); next(it); it.close(); "
        "assert 'tensorflow_datasets' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env=env,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )


# ----------------------------------------------------------------------------- TFDS (mock data)
@pytest.mark.parametrize("name,num_classes", [("imagenet2012", 1000), ("cifar10", 10)])
def test_tfds_source_on_mock_data(name, num_classes):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        raw = tfds.data_source(name, split="train")
        config = data.default_data_config()
        config.update(source="tfds", tfds_name=name, resolution=32)
        source = data.make_source(config)
        assert len(source) == 12 and source.num_classes == num_classes
        for i in (0, 5):
            example = raw[i]
            array = example["image"]
            h, w = array.shape[:2]
            s = min(h, w)
            crop = Image.fromarray(array).crop(
                ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            )
            reference = np.asarray(
                crop if s == 32 else crop.resize((32, 32), Image.BOX if s > 32 else Image.BILINEAR)
            )
            image, label = source.load(i)
            np.testing.assert_array_equal(image, reference)
            assert label == int(example["label"])
        with data.make_pipeline(
            config, local_batch_size=5, seed=0, process_index=1, process_count=2
        ) as it:
            batch = next(it)
        assert batch["image"].shape == (5, 32, 32, 3) and batch["label"].max() < num_classes


def test_missing_imagenet_tars_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    config = data.default_data_config()
    config.update(source="tfds", tfds_name="imagenet2012", tfds_data_dir=str(tmp_path))
    manual = os.path.join(str(tmp_path), "downloads", "manual")
    with pytest.raises(
        data.DataSourceError,
        match=r"missing '" + manual + r"/ILSVRC2012_img_train.tar'.*tfds build "
        r"imagenet2012 --file_format=array_record",
    ):
        data.make_source(config)


def test_prepare_imagenet_folder_mode_on_fake_tars(tmp_path):
    """scripts/prepare_imagenet.sh folder: nested train tars and labelled val tar -> class
    folders."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tarfile

    manual = tmp_path / "manual"
    manual.mkdir()
    rng = np.random.default_rng(4)

    def add_jpeg(tar, name):
        buffer = io.BytesIO()
        noise_image(rng, 20, 15).save(buffer, format="JPEG")
        info = tarfile.TarInfo(name)
        info.size = len(buffer.getvalue())
        tar.addfile(info, io.BytesIO(buffer.getvalue()))

    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as outer:
        for wnid in ("n01443537", "n01440764"):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for k in range(2):
                    add_jpeg(tar, f"{wnid}_{k}.JPEG")
            info = tarfile.TarInfo(f"{wnid}.tar")
            info.size = len(inner.getvalue())
            outer.addfile(info, io.BytesIO(inner.getvalue()))
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as tar:
        for k in (3, 1, 2):
            add_jpeg(tar, f"ILSVRC2012_val_{k:08d}.JPEG")
    script = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "scripts",
        "prepare_imagenet.sh",
    )
    out = tmp_path / "imagenet"
    subprocess.run(
        ["bash", script, "folder", str(out)],
        check=True,
        timeout=120,
        env=dict(os.environ, MANUAL_DIR=str(manual)),
        capture_output=True,
    )
    train = data.FolderSource(out / "train", 16)
    assert train.class_names == ("n01440764", "n01443537") and len(train) == 4
    labels_file = os.path.join(
        os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "validation_labels.txt"
    )
    first3 = open(labels_file).read().split()[:3]
    for k, wnid in enumerate(first3, start=1):  # k-th image (sorted names) has the k-th label
        assert (out / "val" / wnid / f"ILSVRC2012_val_{k:08d}.JPEG").is_file()
