"""Frozen-feature cache: cached = uncached exactly, encoded once, read back from disk,
invalidated by new weights or new rows; which towers the app locks; one real run."""

import pytest
import torch
from torch import nn

from contrastkit.app.lit import locked_encoders
from contrastkit.app.run import train
from contrastkit.config import config_from_dict
from contrastkit.models.feature_cache import FeatureCache, attach_cache
from contrastkit.models.outputs import EncoderOutput
from contrastkit.models.projection import Projection
from contrastkit.models.tower import Tower
from helpers.configs import tiny_doc_code_model


class NoisyEncoder(nn.Module):
    """Vector encoder with dropout: train-mode outputs are random, eval-mode ones are not."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 8), nn.Dropout(0.5), nn.Linear(8, 8))
        self.width = 8
        self.calls = 0

    def forward(self, x, mask=None):
        self.calls += len(x)
        h = self.net(x)
        return EncoderOutput(tokens=h[:, None], pooled=h, mask=None)


def _tower(seed=0):
    torch.manual_seed(seed)
    enc = NoisyEncoder()
    return Tower(nn.ModuleDict({"features": enc}), None, Projection(8, 4)), enc


def test_cached_equals_uncached_and_encodes_each_input_once(tmp_path):
    tower, enc = _tower()
    x = torch.randn(10, 6)
    tower.eval()
    reference = tower({"features": x}, {}).embedding
    enc.calls = 0
    cache = FeatureCache(tmp_path, enc)
    attach_cache(tower, cache)
    tower.train()  # a locked tower is encoded in eval mode: no dropout
    first = tower({"features": x}, {}).embedding
    assert torch.equal(first, reference)
    assert cache.encoded == 10 and enc.calls == 10
    again = tower({"features": x[[3, 1, 3]]}, {}).embedding
    assert torch.equal(again, reference[[3, 1, 3]])
    assert enc.calls == 10  # all hits
    cache.flush()
    # A new process: the folder's memory-mapped parts answer without the encoder.
    reread = FeatureCache(tmp_path, enc)
    attach_cache(tower, reread)
    assert torch.equal(tower({"features": x}, {}).embedding, reference)
    assert reread.encoded == 0 and enc.calls == 10


def test_new_rows_and_new_weights_miss(tmp_path):
    tower, enc = _tower()
    x = torch.randn(6, 6)
    cache = FeatureCache(tmp_path, enc)
    attach_cache(tower, cache)
    tower({"features": x}, {})
    cache.flush()
    changed = x.clone()
    changed[2, 0] += 1.0  # one manifest row edited
    tower({"features": changed}, {})
    assert cache.encoded == 7  # only the edited row was encoded again
    with torch.no_grad():
        enc.net[0].weight[0, 0] += 1e-3
    moved = FeatureCache(tmp_path, enc)
    assert moved.folder != cache.folder and len(moved) == 0
    attach_cache(tower, moved)
    tower.eval()
    out = tower({"features": x}, {}).embedding
    attach_cache(tower, None)
    assert torch.equal(out, tower({"features": x}, {}).embedding)  # the new weights' features
    assert moved.encoded == 6


def test_text_inputs_are_keyed_by_content(tmp_path):
    class Length(nn.Module):
        width = 2

        def forward(self, x, mask=None):
            v = torch.tensor([[len(s), s.count("a")] for s in x], dtype=torch.float32)
            return EncoderOutput(tokens=v[:, None], pooled=v)

    cache = FeatureCache(tmp_path, Length())
    out = cache.features(["aa", "b", "aa"], None, torch.device("cpu"))
    assert out.pooled.tolist() == [[2, 2], [1, 0], [2, 2]]
    assert cache.encoded == 2


def _cfg(freeze, phases=(), **model):
    return config_from_dict(
        {
            "data": {"manifest": "builtin:pydoc-code", "max_rows": 48, "batch_size": 16},
            "model": {**tiny_doc_code_model(), **model},
            "loss": {"objectives": [{"type": "clip", "towers": ["doc", "code"]}]},
            "train": {
                "epochs": 2,
                "progress": "none",
                "device": "cpu",
                "freeze": list(freeze),
                "phases": list(phases),
            },
            "eval": {"splits": ["val"]},
        }
    )


def test_which_towers_are_locked():
    from contrastkit.models import build_model
    from contrastkit.models.tokenizer import BuiltinTokenizer

    tok = BuiltinTokenizer.train(["def f(x): return x"] * 4, vocab_size=40, max_length=8)
    specs = {"text": (), "text_code": ()}
    lit = _cfg(["towers.doc.encoders"])
    model = build_model(lit.model, tokenizer=tok, input_specs=specs)
    assert list(locked_encoders(model, lit)) == ["doc"]
    unfrozen = _cfg(
        ["towers.doc.encoders"],
        phases=[{"until_epoch": 1}, {"unfreeze": ["towers.doc.encoders.text"]}],
    )
    assert locked_encoders(model, unfrozen) == {}
    off = _cfg(["towers.doc.encoders"])
    off.train.feature_cache = False
    assert locked_encoders(model, off) == {}
    captioned = _cfg(["towers.doc.encoders"], captioning={"tower": "doc", "width": 16, "depth": 1})
    assert locked_encoders(model, captioned) == {}


@pytest.mark.slow
def test_both_frozen_run_encodes_every_input_once(tmp_path):
    cfg = _cfg(["towers.doc.encoders", "towers.code.encoders"])
    summary = train(cfg, tmp_path / "run")
    # Two epochs + val evaluations: each encoder ran once per unique train/val input.
    assert summary["feature_cache/0/encoded"] == 48 + 48
    assert summary["feature_cache/1/encoded"] == 48 + 48
    parts = list((tmp_path / "run" / "feature_cache").glob("*/part-*.npy"))
    assert len(parts) >= 2
