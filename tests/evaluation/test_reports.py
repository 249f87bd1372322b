"""Result files: the training-curves plot of the README's pictures
(scripts/make_readme_pictures.py)."""

import numpy as np
import pytest
from PIL import Image

from biggan.evaluation import reports


def test_plot_curves_draws_one_panel_per_present_group(tmp_path):
    rows = [{"step": s, "d_loss": 1.0 / s, "g_loss": 2.0 / s} for s in range(1, 41)]
    rows += [{"step": s, "fid": 100.0 / s, "classifier_accuracy": s / 40} for s in (10, 20, 40)]
    reports.plot_curves(tmp_path / "three.png", rows)
    reports.plot_curves(tmp_path / "one.png", rows, panels=(("d_loss", "g_loss"), ("not_logged",)))
    three, one = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("three", "one"))
    # 4 inches per panel, 3.2 high (plot_curves' figure size): the width ratio counts the panels
    # drawn.
    assert three.shape[1] / three.shape[0] == pytest.approx(12 / 3.2, rel=0.02)
    assert one.shape[1] / one.shape[0] == pytest.approx(4 / 3.2, rel=0.02)
    with pytest.raises(ValueError, match="no rows hold any of"):
        reports.plot_curves(tmp_path / "none.png", rows, panels=(("is",),))
