import pytest
import torch

from contrastkit.eval.probes import (
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    zero_shot_accuracy,
)


def toy(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(3, 8) * 3
    labels = torch.arange(3).repeat_interleave(n_per_class)
    return centers[labels] + 0.3 * torch.randn(len(labels), 8, generator=g), labels


def test_zero_shot_on_separable_data():
    x, y = toy(5, 0)
    prompts = torch.eye(3, 8)
    assert zero_shot_accuracy(x, y, prompts) == 1.0
    assert zero_shot_accuracy(x, y, prompts[[1, 2, 0]]) == 0.0
    y_missing = y.clone()
    y_missing[0] = -1
    assert zero_shot_accuracy(x, y_missing, prompts) == 1.0


def test_knn_leave_one_out_and_train_test():
    x, y = toy(6, 1)
    xt, yt = toy(4, 2)
    assert knn_accuracy(x, y, k=3) == 1.0
    assert knn_accuracy(xt, yt, x, y, k=5, chunk_size=3) == 1.0


def test_knn_vote_tie_breaks_by_similarity_then_index():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0])
    query = torch.tensor([[0.9, 0.1], [0.1, 0.9], [1.0, 1.0]])
    # One vote each: the closer neighbour wins; exact tie (third query) -> class 0.
    assert knn_predict(query, gallery, labels, k=2).tolist() == [1, 0, 0]


def test_linear_probe_separable_and_deterministic():
    x, y = toy(8, 3)
    xt, yt = toy(4, 4)
    acc = linear_probe_accuracy(x, y, xt, yt, max_iter=20)
    assert acc == 1.0
    assert linear_probe_accuracy(x, y, xt, yt, max_iter=20) == acc
    # Shuffled train labels cannot be learnt to generalise.
    assert (
        linear_probe_accuracy(
            x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))], xt, yt
        )
        < 1.0
    )


def test_knn_rejects_empty_gallery():
    from contrastkit.errors import DataError

    with pytest.raises(DataError):
        knn_predict(
            torch.ones(1, 2),
            torch.ones(1, 2),
            torch.zeros(1, dtype=torch.long),
            1,
            leave_one_out=True,
        )
