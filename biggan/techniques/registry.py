"""The techniques on the interface of base.py, in the order the train step calls their hooks (within
a hook, registry order: e.g. D's loss adds R1, DRAGAN, WGAN-GP, LeCam, CR, zCR in this order; G's
feature matching, then zCR)."""

from __future__ import annotations

from biggan.techniques import (
    ada,
    consistency,
    diffaugment,
    dropout,
    feature_matching,
    freezed,
    historical_averaging,
    instance_noise,
    labels,
    lecam,
    pacgan,
    penalties,
    replay,
    sigma0,
)
from biggan.techniques.base import Technique

REGISTRY = (
    labels.LabelSmoothing,
    labels.NoisyLabels,
    replay.ExperienceReplay,
    diffaugment.DiffAugment,
    ada.ADA,
    instance_noise.InstanceNoise,
    pacgan.PacGAN,
    dropout.FeatureDropout,
    penalties.R1,
    penalties.DRAGAN,
    penalties.WGANGP,
    feature_matching.FeatureMatching,
    lecam.LeCam,
    consistency.ConsistencyRegularisation,
    consistency.LatentConsistency,
    sigma0.Sigma0Regulariser,
    sigma0.Sigma0Clamp,
    historical_averaging.HistoricalAveragingD,
    historical_averaging.HistoricalAveragingG,
    freezed.FreezeD,
)


def config_keys() -> dict[str, object]:
    """{"section.key": default} of every technique's keys, in registry order. Two techniques may
    share a key (historical averaging of D and of G) only with one default."""
    keys = {}
    for cls in REGISTRY:
        for key, default in cls.config_keys.items():
            if keys.setdefault(key, default) != default:
                raise ValueError(
                    f"{cls.__name__} declares {key}={default!r}, another technique {keys[key]!r}; "
                    "a shared key has one default"
                )
    return keys


def enabled(config) -> list[Technique]:
    """The switched-on techniques of `config`, built and checked (ValueError names key and fix)."""
    active = [cls(config) for cls in REGISTRY if cls.enabled(config)]
    for technique in active:
        technique.check()
    augmenting = [technique.name for technique in active if technique.uses("augment")]
    if len(augmenting) > 1:
        raise ValueError(
            f"more than one technique augments D's inputs ({', '.join(augmenting)}); switch all but "
            f"one off"
        )
    if augmenting and any(technique.uses("d_view") for technique in active):
        raise ValueError(
            f"{augmenting[0]} augments each image D scores, but train.pacgan_pack="
            f"{config.train.pacgan_pack} stacks several on channels; switch one of them off"
        )
    return active
