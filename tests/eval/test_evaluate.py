from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from contrastkit.config import EvalConfig
from contrastkit.errors import ConfigError
from contrastkit.eval.evaluate import evaluate
from contrastkit.eval.probe_keys import check_probe_config
from contrastkit.eval.tower_embeddings import embed_dataset
from contrastkit.models.outputs import TowerOutput


@dataclass
class FakeRow:
    id: str
    group: str
    values: dict = field(default_factory=dict)


class FakeDataset:
    """3 images x 2 captions; image i is the vector e_i, caption text 'cap i j'."""

    def __init__(self) -> None:
        self.rows = [
            FakeRow(
                f"r{i}{j}",
                f"g{i}",
                {
                    "image": f"img{i}.png",
                    "text": f"cap {i} {j} shows a lesion of {i}.5 mm",
                    "label": i % 2,
                },
            )
            for i in range(3)
            for j in range(2)
        ]
        self.group_ids = np.array([i for i in range(3) for _ in range(2)], dtype=np.int64)
        self.label_index = {"0": 0, "1": 1}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        img = int(row.values["image"][3])
        return {
            "index": i,
            "id": row.id,
            "group_id": int(self.group_ids[i]),
            "image": torch.eye(3)[img],
            "text": row.values["text"],
            "label": row.values["label"],
        }


class FakeModel(nn.Module):
    """image tower: identity; text tower: one-hot of the image index in the caption,
    except caption 'cap 2 1', which points at image 0 (one retrieval error)."""

    tower_names = ["image", "text"]
    has_captioning = True
    text_column = "text"

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.encoded = 0

    def tower_inputs(self, tower: str) -> list[str]:
        return [tower]

    def encode(self, tower: str, batch: dict) -> TowerOutput:
        assert not self.training and not torch.is_grad_enabled()
        self.encoded += len(batch[tower])
        if tower == "image":
            emb = batch["image"] * self.scale
        else:
            idx = [0 if t.startswith("cap 2 1 ") else int(t.split()[1]) for t in batch["text"]]
            emb = torch.eye(3)[idx] * self.scale
        return TowerOutput(tokens=emb[:, None], pooled=emb, embedding=emb)

    def generate(self, batch: dict, **kwargs) -> list[str]:
        assert kwargs["method"] == "greedy"
        return list(batch["text"])


def test_embed_dataset_deduplicates_images_not_captions():
    model, data = FakeModel(), FakeDataset()
    ids, emb, rows = embed_dataset(model, data, "image", batch_size=2)
    assert ids == ["r00", "r10", "r20"] and rows == [0, 2, 4] and emb.shape == (3, 3)
    assert model.encoded == 3
    ids, emb, rows = embed_dataset(model, data, "text")
    assert len(ids) == 6 and rows == list(range(6))


def test_evaluate_keys_and_values():
    model, data = FakeModel(), FakeDataset()
    model.train()
    out = evaluate(
        model,
        data,
        EvalConfig(ks=[1, 5]),
        split="test",
        pairs=[("text", "image"), ("image", "text")],
    )
    assert model.training  # mode restored
    # text -> image: 5 of 6 captions find their image; 'cap 2 1' scores image 0 at 1 and
    # ties images 1 and 2 at 0, so its image is ranked 3rd (ties count against it).
    assert out["test/text_to_image/R@1"] == pytest.approx(5 / 6)
    assert out["test/text_to_image/mean_rank"] == pytest.approx(8 / 6)
    assert out["test/image_to_text/R@5"] == 1.0
    assert out["test/text_to_image/num_queries"] == 6.0
    assert "test/text_to_image/class_R@1" in out and "test/image_to_text/class_R@1" in out
    assert out["test/text_image/alignment"] == pytest.approx(5 / 6)
    # Images e0, e1, e2 (orthogonal) with labels 0, 1, 0: leave-one-out k-NN (k capped at
    # 2) is a 1-1 vote with equal similarity, which goes to class 0: 2 of 3 correct.
    assert out["test/image/knn_accuracy"] == pytest.approx(2 / 3)
    assert "test/text/knn_accuracy" in out
    assert out["test/captioning/BLEU"] == pytest.approx(100.0)
    assert out["test/captioning/numeric_fidelity"] == 1.0


def test_one_tower_retrieval_without_positives_is_skipped_not_fatal(caplog):
    # The image gallery holds one image per group (its two caption rows share it), so
    # leave-one-out image -> image retrieval has no positive for any query. It used to
    # raise DataError after training and lose the summary; now it is skipped with a
    # warning and every other key is still computed.
    pairs = [("image", "image"), ("text", "image"), ("image", "text")]
    with caplog.at_level("WARNING", logger="contrastkit.eval.evaluate"):
        out = evaluate(FakeModel(), FakeDataset(), EvalConfig(ks=[1]), split="test", pairs=pairs)
    assert not [k for k in out if k.startswith("test/image_to_image/")]
    assert out["test/text_to_image/R@1"] == pytest.approx(5 / 6)
    assert out["test/captioning/numeric_fidelity"] == 1.0
    assert "test/image_to_image: every group has a single item" in caplog.text


def _evaluate(data: FakeDataset, cfg: EvalConfig, **kw) -> dict[str, float]:
    return evaluate(FakeModel(), data, cfg, split="test", pairs=[("text", "image")], **kw)


def test_zero_shot_embeds_prompts_in_class_index_order():
    data = FakeDataset()
    # The text tower maps "cap i ..." to e_i. Images e0, e1, e2 have labels 0, 1, 0.
    out = _evaluate(data, EvalConfig(zero_shot_prompt="cap {label} of a lesion"))
    # Class 0 -> e0, class 1 -> e1: e0 and e1 are right; e2 ties (0, 0) -> class 0, right.
    assert out["test/image/zero_shot_accuracy"] == 1.0
    assert "test/text/zero_shot_accuracy" not in out  # the prompts' own tower is not scored
    # Swap the names: class 0 is now called "1" (prompt -> e1), class 1 is "0" (-> e0), so
    # e0 and e1 are misread and only the tie of e2 (-> class 0) is right.
    data.label_index = {"1": 0, "0": 1}
    ensemble = EvalConfig(zero_shot_prompt=["cap {label} a", "cap {label} b"])
    assert _evaluate(data, ensemble)["test/image/zero_shot_accuracy"] == pytest.approx(1 / 3)


def test_linear_probe_fits_on_the_train_split_only():
    cfg = EvalConfig(linear_probe=True)
    assert "test/image/linear_probe_accuracy" not in _evaluate(FakeDataset(), cfg)
    out = _evaluate(FakeDataset(), cfg, train_dataset=FakeDataset())
    # Orthogonal embeddings: the probe separates the train labels and the test split is
    # the same set, so both towers score 1.
    assert out["test/image/linear_probe_accuracy"] == 1.0
    assert out["test/text/linear_probe_accuracy"] == 1.0
    # Train labels flipped: a probe that really learns from train gets every test row wrong.
    flipped = FakeDataset()
    for row in flipped.rows:
        row.values["label"] = 1 - row.values["label"]
    out = _evaluate(FakeDataset(), cfg, train_dataset=flipped)
    assert out["test/image/linear_probe_accuracy"] == 0.0
    # No labelled train row: skipped (this runs after training; the summary must survive).
    unlabelled = FakeDataset()
    for row in unlabelled.rows:
        row.values["label"] = -1
    out = _evaluate(FakeDataset(), cfg, train_dataset=unlabelled)
    assert "test/image/linear_probe_accuracy" not in out and "test/text_to_image/R@1" in out


def test_probe_config_errors_name_the_key():
    model = FakeModel()
    with pytest.raises(ConfigError, match="eval.linear_probe.*m.jsonl.*label"):
        check_probe_config(EvalConfig(linear_probe=True), model, [], "m.jsonl")
    model.tower_inputs = lambda tower: ["pixels", "keypoints"]  # no text tower
    with pytest.raises(ConfigError, match="eval.zero_shot_prompt.*text"):
        check_probe_config(EvalConfig(zero_shot_prompt="a {label}"), model, ["0"], "m.jsonl")
    check_probe_config(EvalConfig(linear_probe=True), model, ["0", "1"], "m.jsonl")


def test_prompt_without_placeholder_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="label"):
        EvalConfig(zero_shot_prompt="a photo of a digit")
