"""`contrastkit export RUN_DIR --out DIR`: each Hugging Face text tower of a run as a
standalone sentence-transformers folder (`SentenceTransformer(DIR/<tower>)`).

A folder holds the tower's transformer with any LoRA adapters merged into its weights, its
own tokenizer, the pooling contrastkit used (mean over real tokens, or CLS), the projection
as a `Dense` layer (identity activation; none when the tower has no projection) and
`Normalize`, so `encode` gives the embeddings contrastkit computes, without contrastkit.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from contrastkit.errors import ConfigError, RunDirError

_INSTALL_HINT = "pip install contrastkit[text]"


def _text_encoder(tower: Any) -> Any | None:
    from contrastkit.models.encoders.hf_text import HFTextEncoder

    encoders = list(tower.encoders.values())
    if len(encoders) == 1 and tower.fusion is None and isinstance(encoders[0], HFTextEncoder):
        return encoders[0]
    return None


def _dense(projection: nn.Module, tower: str) -> list[nn.Module]:
    """The projection as sentence-transformers Dense modules ([] for `none`)."""
    from sentence_transformers.sentence_transformer.modules import Dense

    if getattr(projection, "kind", "linear") == "none":
        return []
    if getattr(projection, "residual", None) is not None:
        raise ConfigError(
            f"model.towers.{tower}.projection: an MLP with init identity (map + residual MLP) "
            "has no sentence-transformers equivalent; export supports none, linear and mlp"
        )
    net = projection.get_submodule("net")
    layers = (
        [net]
        if isinstance(net, nn.Linear)
        else [m for m in net.children() if isinstance(m, nn.Linear)]
    )
    out: list[nn.Module] = []
    for i, layer in enumerate(layers):
        act: nn.Module = nn.GELU() if i < len(layers) - 1 else nn.Identity()
        out.append(
            Dense(
                layer.in_features,
                layer.out_features,
                bias=layer.bias is not None,
                activation_function=act,
                init_weight=layer.weight.detach().clone(),
                init_bias=None if layer.bias is None else layer.bias.detach().clone(),
            )
        )
    return out


def export_tower(tower: Any, name: str, out: Path) -> Path:
    """Write one text tower to `out` as a sentence-transformers folder; returns `out`."""
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )
    except ImportError:
        raise ConfigError(f"export needs `sentence-transformers`: {_INSTALL_HINT}") from None
    from contrastkit.train.lora import merge_lora

    enc = _text_encoder(tower)
    assert enc is not None
    hf: Any = merge_lora(copy.deepcopy(enc.model)).cpu().eval()  # a transformers PreTrainedModel
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        hf.save_pretrained(tmp)
        enc.hf_tokenizer.save_pretrained(tmp)
        word = Transformer(tmp, max_seq_length=enc.max_length)
        pooling = Pooling(int(enc.width), pooling_mode="cls" if enc.pool == "cls" else "mean")
        modules = [word, pooling, *_dense(tower.projection, name), Normalize()]
        SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def export_run(run_dir: str | Path, out: str | Path, checkpoint: str = "best") -> list[Path]:
    """Export every Hugging Face text tower of a run to `out/<tower>`; returns the folders.

    Raises:
        RunDirError: the run is missing or damaged.
        ConfigError: the run has no Hugging Face text tower.
    """
    from contrastkit.train.checkpoint import load_run

    run = load_run(run_dir, checkpoint=checkpoint, with_data=False)
    towers = {n: t for n, t in run.model.towers.items() if _text_encoder(t) is not None}
    if not towers:
        raise ConfigError(
            f"{run_dir}: no tower is a single hf_text / minilm encoder; export writes "
            "sentence-transformers folders for those only"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, tower in towers.items():
        target = out / name
        if target.exists():
            if not target.is_dir():
                raise RunDirError(f"--out: {target} exists and is not a folder")
            shutil.rmtree(target)
        written.append(export_tower(tower, name, target))
    return written
