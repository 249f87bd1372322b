"""The techniques on the interface of base.py, in the order the train step calls their hooks."""
from __future__ import annotations

from biggan.techniques import ada, consistency, diffaugment, freezed, lecam
from biggan.techniques.base import Technique

REGISTRY = (diffaugment.DiffAugment, ada.ADA, lecam.LeCam, consistency.ConsistencyRegularisation,
            consistency.LatentConsistency, freezed.FreezeD)


def enabled(config) -> list[Technique]:
    """The switched-on techniques of `config.train`, built and checked (ValueError names key and fix)."""
    active = [cls(config) for cls in REGISTRY if cls.enabled(config.train)]
    for technique in active:
        technique.check()
    if sum(technique.uses("augment") for technique in active) > 1:
        raise ValueError("more than one technique augments D's inputs "
                         f"({', '.join(t.name for t in active if t.uses('augment'))}); switch all but one off")
    augmenting = [technique.name for technique in active if technique.uses("augment")]
    if augmenting and config.train.get("pacgan_pack", 1) > 1:
        raise ValueError(f"{augmenting[0]} augments each image D scores, but train.pacgan_pack="
                         f"{config.train.pacgan_pack} stacks several on channels; switch one of them off")
    return active
