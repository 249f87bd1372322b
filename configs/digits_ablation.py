r"""A small ablation study on the embedded digits (the paper's table 1 in miniature).

4 variants × 2 seeds of a SHORT digits run (200 steps, evaluation once at the end on 1,000 samples):
baseline, no shared embedding, no skip-z, no orthogonal regularisation. On 2 shared CPU cores the whole
study takes about 25 minutes. At this length the differences between variants are mostly seed noise.
Command: python -m biggan.ablate configs/digits_ablation.py --seeds 2 --workdir workdirs/digits_ablation
Smoke run: python -m biggan.ablate configs/digits_ablation.py:runlocal --seeds 1 --workdir /tmp/ablation_smoke
"""

import os

from biggan import config as cfg
from biggan.ablate import variant


def _digits_config(arg):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.py")
    return cfg.load_config_file(path + (f":{arg}" if arg else ""))


def get_config(arg=None):
    c = _digits_config(arg)
    if arg != "runlocal":  # the runlocal digits config is already a 2-step smoke run
        steps = 200
        c.train.num_steps = steps
        c.log.update(
            log_every=25,
            sv_every=0,
            sample_every=steps,
            checkpoint_every=100,
            keep_checkpoints=1,
            eval_every=steps,
            best_metric="",
        )
        c.eval.num_samples = 1000
        c.sample.update(standing_stats_batches=10, standing_stats_batch_size=100)
    c.ablation = dict(
        seeds=2,
        metrics=("fid", "classifier_accuracy", "is", "d_loss", "g_loss"),
        variants=dict(
            baseline=variant({}),
            no_shared_embedding=variant({"model.shared": False}),
            no_skip_z=variant({"model.hier": False}),
            no_ortho_reg=variant({"train.ortho_beta": 0.0}),
        ),
    )
    return c
