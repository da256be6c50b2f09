"""The model a run trains: its tokenizer, input shapes, initial weights and teacher.

`app/run.py` calls these in order: tokenizer and input specs before `build_model`, then
`init_from` (after the at-start random-weights reference is copied), and the distillation
teacher once the model sits on its device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from contrastkit.app.zero_shot import tokenizer_texts
from contrastkit.config import Config
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.checkpoint import load_run, state_tensors
from contrastkit.train.ema import EMA, TeacherHook

log = logging.getLogger(__name__)


def run_tokenizer(cfg: Config, train_set: Any, run_dir: Path, resume: str | None) -> Any:
    """The run's own tokenizer when resuming, else a new one built from the train split's
    texts (saved once validated; a resume never gathers the texts)."""
    from contrastkit.models import build_tokenizer, load_tokenizer

    folder = run_dir / "tokenizer"
    if resume and folder.is_dir():
        return load_tokenizer(folder)
    tokenizer = build_tokenizer(cfg.model.tokenizer, tokenizer_texts(train_set))
    _warn_no_words(tokenizer, cfg.model.tokenizer.vocab_size)
    return tokenizer


def _warn_no_words(tokenizer: Any, asked: int) -> None:
    """The built-in tokenizer first takes every character (twice: word start and glued);
    a `vocab_size` at or below that leaves no room for a single word, silently."""
    from contrastkit.models.tokenizer import GLUE, SPECIALS

    vocab = getattr(tokenizer, "vocab", None)  # None: a Hugging Face tokenizer brings its own
    if vocab is None or asked > len(vocab):  # room was left: the texts had no longer words
        return
    if any(len(t.removeprefix(GLUE)) > 1 for t in vocab[len(SPECIALS) :]):
        return
    log.warning(
        "model.tokenizer.vocab_size %d is not above the %d character tokens the built-in "
        "tokenizer always holds, so it learned no words and reads text letter by letter; "
        "raise it above %d plus the words you want (e.g. %d)",
        asked,
        len(vocab),
        len(vocab),
        len(vocab) + 2000,
    )


def run_input_specs(bundle: Any, train_split: str) -> dict[str, tuple[int, ...]]:
    """Input shapes from the train split; variable-length token grids take the longest row
    of any split, so evaluation never meets more tokens than the model has positions for."""
    specs = dict(bundle.splits[train_split].input_specs())
    for name, dataset in bundle.splits.items():
        if name == train_split:
            continue
        for column, shape in dataset.input_specs().items():
            if column == "features" and len(shape) == 2 and column in specs:
                specs[column] = (max(specs[column][0], shape[0]), shape[1])
    return specs


def init_from(model: nn.Module, source: str) -> None:
    """Load model weights from a run dir (its best checkpoint) or a checkpoint folder, non-strictly."""
    path = Path(source)
    path = (
        ckpt_dir.resolve_checkpoint(path, "best")
        if (path / "config.yaml").exists()
        else ckpt_dir.resolve_checkpoint(path.parent, path)
    )
    tensors, _ = ckpt_files.load_checkpoint(path)
    result = model.load_state_dict(state_tensors.sub_state(tensors, "model"), strict=False)
    log.info(
        "model.init_from %s: %d missing keys %s, %d unexpected keys %s",
        path,
        len(result.missing_keys),
        result.missing_keys[:5],
        len(result.unexpected_keys),
        result.unexpected_keys[:5],
    )


def distillation_teacher(cfg: Config, model: nn.Module) -> tuple[EMA | None, Callable | None]:
    """`loss.distillation`'s (EMA, teacher hook): an EMA copy of the model, or a frozen
    teacher loaded from a run; (None, None) without distillation."""
    dcfg = cfg.loss.distillation
    if dcfg is None:
        return None, None
    if dcfg.source == "ema":
        ema = EMA(model, dcfg.ema_decay)
        return ema, TeacherHook(ema.model)
    assert dcfg.teacher is not None  # DistillationConfig requires it for source: teacher
    teacher = load_run(dcfg.teacher, "best", with_data=False).model.to(
        next(model.parameters()).device
    )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return None, TeacherHook(teacher)
