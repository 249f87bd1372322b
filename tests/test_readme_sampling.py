"""The README's "Sampling and released weights" block, run verbatim from a fresh directory.

The directory holds what its commands name: the synthetic TF Hub modules (tests/fixtures/tfhub,
written by TensorFlow), a pytorch-pretrained-biggan model with random weights
(tests/convert/test_convert_hf.py), a full-size random BigGAN-PyTorch G_ema.pth of the released 128²
layout (the converter's default config), z.npy, and an exported digits generator in workdirs/digits.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import stepping
from PIL import Image

from biggan.convert import biggan_pytorch
from biggan.models import factory as models
from biggan.sampling import export

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_pretrained_biggan")


def readme_commands(heading):
    """The `python ...` commands of the first bash block under a README heading, continuation lines
    joined."""
    text = open(os.path.join(stepping.REPO, "README.md")).read()
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [
        " ".join(line.split("  #")[0].split())
        for line in block.splitlines()
        if line.startswith("python ")
    ]


def full_size_biggan_pytorch_state_dict(path):
    """Random weights in the layout of BigGAN-PyTorch's released 128² G_ema.pth (ch 96, 70,433,988
    parameters)."""
    shapes = biggan_pytorch.biggan_pytorch_expected_shapes(
        biggan_pytorch.biggan_pytorch_config(None).model
    )
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("stored_var") or key.endswith("sv0"):
            sd[key] = torch.ones(shape)
        elif key.endswith("u0"):
            u = torch.randn(shape, generator=g)
            sd[key] = u / u.norm()
        else:
            sd[key] = 0.02 * torch.randn(shape, generator=g)
    torch.save(sd, path)


@pytest.mark.slow
def test_readme_sampling_commands_run_verbatim(tmp_path):
    from references import reference_model, save_reference

    commands = readme_commands("Sampling and released weights")
    assert len(commands) == 10 and sum(c.startswith("python sample.py") for c in commands) == 6
    results = readme_commands("Results")  # the truncation grid of the README's pictures
    assert len(results) == 1 and "--checkpoint workdirs/digits" in results[0]
    commands += results
    for name in ("biggan-deep-128", "biggan-128"):
        shutil.copytree(
            os.path.join(stepping.REPO, "tests", "fixtures", "tfhub", name),
            tmp_path / f"{name}-module",
        )
    model, config = reference_model(128, ch=8)
    bin_path, _ = save_reference(model, config, tmp_path / "hf")
    shutil.move(bin_path, tmp_path / "pytorch_model.bin")
    shutil.move(str(tmp_path / "hf" / "config.json"), tmp_path / "config.json")
    full_size_biggan_pytorch_state_dict(tmp_path / "G_ema.pth")
    np.save(
        tmp_path / "z.npy", np.random.default_rng(0).standard_normal((4, 120)).astype(np.float32)
    )
    digits = stepping.tiny_config()
    from flax import nnx

    export.save_generator(
        str(tmp_path / "workdirs" / "digits"),
        digits,
        models.make_generator(digits.model, nnx.Rngs(0)),
    )
    os.symlink(os.path.join(stepping.REPO, "sample.py"), tmp_path / "sample.py")
    env = dict(os.environ, PYTHONPATH=stepping.REPO)
    for command in commands:
        out = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, (command, out.stderr[-3000:])
        if command.startswith("python sample.py"):
            assert out.stderr.startswith("BN statistics:"), (command, out.stderr[:500])
    for picture in ("dogs.png", "sheet.png", "truncation.png", "strip.png", "digits.png"):
        assert (tmp_path / picture).stat().st_size > 0
    grid = np.asarray(Image.open(tmp_path / results[0].split("--output ")[1].split()[0]))
    # 4 thresholds x 10 classes (tiles square)
    assert abs(grid.shape[1] / grid.shape[0] - 10 / 4) < 0.1
    saved = np.load(tmp_path / "x.npz")
    assert saved["images"].shape == (4, 128, 128, 3) and list(saved["classes"]) == [
        1,
        207,
        980,
        999,
    ]
    assert export.load_config(str(tmp_path / "biggan-128-pytorch")).sample.bn_stats == "stored"
