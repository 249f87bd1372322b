"""Training techniques beyond the paper's recipe, each a config switch (README, Ablations).

  catalogue.py     the pure pieces of the earlier catalogue (minibatch discrimination, feature matching,
                   instance noise, replay, PacGAN, feature dropout, unrolled D, virtual batch norm), wired
                   into biggan/train_step.py by their switches
  base.py          the technique interface: config check, state, hooks (D-input augmentation, D and G loss
                   terms, after the step)
  augment.py       the differentiable augmentations DiffAugment, ADA and CR share
  diffaugment.py, ada.py, lecam.py, consistency.py (CR, bCR, zCR), freezed.py: techniques on that
                   interface
  registry.py      those techniques in hook order (`REGISTRY`); `enabled(config)` builds and checks them

This file imports nothing, so the modules above import each other without a cycle through the package.
"""
