r"""Limited data: the data-efficient techniques on a fixed 10% of the embedded digits.

180 of the 1,797 digits (the first 180, every class 16–20 times; the same images for every variant and
seed: data.max_examples) train the digits BigGAN for 1,500 steps of one D step on 16 real images (24,000
real images: 133 passes over the 180). Every 300 steps the EMA generator is scored on 1,000 samples against
ALL 1,797 digits: the digits-classifier Fréchet distance (FD) and the accuracy with which that classifier
recognises the requested class. Variants (Zhao et al. 2020, Karras et al. 2020, Tseng et al. 2021): baseline;
diffaug (DiffAugment translation,cutout: the policy of the authors' BigGAN-CIFAR scripts, data-efficient-gans
DiffAugment-biggan-cifar/scripts); ada (target 0.6, p moving by at most 1 per 10k real images: ada_kimg 10, as
a 24k-image run needs; the authors' 500 is for millions of images); lecam (λ 0.3 with the anchors' decay 0.9
of google/lecam-gan's BigGAN-CIFAR code, which switches the term on after 1,000 of its ~100k iterations; here
after 200 of 1,500, when digits.py's EMA starts too); diffaug_lecam. Two seeds each. Batch 16 and one D
step (digits.py: 32 and 2) quarter the cost of a step, so that ten runs fit in 90 minutes on 2 AMD EPYC
cores without AVX-512 (measured: 88 min for the study, 7 to 10 minutes a run); the default digits run needs
~1,500 of its steps before its samples are recognisable.
Command: python -m biggan.ablate configs/digits_limited.py --seeds 2 --workdir workdirs/digits_limited
Expected (docs/limited_data.md): results.md / results.csv with FD and accuracy at step 1,500, mean ± std over
2 seeds — ada FD 85.0 ± 3.1, accuracy 0.24 ± 0.07; baseline 92.8 ± 8.7, 0.27 ± 0.03; diffaug 95.6 ± 18,
0.18 ± 0.06; lecam 106.6 ± 14, 0.14 ± 0.02; diffaug_lecam 127.9 ± 38, 0.12 ± 0.02 (nothing converged yet) —
study_curves.png (both against the step) and study_samples.png; each run's time is in its result.json.
Smoke run: python -m biggan.ablate configs/digits_limited.py:runlocal --seeds 1 --workdir /tmp/limited_smoke
"""

import os

from biggan import config as cfg
from biggan.ablate import variant

SUBSET = 180  # 10% of sklearn's 1,797 digits
DIFFAUG = "translation,cutout"
LECAM = {"train.lecam_weight": 0.3, "train.lecam_decay": 0.9, "train.lecam_start": 200}


def get_config(arg=None):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py")
    c = cfg.load_config_file(path + (f":{arg}" if arg else ""))
    if arg != "runlocal":  # the runlocal digits config is already a 2-step smoke run
        steps = 1500
        c.data.max_examples = SUBSET
        c.train.update(num_steps=steps, batch_size=16, num_d_steps=1)
        c.log.update(
            log_every=50,
            sv_every=0,
            sample_every=steps,
            checkpoint_every=300,
            keep_checkpoints=1,
            eval_every=300,
            best_metric="",
        )
        c.eval.num_samples = 1000
        c.sample.update(standing_stats_batches=10, standing_stats_batch_size=100)
    c.ablation = dict(
        seeds=2,
        metrics=("fid", "classifier_accuracy", "d_loss", "g_loss"),
        variants=dict(
            baseline=variant({}),
            diffaug=variant({"train.diffaug_policy": DIFFAUG}),
            ada=variant({"train.ada_target": 0.6, "train.ada_kimg": 10.0}),
            lecam=variant(LECAM),
            diffaug_lecam=variant({"train.diffaug_policy": DIFFAUG, **LECAM}),
        ),
    )
    return c
