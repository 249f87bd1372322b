r"""Train BigGAN / BigGAN-deep.

  python train.py                                   # the embedded default: configs/digits.py on CPU
  python train.py --config configs/biggan_128.py --workdir /shared/runs/run   # ImageNet 128²
  python train.py --config configs/cifar10.py --config.train.lr_g=1e-4      # any key can be overridden

Resumes automatically from --workdir; saves and exits cleanly on SIGTERM. Multi-process (TPU pod, Slurm,
multi-node GPU): see README "Scaling out". `--config` and its `--config.KEY=VALUE` overrides are
ml_collections' config flags (each value parsed as the key's type).
"""

import logging
import os
import sys

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from biggan import config as cfg
from biggan.runtime import cli, storage

DEFAULT_CONFIG = "configs/digits.py"


def parse_args(argv):
    """(parser, argparse namespace, config): the flags of this command and the shared ones, then
    `--config` and its overrides through ml_collections (a private absl flag set, so nothing else
    sees them)."""
    parser = cli.parser(
        "train.py",
        __doc__.split("\n")[0],
        parents=[cli.runtime_flags(multi_process=True)],
        epilog="--config.KEY=VALUE overrides any key of the config, e.g. --config.train.lr_g=1e-4",
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="experiment config file (path[:arg])"
    )
    parser.add_argument(
        "--workdir", default=None, help="run directory (default: workdirs/<config name>)"
    )
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("--") and not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        cfg.check_config_path(args.config.partition(":")[0])
        cfg.check_override_flags(rest)  # an unknown key names the closest valid ones
    except (OSError, ValueError) as e:
        parser.error(str(e))
    config_argv = ["train.py", f"--config={args.config}", *rest]
    config_flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config",
        DEFAULT_CONFIG,
        flag_values=config_flag_values,
        lock_config=True,
        sys_argv=config_argv,
    )
    try:
        positional = config_flag_values(config_argv)[1:]
        if positional:
            parser.error(f"unrecognized arguments: {' '.join(positional)}")
        config = config_flag_values.config
        cfg.check_keys(config, cfg.base_config())
    except (flags.Error, OSError, KeyError, ValueError) as e:
        if isinstance(e, flags.Error):
            parser.error(str(e).strip().splitlines()[0])
        parser.error(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
    return parser, args, config


def main(argv=None):
    parser, args, config = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file operation at INFO
    cli.start(args)
    from biggan import checkpoints
    from biggan.techniques import registry
    from biggan.train import finetune
    from biggan.train import loop as trainer

    name = os.path.splitext(os.path.basename(args.config.partition(":")[0]))[0]
    workdir = args.workdir or config.workdir or os.path.join("workdirs", name)
    cfg.check_same_config(config)
    try:
        registry.enabled(config)  # the technique switches' values, before anything starts
    except ValueError as e:
        parser.exit(2, f"train.py: {e}\n")
    try:
        result = trainer.train(config, workdir)
    except (storage.StorageError, finetune.InitFromError) as e:  # one line, nothing started
        parser.exit(2, f"train.py: {e}\n")
    except checkpoints.CheckpointError as e:
        logging.error("%s", e)
        sys.stdout.flush()
        sys.stderr.flush()
        # orbax's background threads may still be retrying the failed save against storage that is
        # gone; interpreter shutdown would wait for them. The message above names the checkpoint to
        # resume from.
        os._exit(1)
    logging.info("finished at step %d: %s", result["step"], result)


if __name__ == "__main__":
    main()
