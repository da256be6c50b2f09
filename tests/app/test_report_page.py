"""report.html: example selection on hand-built embeddings, number highlighting, the fix
command, the metrics table, and whole reports of a hand-made run directory (with a toy
model) checked as text and, where Chromium is installed, rendered in a headless browser."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from contrastkit.app.report import write_report
from contrastkit.app.report.captions import highlight, unmatched
from contrastkit.app.report.examples import pick_examples
from contrastkit.app.report.html import fix_command, metrics_table
from contrastkit.app.report.thumbnails import (
    FRAME_PX,
    SEQ_PX,
    STRIP_FRAMES,
    THUMB_PX,
    image_thumb,
    sequence_plot,
    video_strip,
)
from contrastkit.config import config_from_dict, dump_config
from contrastkit.data import build_datasets
from contrastkit.doctor.findings import Finding, write_findings


def _unit(*angles: float) -> torch.Tensor:
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()], 1)


# --------------------------------------------------------------------------- examples


def test_pick_examples_ranks_on_known_angles():
    # Gallery at 0, 30, 60, 90 degrees, groups 0..3. Query 0 (group 2) sits at 5 degrees:
    # its true match (60 deg) ranks 3rd behind 0 and 30 deg. Query 1 (group 1) at 31 deg
    # finds its match first.
    deg = np.pi / 180
    gallery = _unit(0, 30 * deg, 60 * deg, 90 * deg)
    query = _unit(5 * deg, 31 * deg)
    shown, worst = pick_examples(
        query, gallery, torch.tensor([2, 1]), torch.tensor([0, 1, 2, 3]),
        n=2, k=2, worst=5, seed=0,
    )  # fmt: skip
    by_query = {e.query: e for e in shown}
    assert by_query[0].rank == 3 and not by_query[0].hit
    assert by_query[0].top == [0, 1] and by_query[0].match == [False, False]
    assert by_query[1].rank == 1 and by_query[1].hit
    assert by_query[1].top == [1, 2] and by_query[1].match == [True, False]
    assert by_query[1].scores[0] == pytest.approx(np.cos(1 * deg))
    assert [e.query for e in worst] == [0]


def test_pick_examples_ties_are_pessimistic_and_self_is_excluded():
    # One tower: items 0 and 1 share group 0 and item 2 (group 1) is identical to item 0.
    emb = _unit(0.0, 0.5, 0.0)
    shown, _ = pick_examples(
        emb, emb, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]),
        n=3, k=2, worst=3, seed=1, same_tower=True,
    )  # fmt: skip
    by_query = {e.query: e for e in shown}
    # Query 0: itself excluded; negative 2 scores 1.0, ahead of positive 1 (cos 0.5).
    assert by_query[0].rank == 2 and by_query[0].top[0] == 2
    # Query 2 has no other member of its group: left out.
    assert 2 not in by_query


def test_pick_examples_is_seeded():
    emb = torch.nn.functional.normalize(
        torch.randn(200, 8, generator=torch.Generator().manual_seed(0)), dim=1
    )
    groups = torch.arange(200) // 2
    a, _ = pick_examples(emb, emb, groups, groups, n=5, k=3, worst=2, seed=7, same_tower=True)
    b, _ = pick_examples(emb, emb, groups, groups, n=5, k=3, worst=2, seed=7, same_tower=True)
    c, _ = pick_examples(emb, emb, groups, groups, n=5, k=3, worst=2, seed=8, same_tower=True)
    assert [e.query for e in a] == [e.query for e in b] != [e.query for e in c]


# --------------------------------------------------------------------------- text parts


def test_numbers_that_disagree_are_marked_on_each_side():
    gen = "EF 55%, lesion 3 mm in segment 6"
    ref = "EF 60%, lesion 3 mm in segment 6"
    assert highlight(gen, unmatched(gen, ref)) == (
        "EF <span class=mark>55</span>%, lesion 3 mm in segment 6"
    )
    assert highlight(ref, unmatched(ref, gen)) == (
        "EF <span class=mark>60</span>%, lesion 3 mm in segment 6"
    )
    # Same value, other unit: a mismatch too (numeric_fidelity's rule).
    assert [q.unit for q in unmatched("3 cm", "3 mm")] == ["cm"]
    assert (
        highlight("<b>5</b>", unmatched("<b>5</b>", ""))
        == "&lt;b&gt;<span class=mark>5</span>&lt;/b&gt;"
    )


def test_fix_command_round_trips_through_the_shell_and_config_overrides():
    fix = {
        "loss.objectives.0.temperature": 0.05,
        "data.sampler.type": "groups",
        "train.freeze": ["towers.text"],
    }
    cmd = fix_command(fix)
    assert "-o data.sampler.type=groups" in cmd
    args = shlex.split(cmd)
    assert args[0::2] == ["-o", "-o", "-o"]
    base = {
        "data": {"manifest": "x.jsonl"},
        "model": {"towers": {"image": {"streams": {"image": {"type": "cnn"}}},
                             "text": {"streams": {"text": {"type": "builtin_text"}}}}},
        "loss": {"objectives": [{"type": "clip", "towers": ["image", "text"]}]},
    }  # fmt: skip
    cfg = config_from_dict(base, overrides=args[1::2])
    assert cfg.loss.objectives[0].temperature == 0.05
    assert cfg.data.sampler.type == "groups"
    assert cfg.train.freeze == ["towers.text"]


def test_metrics_table_puts_the_at_start_row_above_the_final_one():
    table = metrics_table(
        {
            "test/text_to_image/R@1": 0.25,
            "at_start/test/text_to_image/R@1": 0.01,
            "test/image_to_text/R@1": 0.3,
            "val/text_to_image/R@1": 0.2,
            "test/image/zero_shot_accuracy": 0.9,
        },
        ["text_to_image", "image_to_text"],  # pairing's order: the text query first
    )
    rows = re.findall(
        r"<tr( class=start)?><td>([^<]+)</td><td>([^<]+)</td><td class=num>([^<]+)</td>", table
    )
    assert rows == [
        (" class=start", "at_start/test", "text → image", "0.010"),
        ("", "test", "text → image", "0.250"),
        ("", "test", "image → text", "0.300"),
        ("", "val", "text → image", "0.200"),
    ]
    assert "test/image/zero_shot_accuracy</td><td class=num>0.900" in table


# --------------------------------------------------------------------------- thumbnails


def _png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_thumbnails_have_their_documented_sizes(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "im.npy", rng.random((200, 120, 3)).astype(np.float32))
    np.save(tmp_path / "vid.npy", rng.random((20, 30, 30)).astype(np.float32))
    seq = np.zeros((10, 3, 2), dtype=np.float32)
    seq[:, :, 0] = np.arange(10)[:, None]
    seq[:, :, 1] = np.arange(3)[None, :]
    np.save(tmp_path / "seq.npy", seq)
    assert _png(image_thumb(tmp_path / "im.npy")).shape == (THUMB_PX, THUMB_PX, 3)
    strip = _png(video_strip(tmp_path / "vid.npy"))
    assert strip.shape == (FRAME_PX, STRIP_FRAMES * FRAME_PX + (STRIP_FRAMES - 1) * 2, 3)
    views = _png(video_strip((tmp_path / "vid.npy", tmp_path / "vid.npy")))
    assert views.shape[1] == 2 * FRAME_PX + 2  # first frame of each view
    plot = _png(sequence_plot(tmp_path / "seq.npy"))
    assert plot.shape == (SEQ_PX, SEQ_PX, 3)
    drawn = (plot != 255).any(axis=2)
    assert drawn.sum() == 30  # 10 frames x 3 joints, all at distinct points


# --------------------------------------------------------------------------- whole reports


class ToyModel(nn.Module):
    """Image and text towers without training: images by a fixed random projection of
    their pixels, texts by the digit they name, so the text of group g matches image g's
    digit. Enough for embed_tower and the report."""

    tower_names = ("image", "text")

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, 8, bias=False)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def tower_inputs(self, tower: str) -> list[str]:
        return [tower]

    def encode(self, tower: str, batch: dict) -> SimpleNamespace:
        if tower == "image":
            x = self.proj(batch["image"].flatten(1)[:, :64])
        else:
            x = torch.stack([self.proj.weight[:, int(t.split()[-1]) % 8] for t in batch["text"]])
        return SimpleNamespace(embedding=nn.functional.normalize(x, dim=1))


def make_run_dir(tmp_path: Path) -> Path:
    """A finished run's files, written by hand: config, metrics, summary, findings, run.json,
    and a manifest of 8 x 8 images with one caption each (test split)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        np.save(tmp_path / f"im{i}.npy", rng.random((8, 8)).astype(np.float32))
        split = "test" if i < 16 else "train"
        rows.append(
            {
                "id": f"r{i}",
                "group": f"g{i}",
                "split": split,
                "image": f"im{i}.npy",
                "text": f"digit {i}",
            }
        )
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    run.mkdir()
    cfg = config_from_dict(
        {
            "name": "toy",
            "data": {"manifest": str(tmp_path / "manifest.jsonl"), "image": {"size": 8, "channels": 1}},
            "model": {"towers": {"image": {"streams": {"image": {"type": "cnn"}}},
                                 "text": {"streams": {"text": {"type": "builtin_text"}}}}},
            "loss": {"objectives": [{"type": "clip", "towers": ["image", "text"]}]},
        }
    )  # fmt: skip
    (run / "config.yaml").write_text(dump_config(cfg))
    metrics = [{"step": s, "epoch": s // 10, "train/loss": 4.0 - s / 10} for s in range(0, 30, 5)]
    metrics += [
        {"step": 10 * e + 9, "epoch": float(e), "val/text_to_image/R@1": 0.1 * (e + 1)}
        for e in range(3)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    summary = {
        "test/text_to_image/R@1": 0.4375,
        "test/image_to_text/R@1": 0.5,
        "train/seconds": 12.0,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "run.json").write_text(json.dumps({"status": "finished", "rows_skipped": 1,
                                              "splits": {"test": {"rows": 16, "groups": 16}}}))  # fmt: skip
    write_findings(
        [Finding("temperature_out_of_range", "error", {"temperature": 10.0}, "softmax at tau 10",
                 {"loss.objectives.0.temperature": 0.07}),
         Finding("rows_skipped", "warning", {"rows_skipped": 1}, "a row was skipped", {"data.on_error": "raise"})],
        run / "findings.json",
    )  # fmt: skip
    signals = [
        {
            "step": s,
            "monitor": "loss",
            "loss/contrastive": 4.0 - s / 10,
            "contrastive/logit_scale": 0.1,
        }
        for s in range(0, 30, 5)
    ]
    (run / "signals.jsonl").write_text("".join(json.dumps(s) + "\n" for s in signals))
    return run


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory) -> Path:
    run = make_run_dir(tmp_path_factory.mktemp("toy"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    bundle = build_datasets(config_from_dict(cfg).data)
    return write_report(run, model=ToyModel(), bundle=bundle)


def test_report_of_a_finished_run_holds_every_section(toy_report):
    page = toy_report.read_text()
    for text in ("<h1>toy</h1>", "finished", "12 s", "Headline metrics", "0.438", "Curves",
                 "Doctor panels", "Worst misses", "resolved config.yaml"):  # fmt: skip
        assert text in page, text
    # Findings: data and run findings apart, the fix ready to copy.
    assert page.index("<h3>data</h3>") < page.index("rows_skipped") < page.index("<h3>run</h3>")
    assert "-o loss.objectives.0.temperature=0.07" in page
    # 8 examples, each a hit or a miss, each with its query and 5 results as thumbnails.
    tags = re.findall(r"<span class='tag (hit|miss)'>", page)
    assert len(tags) >= 8
    shown = page[page.index("Retrieval examples") : page.index("Worst misses")]
    assert shown.count("<span class='tag ") == 8
    assert shown.count("class='th'") == 8 * 5  # image thumbnails of the gallery results
    # Self-contained: every src is a data URI and the page forbids fetching anything else.
    assert set(re.findall(r"src='([a-z]+):", page)) == {"data"}
    assert "default-src 'none'; img-src data:" in page


class ToyCaptioner(ToyModel):
    """The toy model with a captioning head that always writes "digit 3"."""

    has_captioning = True
    text_column = "text"

    def generate(self, batch: dict, **options) -> list[str]:
        assert options["method"] == "greedy"  # the run's eval.captioning settings
        return ["digit 3"] * len(batch["ids"])


def test_captioning_run_shows_generated_text_beside_references(tmp_path):
    run = make_run_dir(tmp_path)
    bundle = build_datasets(
        config_from_dict(yaml.safe_load((run / "config.yaml").read_text())).data
    )
    page = write_report(run, model=ToyCaptioner(), bundle=bundle).read_text()
    section = page[page.index("Generated captions (test)") :]
    rows = re.findall(r"<tr><td>.*?</td><td>(.*?)</td><td>(.*?)</td></tr>", section)
    assert len(rows) == 8
    for generated, reference in rows:
        if reference == "digit 3":  # the one caption it gets right: nothing marked
            assert generated == "digit 3"
        else:
            assert generated == "digit <span class=mark>3</span>"
            assert re.fullmatch(r"digit <span class=mark>\d+</span>", reference)


def test_report_without_a_checkpoint_says_why(tmp_path):
    run = make_run_dir(tmp_path)
    page = write_report(run).read_text()
    assert "no retrieval examples" in page and "checkpoint" in page
    assert "-o loss.objectives.0.temperature=0.07" in page


# --------------------------------------------------------------------------- browser


# Grey-level standard deviation of the screenshot: 0 for a blank page; a page with one
# line of text measures ~2; these pages (tables, figures, thumbnails) measure 18-60.
BLANK_STD = 5.0


def chromium() -> str:
    path = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return path


def render(page: Path, tmp_path: Path) -> tuple[np.ndarray, list[str]]:
    """Headless Chromium screenshot of `page` and the console lines it logged.

    Network access is switched off for the browser's own services; the page's CSP blocks
    any fetch, and a blocked fetch is logged to the console, so "no console lines" means
    nothing tried to leave the file."""
    shot = tmp_path / f"{page.stem}.png"
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--window-size=1280,2000", f"--screenshot={shot}", page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return np.asarray(Image.open(shot).convert("L"), dtype=np.float64), console


@pytest.mark.slow
def test_report_renders_in_chromium_without_console_errors_or_requests(toy_report, tmp_path):
    pixels, console = render(toy_report, tmp_path)
    assert console == []
    assert pixels.std() > BLANK_STD


@pytest.mark.slow
def test_the_browser_check_catches_a_network_url(toy_report, tmp_path):
    # The same report with one remote image: the CSP blocks it and the console says so.
    leaky = tmp_path / "leaky.html"
    leaky.write_text(
        toy_report.read_text().replace("</h1>", "</h1><img src='http://example.com/x.png'>", 1)
    )
    _, console = render(leaky, tmp_path)
    assert any("http://example.com/x.png" in line for line in console), console


@pytest.mark.slow
def test_compare_page_renders_in_chromium(toy_report, tmp_path):
    from contrastkit.app.compare import load_views, write_compare_html

    other = tmp_path / "other"
    shutil.copytree(toy_report.parent, other)
    (other / "summary.json").write_text(json.dumps({"test/text_to_image/R@1": 0.5}))
    page = write_compare_html(
        load_views([(None, toy_report.parent), (None, other)]), tmp_path / "compare.html"
    )
    pixels, console = render(page, tmp_path)
    assert console == []
    assert pixels.std() > BLANK_STD


TINY = {
    "name": "tiny",
    "data": {"manifest": "builtin:digits-captions", "batch_size": 32, "max_rows": 200,
             "image": {"size": 8, "channels": 1}},
    "model": {"embed_dim": 16, "tokenizer": {"type": "builtin", "vocab_size": 200, "max_length": 24},
              "towers": {"image": {"streams": {"image": {"type": "cnn", "width": 16, "depth": 1}}},
                         "text": {"streams": {"text": {"type": "builtin_text", "width": 16, "depth": 1,
                                                       "heads": 2}}}}},
    "loss": {"objectives": [{"type": "clip", "towers": ["image", "text"]}]},
    "train": {"epochs": 1, "log_every": 2, "progress": "none", "loggers": {"tensorboard": False}},
    "eval": {"splits": ["test"], "ks": [1, 5]},
}  # fmt: skip


@pytest.mark.slow
def test_train_writes_the_report_and_report_command_rewrites_it(tmp_path):
    from contrastkit.app.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run)]) == 0
    page = (run / "report.html").read_text()
    summary = json.loads((run / "summary.json").read_text())
    r1 = f"{summary['test/image_to_text/R@1']:.3f}"
    assert f"<td>test</td><td>image → text</td><td class=num>{r1}</td>" in page
    shown = page[page.index("Retrieval examples: test, text → image") : page.index("Worst misses")]
    assert shown.count("<span class='tag ") == 8
    assert shown.count("class='th'") == 8 * 5  # digits as thumbnails, 5 results per query
    first = re.findall(r"<b>query</b> (\S+)<", page)
    assert main(["report", str(run), "--seed", "1"]) == 0
    assert re.findall(r"<b>query</b> (\S+)<", (run / "report.html").read_text()) != first


def test_doctor_panels_reuse_training_curves_png_only_when_current(tmp_path):
    import base64
    import os

    from contrastkit.app.report.plots import doctor_panels_uri

    run = make_run_dir(tmp_path)
    png = run / "training_curves.png"
    Image.new("RGB", (4, 4), "red").save(png)
    signals = [{"step": 0, "monitor": "loss", "loss/contrastive": 1.0}]
    embedded = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    sig = run / "signals.jsonl"
    os.utime(sig, (png.stat().st_mtime - 10,) * 2)  # signals older: the PNG is current
    assert doctor_panels_uri(signals, run) == embedded
    os.utime(sig, (png.stat().st_mtime + 10,) * 2)  # new signals since: drawn again
    drawn = doctor_panels_uri(signals, run)
    assert drawn != embedded and _png(drawn).shape[:2] == (540, 960)


def test_report_of_a_running_run_diagnoses_its_signals_so_far(tmp_path):
    run = make_run_dir(tmp_path)
    (run / "summary.json").unlink()
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    page = write_report(run).read_text()  # findings.json still holds an earlier diagnosis
    assert "<td><b>running</b></td>" in page
    assert "no test metrics yet" in page
    # The doctor ran on the signals so far (findings.json is written again) instead of the
    # report reading a findings file from an earlier diagnosis.
    assert json.loads((run / "findings.json").read_text()) == {"findings": []}
    assert "The doctor found nothing to report." in page
