"""Convert released generator weights into an exported generator (biggan.sampling.export).

  python -m biggan.convert tfhub MODULE_DIR --out DIR [--standing_stats]
      an unpacked TF Hub module: deepmind/biggan-{128,256,512}/2 or biggan-deep-{128,256,512}/1, read without
      TensorFlow (biggan/convert/tf_checkpoint.py); family, resolution and widths from the variables; the per-truncation
      BN statistics from the graph (--standing_stats: without them, sampling accumulates standing statistics).

  python -m biggan.convert hf PYTORCH_MODEL_BIN [CONFIG_JSON] --out DIR
      pytorch-pretrained-biggan 0.1.1 BigGAN-deep 128/256/512; CONFIG_JSON defaults to the
      config.json beside the .bin. Writes the 51-row per-truncation BN statistics (biggan/sampling/truncation_stats.py).
  python -m biggan.convert biggan-pytorch G_EMA_PTH [--config CONFIG] --out DIR
      BigGAN-PyTorch's BigGAN G / G_ema state dict; CONFIG is a configs/*.py file (path[:arg]) or a JSON
      of config.model keys (default: the paper's 128² model, which is the released one).
  python -m biggan.convert biggan-pytorch WEIGHTS_DIR [--config CONFIG] --out WORKDIR
      a whole BigGAN-PyTorch weights folder (G, G_ema, D, both Adam states, the iteration) into a training
      workdir: `python train.py --config CONFIG --workdir WORKDIR` continues the run. CONFIG is a configs/*.py
      file (default: configs/biggan_pytorch_128.py's, the released run's recipe); its Adam hyper-parameters
      must be the run's (biggan/convert/biggan_pytorch_run.py).

Every key and shape is checked against what the config implies; missing, unexpected and wrongly shaped
entries are reported on one line, and nothing is ever left randomly initialised. Errors exit with status 2.
torch is imported lazily, only to read PyTorch files.
"""

from __future__ import annotations

import os

from biggan.convert.biggan_pytorch import convert_biggan_pytorch_file
from biggan.convert.biggan_pytorch_run import convert_run_folder
from biggan.convert.hf import convert_hf_files
from biggan.convert.tables import ConversionError
from biggan.convert.tfhub import convert_tfhub_module
from biggan.runtime import cli, storage
from biggan.sampling import export


def main(argv=None):
    parser = cli.parser("python -m biggan.convert", __doc__)
    sub = parser.add_subparsers(dest="source", required=True)
    shared = dict(parents=[cli.runtime_flags(multi_process=False)], formatter_class=cli.HELP_FORMAT)
    hf = sub.add_parser(
        "hf", help="pytorch-pretrained-biggan 0.1.1 BigGAN-deep pytorch_model.bin", **shared
    )
    hf.add_argument("model_bin")
    hf.add_argument("config_json", nargs="?", default=None)
    hf.add_argument("--out", required=True, help="export directory to create")
    bp = sub.add_parser(
        "biggan-pytorch",
        help="BigGAN-PyTorch BigGAN G / G_ema state dict (.pth), or a whole weights folder",
        **shared,
    )
    bp.add_argument(
        "pth", help="G_ema.pth (→ an exported generator) or a weights folder (→ a workdir)"
    )
    bp.add_argument(
        "--config",
        default=None,
        help="configs/*.py[:arg] or a JSON of config.model keys (default: the released 128² model)",
    )
    bp.add_argument("--out", required=True, help="export directory to create")
    bp.add_argument(
        "--bn_eps",
        "--bn-eps",
        type=float,
        default=1e-5,
        help="BN eps of the training run (its scripts: 1e-5; a folder's: from --config)",
    )
    bp.add_argument(
        "--sn_eps",
        "--sn-eps",
        type=float,
        default=1e-6,
        help="SN eps of the training run (its scripts: 1e-6; a folder's: from --config)",
    )
    th = sub.add_parser(
        "tfhub",
        help="an unpacked TF Hub module: deepmind/biggan-{128,256,512}/2 or "
        "biggan-deep-{128,256,512}/1",
        **shared,
    )
    th.add_argument("module_dir")
    th.add_argument("--out", required=True, help="export directory to create")
    th.add_argument(
        "--standing_stats",
        action="store_true",
        help="do not read the per-truncation BN statistics from saved_model.pb; sampling then "
        "accumulates standing statistics (paper appendix C.1)",
    )
    args = parser.parse_args(argv)
    try:
        storage.check_bucket(args.out)
    except storage.StorageError as e:
        parser.exit(2, f"error: {e}\n")
    if export.is_exported_generator(args.out):
        parser.exit(
            2,
            f"error: --out {args.out} already holds an exported generator; choose a new directory\n",
        )
    cli.start(args)  # the host allocator, the compile cache
    try:
        if args.source == "hf":
            convert_hf_files(args.model_bin, args.config_json, args.out)
        elif args.source == "tfhub":
            convert_tfhub_module(args.module_dir, args.out, standing_stats=args.standing_stats)
        elif os.path.isdir(args.pth):
            convert_run_folder(args.pth, args.out, args.config)
        else:
            convert_biggan_pytorch_file(
                args.pth, args.config, args.out, bn_eps=args.bn_eps, sn_eps=args.sn_eps
            )
    except (ConversionError, FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        parser.exit(2, f"error: {message}\n")
    return 0
