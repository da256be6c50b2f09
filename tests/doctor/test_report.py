from __future__ import annotations

import matplotlib.image
from rich.console import Console

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.report import curves_figure, plot_curves, print_findings

SIGNALS = [
    {
        "step": s,
        "grad_norm/towers.image.encoders.image": 1.0 / (s + 1),
        "grad_norm/towers.image.projection": 0.5,
        "align/pos_sim": 0.1 * s,
        "align/neg_sim": 0.0,
        "align/gap": 0.1 * s,
        "loss/contrastive": 4 - s,
        "weight/contrastive": 1.0,
        "loss/captioning": 2.0,
        "weight/captioning": 0.5,
        "contrastive/logit_scale": 14 + s,
        "embed_drift/image/drift": 0.01 * s,
        "param_drift/towers.image.encoders.image": 0.001 * s,
        "grad_ratio/backbone_head": 2.0 / (s + 1),
    }
    for s in range(4)
]


def test_curves_have_six_labelled_panels(tmp_path):
    fig = curves_figure(SIGNALS)
    assert len(fig.axes) == 6
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() == "step" and ax.get_ylabel()
        assert ax.get_legend() is not None
    weighted = {line.get_label(): list(line.get_ydata()) for line in fig.axes[2].get_lines()}
    assert weighted["captioning"] == [1.0] * 4  # weight 0.5 x loss 2.0
    path = plot_curves(SIGNALS, tmp_path / "training_curves.png")
    h, w = matplotlib.image.imread(path).shape[:2]
    assert w >= 1000 and h >= 600


def test_empty_panels_still_render(tmp_path):
    fig = curves_figure([{"step": 0, "loss/total": 1.0}])
    assert len(fig.axes) == 6 and fig.axes[0].get_legend() is None


def test_print_findings_and_html(tmp_path):
    f = Finding(
        "aux_dominates_loss",
        "warning",
        {"term": "captioning", "share": 0.8},
        "it dominates",
        {"loss.captioning.weight": 0.25},
    )
    console = Console(record=True, width=160)
    print_findings([f], console)
    text = console.export_text()
    assert (
        "aux_dominates_loss" in text
        and "loss.captioning.weight=0.25" in text
        and "share=0.8" in text
    )
