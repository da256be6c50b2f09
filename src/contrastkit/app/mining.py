"""Wiring of `data.hard_negatives`: which towers mine, with which model, and what the
doctor records about the result (the mining itself is `data/hard_negatives.py`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contrastkit.config import Config
from contrastkit.data.hard_negatives import HardNegativeMiner, MiningStats
from contrastkit.data.manifest import is_text_column
from contrastkit.errors import ConfigError
from contrastkit.protocols import EmbeddingModel, SplitDataset

log = logging.getLogger(__name__)

# Share of raw candidates scoring above their own positive beyond which the doctor warns:
# when most of a row's nearest other-group rows beat its labelled answer, they are more
# likely unlabelled duplicates (or the model does not know the task yet) than negatives.
ABOVE_POSITIVE_WARN = 0.5


def mining_towers(cfg: Config, model: Any) -> tuple[str, str]:
    """(query tower, gallery tower) of the objective that mines; the query reads text."""
    hn = cfg.data.hard_negatives
    assert hn is not None
    objectives = {o.name: o for o in cfg.loss.objectives}
    if not objectives:
        raise ConfigError("data.hard_negatives needs a contrastive objective in loss.objectives")
    name = hn.objective or cfg.loss.objectives[0].name
    if name not in objectives:
        raise ConfigError(
            f"data.hard_negatives.objective: no objective {name!r}; objectives: {sorted(objectives)}"
        )
    a, b = (list(objectives[name].towers) * 2)[:2]

    def has_text(tower: str) -> bool:
        return any(is_text_column(c) for c in model.tower_inputs(tower))

    if has_text(a):
        return a, b
    if has_text(b):
        return b, a
    raise ConfigError(
        f"data.hard_negatives: objective {name!r} has no tower with text (towers {a!r} reads "
        f"{model.tower_inputs(a)}, {b!r} reads {model.tower_inputs(b)}); mining ranks rows for "
        "a text query, so give the objective a text tower or remove data.hard_negatives"
    )


def _mining_model(cfg: Config, model: EmbeddingModel) -> EmbeddingModel:
    """`pretrained`: the run's own model (as it is when mining runs); else a RUN_DIR's best."""
    hn = cfg.data.hard_negatives
    assert hn is not None
    if hn.mine_with == "pretrained":
        return model
    from contrastkit.errors import RunDirError
    from contrastkit.train.checkpoint import load_run

    try:
        other = load_run(hn.mine_with, "best", with_data=False).model
    except RunDirError as err:
        raise ConfigError(f"data.hard_negatives.mine_with: {err}") from None
    return other.to(next(model.parameters()).device)


def build_miner(
    cfg: Config, model: EmbeddingModel, dataset: SplitDataset
) -> HardNegativeMiner | None:
    """The miner for `data.hard_negatives` over the train split (None when it is off)."""
    from contrastkit.eval.tower_embeddings import embed_tower

    hn = cfg.data.hard_negatives
    if hn is None:
        return None
    miner_model = _mining_model(cfg, model)
    query, gallery = mining_towers(cfg, miner_model)
    fixed = hn.mine_with != "pretrained"

    def embed(tower: str) -> Tensor:
        # `pretrained` re-mines with the model being trained; a RUN_DIR stays as loaded.
        m = miner_model if fixed else model
        emb = embed_tower(m, dataset, tower, batch_size=cfg.data.eval_batch_size)
        return emb.embeddings[emb.row_to_unique]

    return HardNegativeMiner(
        embed,
        query,
        gallery,
        torch.as_tensor(dataset.group_ids).numpy(),
        k=hn.k,
        skip_top=hn.skip_top,
        max_score_ratio=hn.max_score_ratio,
        every_epochs=hn.every_epochs,
    )


def mining_findings(history: list[tuple[int, MiningStats]]) -> list:
    """One finding per mining pass: the score gap (info), or a warning when most raw
    candidates scored above their own positive."""
    from contrastkit.doctor.findings import Finding

    out = []
    for epoch, stats in history:
        evidence = {"epoch": epoch, **stats.as_dict()}
        if stats.above_positive > ABOVE_POSITIVE_WARN:
            out.append(
                Finding(
                    code="hard_negatives_above_positive",
                    severity="warning",
                    evidence=evidence,
                    cause=(
                        f"{stats.above_positive:.0%} of the mined candidates score above their "
                        "own positive: the train split likely holds duplicates under different "
                        "groups, or the mining model does not know the task"
                    ),
                    fix={
                        "data.hard_negatives.max_score_ratio": 0.9,
                        "data.hard_negatives.skip_top": 5,
                    },
                    fix_note="de-duplicate the manifest, or mine with a trained RUN_DIR",
                )
            )
        else:
            out.append(
                Finding(
                    code="hard_negatives_mined",
                    severity="info",
                    evidence=evidence,
                    cause=(
                        f"kept {stats.mean_kept:.1f} negatives per row, {stats.score_gap:.3f} "
                        "below their positive on average"
                    ),
                )
            )
    return out


def record_mining(miner: HardNegativeMiner | None, path: Path) -> None:
    """Add the mining findings to the data doctor's findings file (read by the diagnosis)."""
    if miner is None or not miner.history:
        return
    from contrastkit.doctor.findings import read_findings, write_findings

    for epoch, stats in miner.history:
        log.info("hard negatives mined at epoch %d: %s", epoch, stats.as_dict())
    write_findings([*read_findings(path), *mining_findings(miner.history)], path)
