"""Training techniques beyond the paper's recipe, each a config switch (README, Ablations).

  base.py          the technique interface: switch, config check, state, hooks the train step calls
  augment.py       the differentiable augmentations DiffAugment, ADA and CR share
  labels.py, penalties.py, sigma0.py, instance_noise.py, feature_matching.py, historical_averaging.py,
  replay.py, pacgan.py, dropout.py, diffaugment.py, ada.py, lecam.py, consistency.py, freezed.py:
                   the techniques on that interface, one file each with its pure jit-able maths
                   (penalties: R1, DRAGAN, WGAN-GP); minibatch discrimination is a D layer
                   (biggan/models/layers.py), unrolled D a loop of the step (biggan/train/step.py)
  registry.py      those techniques in hook order (`REGISTRY`); `enabled(config)` builds and checks them

This file imports nothing, so the modules above import each other without a cycle through the
package.
"""
