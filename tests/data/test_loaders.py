from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastkit.config import DataConfig
from contrastkit.data import build_datasets, build_loader
from contrastkit.errors import ConfigError
from helpers.manifests import WRITERS, rich_rows, write_jsonl


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_to_batches(media: Path, fmt: str) -> None:
    path = WRITERS[fmt](media / f"m.{fmt}", rich_rows())
    cfg = DataConfig(manifest=str(path), image={"size": 8}, video={"frames": 2, "size": 4})
    bundle = build_datasets(cfg)
    assert sorted(bundle.splits) == ["train", "val"] and bundle.group_names == ["g0", "r2"]
    batch = next(iter(build_loader(bundle.splits["train"], cfg, train=False, seed=0)))
    assert batch["ids"] == ["r0", "r1"] and batch["text"] == ["first", "second"]
    assert batch["group_ids"].tolist() == [0, 0]  # one group -> one id
    assert batch["label"].tolist() == [0, 1]
    assert batch["image"].shape == (2, 1, 8, 8) and batch["video"].shape == (2, 2, 1, 4, 4)
    assert batch["sequence"].shape == (2, 5, 4, 2)
    assert batch["sequence_mask"].sum(1).tolist() == [3, 5]
    assert batch["features"].shape == (2, 3, 6) and batch["features_mask"].sum(1).tolist() == [2, 3]
    assert torch.equal(batch["attributes"], torch.tensor([[0.5, 1.0], [1.0, 2.0]]))
    val = next(iter(build_loader(bundle.splits["val"], cfg, train=False, seed=0)))
    assert val["group_ids"].tolist() == [1] and val["label"].tolist() == [-1]


def grouped_manifest(tmp_path: Path) -> Path:
    rows = [
        {"id": f"{g}-{k}", "group": g, "split": "val" if g == "z" else "train", "text": f"{g}{k}"}
        for g in ("b", "a", "z", "c", "d")
        for k in range(3)
    ]
    return write_jsonl(tmp_path / "m.jsonl", rows)


def test_group_ids_shared_across_splits_and_max_rows(tmp_path: Path) -> None:
    cfg = DataConfig(manifest=str(grouped_manifest(tmp_path)), max_rows=4)
    bundle = build_datasets(cfg)
    assert bundle.group_names == ["a", "b", "c", "d", "z"]
    assert bundle.splits["train"].group_ids.tolist() == [1, 1, 1, 0]
    assert bundle.splits["val"].group_ids.tolist() == [4, 4, 4]


def test_train_loader_groups_resume_and_ranks(tmp_path: Path) -> None:
    cfg = DataConfig(
        manifest=str(grouped_manifest(tmp_path)),
        batch_size=4,
        sampler={"type": "groups", "groups_per_batch": 2, "members_per_group": 2},
    )
    train = build_datasets(cfg).splits["train"]
    full = list(build_loader(train, cfg, train=True, seed=5, epoch=1))
    assert len(full) == len(build_loader(train, cfg, train=True, seed=5, epoch=1)) == 2
    for batch in full:
        assert sorted(batch["group_ids"].tolist()).count(batch["group_ids"][0].item()) == 2
    tail = list(build_loader(train, cfg, train=True, seed=5, epoch=1, start_batch=1))
    assert [b["ids"] for b in tail] == [full[1]["ids"]]
    parts = [
        list(build_loader(train, cfg, train=True, seed=5, epoch=1, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert [a["ids"] + b["ids"] for a, b in zip(*parts, strict=True)] == [b["ids"] for b in full]
    with pytest.raises(ConfigError, match="divisible"):
        build_loader(train, cfg, train=True, seed=0, world_size=3)


def test_eval_loader_is_sequential_and_complete(tmp_path: Path) -> None:
    cfg = DataConfig(manifest=str(grouped_manifest(tmp_path)), eval_batch_size=5)
    train = build_datasets(cfg).splits["train"]
    loader = build_loader(train, cfg, train=False, seed=0)
    assert len(loader) == 3
    assert torch.cat([b["index"] for b in loader]).tolist() == list(range(12))


def test_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown builtin dataset 'nope'"):
        build_datasets(DataConfig(manifest="builtin:nope", cache_dir=str(tmp_path)))
