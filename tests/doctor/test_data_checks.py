from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.data.manifest import SkippedRow
from contrastkit.doctor.data_checks import check_data
from contrastkit.doctor.data_checks.content import normalise_text
from contrastkit.doctor.data_checks.groups import expected_positive_pairs
from helpers.doctor_toys import bundle, make_config, row


def _image(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _codes(findings):
    return [f.code for f in findings]


def test_five_captions_each_own_group_is_duplicate_groups(tmp_path):
    img = _image(tmp_path, "a.png", b"pixels-a")
    other = _image(tmp_path, "b.png", b"pixels-b")
    rows = [row(i, f"g{i}", text=f"caption {i}", image=img) for i in range(5)]
    rows.append(row(5, "g5", text="another", image=other))
    (f,) = [f for f in check_data(bundle(rows), make_config()) if f.code == "duplicate_groups"]
    assert f.severity == "error"
    assert f.evidence["media_duplicates"] == 1
    assert f.evidence["rows_affected"] == 5
    assert sorted(f.evidence["examples"][0]["ids"]) == [f"r{i}" for i in range(5)]
    assert "group" in f.fix_note


def test_same_bytes_under_different_names_are_duplicates(tmp_path):
    a = _image(tmp_path, "a.png", b"same")
    b = _image(tmp_path, "copy.png", b"same")
    rows = [row(0, "g0", image=a), row(1, "g1", image=b)]
    assert "duplicate_groups" in _codes(check_data(bundle(rows), make_config()))


def test_shared_group_is_not_a_duplicate(tmp_path):
    img = _image(tmp_path, "a.png", b"pixels")
    rows = [row(i, "g0", text=f"caption {i}", image=img) for i in range(5)]
    rows.append(row(9, "g9", text="other", image=_image(tmp_path, "b.png", b"x")))
    assert "duplicate_groups" not in _codes(check_data(bundle(rows), make_config()))


def test_normalised_texts_are_duplicates():
    assert normalise_text("  A dog,  running! ") == "a dog running"
    rows = [row(0, "g0", text="A dog."), row(1, "g1", text="a  dog"), row(2, "g2", text="a cat")]
    (f,) = [f for f in check_data(bundle(rows), make_config()) if f.code == "duplicate_groups"]
    assert f.evidence["text_duplicates"] == 1 and f.evidence["media_duplicates"] == 0


def test_inline_arrays_hash_by_value():
    rows = [row(0, "g0", features=[1.0, 2.0]), row(1, "g1", features=np.array([1.0, 2.0]))]
    assert "duplicate_groups" in _codes(check_data(bundle(rows), make_config()))


def test_split_leakage(tmp_path):
    img = _image(tmp_path, "a.png", b"pixels")
    rows = [
        row(0, "g0", "train", image=img),
        row(1, "g1", "val", image=img),
        row(2, "g2", "val", text="new"),
    ]
    (f,) = [f for f in check_data(bundle(rows), make_config()) if f.code == "split_leakage"]
    assert f.evidence["val_rows_leaked"] == 1 and f.evidence["val_rows"] == 2
    assert f.evidence["examples"][0]["id"] == "r1"
    clean = [row(0, "g0", "train", text="a"), row(1, "g1", "val", text="b")]
    assert "split_leakage" not in _codes(check_data(bundle(clean), make_config()))


def _leakage(rows):
    found = [f for f in check_data(bundle(rows), make_config()) if f.code == "split_leakage"]
    return found[0] if found else None


def test_group_in_two_splits_is_leakage_with_counts_per_split(tmp_path):
    # Splitting by caption row instead of by image: group g0's five captions of one image
    # land in train (3), val (1) and test (1); every row's content differs.
    imgs = [_image(tmp_path, f"{i}.png", f"pixels-{i}".encode()) for i in range(5)]
    splits = ["train", "train", "train", "val", "test"]
    rows = [row(i, "g0", s, text=f"caption {i}", image=imgs[i]) for i, s in enumerate(splits)]
    rows += [row(9, "g9", "val", text="other", image=_image(tmp_path, "o.png", b"o"))]
    f = _leakage(rows)
    assert f is not None and f.severity == "warning"
    assert f.evidence["groups_in_several_splits"] == {
        "test": {"groups": 1, "rows": 1},
        "train": {"groups": 1, "rows": 3},
        "val": {"groups": 1, "rows": 1},
    }
    assert f.evidence["group_examples"][0]["group"] == "g0"
    assert f.evidence["group_examples"][0]["splits"] == ["test", "train", "val"]
    assert "val_rows_leaked" not in f.evidence  # no content was shared
    # one group per split: no leakage
    assert _leakage([row(0, "g0", "train", text="a"), row(1, "g1", "val", text="b")]) is None


def test_media_seen_in_training_with_another_caption_is_leakage(tmp_path):
    img = _image(tmp_path, "a.png", b"pixels")
    rows = [
        row(0, "g0", "train", text="a dog", image=img),
        row(1, "g1", "test", text="a brown dog on grass", image=img),
        row(2, "g2", "test", text="a cat", image=_image(tmp_path, "c.png", b"cat")),
        row(3, "g3", "test", text="a dog", image=_image(tmp_path, "d.png", b"dog")),
    ]
    f = _leakage(rows)
    assert f.evidence["test_rows_media_seen_in_train"] == 1 and f.evidence["test_rows"] == 3
    assert f.evidence["examples"] == [
        {
            "id": "r1",
            "split": "test",
            "line": 2,
            "train_id": "r0",
            "train_line": 1,
            "column": "image",
            "media_only": True,
        }
    ]
    # the reused caption "a dog" with new media is common and harmless: evidence only
    assert f.evidence["rows_partly_shared"] == {"test": 1}
    assert f.evidence["groups_in_several_splits"] == {}


def test_one_tower_eval_on_singleton_groups_is_flagged_before_training():
    one_tower = make_config(loss={"objectives": [{"type": "triplet", "towers": ["image"]}]})
    rows = [row(0, "g0", "train", text="a"), row(1, "g0", "train", text="b")]
    rows += [row(2 + i, f"v{i}", "val", text=f"v{i}") for i in range(3)]
    rows += [row(5, "t0", "test", text="x"), row(6, "t0", "test", text="y")]
    (f,) = [f for f in check_data(bundle(rows), one_tower) if f.code == "retrieval_no_positives"]
    assert f.evidence == {"pairs": ["image_to_image"], "splits": {"val": {"rows": 3, "groups": 3}}}
    # two towers: retrieval crosses towers, singleton groups are the normal case
    assert "retrieval_no_positives" not in _codes(check_data(bundle(rows), make_config()))


def test_skipped_rows():
    skipped = [SkippedRow("m.jsonl", 3, "x", "image", "file missing")]
    rows = [row(i, f"g{i}", text=f"t{i}") for i in range(3)]
    (f,) = [f for f in check_data(bundle(rows, skipped), make_config()) if f.code == "rows_skipped"]
    assert f.evidence["rows_skipped"] == 1 and f.evidence["share_skipped"] == 0.25
    assert f.evidence["by_column"] == {"image": 1}
    assert "rows_skipped" not in _codes(check_data(bundle(rows), make_config()))


def test_expected_positive_pairs_by_hand():
    cfg = make_config()
    # groups of sizes 2,1,1 (N=4), batch 4 = everything: one pair -> 2 ordered pairs
    assert expected_positive_pairs([2, 1, 1], 4, cfg) == pytest.approx(2.0)
    # batch 2 of 4: P(both picks in the pair) = 2*1/(4*3) -> B(B-1)*p = 2 * 1/6
    assert expected_positive_pairs([2, 1, 1], 2, cfg) == pytest.approx(2 / 6)
    groups = make_config(
        [
            "data.sampler.type=groups",
            "data.sampler.groups_per_batch=2",
            "data.sampler.members_per_group=2",
        ]
    )
    assert expected_positive_pairs([2, 2], 4, groups) == 4.0  # K * M(M-1) = 2 * 2


def test_small_groups_for_one_tower_triplet():
    loss = {"objectives": [{"type": "triplet", "towers": ["image"], "name": "metric"}]}
    rows = [row(i, f"g{i}", text=f"t{i}") for i in range(20)]
    (f,) = [f for f in check_data(bundle(rows), make_config(loss=loss)) if f.code == "small_groups"]
    assert f.evidence["expected_positive_pairs_per_batch"] == 0.0
    assert f.fix["data.sampler.type"] == "groups"
    paired = [row(i, f"g{i // 2}", text=f"t{i}") for i in range(20)]
    assert "small_groups" not in _codes(
        check_data(bundle(paired), make_config(["data.batch_size=20"], loss=loss))
    )


def test_labels_missing_for_classifier():
    model = {
        "towers": {**make_config().model.model_dump()["towers"]},
        "classifier": {"tower": "image"},
    }
    cfg = make_config(model=model, loss={"classification": {"weight": 0.5}})
    rows = [row(0, "g0", text="a", label="cat"), row(1, "g1", text="b")]
    (f,) = [f for f in check_data(bundle(rows), cfg) if f.code == "labels_missing"]
    assert f.evidence["rows_missing"] == 1 and f.severity == "warning"
    assert "labels_missing" not in _codes(check_data(bundle(rows), make_config()))


def test_near_duplicates_with_embedder():
    vectors = {"a red car": [1.0, 0.0], "a crimson automobile": [0.99, 0.05], "a tree": [0.0, 1.0]}
    rows = [row(i, f"g{i}", text=t) for i, t in enumerate(vectors)]

    def embed(texts):
        return torch.tensor([vectors[t] for t in texts])

    (f,) = [
        f
        for f in check_data(bundle(rows), make_config(), embed_texts=embed)
        if f.code == "false_negatives"
    ]
    assert f.evidence["pairs"] == 1 and sorted(f.evidence["examples"][0]["ids"]) == ["r0", "r1"]
    same_group = [row(i, "g0", text=t) for i, t in enumerate(vectors)]
    assert "false_negatives" not in _codes(
        check_data(bundle(same_group), make_config(), embed_texts=embed)
    )
