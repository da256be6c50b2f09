"""8-bit pictures travel as uint8 and the model normalises them (contrastkit.pixels): the
values the model sees are bit-identical to normalising in the loader, and batches that
mix 8-bit with other pictures fall back to float in the collate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from contrastkit.config import DataConfig, ModelConfig
from contrastkit.data import build_datasets, build_loader, collate
from contrastkit.data.images import picture_tensor, read_image
from contrastkit.models import BuiltinTokenizer, build_model
from contrastkit.pixels import normalise_pixels


def _pixels(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_normalise_pixels_by_hand() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert normalise_pixels(x).tolist() == pytest.approx([-1.0, 51 / 127.5 - 1.0, 1.0], abs=1e-7)
    floats = torch.tensor([0.25, -3.0])
    assert normalise_pixels(floats) is floats  # float pixels are already normalised


@pytest.mark.parametrize("shape,channels", [((8, 8, 3), 3), ((8, 8), 1), ((8, 8), 3)])
def test_uint8_then_normalised_is_bit_identical(shape, channels) -> None:
    array = _pixels(0, shape)
    raw = picture_tensor(array, 8, channels, uint8=True)
    assert raw.dtype == torch.uint8 and raw.shape == (channels, 8, 8)
    assert raw.is_contiguous() and raw.untyped_storage().data_ptr() != 0
    assert torch.equal(normalise_pixels(raw), picture_tensor(array, 8, channels))
    # The values are the pixels themselves, channel first.
    first = array if array.ndim == 2 else array[..., 0]
    assert torch.equal(raw[0], torch.from_numpy(first))


def test_only_8bit_pictures_stay_uint8(tmp_path) -> None:
    Image.fromarray(_pixels(1, (12, 10, 3))).save(tmp_path / "rgb.png")
    Image.fromarray(_pixels(2, (12, 10)).astype(np.uint16) * 257).save(tmp_path / "deep.png")
    np.save(tmp_path / "unit.npy", np.full((8, 8), 0.5, dtype=np.float32))
    assert read_image(tmp_path / "rgb.png", 8, 3, uint8=True).dtype == torch.uint8
    assert read_image(tmp_path / "rgb.png", 8, 3).dtype == torch.float32
    assert read_image(tmp_path / "deep.png", 8, 1, uint8=True).dtype == torch.float32
    unit = read_image(tmp_path / "unit.npy", 8, 1, uint8=True)
    assert unit.dtype == torch.float32 and torch.equal(unit, torch.zeros(1, 8, 8))


def _sample(i: int, image: torch.Tensor) -> dict:
    return {"index": i, "id": f"r{i}", "group_id": i, "image": image}


def test_mixed_batch_is_normalised_in_the_collate() -> None:
    u8 = picture_tensor(_pixels(3, (8, 8)), 8, 1, uint8=True)
    other = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    batch = collate([_sample(0, u8), _sample(1, other)])
    assert batch["image"].dtype == torch.float32
    assert torch.equal(batch["image"][0], normalise_pixels(u8))
    assert torch.equal(batch["image"][1], other)
    assert collate([_sample(0, u8), _sample(1, u8)])["image"].dtype == torch.uint8


def _model():
    cnn = {"type": "cnn", "width": 16, "depth": 1, "options": {"channels": 4}}
    text = {"type": "builtin_text", "width": 16, "depth": 1, "heads": 2}
    cfg = ModelConfig.model_validate(
        {
            "embed_dim": 8,
            "towers": {"image": {"streams": {"image": cnn}}, "text": {"streams": {"text": text}}},
        }
    )
    torch.manual_seed(0)
    tok = BuiltinTokenizer.train(["a b c"], 40, max_length=8)
    return build_model(cfg, tokenizer=tok, input_specs={"image": (3, 16, 16), "text": ()}).eval()


def test_the_model_sees_the_same_values_from_a_uint8_batch(tmp_path) -> None:
    rows = []
    for i in range(6):
        Image.fromarray(_pixels(10 + i, (20, 24, 3))).save(tmp_path / f"{i}.jpg", quality=90)
        rows.append({"id": f"r{i}", "image": f"{i}.jpg", "text": f"picture {i}"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(
        manifest=str(tmp_path / "m.jsonl"),
        image={"size": 16, "channels": 3},
        batch_size=6,
        val_split=None,
        test_split=None,
        drop_last=False,
    )
    dataset = build_datasets(cfg).splits["train"]
    (batch,) = list(build_loader(dataset, cfg, train=False, seed=0))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (6, 3, 16, 16)
    order = [int(r.removeprefix("r")) for r in batch["ids"]]
    floats = torch.stack([read_image(tmp_path / f"{i}.jpg", 16, 3) for i in order])
    model = _model()
    with torch.no_grad():
        from_u8 = model.encode("image", batch).embedding
        from_float = model.encode("image", {"image": floats}).embedding
    assert torch.equal(from_u8, from_float)
