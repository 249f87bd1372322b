"""Your own images (configs/image_folder.py): training on a generated folder, and the README's
fine-tuning recipe — a BigGAN-PyTorch generator and its whole run (with D) fine-tuned on 5 classes
where they had 10, with FreezeD — run verbatim through the command lines."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_folder(root, classes: int, per_class: int = 3, seed: int = 0):
    """`classes` sub-folders of random images of mixed sizes (or the images directly in `root` if
    0)."""
    rng = np.random.default_rng(seed)
    for c in range(max(classes, 1)):
        folder = os.path.join(root, f"class_{c}") if classes else root
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(40, 160, 2)
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    return str(root)


def readme_command(marker: str) -> list[str]:
    """The command line of configs/image_folder.py's docstring that contains `marker` (continuation
    lines joined), split into arguments from "python" on."""
    text = open(os.path.join(ROOT, "configs", "image_folder.py")).read().replace("\\\n", " ")
    words = next(line for line in text.splitlines() if marker in line).split()
    return words[words.index("python") :]


def run(args, substitutions: dict):
    args = [substitutions.get(a, a) for a in args]
    for old, new in substitutions.items():
        args = [a.replace(old, new) for a in args]
    assert args[0] == "python"
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )  # batch 4 on one device
    return subprocess.run(
        [sys.executable, *args[1:]], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900
    )


def finite_losses(workdir):
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [(line["d_loss"], line["g_loss"]) for line in lines if "d_loss" in line]
    return bool(losses) and bool(np.all(np.isfinite(losses)))


@pytest.mark.slow  # one 128² smoke run (~1 min)
def test_one_folder_of_images_is_one_class_and_trains(tmp_path):
    images = make_folder(tmp_path / "my_images", classes=0)
    command = readme_command("Smoke run on a CPU:")
    result = run(command + ["--workdir", str(tmp_path / "run")], {"/data/my_images": images})
    assert result.returncode == 0, result.stderr
    assert "1 classes (no class sub-folders: one class, every image labelled 0)" in result.stderr
    assert finite_losses(tmp_path / "run")


@pytest.mark.slow  # the reference run (torch, ~5 s), two conversions and two 128² fine-tuning runs
def test_finetune_a_biggan_pytorch_generator_and_its_run_on_five_classes(tmp_path):
    import biggan_pytorch_reference as reference

    from biggan import config as cfg

    source = cfg.load_config_file(os.path.join(ROOT, "configs/biggan_pytorch_128.py:runlocal"))
    with reference.imported() as modules:
        its = reference.Run(modules, source, batch_size=2)
        rng = np.random.default_rng(0)
        for _ in range(2):
            x = rng.uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32)
            its.step(x, rng.integers(0, 10, 2))
        weights = its.save(str(tmp_path / "weights"), "run")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    for what, out in ((str(weights / "G_ema.pth"), "export"), (str(weights), "converted_run")):
        result = subprocess.run(
            [sys.executable, "-m", "biggan.convert", "biggan-pytorch", what,
             "--config", "configs/biggan_pytorch_128.py:runlocal", "--out", str(tmp_path / out)],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    images = make_folder(tmp_path / "my_images", classes=5)
    command = readme_command("--config.train.init_from=biggan-128-pytorch")
    readme = open(os.path.join(ROOT, "README.md")).read().replace("\\\n", " ")
    assert " ".join(command) in " ".join(readme.split())  # the README gives the same command
    smoke = [a.replace("/data/my_images", "/data/my_images,runlocal") for a in command]
    for source_dir, expected in (
        (tmp_path / "export", "(exported generator; D from its initialisation)"),
        (tmp_path / "converted_run", "(step 2)"),
    ):
        workdir = tmp_path / f"finetuned_{source_dir.name}"
        result = run(
            smoke,
            {
                "/data/my_images": images,
                "biggan-128-pytorch": str(source_dir),
                "runs/finetuned": str(workdir),
            },
        )
        assert result.returncode == 0, result.stderr
        assert "5 classes" in result.stderr
        assert f"train.init_from: started from {source_dir} {expected}" in result.stderr
        assert (
            "has 10 classes, this run 5: class tables start from their initialisation"
            in result.stderr
        )
        assert finite_losses(workdir)
