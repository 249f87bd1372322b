r"""Train BigGAN / BigGAN-deep.

  python train.py                                   # the embedded default: configs/digits.py on CPU
  python train.py --config configs/biggan_128.py --workdir /shared/runs/run   # ImageNet 128²
  python train.py --config configs/cifar10.py --config.train.lr_g=1e-4      # any key can be overridden

Resumes automatically from --workdir; saves and exits cleanly on SIGTERM. Multi-process (TPU pod, Slurm,
multi-node GPU): see README "Scaling out".
"""

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from biggan.config import check_override_flags  # noqa: E402

if __name__ == "__main__":
    # Before DEFINE_config_file, which applies --config.* overrides as it loads the default config.
    check_override_flags(sys.argv[1:])

config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "experiment config file (path[:arg])", lock_config=True
)
flags.DEFINE_string("workdir", None, "run directory (default: workdirs/<config name>)")
flags.DEFINE_string("coordinator_address", None, "multi-process: host:port of process 0")
flags.DEFINE_integer("num_processes", None, "multi-process: number of processes")
flags.DEFINE_integer("process_id", None, "multi-process: index of this process")
flags.DEFINE_integer("local_device_count", None, "CPU only: simulated devices in this process")
flags.DEFINE_integer(
    "initialization_timeout", 120, "multi-process: seconds to wait for the coordinator"
)
flags.DEFINE_string(
    "compile_cache",
    None,
    "persistent XLA compilation cache directory (default: "
    "$JAX_COMPILATION_CACHE_DIR or ~/.cache/biggan-jax/xla); empty turns it off",
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )  # absl.app installs its own handler, which would hide these lines
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file operation at INFO
    from biggan.runtime import distributed, host_memory

    if (
        host_memory.retain_freed_memory()
    ):  # before JAX starts its threads (biggan/runtime/host_memory.py)
        logging.info(
            "CPU run: malloc keeps freed memory (%s=default turns this off)", host_memory.ENV
        )
    distributed.initialize(
        FLAGS.coordinator_address,
        FLAGS.num_processes,
        FLAGS.process_id,
        local_device_count=FLAGS.local_device_count,
        timeout=FLAGS.initialization_timeout,
    )
    from biggan import config as cfg
    from biggan.runtime import compile_cache
    from biggan.train import loop as trainer

    compile_cache.enable(FLAGS.compile_cache)
    config = FLAGS.config
    cfg.check_keys(config, cfg.base_config())
    name = os.path.splitext(os.path.basename(FLAGS["config"].config_filename))[0]
    workdir = FLAGS.workdir or config.workdir or os.path.join("workdirs", name)
    cfg.check_same_config(config)
    from biggan import checkpoints
    from biggan.runtime import storage
    from biggan.techniques import registry
    from biggan.train import finetune

    try:
        registry.enabled(config)  # the technique switches' values, before anything starts
    except ValueError as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        result = trainer.train(config, workdir)
    except (storage.StorageError, finetune.InitFromError) as e:  # one line, nothing started
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(2)
    except checkpoints.CheckpointError as e:
        logging.error("%s", e)
        sys.stdout.flush()
        sys.stderr.flush()
        # orbax's background threads may still be retrying the failed save against storage that is gone;
        # interpreter shutdown would wait for them. The message above names the checkpoint to resume from.
        os._exit(1)
    logging.info("finished at step %d: %s", result["step"], result)


if __name__ == "__main__":
    app.run(main)
