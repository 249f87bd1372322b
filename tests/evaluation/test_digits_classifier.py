"""The digits classifier (offline feature network) and the evaluation pipeline on digits."""

import csv
import json
import os
import shlex
import shutil
import subprocess

import numpy as np
import pytest
import stepping

from biggan import evaluate
from biggan.data import digits_arrays
from biggan.evaluation import digits_classifier, metrics
from biggan.evaluation import evaluator as evaluation
from biggan.sampling import sampler as sampling
from biggan.train import loop as trainer


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("digits_classifier")


@pytest.fixture(scope="module")
def classifier(cache_dir):
    return digits_classifier.load_or_train_digits_classifier(cache_dir, log=None)


def test_classifier_is_accurate_on_held_out_split_and_cached(classifier, cache_dir):
    assert classifier.source == "trained"
    (train_x, _), (test_x, test_y) = digits_classifier.digits_split()
    assert len(test_x) == 360 and len(train_x) == 1437
    accuracy = np.mean(np.argmax(classifier.logits(test_x), axis=1) == test_y)
    assert accuracy > 0.9 and accuracy == pytest.approx(classifier.test_accuracy)

    again = digits_classifier.load_or_train_digits_classifier(cache_dir, log=None)
    assert again.source.startswith(str(cache_dir)) and again.source.endswith(".npz")
    np.testing.assert_array_equal(again.logits(test_x[:20]), classifier.logits(test_x[:20]))


def test_input_forms_agree(classifier):
    images, _ = digits_arrays(32)
    u8 = images[:16]
    grey_float = u8[..., :1].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(classifier.features(u8), classifier.features(grey_float), atol=1e-5)
    assert classifier.features(u8).shape == (16, 128) and classifier.logits(u8).shape == (16, 10)
    big, labels = digits_arrays(64)  # other resolutions are resized to 32
    assert np.mean(np.argmax(classifier.logits(big[:200]), 1) == labels[:200]) > 0.9


def test_sharded_feature_network_equals_direct_call(classifier):
    net = classifier.feature_network(batch_size=64)
    images, _ = digits_arrays(32)
    features, logits = net(images[:77])  # not a multiple of the 8 devices or the batch
    np.testing.assert_allclose(features, classifier.features(images[:77]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, classifier.logits(images[:77]), rtol=1e-5, atol=1e-5)
    assert net.name == digits_classifier.DIGITS_CLASSIFIER_NAME and net.predicts_dataset_classes


class FakeDigitsSampler:
    """Returns real digits of the requested classes (shifted by `label_shift`) plus noise *
    truncation."""

    num_classes = 10

    def __init__(self, label_shift=0, noise=0.0):
        self.images, self.labels = digits_arrays(32)
        self.label_shift, self.noise = label_shift, noise
        self.calls = []

    def sample(self, num, *, truncation, seed, batch_size, classes=None):
        self.calls.append((num, truncation, seed, batch_size, classes))
        rng = np.random.default_rng(seed)
        classes = rng.integers(0, 10, num) if classes is None else classes
        picks = [
            rng.choice(np.flatnonzero(self.labels == (c + self.label_shift) % 10)) for c in classes
        ]
        x = self.images[picks].astype(np.float32) / 127.5 - 1.0
        x = x + self.noise * (1.0 if truncation is None else truncation) * rng.normal(size=x.shape)
        return np.clip(x, -1, 1).astype(np.float32)

    def check_truncation(self, truncation):  # any truncation is drawable here
        pass

    def describe_stats(self, truncation):
        return "BN statistics: none (a fake sampler)"


@pytest.fixture(scope="module")
def digits_moments(tmp_path_factory, cache_dir, classifier):
    path = tmp_path_factory.mktemp("moments") / "digits32.npz"
    assert (
        evaluate.main(
            [
                "moments",
                "--data",
                "digits",
                "--out",
                str(path),
                "--digits_cache_dir",
                str(cache_dir),
            ]
        )
        == 0
    )
    return path


def test_moments_cli_on_digits(digits_moments):
    moments = metrics.load_moments(
        digits_moments, feature_network=digits_classifier.DIGITS_CLASSIFIER_NAME, resolution=32
    )
    assert moments.n == 1797 and moments.features.shape == (1797, 128)
    np.testing.assert_allclose(
        moments.mu, moments.features.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="for 32x32 images, but the samples are 64x64"):
        metrics.load_moments(digits_moments, resolution=64)


def test_score_sampler_separates_good_and_bad_generators(classifier, digits_moments):
    net = classifier.feature_network()
    reference = metrics.load_moments(digits_moments)
    kwargs = dict(
        num_samples=600,
        batch_size=200,
        reference_moments=reference,
        progress=False,
        kid_num_subsets=20,
    )
    good = evaluation.score_sampler(FakeDigitsSampler(), net, truncation=1.0, **kwargs)
    wrong_class = evaluation.score_sampler(
        FakeDigitsSampler(label_shift=1), net, truncation=1.0, **kwargs
    )
    noisy = evaluation.score_sampler(FakeDigitsSampler(noise=0.8), net, truncation=1.0, **kwargs)
    assert good["class_accuracy"] > 0.95 and wrong_class["class_accuracy"] < 0.05
    assert good["is_mean"] > 8.5  # ten well-recognised, balanced classes: IS close to 10
    # Real digits against the real-digits reference: small FID (its own finite-sample bias only).
    assert good["fid"] < 0.1 * noisy["fid"]
    assert (
        good["precision"] > 0.8 and good["recall"] > 0.8 and noisy["precision"] < good["precision"]
    )
    assert abs(good["kid_mean"]) < 0.1 * noisy["kid_mean"]
    # Deterministic: the same sampler and seed give the same numbers.
    again = evaluation.score_sampler(FakeDigitsSampler(), net, truncation=1.0, **kwargs)
    assert again == good


def test_score_sampler_defaults_to_no_truncation_without_reference(classifier):
    sampler = FakeDigitsSampler()
    result = evaluation.score_sampler(
        sampler, classifier.feature_network(), num_samples=20, batch_size=20, progress=False
    )
    assert sampler.calls[0][1] is None and result["truncation"] is None
    assert set(result) == {
        "truncation",
        "num_samples",
        "feature_network",
        "is_mean",
        "is_std",
        "class_accuracy",
    }


def test_evaluate_generator_refuses_mismatched_reference(classifier, digits_moments):
    net = classifier.feature_network()
    reference = metrics.load_moments(digits_moments)

    def sample_64px(start, num):
        return np.zeros((num, 64, 64, 3), np.float32)

    with pytest.raises(
        ValueError, match="samples are 64x64 but the reference moments are for 32x32"
    ):
        evaluation.evaluate_generator(
            sample_64px, net, reference, 16, batch_size=16, progress=False
        )
    reference.feature_network = "inception-2015-12-05/pool3"
    with pytest.raises(ValueError, match="computed with 'inception-2015-12-05/pool3'"):
        evaluation.evaluate_generator(sample_64px, net, reference, 16, progress=False)


def test_parse_truncations():
    assert sampling.parse_truncations("0.1:1.0:0.1") == pytest.approx(
        [0.1 * i for i in range(1, 11)]
    )
    assert sampling.parse_truncations("0.25,0.5,1") == [0.25, 0.5, 1.0]
    for bad in ("1.0:0.1:0.1", "0:1:0.5", "a,b", "0.5:1:0"):
        with pytest.raises(ValueError, match="truncations .* expected"):
            sampling.parse_truncations(bad)


def test_score_and_sweep_cli_with_a_fake_checkpoint(
    tmp_path, monkeypatch, capsys, cache_dir, digits_moments
):
    sampler = FakeDigitsSampler(noise=0.5)
    monkeypatch.setattr(
        sampling,
        "load_sampler",
        lambda checkpoint_dir, **kw: sampler if checkpoint_dir == "ckpt" else None,
    )
    monkeypatch.chdir(tmp_path)
    (
        tmp_path / "ckpt"
    ).mkdir()  # the CLI checks that the checkpoint directory exists before loading it
    common = [
        "--checkpoint",
        "ckpt",
        "--num_samples",
        "300",
        "--batch_size",
        "150",
        "--moments",
        str(digits_moments),
        "--digits_cache_dir",
        str(cache_dir),
    ]

    out = tmp_path / "score.json"
    assert evaluate.main(["score", "--truncation", "0.5", "--out", str(out)] + common) == 0
    result = json.loads(out.read_text())
    assert result["truncation"] == 0.5 and result["num_samples"] == 300 and "fid" in result
    # from the moments file
    assert result["feature_network"] == digits_classifier.DIGITS_CLASSIFIER_NAME
    assert [c[1] for c in sampler.calls] == [0.5, 0.5] and sampler.calls[0][2] != sampler.calls[1][
        2
    ]
    np.testing.assert_array_equal(sampler.calls[1][4], np.arange(150, 300) % 10)  # balanced classes

    assert (
        evaluate.main(
            ["sweep", "--truncations", "0.2,0.6,1.0", "--out_dir", str(tmp_path / "sweep")] + common
        )
        == 0
    )
    with open(tmp_path / "sweep" / "truncation_sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["truncation"]) for r in rows] == [0.2, 0.6, 1.0]
    fids = [float(r["fid"]) for r in rows]
    assert fids[0] < fids[1] < fids[2]  # this fake generator's noise grows with the truncation
    png = (tmp_path / "sweep" / "truncation_sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    capsys.readouterr()


def test_moments_cli_on_an_image_folder_equals_array_moments(
    tmp_path, cache_dir, classifier, capsys
):
    from PIL import Image

    images, labels = digits_arrays(32)
    for i in range(40):
        folder = tmp_path / "data" / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i:03d}.png")
    out = tmp_path / "folder.npz"
    assert (
        evaluate.main(
            [
                "moments",
                "--data",
                str(tmp_path / "data"),
                "--resolution",
                "32",
                "--out",
                str(out),
                "--feature_network",
                "digits",
                "--digits_cache_dir",
                str(cache_dir),
                "--batch_size",
                "16",
            ]
        )
        == 0
    )
    moments = metrics.load_moments(
        out, feature_network=digits_classifier.DIGITS_CLASSIFIER_NAME, resolution=32
    )
    features = classifier.features(images[:40]).astype(np.float64)  # same images, any order
    assert moments.n == 40
    np.testing.assert_allclose(moments.mu, features.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(moments.sigma, np.cov(features, rowvar=False), rtol=1e-4, atol=1e-4)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(
            [
                "moments",
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(out),
                "--feature_network",
                "digits",
                "--digits_cache_dir",
                str(cache_dir),
            ]
        )
    assert exit_info.value.code == 2
    assert "pass --resolution" in capsys.readouterr().err


def _feature_moments(features):
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def test_moments_take_every_training_source_and_skip_corrupt_images(
    tmp_path, cache_dir, classifier, capsys
):
    """folder:, cache: and tfds: specs (as data.source takes them) and --config; corrupt files are
    skipped and counted as the training pipeline does; the moments are the mean/covariance of the
    readable images' features."""
    from image_folders import add_bad_files, make_folder

    from biggan.data import FolderSource
    from biggan.data import __main__ as data_cli

    root = make_folder(tmp_path / "f", {"a": 6, "b": 7})
    bad = add_bad_files(root)
    common = [
        "--feature_network",
        "digits",
        "--digits_cache_dir",
        str(cache_dir),
        "--batch_size",
        "5",
    ]
    name = digits_classifier.DIGITS_CLASSIFIER_NAME

    assert (
        evaluate.main(
            [
                "moments",
                "--data",
                f"folder:{root}",
                "--resolution",
                "32",
                "--out",
                str(tmp_path / "folder.npz"),
            ]
            + common
        )
        == 0
    )
    assert "skipped 3 corrupt or unreadable images" in capsys.readouterr().out
    folder = FolderSource(root, 32)
    good = np.stack([folder.load(i)[0] for i, p in enumerate(folder.paths) if p not in bad])
    mu, sigma = _feature_moments(classifier.features(good))
    from_folder = metrics.load_moments(tmp_path / "folder.npz", feature_network=name, resolution=32)
    assert from_folder.n == 13
    np.testing.assert_allclose(from_folder.mu, mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_folder.sigma, sigma, rtol=1e-4, atol=1e-4)

    # The same images through a cache (its resolution from the cache itself).
    assert (
        data_cli.main(
            [
                "build-cache",
                "--source",
                f"folder:{root}",
                "--resolution",
                "32",
                "--out",
                str(tmp_path / "cache"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        evaluate.main(
            [
                "moments",
                "--data",
                f"cache:{tmp_path / 'cache'}",
                "--out",
                str(tmp_path / "cache.npz"),
            ]
            + common
        )
        == 0
    )
    from_cache = metrics.load_moments(tmp_path / "cache.npz", feature_network=name, resolution=32)
    np.testing.assert_allclose(from_cache.mu, from_folder.mu, rtol=1e-6, atol=1e-6)

    # A TFDS dataset (mock data) with its split in the spec.
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        assert (
            evaluate.main(
                [
                    "moments",
                    "--data",
                    "tfds:cifar10:train",
                    "--resolution",
                    "32",
                    "--out",
                    str(tmp_path / "tfds.npz"),
                ]
                + common
            )
            == 0
        )
        raw = tfds.data_source("cifar10", split="train")
        # 32x32 already: preprocessing is identity
        images = np.stack([raw[i]["image"] for i in range(12)])
    from_tfds = metrics.load_moments(tmp_path / "tfds.npz", feature_network=name, resolution=32)
    mu, _ = _feature_moments(classifier.features(images))
    assert from_tfds.n == 12
    np.testing.assert_allclose(from_tfds.mu, mu, rtol=1e-5, atol=1e-5)

    # A training config: its data section and resolution (digits: every embedded image).
    assert (
        evaluate.main(
            ["moments", "--config", "configs/digits.py", "--out", str(tmp_path / "config.npz")]
            + common[:-2]
            + ["--batch_size", "500"]
        )
        == 0
    )
    from_config = metrics.load_moments(tmp_path / "config.npz", feature_network=name, resolution=32)
    mu, _ = _feature_moments(classifier.features(digits_arrays(32)[0]))
    assert from_config.n == 1797
    np.testing.assert_allclose(from_config.mu, mu, rtol=1e-5, atol=1e-5)

    for argv, message in (
        (["--data", "s3://bucket/train"], "expected digits | folder:PATH | cache:PATH"),
        (["--data", "cache:/nowhere"], "manifest"),
        ([], "pass --data"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["moments", "--out", str(tmp_path / "x.npz")] + argv + common)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def _readme_evaluation_commands():
    text = open(os.path.join(stepping.REPO, "README.md")).read()
    section = text.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [
        line.split("  #")[0].strip()
        for line in block.splitlines()
        if line.startswith("python -m biggan.evaluate")
    ]


@pytest.mark.slow
def test_readme_evaluation_commands_run_verbatim(tmp_path, cache_dir):
    """The README's evaluation block: every command parses with the real CLI; the offline (digits)
    ones run verbatim from a fresh directory holding a digits run in workdirs/digits."""
    commands = _readme_evaluation_commands()
    # the paper's protocol
    assert len(commands) >= 5 and any("--num_samples 50000" in c for c in commands)
    for command in commands:
        evaluate._build_parser().parse_args(shlex.split(command)[3:])  # flags exist as written
    offline = [c for c in commands if "digits" in c]
    assert len(offline) == 2
    home = tmp_path / "home"
    # the trained classifier
    shutil.copytree(cache_dir, home / ".cache" / "biggan" / "digits_classifier")
    run = stepping.tiny_config(num_steps=1, log={"sv_every": 0, "sample_every": 0})
    trainer.train(run, str(tmp_path / "workdirs" / "digits"), progress=False)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=stepping.REPO)
    for command in offline:
        out = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, (command, out.stderr[-3000:])
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["num_samples"] == 1000 and np.isfinite(result["fid"])
    assert metrics.load_moments(tmp_path / "digits_moments.npz").n == 1797
