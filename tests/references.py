"""pytorch-pretrained-biggan 0.1.1 references with seeded random weights
(tests/convert/test_convert_hf.py says how they are made usable), and their files as the converter
reads them."""

import os

import pytest

torch = pytest.importorskip("torch")
ppb = pytest.importorskip("pytorch_pretrained_biggan")

from biggan.models import biggan_deep  # noqa: E402


def reference_model(res, ch=128, seed=0, attention_position=8):
    """pytorch-pretrained-biggan BigGAN with seeded random weights, ready for eval (the two traps of
    building it with random weights, above)."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    torch.manual_seed(seed)
    config = ppb.BigGANConfig(
        output_dim=res,
        channel_width=ch,
        attention_layer_position=attention_position,
        layers=[tuple(b) for b in biggan_deep.G_BLOCKS[res]],
    )
    model = ppb.BigGAN(config)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        bn = model.generator.bn  # trap 1: torch.Tensor(n) — uninitialised memory
        bn.weight.copy_(1 + 0.2 * torch.randn(bn.weight.shape, generator=g))
        bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=g))
        # attention on (gamma is 0 at init)
        model.generator.layers[attention_position].gamma.fill_(0.5)
        for name, buf in model.named_buffers():
            if name.endswith("running_means"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=g))
            elif name.endswith("running_vars"):
                buf.uniform_(0.5, 2.0, generator=g)
        # Trap 2: random u/v make the eval σ = u·(W v) tiny. A training-mode forward advances every
        # SN layer's u/v by one power step through its pre-forward hook, independently of the input,
        # so calling the hooks 30 times is exactly 30 training forwards' effect (checked against
        # real forwards when this test was written) at a fraction of the cost.
        model.train()
        for _ in range(30):
            for module in model.modules():
                for hook in module._forward_pre_hooks.values():
                    if isinstance(hook, SpectralNorm):
                        hook(module, None)
    return model.eval(), config


def save_reference(model, config, directory):
    os.makedirs(directory, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(config.to_json_string())
    return os.path.join(directory, "pytorch_model.bin"), os.path.join(directory, "config.json")
