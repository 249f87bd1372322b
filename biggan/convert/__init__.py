"""Released weights into exported generators (biggan/sampling/export.py), one module per source:

hf.py               pytorch-pretrained-biggan 0.1.1 (BigGAN-deep)
biggan_pytorch.py   BigGAN-PyTorch's BigGAN G / G_ema
tfhub.py            TF Hub TF1 modules, read without TensorFlow by tf_checkpoint.py
tables.py           what they share: state-dict reading, the layout tables, key and shape checks
cli.py              the command line, `python -m biggan.convert` (its usage is in cli.py's docstring)
"""
