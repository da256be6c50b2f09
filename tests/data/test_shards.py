"""WebDataset shards: writing keeps every column and every group whole; the stream reads every
row once per epoch across ranks and workers, resumes exactly from any batch, keeps groups in
one batch under the group sampler, and reports bad samples by shard and key."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from contrastkit.config import DataConfig  # noqa: E402
from contrastkit.data import build_datasets  # noqa: E402
from contrastkit.data.shards import plan  # noqa: E402
from contrastkit.data.shards.loaders import build_stream_loader  # noqa: E402
from contrastkit.data.shards.samples import decode_row, read_groups  # noqa: E402
from contrastkit.data.shards.splits import ShardBatches, resolve_shards  # noqa: E402
from contrastkit.data.shards.writer import write_shards  # noqa: E402
from contrastkit.errors import DataError  # noqa: E402

GROUP_SIZES = [1, 2, 3, 1, 2, 1, 1, 3, 2, 1, 1, 2, 1, 3, 1, 1, 2, 1, 1, 2]  # 32 train rows


def make_manifest(folder: Path, broken: str | None = None) -> Path:
    """Train rows in groups of 1-3 (image, text, label, attributes, an extra column) and
    4 val rows; `broken` names a row whose image file is not a PNG."""
    rng = np.random.default_rng(0)
    rows = []
    for g, size in enumerate(GROUP_SIZES):
        for m in range(size):
            rid = f"t{g}_{m}"
            image = folder / f"{rid}.png"
            if rid == broken:
                image.write_bytes(b"not a png")
            else:
                plt.imsave(image, rng.random((8, 8)), cmap="gray")
            rows.append(
                {"id": rid, "group": f"g{g}", "text": f"caption {g} {m}", "image": image.name,
                 "label": str(g % 3), "attributes": [g, m], "note": f"n{g}"}
            )  # fmt: skip
    for i in range(4):
        plt.imsave(folder / f"v{i}.png", rng.random((8, 8)), cmap="gray")
        rows.append({"id": f"v{i}", "split": "val", "text": f"val {i}", "image": f"v{i}.png",
                     "label": str(i % 3), "attributes": [0, i], "note": "v"})  # fmt: skip
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("shards")
    manifest = make_manifest(folder)
    write_shards(manifest, folder / "out", shard_size=4, seed=1)
    return manifest, folder / "out"


def data_cfg(**kw) -> DataConfig:
    base = {"image": {"size": 8}, "batch_size": 4, "val_split": "val", "test_split": None}
    return DataConfig(**{**base, **kw})


def train_rows(folder: Path) -> dict[str, list[str]]:
    """Shard path -> ids of its rows."""
    splits, _ = resolve_shards(str(folder), "train")
    return {s.path: [r["id"] for g in read_groups(s.path) for r in g.rows] for s in splits["train"]}


def test_round_trip_keeps_every_column(sharded) -> None:
    manifest, out = sharded
    bundle = build_datasets(data_cfg(manifest=str(manifest)))
    want = {}
    for split in bundle.splits.values():
        want.update({split.rows[i].id: (split.rows[i], split[i]) for i in range(len(split))})
    splits, labels = resolve_shards(str(out), "train")
    assert labels == bundle.label_names == ["0", "1", "2"]
    label_index = {name: i for i, name in enumerate(labels)}
    opts = bundle.splits["train"].opts
    seen = 0
    for name, shards in splits.items():
        for shard in shards:
            for group in read_groups(shard.path):
                for row in group.rows:
                    source, sample = want[row["id"]]
                    got = decode_row(group, row, opts, label_index)
                    assert row["split"] == name == source.split and row["group"] == source.group
                    assert row["values"]["note"] == source.values["note"]  # unknown columns kept
                    assert got["text"] == sample["text"] and got["label"] == sample["label"]
                    assert got["group_id"] == sample["group_id"]
                    assert torch.equal(got["image"], sample["image"])
                    assert torch.equal(got["attributes"], sample["attributes"])
                    seen += 1
    assert seen == len(want) == 36


def test_members_have_plain_ustar_headers(sharded) -> None:
    """An integer mtime: a float one makes tarfile add a pax header to every member,
    which costs the reader a second header parse per member."""
    import tarfile

    _, out = sharded
    with tarfile.open(sorted(out.glob("train-*.tar"))[0]) as tar:
        members = tar.getmembers()
    assert members and all(m.pax_headers == {} and m.mtime == 0 for m in members)


def test_groups_stay_in_one_shard_and_shards_respect_the_size(sharded) -> None:
    _, out = sharded
    shard_of: dict[str, set[str]] = {}
    for path, ids in train_rows(out).items():
        groups = {i.split("_")[0] for i in ids}
        for g in groups:
            shard_of.setdefault(g, set()).add(path)
        biggest = max(GROUP_SIZES[int(g[1:])] for g in groups)
        assert len(ids) <= max(4, biggest)
    assert len(shard_of) == len(GROUP_SIZES)
    assert all(len(paths) == 1 for paths in shard_of.values())


def test_index_brace_pattern_and_list_give_the_same_shards(sharded) -> None:
    _, out = sharded
    splits, labels = resolve_shards(str(out), "train")
    n = len(splits["train"])
    pattern = str(out / f"train-{{000000..{n - 1:06d}}}.tar")
    by_pattern, labels_p = resolve_shards(pattern, "train")
    by_list, _ = resolve_shards({"train": [s.path for s in splits["train"]]}, "train")
    assert by_pattern["train"] == by_list["train"] == splits["train"]
    assert labels_p == labels


@pytest.mark.parametrize("n_shards,streams", [(9, 1), (9, 2), (9, 4), (10, 3), (4, 4)])
def test_streams_read_disjoint_shards_covering_all(n_shards, streams) -> None:
    layout = plan.StreamLayout(
        seed=3, epoch=2, world_size=streams, workers=0, buffer_shards=2, units_per_batch=1
    )
    parts = [plan.stream_shards(n_shards, layout, s) for s in range(streams)]
    flat = [s for p in parts for s in p]
    assert sorted(flat) == list(range(n_shards))


def test_epoch_steps_hold_for_every_permutation() -> None:
    units = [5, 3, 4, 4, 2, 6, 5, 3, 4]
    for world, workers in [(1, 2), (2, 0), (2, 2), (3, 1)]:
        layout = plan.StreamLayout(0, 0, world, workers, 2, units_per_batch=2)
        steps = plan.epoch_steps(units, layout)
        assert steps > 0
        for epoch in range(30):
            lay = plan.StreamLayout(0, epoch, world, workers, 2, units_per_batch=2)
            assert plan.epoch_steps(units, lay) == steps
            assert all(sum(plan.worker_batches(units, lay, r)) >= steps for r in range(world))


def test_interleave_is_round_robin_skipping_exhausted_workers() -> None:
    assert plan.interleave([3, 1]) == [(0, 0), (1, 0), (0, 1), (0, 2)]
    assert plan.consumed_per_worker([3, 1], 3) == [2, 1]


def test_position_hand_computed() -> None:
    # One stream, 4 shards of 3 rows, a buffer of 2 shards (6 rows), batches of 2 rows.
    layout = plan.StreamLayout(
        seed=0, epoch=0, world_size=1, workers=0, buffer_shards=2, units_per_batch=2
    )
    units = [3, 3, 3, 3]
    after = [plan.position(units, layout, 0, b)["streams"][0] for b in (0, 2, 3, 4)]
    assert [(p["shards_done"], p["offset"]) for p in after] == [(0, 0), (0, 4), (2, 0), (2, 2)]


def _epoch_ids(split, world: int, workers: int, epoch: int = 0) -> list[list[str]]:
    """Every (rank, worker) stream's ids over a full epoch, keeping partial batches."""
    streams = []
    for rank in range(world):
        layout = plan.StreamLayout(
            seed=5, epoch=epoch, world_size=world, workers=workers, buffer_shards=2,
            units_per_batch=3, drop_last=False,
        )  # fmt: skip
        batches = ShardBatches(split, layout, rank=rank, members=None)
        loader = DataLoader(batches, batch_size=None, num_workers=workers)
        streams.append([i for batch in loader for i in batch["ids"]])
    return streams


@pytest.mark.parametrize("world,workers", [(1, 0), (2, 2)])
def test_every_row_once_per_epoch_across_ranks_and_workers(sharded, world, workers) -> None:
    _, out = sharded
    split = build_datasets(data_cfg(shards=str(out))).splits["train"]
    per_rank = _epoch_ids(split, world, workers)
    everything = [i for ids in per_rank for i in ids]
    assert sorted(everything) == sorted(i for ids in train_rows(out).values() for i in ids)
    assert len(everything) == len(set(everything)) == sum(GROUP_SIZES)
    assert _epoch_ids(split, world, workers, epoch=1) != per_rank  # reshuffled per epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_any_batch_is_the_tail_of_the_epoch(sharded, workers) -> None:
    _, out = sharded
    cfg = data_cfg(shards=str(out), num_workers=workers, shuffle_shards=2)
    split = build_datasets(cfg).splits["train"]

    def ids(start: int) -> list[list[str]]:
        loader = build_stream_loader(
            split, cfg, seed=0, epoch=1, start_batch=start, rank=0, world_size=1, batch_size=3
        )
        return [b["ids"] for b in loader]

    full = ids(0)
    sizes = sorted(len(r) for r in train_rows(out).values())
    if workers == 0:  # one stream: every full batch of the 32 rows
        assert len(full) == 32 // 3
    else:  # each of 2 streams reads >= n // 2 shards and drops a partial batch
        assert len(full) == sum(sizes[: 2 * (len(sizes) // 2)]) // 3 - 1
    for start in (1, 4, len(full) - 1):
        assert ids(start) == full[start:]


def test_position_is_the_same_dict_on_every_rank(sharded) -> None:
    _, out = sharded
    cfg = data_cfg(shards=str(out), shuffle_shards=2)
    split = build_datasets(cfg).splits["train"]
    loaders = [
        build_stream_loader(
            split, cfg, seed=0, epoch=0, start_batch=0, rank=r, world_size=2, batch_size=4
        )
        for r in range(2)
    ]
    a, b = loaders[0].position(2), loaders[1].position(2)
    assert a == b and [s["stream"] for s in a["streams"]] == [0, 1]
    assert all(s["offset"] == 4 for s in a["streams"])  # 2 batches of 2 rows, first window


def test_ranks_get_equal_steps_and_disjoint_rows(sharded) -> None:
    _, out = sharded
    cfg = data_cfg(shards=str(out))
    split = build_datasets(cfg).splits["train"]
    loaders = [
        build_stream_loader(
            split, cfg, seed=0, epoch=0, start_batch=0, rank=r, world_size=2, batch_size=4
        )
        for r in range(2)
    ]
    assert len(loaders[0]) == len(loaders[1]) > 0
    rows = [[i for b in loader for i in b["ids"]] for loader in loaders]
    assert [len(r) for r in rows] == [2 * len(loaders[0])] * 2
    assert not set(rows[0]) & set(rows[1])


def test_group_sampler_puts_whole_groups_in_a_batch(sharded) -> None:
    _, out = sharded
    cfg = data_cfg(
        shards=str(out), batch_size=6, sampler={"type": "groups", "members_per_group": 2}
    )
    split = build_datasets(cfg).splits["train"]
    loader = build_stream_loader(
        split, cfg, seed=0, epoch=0, start_batch=0, rank=0, world_size=1, batch_size=6
    )
    batches = list(loader)
    assert len(batches) == len(GROUP_SIZES) // 3
    for batch in batches:
        groups = batch["group_ids"].tolist()
        assert [groups.count(g) for g in dict.fromkeys(groups)] == [2, 2, 2]
        names = {}  # group id -> manifest groups of its rows (ids are t<group>_<member>)
        for rid, g in zip(batch["ids"], groups, strict=True):
            names.setdefault(g, set()).add(rid.split("_")[0])
        assert all(len(n) == 1 for n in names.values())
    seen = [g for b in batches for g in dict.fromkeys(b["group_ids"].tolist())]
    assert len(seen) == len(set(seen))  # a group is one unit: never in two batches


def test_bad_sample_names_shard_and_key_or_is_replaced(tmp_path) -> None:
    manifest = make_manifest(tmp_path, broken="t1_0")
    write_shards(manifest, tmp_path / "out", shard_size=100)
    (shard,) = [s for s in resolve_shards(str(tmp_path / "out"), "train")[0]["train"]]
    key = next(g.key for g in read_groups(shard.path) if g.rows[0]["group"] == "g1")
    for on_error in ("raise", "skip"):
        cfg = data_cfg(shards=str(tmp_path / "out"), on_error=on_error)
        split = build_datasets(cfg).splits["train"]
        loader = build_stream_loader(
            split, cfg, seed=0, epoch=0, start_batch=0, rank=0, world_size=1, batch_size=32
        )
        if on_error == "raise":
            with pytest.raises(DataError, match=rf"shard .*train-000000.tar, key '{key}'"):
                list(loader)
        else:
            with pytest.warns(UserWarning, match=key):
                (batch,) = list(loader)
            assert len(batch["ids"]) == 32 and batch["ids"].count("t1_0") == 0


def test_unreadable_tar_is_a_data_error(tmp_path) -> None:
    bad = tmp_path / "train-000000.tar"
    bad.write_bytes(b"\0garbage" * 100)
    with pytest.raises(DataError, match="train-000000.tar"):
        resolve_shards(str(bad), "train")
    ok = tmp_path / "ok.tar"
    with tarfile.open(ok, "w") as tar:
        tar.add(__file__, arcname="k1.txt")
    with pytest.raises(DataError, match=r"ok.tar: no rows.json member"):
        resolve_shards(str(ok), "train")
    # Reading the media too, the sample is seen and its key named.
    with pytest.raises(DataError, match=r"ok.tar, key 'k1': no rows.json"):
        list(read_groups(ok))


KILL_SCRIPT = """
import json, os, signal, sys
from contrastkit.app.run import train
from contrastkit.config import config_from_dict
from contrastkit.events import Callback

run_dir, shards, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
workers = int(sys.argv[5])

class Record(Callback):
    # Appends each step's row ids; SIGKILLs this process before step `kill_at` runs.
    def on_batch_start(self, state):
        if state.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(os.path.join(run_dir, "ids.jsonl"), "a") as f:
            f.write(json.dumps([state.step, state.batch["ids"]]) + "\\n")

cfg = config_from_dict({
    "name": "shards",
    "data": {"shards": shards, "batch_size": 4, "image": {"size": 8}, "test_split": None,
             "num_workers": workers},
    "model": {"embed_dim": 8, "tokenizer": {"type": "builtin", "vocab_size": 64, "max_length": 8},
              "towers": {"image": {"streams": {"image": {"type": "cnn", "width": 8}}},
                         "text": {"streams": {"text": {"type": "builtin_text", "width": 8,
                                                        "depth": 1, "heads": 2}}}}},
    "loss": {"objectives": [{"name": "c", "type": "clip", "towers": ["image", "text"]}]},
    "train": {"epochs": 2, "lr": 0.01, "progress": "none", "log_every": 1,
              "checkpoint": {"every_steps": 3}, "loggers": {"tensorboard": False}},
    "eval": {"splits": ["val"]},
    "doctor": {"enabled": False},
})
train(cfg, run_dir, resume=resume if resume != "none" else None, callbacks=[Record()])
"""


def _train(run_dir: Path, shards: Path, kill_at: int, resume: str, workers: int = 0):
    import os
    import subprocess
    import sys

    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", KILL_SCRIPT, str(run_dir), str(shards), str(kill_at), resume]
    proc = subprocess.run([*args, str(workers)], env=env, capture_output=True, timeout=600)
    return proc.returncode, proc.stderr.decode()


@pytest.mark.slow
def test_kill_9_then_resume_auto_repeats_and_skips_nothing(sharded) -> None:
    """A run SIGKILLed mid-epoch and resumed with `--resume auto` sees the uninterrupted
    run's batches, step for step, and ends with its parameters bit for bit."""
    from safetensors.torch import load_file

    _, out = sharded
    root = out.parent
    clean, killed = root / "clean", root / "killed"
    assert _train(clean, out, kill_at=-1, resume="none")[0] == 0
    assert _train(killed, out, kill_at=5, resume="none")[0] == -9  # killed by SIGKILL
    assert _train(killed, out, kill_at=-1, resume="auto")[0] == 0

    def steps(run: Path) -> list[tuple[int, list[str]]]:
        return [tuple(json.loads(x)) for x in (run / "ids.jsonl").read_text().splitlines()]

    want, got = steps(clean), steps(killed)
    # The killed run logged steps 0-4 and resumed from its step-3 checkpoint: steps 3 and 4
    # were replayed, each with the same rows as before.
    assert [s for s, _ in got] == [0, 1, 2, 3, 4, *range(3, len(want))]
    assert dict(got) == dict(want) and len(want) == 2 * (32 // 4)
    last = f"step_{len(want):06d}"
    a = load_file(next((clean / "checkpoints" / last).glob("*.safetensors")))
    b = load_file(next((killed / "checkpoints" / last).glob("*.safetensors")))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_with_other_workers_is_refused(sharded) -> None:
    """Another `data.num_workers` deals the shards to other streams: the checkpoint's
    position does not exist in the new stream, so the resume stops and says why."""
    _, out = sharded
    run = out.parent / "changed"
    assert _train(run, out, kill_at=3, resume="none")[0] == -9
    code, err = _train(run, out, kill_at=-1, resume="auto", workers=2)
    assert code != 0 and "data stream differs from the checkpoint" in err
