"""pairing.py: which towers are text, which pairs are evaluated, which metric selects."""

from __future__ import annotations

import warnings

import pytest

from contrastkit.config import config_from_dict
from contrastkit.pairing import eval_pairs, is_text_tower, select_metric, text_towers


def _cfg(towers: dict[str, str], objectives=None, **train):
    """Towers given as name -> input column; one CLIP objective over them by default."""
    names = list(towers)
    return config_from_dict(
        {
            "data": {"manifest": "m.jsonl"},
            "model": {"towers": {t: {"streams": {c: {"type": "cnn"}}} for t, c in towers.items()}},
            "loss": {"objectives": objectives or [{"type": "clip", "towers": names[:2]}]},
            "train": train,
        }
    )


@pytest.mark.parametrize(
    ("towers", "first"),
    [
        ({"image": "image", "text": "text"}, ("text", "image")),
        # The tower *name* plays no part: a `report` tower reading text is the text side,
        # and a tower named `text` reading images is not (the old default_monitor chose
        # video -> report here while `contrastkit eval` showed report -> video).
        ({"video": "video", "report": "text"}, ("report", "video")),
        ({"text": "image", "caption": "text_caption"}, ("caption", "text")),
        ({"keypoints": "sequence", "features": "features"}, ("keypoints", "features")),
    ],
)
def test_text_tower_queries_first_and_both_directions(towers, first) -> None:
    cfg = _cfg(towers)
    assert eval_pairs(cfg) == [first, first[::-1]]
    assert select_metric(cfg) == f"val/{first[0]}_to_{first[1]}/R@1"


def test_text_towers_follow_share() -> None:
    cfg = config_from_dict(
        {
            "data": {"manifest": "m.jsonl"},
            "model": {
                "towers": {
                    "doc": {"streams": {"text": {"type": "text"}}},
                    "code": {"share": "doc"},
                    "image": {"streams": {"image": {"type": "cnn"}}},
                    "mixed": {"streams": {"image": {"type": "cnn"}, "text": {"type": "text"}}},
                }
            },
            "loss": {"objectives": [{"type": "clip", "towers": ["image", "doc"]}]},
        }
    )
    assert text_towers(cfg) == ["doc", "code"]
    assert not is_text_tower(cfg, "mixed")


def test_one_tower_objective_is_leave_one_out() -> None:
    cfg = _cfg({"chart": "image"}, objectives=[{"type": "triplet", "towers": ["chart"]}])
    assert eval_pairs(cfg) == [("chart", "chart")]
    assert select_metric(cfg) == "val/chart_to_chart/R@1"


def test_explicit_pairs_and_metric_win() -> None:
    cfg = _cfg(
        {"image": "image", "text": "text"},
        select_metric="val/image_to_text/R@5",
    )
    cfg.eval.pairs = [("image", "text")]
    assert eval_pairs(cfg) == [("image", "text")]
    assert select_metric(cfg) == "val/image_to_text/R@5"


def test_no_val_split_selects_nothing() -> None:
    cfg = _cfg({"image": "image", "text": "text"})
    cfg.data.val_split = None
    assert select_metric(cfg) is None


def test_train_monitor_is_a_deprecated_alias() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = _cfg(
            {"image": "image", "text": "text"},
            monitor="val/image_to_text/R@1",
            monitor_mode="min",
        )
    assert cfg.train.select_metric == "val/image_to_text/R@1"
    assert cfg.train.select_mode == "min"
    assert any("train.monitor is deprecated" in str(w.message) for w in caught)
    with pytest.raises(Exception, match="train.select_metric only"):
        _cfg({"image": "image", "text": "text"}, monitor="a", select_metric="b")
