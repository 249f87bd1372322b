"""`python -m biggan.convert hf` against pytorch-pretrained-biggan 0.1.1.

The reference is built offline with SEEDED RANDOM weights (`BigGAN(BigGANConfig(...))`), made usable
as follows. Its final BN affine (created uninitialised) is set, its SN u/v are advanced by 30
training-mode power-iteration steps before `.eval()`, and all 51-row BN statistics are randomised so
that the truncation interpolation is really exercised. Its state dict goes through the real
file-reading converter path.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
ppb = pytest.importorskip("pytorch_pretrained_biggan")

from references import reference_model, save_reference

from biggan.convert import cli as convert_cli
from biggan.convert import hf
from biggan.convert import tables as convert_tables
from biggan.models import biggan_deep  # noqa: E402
from biggan.models import factory as models
from biggan.sampling import export, truncation_stats

TRUNCATIONS = (1.0, 0.4, 0.41, 0.3)


def reference_images(model, z, y, truncation):
    with torch.no_grad():
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(y), model.config.num_classes).float()
        return model(torch.as_tensor(z), one_hot, truncation).permute(0, 2, 3, 1).numpy()


def check_parity(res, ch, tmp_path, truncations=TRUNCATIONS, batch=2, attention_position=8):
    model, config = reference_model(res, ch, attention_position=attention_position)
    bin_path, config_path = save_reference(model, config, tmp_path / "released")
    out = str(tmp_path / "export")
    assert convert_cli.main(["hf", bin_path, config_path, "--out", out]) == 0
    our_config, G, stats = export.load_generator(out)
    assert our_config.model.sn_eval_mode == "stored" and our_config.model.rgb_channels == ch
    assert our_config.model.bn_eps == 1e-4 and our_config.model.sn_eps == 1e-4
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((batch, 128)) * 0.7).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    errors, images = {}, {}
    graphdef, _ = nnx.split(G)
    # one compile
    forward = jax.jit(lambda state, z, y: nnx.merge(graphdef, state)(z, y, train=False))
    for t in truncations:
        ref = reference_images(model, z, y, t)
        truncation_stats.apply_truncation_stats(G, stats, t)
        ours = np.asarray(forward(nnx.state(G), jnp.asarray(z), jnp.asarray(y)))
        assert ours.shape == ref.shape == (batch, res, res, 3)
        # The reference must be informative: not saturated, not constant.
        assert ref.std() > 0.03 and np.mean(np.abs(ref) > 0.99) < 0.5
        errors[t] = float(np.abs(ours - ref).max())
        images[t] = ref
    print(
        f"biggan-deep-{res} ch {ch}: max |ours − pytorch-pretrained-biggan| per truncation {errors}"
    )
    assert max(errors.values()) <= 1e-4, errors
    if 0.4 in images and 0.41 in images:  # the BN statistics really change with t
        assert np.abs(images[0.4] - images[0.41]).max() > 1e-3
    return G


@pytest.mark.slow
def test_parity_released_layout_small_width(tmp_path):
    # The released 128 layout at channel width 8 (the reference hard-wires 16·ch → 1·ch, so no
    # smaller layout exists). 0.425 (21.25 rows) is where the reference's reversed weighting differs
    # from a linear interpolation (pytorch_pretrained_biggan/model.py, BigGANBatchNorm).
    check_parity(128, 8, tmp_path, truncations=TRUNCATIONS + (0.425,))


@pytest.mark.slow
@pytest.mark.parametrize("res", [128, 256])
def test_parity_released_configuration(res, tmp_path):
    G = check_parity(res, 128, tmp_path)
    assert models.count_params(G) == {128: 50_388_609, 256: 55_880_833}[res]


@pytest.mark.parametrize("res", [128, 256, 512])
def test_expected_key_table_is_the_reference_state_dict(res):
    # Built on the meta device: shapes only, no memory or time.
    with torch.device("meta"):
        model = ppb.BigGAN(
            ppb.BigGANConfig(output_dim=res, layers=[tuple(b) for b in biggan_deep.G_BLOCKS[res]])
        )
    reference = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    hc = dict(output_dim=res, layers=[list(b) for b in biggan_deep.G_BLOCKS[res]])
    assert hf.hf_expected_shapes(hc) == reference
    shapes_only = {k: np.broadcast_to(np.float32(0), s) for k, s in reference.items()}
    assert hf.hf_expected_shapes(hf.hf_config_from_state_dict(shapes_only)) == reference


def test_truncation_interpolation_matches_reference_batchnorm():
    """Our interpolation vs pytorch-pretrained-biggan's BigGANBatchNorm (unconditional) for many
    t."""
    from biggan.models import batch_norm

    g = torch.Generator().manual_seed(0)
    ref = ppb.model.BigGANBatchNorm(6, n_stats=51, eps=1e-4, conditional=False)
    with torch.no_grad():
        ref.weight.fill_(1.0)
        ref.bias.zero_()
        ref.running_means.copy_(torch.randn(51, 6, generator=g))
        ref.running_vars.uniform_(0.5, 2.0, generator=g)

    class Holder(nnx.Module):
        def __init__(self):
            self.bn = batch_norm.BatchNorm(6, eps=1e-4)

    ours = Holder()
    stats = {"bn/mean": ref.running_means.numpy(), "bn/var": ref.running_vars.numpy()}
    x = torch.randn(3, 6, 4, 4, generator=g)
    for t in [
        0.02,
        0.05,
        0.1,
        0.29,
        0.3,
        0.31,
        0.4,
        0.41,
        0.425,
        0.43,
        0.5,
        0.6,
        0.7,
        0.77,
        0.9,
        0.99,
        1.0,
    ]:
        with torch.no_grad():
            expected = ref(x, t).permute(0, 2, 3, 1).numpy()
        truncation_stats.apply_truncation_stats(ours, stats, t)
        got = np.asarray(ours.bn(jnp.asarray(x.permute(0, 2, 3, 1).numpy()), train=False))
        np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=f"truncation {t}")


def test_interpolation_quirk_by_hand():
    rows = np.arange(51, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # row k holds k
    assert truncation_stats.interpolation(0.4, 51) == (20, 0.0)
    np.testing.assert_allclose(truncation_stats.interpolate(rows, 0.4), [20, 20])
    # 0.41/0.02 = 20.5: the midpoint, whichever row the fraction weights.
    np.testing.assert_allclose(truncation_stats.interpolate(rows, 0.41), [20.5, 20.5], atol=1e-5)
    # 0.425/0.02 = 21.25: a normal lerp gives 21.25, the reference weights the LOWER row by the
    # fraction: 21·0.25 + 22·0.75 = 21.75 (biggan/sampling/truncation_stats.py).
    assert truncation_stats.interpolation(0.425, 51) == (21, 0.25)
    np.testing.assert_allclose(truncation_stats.interpolate(rows, 0.425), [21.75, 21.75], atol=1e-5)
    # Float64 division: 0.3 and 0.6 are exact rows 15 and 30; their float32 values are not (the trap
    # biggan/sampling/truncation_stats.py documents): float32 0.3 = 0.30000001 → 15.0000006 → coef ≈
    # 6e-7 on row 15, the rest on row 16.
    assert truncation_stats.interpolation(0.3, 51) == (15, 0.0)
    assert truncation_stats.interpolation(0.6, 51) == (30, 0.0)
    np.testing.assert_allclose(truncation_stats.interpolate(rows, 0.3), [15, 15])
    np.testing.assert_allclose(
        truncation_stats.interpolate(rows, np.float32(0.3)), [16, 16], atol=1e-5
    )
    for bad in (0.0, -0.5, 1.01, 2):
        with pytest.raises(ValueError, match="outside the released model.s range 0 < t ≤ 1"):
            truncation_stats.interpolation(bad, 51)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    model, config = reference_model(128, 8, seed=3)
    directory = tmp_path_factory.mktemp("small")
    return model.state_dict(), config, directory


def _write(directory, name, state_dict, config):
    path = directory / name
    path.mkdir()
    return save_reference_state(state_dict, config, path)


def save_reference_state(state_dict, config, path):
    torch.save(state_dict, path / "pytorch_model.bin")
    (path / "config.json").write_text(config.to_json_string())
    return str(path / "pytorch_model.bin"), str(path / "config.json")


def test_rejects_missing_extra_and_misshapen_keys(small_reference):
    state_dict, config, directory = small_reference
    bad = dict(state_dict)
    del bad["generator.layers.3.bn_2.scale.weight_u"]
    bad["generator.layers.99.conv_0.bias"] = torch.zeros(3)
    bad["generator.gen_z.bias"] = torch.zeros(7)
    bin_path, config_path = _write(directory, "bad", bad, config)
    with pytest.raises(convert_tables.ConversionError) as err:
        hf.convert_hf_files(bin_path, config_path, str(directory / "bad_out"))
    message = str(err.value)
    assert "generator.layers.3.bn_2.scale.weight_u" in message and "missing keys (1)" in message
    assert "generator.layers.99.conv_0.bias" in message and "unexpected keys (1)" in message
    assert "generator.gen_z.bias: (7,), expected (2048,)" in message
    assert not (directory / "bad_out").exists()  # nothing written, nothing randomly initialised


def test_rejects_state_dict_of_another_resolution(small_reference):
    state_dict, config, directory = small_reference
    bin_path, _ = _write(directory, "wrongres", state_dict, config)
    cfg256 = directory / "config256.json"
    cfg256.write_text(
        json.dumps(
            dict(
                json.loads(config.to_json_string()),
                output_dim=256,
                layers=[list(b) for b in biggan_deep.G_BLOCKS[256]],
            )
        )
    )
    with pytest.raises(convert_tables.ConversionError, match="missing keys"):
        hf.convert_hf_files(bin_path, str(cfg256), str(directory / "wrongres_out"))


def test_rejects_corrupt_and_non_state_dict_files(small_reference, tmp_path):
    _, config, _ = small_reference
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"this is not a pytorch file" * 10)
    with pytest.raises(
        convert_tables.ConversionError, match="could not be read as a PyTorch state dict"
    ):
        hf.convert_hf_files(str(corrupt), None, str(tmp_path / "out1"))
    not_sd = tmp_path / "list.bin"
    torch.save([torch.zeros(2)], not_sd)
    with pytest.raises(convert_tables.ConversionError, match="not a state dict"):
        hf.convert_hf_files(str(not_sd), None, str(tmp_path / "out2"))
    with pytest.raises(FileNotFoundError):
        hf.convert_hf_files(str(tmp_path / "absent.bin"), None, str(tmp_path / "out3"))
    # The command line reports the same error and exits non-zero.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "biggan.convert",
            "hf",
            str(corrupt),
            "--out",
            str(tmp_path / "out4"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "could not be read as a PyTorch state dict" in result.stderr


def test_config_inferred_when_no_config_json(small_reference, tmp_path):
    state_dict, config, _ = small_reference
    torch.save(state_dict, tmp_path / "weights.bin")
    out = str(tmp_path / "export")
    hf.convert_hf_files(str(tmp_path / "weights.bin"), None, out)
    our_config, G, stats = export.load_generator(out)
    assert our_config.model.resolution == 128 and our_config.model.ch_g == 8
    assert stats["output_bn/mean"].shape == (51, 8)
    # Exported BN state defaults to the t = 1 row (untruncated).
    np.testing.assert_array_equal(
        G.output_bn.mean[...], state_dict["generator.bn.running_means"][-1].numpy()
    )


def test_converts_512_layout():
    # Mapping coverage of the largest released layout (its parity is the same code as 128/256).
    with torch.device("meta"):
        shapes = {
            k: tuple(v.shape)
            for k, v in ppb.BigGAN(
                ppb.BigGANConfig(
                    output_dim=512,
                    channel_width=8,
                    layers=[tuple(b) for b in biggan_deep.G_BLOCKS[512]],
                )
            )
            .state_dict()
            .items()
        }
    rng = np.random.default_rng(0)
    state_dict = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    hc = dict(output_dim=512, channel_width=8, layers=[list(b) for b in biggan_deep.G_BLOCKS[512]])
    config, G, stats = hf.convert_hf(state_dict, hc)
    assert config.model.resolution == 512 and config.model.g_attn == (64,)
    assert G.attention[7] is not None and len(G.blocks) == 14
    np.testing.assert_array_equal(
        G.blocks[13].conv4.kernel[...],
        state_dict["generator.layers.14.conv_3.weight_orig"].transpose(2, 3, 1, 0),
    )
    assert len(stats) == 2 * (14 * 4 + 1)
