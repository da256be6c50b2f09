"""Text tokenizers: a deterministic built-in word tokenizer and a Hugging Face wrapper.

The built-in tokenizer exists because clinical and technical captions are full of numbers
("70% stenosis", "3.5 mm") that sub-word vocabularies mangle. Numbers are split digit by
digit, so any number survives `encode -> decode` exactly, and words outside the vocabulary
fall back to characters, so nothing is lost (only case and repeated whitespace are).

A token that follows the previous one with no whitespace in between carries a `##` prefix
(as in WordPiece), which is how `decode` puts "70%" back together instead of "7 0 %".
"""

from __future__ import annotations

import json
import re
import string
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from torch import Tensor
from typing_extensions import override

from contrastkit.config import TokenizerConfig
from contrastkit.errors import ConfigError, RunDirError

TOKENIZER_FILE = "tokenizer.json"
GLUE = "##"  # marks a token written directly after the previous one (no space)
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
# Single digits, runs of letters, or one other visible character.
_PIECE = re.compile(r"\d|[^\W\d_]+|[^\w\s]|_")
# Characters always in the vocabulary so that unseen words still round-trip.
_BASE_CHARS = string.ascii_lowercase + string.digits + string.punctuation


class Tokenizer(ABC):
    """What the model and the engine need from a tokenizer.

    Attributes:
        max_length: default sequence length (BOS and EOS included) for `encode`.
    """

    max_length: int

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids (the embedding table size)."""

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """Id used to pad rows to a common length."""

    @property
    @abstractmethod
    def bos_id(self) -> int:
        """Id put before the first token of every row."""

    @property
    @abstractmethod
    def eos_id(self) -> int:
        """Id put after the last token of every row."""

    @abstractmethod
    def encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[Tensor, Tensor]:
        """Token ids with BOS/EOS, padded with `pad_id` to the longest row.

        Shape:
            ids: B x L (long), mask: B x L (bool, True = real token); L <= max_length.
        """

    @abstractmethod
    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Text of each row, stopping at the first EOS and skipping special tokens."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the tokenizer to `directory` (read back with `load_tokenizer`)."""


def _pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows) if rows else 0
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask


def _rows(ids: Tensor | Sequence[Sequence[int]]) -> list[list[int]]:
    return ids.tolist() if isinstance(ids, Tensor) else [list(r) for r in ids]


def _pieces(text: str) -> list[str]:
    """Lower-cased pieces; `##` marks a piece glued to the previous one."""
    out, end = [], None
    for m in _PIECE.finditer(text.lower()):
        out.append(GLUE + m.group() if m.start() == end else m.group())
        end = m.end()
    return out


class BuiltinTokenizer(Tokenizer):
    """Word-level tokenizer with digit-by-digit numbers and character fallback.

    Args:
        vocab: token strings; the first four are `<pad> <bos> <eos> <unk>`.
        max_length: default length for `encode`.
    """

    def __init__(self, vocab: Sequence[str], max_length: int = 48) -> None:
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocab must start with {SPECIALS}")
        self.vocab = list(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        self.max_length = max_length

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, max_length: int = 48) -> BuiltinTokenizer:
        """Build the vocabulary from `texts`: specials, every character (both glue forms),
        then the most frequent words until `vocab_size` (ties broken alphabetically)."""
        counts: Counter[str] = Counter()
        chars = set(_BASE_CHARS)
        for text in texts:
            for piece in _pieces(text):
                word = piece.removeprefix(GLUE)
                chars.update(word)
                if len(word) > 1:
                    counts[piece] += 1
        char_tokens = sorted(chars)
        vocab = list(SPECIALS) + char_tokens + [GLUE + c for c in char_tokens]
        room = max(vocab_size - len(vocab), 0)
        words = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:room]
        return cls(vocab + [w for w, _ in words], max_length=max_length)

    @property
    @override
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    @override
    def pad_id(self) -> int:
        return 0

    @property
    @override
    def bos_id(self) -> int:
        return 1

    @property
    @override
    def eos_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        """Id of a piece outside the vocabulary."""
        return 3

    def _piece_ids(self, piece: str) -> list[int]:
        if piece in self.index:
            return [self.index[piece]]
        glued = piece.startswith(GLUE)
        word = piece.removeprefix(GLUE)
        # Character fallback: the first char keeps the piece's glue, the rest are glued.
        chars = [(GLUE + c if glued or i else c) for i, c in enumerate(word)]
        return [self.index.get(c, self.unk_id) for c in chars]

    @override
    def encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[Tensor, Tensor]:
        length = max_length or self.max_length
        if length < 2:
            raise ValueError(f"max_length must leave room for BOS and EOS, got {length}")
        rows = []
        for text in texts:
            body = [i for p in _pieces(text) for i in self._piece_ids(p)]
            rows.append([self.bos_id, *body[: length - 2], self.eos_id])
        return _pad(rows, self.pad_id)

    @override
    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        texts = []
        for row in _rows(ids):
            out = ""
            for i in row:
                if i == self.eos_id:
                    break
                if i < len(SPECIALS) or i >= len(self.vocab):
                    continue
                tok = self.vocab[i]
                if tok.startswith(GLUE):
                    out += tok[len(GLUE) :]
                else:
                    out += (" " if out else "") + tok
            texts.append(out)
        return texts

    @override
    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        data = {"type": "builtin", "max_length": self.max_length, "vocab": self.vocab}
        (path / TOKENIZER_FILE).write_text(json.dumps(data, ensure_ascii=False))


def _missing_transformers() -> ConfigError:
    return ConfigError(
        "Hugging Face text models need the `transformers` package: pip install contrastkit[text]"
    )


class HFTokenizer(Tokenizer):
    """A local Hugging Face tokenizer directory (never downloads).

    BERT-like tokenizers have no BOS/EOS: `[CLS]` / `[SEP]` play those roles.
    """

    def __init__(self, path: str | Path, max_length: int = 48) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise _missing_transformers() from None
        self.path = str(path)
        self.max_length = max_length
        try:
            self.hf = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"model.tokenizer.path: cannot load a Hugging Face tokenizer from {self.path}: {err}"
            ) from None

    @property
    @override
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    @override
    def pad_id(self) -> int:
        return int(self.hf.pad_token_id if self.hf.pad_token_id is not None else 0)

    @property
    @override
    def bos_id(self) -> int:
        tid = self.hf.bos_token_id if self.hf.bos_token_id is not None else self.hf.cls_token_id
        return int(tid)

    @property
    @override
    def eos_id(self) -> int:
        tid = self.hf.eos_token_id if self.hf.eos_token_id is not None else self.hf.sep_token_id
        return int(tid)

    @override
    def encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[Tensor, Tensor]:
        enc = self.hf(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )
        return enc["input_ids"].long(), enc["attention_mask"].bool()

    @override
    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        texts = []
        for row in _rows(ids):
            body = row[1:] if row and row[0] == self.bos_id else row
            if self.eos_id in body:
                body = body[: body.index(self.eos_id)]
            # One row of ids decodes to one string (the stubs also allow a batch's list).
            texts.append(cast(str, self.hf.decode(body, skip_special_tokens=True)).strip())
        return texts

    @override
    def save(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(path / "hf")
        data = {"type": "hf", "max_length": self.max_length, "path": "hf"}
        (path / TOKENIZER_FILE).write_text(json.dumps(data))


def build_tokenizer(cfg: TokenizerConfig, texts: Sequence[str]) -> Tokenizer:
    """The tokenizer `cfg` asks for; the built-in one is trained on `texts`."""
    if cfg.type == "hf":
        if not cfg.path:
            raise ConfigError("model.tokenizer.path is required for model.tokenizer.type: hf")
        return HFTokenizer(cfg.path, max_length=cfg.max_length)
    return BuiltinTokenizer.train(texts, cfg.vocab_size, max_length=cfg.max_length)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Read a tokenizer written by `Tokenizer.save`."""
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise RunDirError(f"no tokenizer at {path}")
    data = json.loads(path.read_text())
    if data.get("type") == "builtin":
        return BuiltinTokenizer(data["vocab"], max_length=int(data["max_length"]))
    if data.get("type") == "hf":
        return HFTokenizer(Path(directory) / data["path"], max_length=int(data["max_length"]))
    raise RunDirError(f"{path}: unknown tokenizer type {data.get('type')!r}")
