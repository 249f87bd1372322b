r"""Your own images at 128²: the paper's BigGAN-128 (table 1 row 8 model) on an image folder.

The folder holds one sub-folder of images per class (ROOT/cat/1.jpg, ROOT/dog/2.png, …; the class count is read
from it when the config loads) or the images themselves (one class; the trainer's first data line says so).
Any format PIL reads, centre-cropped and resized to 128². One host: batch 256, 2 D steps per G step,
lr 1e-4 / 4e-4 (SA-GAN's and BigGAN-PyTorch's batch-256 rates), EMA 0.9999 from step 1000.

Command:
  python train.py --config configs/image_folder.py:/data/my_images --workdir runs/my_images
Expected: no fixed figure (it depends on the data): the sample grids under runs/my_images/samples show the
classes within a few thousand steps on a few thousand images per class. For FID during training, compute the
folder's moments first (python -m biggan.evaluate moments --data folder:/data/my_images --resolution 128
--out my_images_moments.npz) and add --config.eval.reference_moments=my_images_moments.npz
--config.log.eval_every=2000 --config.log.best_metric=fid.
Fine-tune a released BigGAN-128 on it (another class count: the class tables start from their
initialisation, the log lists them; FreezeD keeps D's first blocks):
  python -m biggan.convert biggan-pytorch G_ema.pth --out biggan-128-pytorch
  python train.py --config configs/image_folder.py:/data/my_images --workdir runs/finetuned \
      --config.train.init_from=biggan-128-pytorch --config.train.freeze_d_blocks=2 \
      --config.model.bn_eps=1e-5 --config.model.sn_eps=1e-6
  (the whole BigGAN-PyTorch run with its D: --config.train.init_from=WORKDIR of `biggan.convert biggan-pytorch
  WEIGHTS_DIR`; other sources: the error names the model keys to set as the source has them)
Smoke run on a CPU: python train.py --config configs/image_folder.py:/data/my_images,runlocal
"""

from biggan import config as cfg
from biggan.data import sources


def get_config(arg=None):
    path, _, options = (arg or "").partition(",")
    if not path:
        raise ValueError(
            "configs/image_folder.py needs the image folder: --config configs/image_folder.py:/path/to/images"
            " (and ,runlocal for a smoke run)"
        )
    options = cfg.parse_config_arg(options, ("runlocal", "bf16"))
    c = cfg.imagenet_config(
        ",".join(sorted(options)),
        **cfg.BIGGAN_128,
        lr_g=1e-4,
        lr_d=4e-4,
        smoke_batch_size=4,
        recipe={
            "train.batch_size": 256,
            "train.num_steps": 100_000,
            "train.ema_start": 1000,
            "log.eval_every": 0,
            "log.best_metric": "",
        },
    )
    _, _, class_names = sources.scan_image_folder(path)
    c.model.num_classes = len(class_names)
    c.data.update(
        source="folder", path=path, tfds_name="", max_examples=64 if "runlocal" in options else 0
    )
    return c
