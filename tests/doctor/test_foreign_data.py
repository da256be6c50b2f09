"""`contrastkit doctor data FILE` on datasets of other tools (issue 21 item 4)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastkit.app.cli import main

RNG = np.random.default_rng(0)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _picture(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _images(folder: Path, n: int) -> list[str]:
    names = []
    for i in range(n):
        (folder / f"img{i}.png").write_bytes(_png(_picture(i)))
        names.append(f"img{i}.png")
    return names


def _doctor(tmp_path: Path, *args: str) -> dict[str, dict]:
    out = tmp_path / "out"
    # images resized to 32 (not open_clip's 224): the same checks at a test's cost
    assert main(["doctor", "data", *args, "--out", str(out), "--image-size", "32"]) == 0
    findings = json.loads((out / "data_findings.json").read_text())["findings"]
    return {f["code"]: f for f in findings}


def _open_clip_tsv(tmp_path: Path) -> Path:
    """open_clip's format: five captions of img0 under five rows, 15 other images."""
    names = _images(tmp_path, 16)
    lines = ["filepath\ttitle"]
    lines += [f"{names[0]}\tcaption {k} of the first image" for k in range(5)]
    lines += [f"{names[i]}\ta picture number {i}" for i in range(1, 16)]
    path = tmp_path / "train.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_open_clip_tsv_five_captions_are_false_negatives(tmp_path):
    tsv = _open_clip_tsv(tmp_path)
    found = _doctor(tmp_path, str(tsv), "--image-col", "filepath", "--text-col", "title",
                    "--sep", "\\t", "--batch-size", "8")  # fmt: skip
    f = found["duplicate_groups"]
    assert f["severity"] == "error"  # 5 of 20 rows
    assert f["evidence"]["examples"][0]["lines"] == [2, 3, 4, 5, 6]
    train = f["evidence"]["per_split"]["train"]
    assert (train["rows_sharing_media"], train["duplicate_clusters"]) == (5, 1)
    # one cluster of 5 rows in N = 20, every row its own class, B = 8:
    # E = B(B-1) * 5*4 / (N(N-1)) = 56 * 20 / 380
    assert f["evidence"]["expected_false_negatives_per_batch"] == round(56 * 20 / 380, 4)
    assert "NO_DUPLICATES" in f["fix_note"] and f["fix"] == {}


def test_groups_media_makes_the_five_captions_one_class(tmp_path):
    tsv = _open_clip_tsv(tmp_path)
    found = _doctor(tmp_path, str(tsv), "--groups", "media", "--batch-size", "8")
    assert "duplicate_groups" not in found


def test_coco_captions_per_split_files_leak_and_duplicate(tmp_path):
    names = _images(tmp_path, 4)
    train = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names[:3])],
        "annotations": [{"id": 10 + k, "image_id": 0, "caption": f"a cat number {k}"} for k in range(5)]
        + [{"id": 20, "image_id": 1, "caption": "a dog"}, {"id": 21, "image_id": 2, "caption": "a bird"}],
    }  # fmt: skip
    val = {
        "images": [{"id": 7, "file_name": names[2]}, {"id": 8, "file_name": names[3]}],
        "annotations": [{"id": 30, "image_id": 7, "caption": "another bird"},
                        {"id": 31, "image_id": 8, "caption": "a fish"}],
    }  # fmt: skip
    (tmp_path / "captions_train2017.json").write_text(json.dumps(train))
    (tmp_path / "captions_val2017.json").write_text(json.dumps(val))
    found = _doctor(
        tmp_path, str(tmp_path / "captions_train2017.json"), str(tmp_path / "captions_val2017.json")
    )
    dup = found["duplicate_groups"]
    assert dup["evidence"]["rows_affected"] == 5
    assert dup["evidence"]["per_split"]["train"]["largest_cluster"] == 5
    leak = found["split_leakage"]
    assert leak["evidence"]["val_rows_media_seen_in_train"] == 1
    (example,) = leak["evidence"]["examples"]
    # ids name the file and the annotation id
    assert (example["id"], example["train_id"]) == (
        "captions_val2017.json:val:30",
        "captions_train2017.json:train:21",
    )


def _bytes_rows(double_normalised: bool) -> dict[str, list]:
    images, captions = [], []
    for i in range(12):
        pic = _picture(i)
        if double_normalised:  # divided by 255 twice, saved as uint8: 0..1
            pic = np.round(pic / 255.0).astype(np.uint8)
        images.append({"bytes": _png(pic), "path": None})
        captions.append(f"photo {i}")
    images[11] = images[0]  # the same bytes twice
    return {"image": images, "caption": captions}


def test_parquet_with_image_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(_bytes_rows(double_normalised=True)), path)
    found = _doctor(tmp_path, str(path), "--batch-size", "4")
    dup = found["duplicate_groups"]
    assert dup["evidence"]["examples"][0]["lines"] == [1, 12]
    # cluster of 2 in N = 12, B = 4: 4*3 * 2 / (12*11)
    assert dup["evidence"]["expected_false_negatives_per_batch"] == round(12 * 2 / 132, 4)
    scaled = found["input_scaling"]
    assert scaled["severity"] == "error"
    assert scaled["evidence"]["reasons"] == {"integer_holds_0_1": 12}


def test_datasets_folder_splits_and_truncation(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _bytes_rows(double_normalised=False)
    prefix = "a photo taken on a sunny day of a small"
    texts = [f"{prefix} {w}" for w in ("cat", "dog", "bird", "fish", "horse", "cow")] * 2
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    train = datasets.Dataset.from_dict(
        {"image": rows["image"][:8], "text": texts[:8]}, features=features
    )
    test = datasets.Dataset.from_dict(
        {"image": [rows["image"][0], rows["image"][9]], "text": ["new one", "new two"]},
        features=features,
    )
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))
    found = _doctor(tmp_path, str(tmp_path / "ds"), "--max-length", "8", "--groups", "media")
    assert found["split_leakage"]["evidence"]["test_rows_media_seen_in_train"] == 1
    cut = found["text_truncated"]
    assert cut["severity"] == "error"
    assert cut["evidence"]["per_split"]["train"]["texts_identical_after_cut"] == 6
    assert cut["fix"] == {} and "max_seq_length" in cut["fix_note"]


def test_healthy_dataset_is_silent(tmp_path):
    names = _images(tmp_path, 12)
    lines = ["filepath,title"] + [f"{n},picture number {i}" for i, n in enumerate(names)]
    (tmp_path / "ok.csv").write_text("\n".join(lines) + "\n")
    assert _doctor(tmp_path, str(tmp_path / "ok.csv")) == {}


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        ("filepath\ttitle\nmissing.png\ta cat\n", [], ["bad.tsv, row 2, column 'image'", "missing.png"]),
        ("path\ttitle\nimg0.png\ta cat\n", ["--image-col", "filepath"], ["bad.tsv", "'filepath'", "columns: ['path', 'title']"]),
        ("path\ttext\nimg0.png\ta cat\n", [], ["bad.tsv", "no image column", "--image-col"]),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_file_row_column(tmp_path, capsys, content, args, says):
    _images(tmp_path, 1)
    (tmp_path / "bad.tsv").write_text(content)
    assert main(["doctor", "data", str(tmp_path / "bad.tsv"), *args, "--out", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    for part in says:
        assert part in err
    assert "Traceback" not in err


def test_unreadable_parquet_exits_2(tmp_path, capsys):
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    assert main(["doctor", "data", str(tmp_path / "x.parquet")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long paths
    assert "is not a readable Parquet file" in err


def test_false_negatives_per_batch_count_only_pairs_of_different_groups(tmp_path):
    from contrastkit.data.manifest import Row
    from contrastkit.doctor.data_checks import check_data
    from contrastkit.doctor.data_checks.content import content_keys
    from contrastkit.doctor.data_checks.host_batches import false_negative_evidence
    from helpers.doctor_toys import bundle, make_config

    img = tmp_path / "a.png"
    img.write_bytes(b"one image")
    # four rows of one image: two in group A, two in group B; six unrelated rows
    shared = [Row(f"s{i}", "AB"[i // 2], "train", {"image": "a.png"}, i + 2, {"image": img})
              for i in range(4)]  # fmt: skip
    rows = shared + [Row(f"u{i}", f"u{i}", "train", {"text": f"t{i}"}, 10 + i) for i in range(6)]
    keys = {r.id: content_keys(r, {}) for r in rows}
    ev = false_negative_evidence(rows, keys, batch_size=5)
    # ordered pairs in the cluster: 4*3 = 12, minus same-group pairs 2*1 + 2*1 -> 8;
    # E = B(B-1) * 8 / (N(N-1)) = 20 * 8 / 90
    assert (ev["false_negative_pairs"], ev["rows_sharing_media"]) == (8, 4)
    assert ev["expected_false_negatives_per_batch"] == round(160 / 90, 4)
    # a contrastkit run's duplicate_groups carries the same number for its train batches
    (f,) = [f for f in check_data(bundle(rows), make_config(["data.batch_size=5"]))
            if f.code == "duplicate_groups"]  # fmt: skip
    assert f.evidence["train_batches"]["expected_false_negatives_per_batch"] == round(160 / 90, 4)


def test_sentence_transformers_pairs_with_a_repeated_anchor(tmp_path):
    lines = ["anchor\tpositive"]
    lines += [f"what is a cat?\ta cat is animal number {k}" for k in range(3)]
    lines += [f"question {i}\tanswer {i}" for i in range(7)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    args = [str(tmp_path / "pairs.tsv"), "--pair-col", "anchor", "--text-col", "positive"]
    f = _doctor(tmp_path, *args, "--batch-size", "4")["duplicate_groups"]
    assert f["evidence"]["examples"][0]["column"] == "text_anchor"
    assert f["evidence"]["examples"][0]["lines"] == [2, 3, 4]
    # one cluster of 3 rows in N = 10, B = 4: 4*3 * 3*2 / (10*9)
    assert f["evidence"]["expected_false_negatives_per_batch"] == round(72 / 90, 4)
    assert "duplicate_groups" not in _doctor(tmp_path, *args, "--groups", "media")


def test_a_manifest_or_unknown_file_exits_2_with_the_formats(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text('{"id": "a", "text": "x"}\n')
    assert main(["doctor", "data", str(tmp_path / "m.jsonl")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown dataset format '.jsonl'" in err and "doctor data CONFIG.yaml" in err
