"""Write the synthetic TF Hub modules that tests/convert/test_convert_tfhub.py converts (needs TensorFlow; run once).

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0
    /tmp/tfvenv/bin/python scripts/make_tfhub_fixtures.py tests/fixtures/tfhub

Each module is written by TensorFlow itself (a TF1 SavedModel: saved_model.pb with the default, empty tag
set; variables/ written by the SavedModel builder's Saver) with seeded random values under the variable
names the public converters read, at a small channel width and class count so that the files stay small:

- biggan-{128,256,512}: names from BigGAN-PyTorch's TFHub/converter.py (TFHub2Pytorch: `w`/`b`/`gamma`/
  `beta` with the `/ema_b999900` suffix, `u0`, `u1`, `HyperBN[_1]`, `CrossReplicaBN[_1]` accumulators,
  `ScaledCrossReplicaBN` + `ScaledCrossReplicaBNbn`, `G_Z/G_linear`, `conv_2d`, `attention`, `linear`),
  plus the non-EMA twins. The 50-row per-truncation statistics (ivclab/BigGAN-Generator-Pretrained-Pytorch,
  src/batch_normalization.py: t = 0.02 … 1.00) are graph constants built as tf.stack of per-row constants
  (Pack nodes), in the graph's order, mean then var for every BN in forward order, interleaved with
  unrelated stack nodes.
- biggan-deep-{128,256,512}: names from pytorch-pretrained-biggan 0.1.1's convert_tf_to_pytorch.py
  (build_tf_to_pytorch_map: `/ema_0.9999`, `u0`, `GenZ/G_linear`, `GBlock[_i]/BatchNorm[_k]/{offset,scale}`,
  `conv{0..3}`, `attention`, `BatchNorm`, `conv_to_rgb`); the 51-row statistics are the constant nodes
  `stack_{10i+1}` (mean) and `stack_{10i+3}` (var), `stack_{10i+6}`, `stack_{10i+8}` that its
  extract_batch_norm_stats reads, the other stack_N being unrelated stacks.

The values are a pure function of the seed: the tests rebuild them with `non_deep` / `deep` (numpy only)
for their references, which therefore never read the module through our reader. Only the 128² modules are
committed (about 0.5 MB each); the 256² and 512² layouts are tested from the same builders in memory.
"""

import functools
import os
import sys

import numpy as np

# Small synthetic models: real layouts (blocks, attention position, names), small widths.
NON_DEEP = {  # resolution: (G channel plan ×ch, attention before block, z chunk)
    128: ([(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)], 4, 4),
    256: ([(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)], 5, 4),
    512: ([(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)], 4, 4),
}
# pytorch-pretrained-biggan's BigGAN128/256/512 configs: (upsample, in ×ch, out ×ch)
DEEP_LAYERS = {
    128: [
        (False, 16, 16),
        (True, 16, 16),
        (False, 16, 16),
        (True, 16, 8),
        (False, 8, 8),
        (True, 8, 4),
        (False, 4, 4),
        (True, 4, 2),
        (False, 2, 2),
        (True, 2, 1),
    ],
    256: [
        (False, 16, 16),
        (True, 16, 16),
        (False, 16, 16),
        (True, 16, 8),
        (False, 8, 8),
        (True, 8, 8),
        (False, 8, 8),
        (True, 8, 4),
        (False, 4, 4),
        (True, 4, 2),
        (False, 2, 2),
        (True, 2, 1),
    ],
    512: [
        (False, 16, 16),
        (True, 16, 16),
        (False, 16, 16),
        (True, 16, 8),
        (False, 8, 8),
        (True, 8, 8),
        (False, 8, 8),
        (True, 8, 4),
        (False, 4, 4),
        (True, 4, 2),
        (False, 2, 2),
        (True, 2, 1),
        (False, 1, 1),
        (True, 1, 1),
    ],
}
CH, NUM_CLASSES, SHARED, DEEP_Z = 4, 1000, 8, 8  # ImageNet's 1000 classes: class names work
# pytorch-pretrained-biggan's conversion needs attention's theta/phi (ch·2/8 channels) wider than 1
DEEP_CH = 8


class Values:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.variables = {}

    def weight(self, name, shape, fan_in):
        self.variables[name] = (self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(
            np.float32
        )
        # the non-EMA training weights also live in the module (converters ignore
        if np.prod(shape) <= 256:
            # them); written for the small tensors only, to keep the files small
            base = name.rsplit("/", 1)[0]
            self.variables[base] = (self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(
                np.float32
            )

    def u(self, name, n):
        u = self.rng.standard_normal((1, n)).astype(np.float32)
        self.variables[name] = u / np.linalg.norm(u)

    def sn(self, prefix, shape, fan_in, bias, *, ema, second_u):
        """A spectrally normalised layer: w (+ b), u0 (+ u1, the non-deep modules' second
        vector)."""
        self.weight(f"{prefix}/w{ema}", shape, fan_in)
        if bias:
            self.near(f"{prefix}/b{ema}", (shape[-1],), 0.0, 0.1)
        self.u(f"{prefix}/u0", shape[-1])
        if second_u:
            self.u(f"{prefix}/u1", shape[-1])

    def near(self, name, shape, centre, spread, twin=True):
        self.variables[name] = (centre + spread * self.rng.standard_normal(shape)).astype(
            np.float32
        )
        if twin:
            self.variables[name.rsplit("/", 1)[0]] = self.variables[name] + 0.5

    def stats(self, rows, channels):
        mean = (0.1 * self.rng.standard_normal((rows, channels))).astype(np.float32)
        var = self.rng.uniform(0.5, 2.0, (rows, channels)).astype(np.float32)
        return mean, var


def non_deep(resolution, seed):
    plan, attention_before, chunk = NON_DEEP[resolution]
    v, ema = Values(seed), "/ema_b999900"
    cond = chunk + SHARED
    v.weight("linear/w" + ema, (NUM_CLASSES, SHARED), NUM_CLASSES)
    bottom = plan[0][0] * CH
    v.weight("Generator/G_Z/G_linear/w" + ema, (chunk, 4 * 4 * bottom), chunk)
    v.near("Generator/G_Z/G_linear/b" + ema, (4 * 4 * bottom,), 0.0, 0.1)
    v.u("Generator/G_Z/G_linear/u0", 4 * 4 * bottom)
    v.u("Generator/G_Z/G_linear/u1", 4 * 4 * bottom)
    bn_channels = []
    sn = functools.partial(v.sn, ema=ema, second_u=True)

    for i, (cin, cout) in enumerate(plan):
        if i == attention_before:
            c = cin * CH
            for name, shape in (
                ("theta", (1, 1, c, c // 8)),
                ("phi", (1, 1, c, c // 8)),
                ("g", (1, 1, c, c // 2)),
                ("o_conv", (1, 1, c // 2, c)),
            ):
                sn(f"Generator/attention/{name}", shape, shape[2], bias=False)
            v.near("Generator/attention/gamma" + ema, (1,), 0.5, 0.1)
        p = "Generator/GBlock" + (f"_{i}" if i else "")
        cin, cout = cin * CH, cout * CH
        for hyper, cross, c in (
            ("HyperBN", "CrossReplicaBN", cin),
            ("HyperBN_1", "CrossReplicaBN_1", cout),
        ):
            for name in ("gamma", "beta"):
                sn(f"{p}/{hyper}/{name}", (cond, c), cond, bias=False)
            v.near(f"{p}/{cross}/accumulated_mean", (c,), 0.0, 1.0, twin=False)
            v.near(f"{p}/{cross}/accumulated_var", (c,), 3.0, 0.1, twin=False)
            v.variables[f"{p}/{cross}/accumulation_counter"] = np.float32(7.0)
            bn_channels.append(c)
        sn(f"{p}/conv0", (3, 3, cin, cout), 9 * cin, bias=True)
        sn(f"{p}/conv1", (3, 3, cout, cout), 9 * cout, bias=True)
        sn(f"{p}/conv_sc", (1, 1, cin, cout), cin, bias=True)
    c = plan[-1][1] * CH
    v.near("Generator/ScaledCrossReplicaBN/gamma" + ema, (c,), 1.0, 0.2)
    v.near("Generator/ScaledCrossReplicaBN/beta" + ema, (c,), 0.0, 0.2)
    v.near("Generator/ScaledCrossReplicaBNbn/accumulated_mean", (c,), 0.0, 1.0, twin=False)
    v.near("Generator/ScaledCrossReplicaBNbn/accumulated_var", (c,), 3.0, 0.1, twin=False)
    v.variables["Generator/ScaledCrossReplicaBNbn/accumulation_counter"] = np.float32(7.0)
    bn_channels.append(c)
    sn("Generator/conv_2d", (3, 3, c, 3), 9 * c, bias=True)
    return v, [v.stats(50, c) for c in bn_channels]


def deep(resolution, seed):
    layers, pos = DEEP_LAYERS[resolution], 8
    v, ema = Values(seed), "/ema_0.9999"
    cond = 2 * DEEP_Z
    v.weight("linear/w" + ema, (NUM_CLASSES, DEEP_Z), NUM_CLASSES)
    v.weight("Generator/GenZ/G_linear/w" + ema, (cond, 4 * 4 * 16 * DEEP_CH), cond)
    v.near("Generator/GenZ/G_linear/b" + ema, (4 * 4 * 16 * DEEP_CH,), 0.0, 0.1)
    v.u("Generator/GenZ/G_linear/u0", 4 * 4 * 16 * DEEP_CH)
    bn_channels = []
    sn = functools.partial(v.sn, ema=ema, second_u=False)

    for i, (_, cin, cout) in enumerate(layers):
        p = "Generator/GBlock" + (f"_{i}" if i else "")
        cin, cout = cin * DEEP_CH, cout * DEEP_CH
        mid = cin // 4
        for k, c in enumerate((cin, mid, mid, mid)):
            b = f"{p}/BatchNorm" + (f"_{k}" if k else "")
            sn(f"{b}/scale", (cond, c), cond, bias=False)
            sn(f"{b}/offset", (cond, c), cond, bias=False)
            bn_channels.append(c)
        for k, shape in enumerate(
            ((1, 1, cin, mid), (3, 3, mid, mid), (3, 3, mid, mid), (1, 1, mid, cout))
        ):
            sn(f"{p}/conv{k}", shape, shape[0] * shape[1] * shape[2], bias=True)
    c = layers[pos][1] * DEEP_CH  # attention sits before list position `pos`, on that block's input
    for name, shape in (
        ("theta", (1, 1, c, c // 8)),
        ("phi", (1, 1, c, c // 8)),
        ("g", (1, 1, c, c // 2)),
        ("o_conv", (1, 1, c // 2, c)),
    ):
        sn(f"Generator/attention/{name}", shape, shape[2], bias=False)
    v.near("Generator/attention/gamma" + ema, (1,), 0.5, 0.1)
    v.near("Generator/BatchNorm/scale" + ema, (DEEP_CH,), 1.0, 0.2)
    v.near("Generator/BatchNorm/offset" + ema, (DEEP_CH,), 0.0, 0.2)
    bn_channels.append(DEEP_CH)
    sn("Generator/conv_to_rgb", (3, 3, DEEP_CH, DEEP_CH), 9 * DEEP_CH, bias=True)
    return v, [v.stats(51, c) for c in bn_channels]


def write_module(directory, values, tables, packed):
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    # TF1-era modules hold reference variables (VariableV2)
    tf.compat.v1.disable_resource_variables()
    graph = tf.Graph()
    stacks = {}
    with graph.as_default():
        # Zero-initialised, then loaded through a feed: the values live in variables/ only, not as
        # graph constants (as in a real module, whose initialisers are random ops).
        variables = [
            (tf.compat.v1.Variable(tf.zeros(np.shape(value), tf.float32), name=name), value)
            for name, value in values.variables.items()
        ]
        # Stack nodes stack, stack_1, ...: in every group of ten, 1 and 3 hold one BN's mean and
        # var, 6 and 8 the next BN's; the others are unrelated stacks (int index stacks and 1-D
        # float stacks).
        flat = [t for pair in tables for t in pair]
        for group in range(0, len(flat), 4):
            chunk = flat[group : group + 4]
            for j in range(10):
                slot = {1: 0, 3: 1, 6: 2, 8: 3}.get(j)
                if slot is not None and slot < len(chunk):
                    table = chunk[slot]
                    if packed:  # tf.stack of constant tensors: a Pack node over Const rows
                        node = tf.stack([tf.constant(row) for row in table])
                    else:  # the folded form: one Const node named stack_N
                        node = tf.constant(table, name="stack")
                    stacks[node.op.name] = table
                elif slot is None:
                    tf.stack([np.int32(j), np.int32(group)]) if j % 2 else tf.stack(
                        [np.float32(j), np.float32(0)]
                    )
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable, value in variables:
                variable.load(value, session)
            builder = tf.compat.v1.saved_model.Builder(directory)
            builder.add_meta_graph_and_variables(session, tags=[])
            builder.save()
    with open(os.path.join(directory, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # ModuleDef { format: 3 } (TF1 Hub module format)
    return stacks


def main(out_root):
    resolutions = [int(r) for r in sys.argv[2].split(",")] if len(sys.argv) > 2 else [128]
    for resolution in resolutions:
        for family, build, packed in (("biggan", non_deep, True), ("biggan-deep", deep, False)):
            directory = os.path.join(out_root, f"{family}-{resolution}")
            values, tables = build(resolution, seed=resolution + (1 if packed else 2))
            stacks = write_module(directory, values, tables, packed)
            print(f"{directory}: {len(values.variables)} variables, {len(stacks)} statistic tables")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tfhub")
