"""Per-module parameter table of a config's G and D, counted from abstract shapes (no allocation).

  python -m biggan.summary configs/biggan_128.py
The last line is exactly `G params: <int> D params: <int>`.
"""

from __future__ import annotations

import collections

from flax import nnx

from biggan import config as cfg
from biggan.models import factory as models
from biggan.runtime import cli


def param_table(module, depth=2):
    """{module path truncated to `depth` components: parameter count}, in definition order."""
    counts = collections.OrderedDict()
    for path, value in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        key = ".".join(str(p) for p in path[:depth])
        counts[key] = counts.get(key, 0) + int(value.size)
    return counts


def main(argv=None):
    parser = cli.parser("python -m biggan.summary", __doc__)
    parser.add_argument(
        "config", help="experiment config file (path[:arg]), e.g. configs/biggan_128.py"
    )
    args = parser.parse_args(argv)
    try:
        config = cfg.load_config_file(args.config)
    except (OSError, KeyError, ValueError) as e:
        parser.error(str(e))
    totals = {}
    for name, make in (("G", models.make_generator), ("D", models.make_discriminator)):
        abstract = nnx.eval_shape(lambda: make(config.model, nnx.Rngs(0)))
        table = param_table(abstract)
        print(f"{name} ({config.model.arch} {config.model.resolution}²)")
        for key, n in table.items():
            print(f"  {key:<28} {n:>14,}")
        totals[name] = sum(table.values())
        print(f"  {'total':<28} {totals[name]:>14,}")
    print(f"G params: {totals['G']} D params: {totals['D']}")


if __name__ == "__main__":
    main()
