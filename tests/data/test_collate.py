from __future__ import annotations

import pytest
import torch

from contrastkit.data.collate import collate


def sample(i: int, t: int, n: int) -> dict:
    return {
        "index": i,
        "id": f"s{i}",
        "group_id": 10 + i // 2,
        "text": f"text {i}",
        "text_code": f"code {i}",
        "label": i - 1,
        "image": torch.full((1, 2, 2), float(i)),
        "sequence": torch.ones(t, 3, 2) * (i + 1),
        "features": torch.ones(n, 4),
        "attributes": torch.tensor([i, 2.0 * i]),
        "video": torch.zeros(2, 3, 1, 2, 2),
        "video_view_mask": torch.tensor([True, i == 0]),
    }


def test_batch_contract_with_padding_and_masks() -> None:
    batch = collate([sample(0, 2, 3), sample(1, 4, 1), sample(2, 1, 3)])
    assert batch["index"].tolist() == [0, 1, 2] and batch["ids"] == ["s0", "s1", "s2"]
    assert batch["group_ids"].tolist() == [10, 10, 11] and batch["group_ids"].dtype == torch.long
    assert batch["text"] == ["text 0", "text 1", "text 2"]
    assert batch["text_code"] == ["code 0", "code 1", "code 2"]
    assert batch["label"].tolist() == [-1, 0, 1]
    assert batch["image"].shape == (3, 1, 2, 2) and batch["image"][2].eq(2).all()
    assert batch["sequence"].shape == (3, 4, 3, 2)
    assert batch["sequence_mask"].tolist() == [
        [True, True, False, False],
        [True, True, True, True],
        [True, False, False, False],
    ]
    assert batch["sequence"][0, 2:].abs().sum() == 0 and batch["sequence"][0, :2].eq(1).all()
    assert batch["features"].shape == (3, 3, 4)
    assert batch["features_mask"].sum(dim=1).tolist() == [3, 1, 3]
    assert batch["attributes"].tolist() == [[0, 0], [1, 2], [2, 4]]
    assert batch["video"].shape == (3, 2, 3, 1, 2, 2)
    assert batch["video_view_mask"].tolist() == [[True, True], [True, False], [True, False]]


def test_only_present_columns_and_vector_features() -> None:
    samples = [
        {"index": i, "id": str(i), "group_id": i, "features": torch.ones(5)} for i in range(2)
    ]
    batch = collate(samples)
    assert set(batch) == {"index", "ids", "group_ids", "features"}
    assert batch["features"].shape == (2, 5)
    with pytest.raises(ValueError):
        collate([])
