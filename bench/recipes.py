"""Before / after numbers for docs/recipes.md: each broken run, the doctor's top finding,
and the same run with the doctor's printed fix applied.

Every run is a tiny digits-captions run (400 rows, 8 x 8 images, 3 epochs, the
configuration tests/doctor/test_broken_runs.py imports from here), so the whole script takes a few
minutes on 2 CPU cores. The "after" run applies the top finding's `fix` as `-o key=value`
overrides, exactly as printed (or the manifest repair the finding's note asks for).

    python bench/recipes.py [KEEP_DIR]   # RESULT / FINDING / FIX lines; runs kept in KEEP_DIR
    python bench/recipes.py --quick      # one recipe, before and after, 200 rows, one epoch

The last line is `RESULT {"recipes": {recipe: {"finding", "fix", "after_finding", ...}},
"variants": {variant: {"t2i_R@1", ...}}}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

from contrastkit.app.cli import main
from contrastkit.data.builtin import builtin_manifest

BASE = {
    "name": "recipe",
    "data": {
        "manifest": "builtin:digits-captions",
        "batch_size": 32,
        "max_rows": 400,
        "image": {"size": 8, "channels": 1},
    },
    "model": {
        "embed_dim": 32,
        "tokenizer": {"type": "builtin", "vocab_size": 200, "max_length": 24},
        "towers": {
            "image": {"streams": {"image": {"type": "cnn", "width": 32, "depth": 1}}},
            "text": {
                "streams": {"text": {"type": "builtin_text", "width": 32, "depth": 1, "heads": 2}}
            },
        },
    },
    "loss": {"objectives": [{"name": "contrastive", "type": "clip", "towers": ["image", "text"]}]},
    "train": {
        "epochs": 3,
        "lr": 0.002,
        "log_every": 5,
        "progress": "none",
        "loggers": {"tensorboard": False},
        "checkpoint": {"keep_last": 1},
    },
    "doctor": {"every": 2, "probe_size": 16},
    "eval": {"splits": ["val"], "ks": [1, 5]},
}
CLIP = {"name": "contrastive", "type": "clip", "towers": ["image", "text"]}
CAPTION = ["model.captioning={tower: image, width: 32, depth: 1, heads: 2}"]

# recipe -> broken overrides (the "after" run is the broken one plus the doctor's fix).
BROKEN: dict[str, list[str]] = {
    "loss_does_not_go_down": [f"loss.objectives=[{json.dumps({**CLIP, 'temperature': 10.0})}]"],
    "captions_with_unique_ids": ["data.manifest=OWN_IDS"],
    "pretrained_will_not_learn": ["train.lr=0.000001"],
    "aux_drowns_contrastive": [*CAPTION, "loss.captioning={weight: 4.0}"],
}
# When the doctor's fix is not enough, the change that did work (measured as well).
SECOND_FIX: dict[str, list[str]] = {"pretrained_will_not_learn": ["train.lr=0.002"]}
# "raising R@1": variants of the healthy run, each measured against the baseline.
VARIANTS: dict[str, list[str]] = {
    "baseline (batch 32)": [],
    "batch 128 via train.accumulate=4 (cached)": ["train.accumulate=4"],
    "batch 128 via train.accumulate=4 (naive)": ["train.accumulate=4", "train.accumulation=naive"],
    "hard negatives (hard_negative_beta=0.5)": [
        f"loss.objectives=[{json.dumps({**CLIP, 'hard_negative_beta': 0.5})}]"
    ],
    "fixed temperature 0.07": [
        f"loss.objectives=[{json.dumps({**CLIP, 'learnable_temperature': False})}]"
    ],
}


def own_id_manifest(folder: Path) -> Path:
    """digits-captions with every caption given its own group (the classic bug)."""
    src = builtin_manifest("digits-captions")
    out = folder / "own_ids.jsonl"
    with out.open("w") as f:
        for line in src.read_text().splitlines():
            row = json.loads(line)
            row["group"] = row["id"]
            row["image"] = str(src.parent / row["image"])
            f.write(json.dumps(row) + "\n")
    return out


_DONE: dict[tuple[str, ...], dict] = {}


def run(folder: Path, name: str, overrides: list[str]) -> dict:
    """Train one tiny run; returns its val metrics, loss trend and top finding. A config
    already trained (the healthy baseline recurs as several "after" runs) is not re-run:
    training is deterministic given the config."""
    key = tuple(o for o in overrides if o != "loss.objectives.0.learnable_temperature=true")
    if key not in _DONE:
        _DONE[key] = _train(folder, name, overrides)
    return _DONE[key]


def _train(folder: Path, name: str, overrides: list[str]) -> dict:
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(BASE, sort_keys=False))
    run_dir = folder / name
    args = ["train", str(config), "--run-dir", str(run_dir)]
    for o in overrides:
        args += ["-o", o]
    if main(args) != 0:
        raise SystemExit(f"{name}: training failed")
    summary = json.loads((run_dir / "summary.json").read_text())
    findings = json.loads((run_dir / "findings.json").read_text())["findings"]
    serious = [f for f in findings if f["severity"] != "info"]
    losses = [
        json.loads(x)["train/loss"]
        for x in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"train/loss"' in x
    ]
    return {
        "t2i_R@1": summary.get("val/text_to_image/R@1"),
        "t2i_R@5": summary.get("val/text_to_image/R@5"),
        "t2i_class_R@1": summary.get("val/text_to_image/class_R@1"),
        "i2t_R@1": summary.get("val/image_to_text/R@1"),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "top": serious[0] if serious else None,
        "codes": [f["code"] for f in serious],
    }


def fix_overrides(finding: dict | None) -> list[str]:
    if not finding:
        return []
    return [f"{k}={json.dumps(v)}" for k, v in finding.get("fix", {}).items()]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


# --quick: one recipe (its broken run and the run with the printed fix), one epoch of
# the first 200 rows each.
QUICK_RECIPES = ("loss_does_not_go_down",)
QUICK_OVERRIDES = ["train.epochs=1", "data.max_rows=200"]


def main_bench(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keep", nargs="?", type=Path, help="keep the run folders here")
    parser.add_argument("--quick", action="store_true", help="one recipe, one epoch per run")
    args = parser.parse_args(argv)
    recipes = {r: BROKEN[r] for r in QUICK_RECIPES} if args.quick else BROKEN
    variants = {} if args.quick else VARIANTS
    extra = QUICK_OVERRIDES if args.quick else []
    rows = []
    table: dict[str, dict] = {"recipes": {}, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        own = str(own_id_manifest(folder))

        def measured(name: str, overrides: list[str]) -> dict:
            return run(folder, name, [*overrides, *extra])

        for recipe, broken in recipes.items():
            broken = [o.replace("OWN_IDS", own) for o in broken]
            before = measured(f"{recipe}_before", broken)
            top = before["top"]
            if recipe == "captions_with_unique_ids":
                fix = []  # the fix is the manifest: one group per image (finding's fix_note)
                after = measured(f"{recipe}_after", [])
            else:
                fix = fix_overrides(top)
                after = measured(f"{recipe}_after", broken + fix)
            code = top["code"] if top else "none"
            if recipe in SECOND_FIX:
                other = measured(f"{recipe}_second", broken + SECOND_FIX[recipe])
                print(
                    f"RESULT recipe={recipe} second_fix={' '.join(SECOND_FIX[recipe])} "
                    f"t2i_R@1={_fmt(other['t2i_R@1'])} t2i_R@5={_fmt(other['t2i_R@5'])} "
                    f"class_R@1={_fmt(other['t2i_class_R@1'])} "
                    f"loss={_fmt(other['first_loss'])}->{_fmt(other['last_loss'])} "
                    f"finding={other['top']['code'] if other['top'] else 'none'}",
                    flush=True,
                )
            after_code = after["top"]["code"] if after["top"] else "none"
            print(
                f"RESULT recipe={recipe} finding={code} fix={' '.join(fix) or '(manifest)'} "
                f"before_t2i_R@1={_fmt(before['t2i_R@1'])} after_t2i_R@1={_fmt(after['t2i_R@1'])} "
                f"before_t2i_R@5={_fmt(before['t2i_R@5'])} after_t2i_R@5={_fmt(after['t2i_R@5'])} "
                f"before_class_R@1={_fmt(before['t2i_class_R@1'])} "
                f"after_class_R@1={_fmt(after['t2i_class_R@1'])} "
                f"before_loss={_fmt(before['first_loss'])}->{_fmt(before['last_loss'])} "
                f"after_loss={_fmt(after['first_loss'])}->{_fmt(after['last_loss'])} "
                f"after_finding={after_code}",
                flush=True,
            )
            if top:
                print(f"FINDING {recipe}: {code} ({top['severity']}): {top['cause']}", flush=True)
                print(f"FIX {recipe}: {fix_overrides(top)} {top.get('fix_note', '')}", flush=True)
            rows.append((recipe, code, fix, before, after, after_code))
            table["recipes"][recipe] = {
                "finding": code,
                "fix": fix,
                "after_finding": after_code,
                **{f"before_{k}": v for k, v in before.items() if k != "top"},
                **{f"after_{k}": v for k, v in after.items() if k != "top"},
            }
        for variant, overrides in variants.items():
            res = measured(variant.split(" ")[0] + str(len(overrides)), overrides)
            print(
                f"RESULT variant={variant!r} t2i_R@1={_fmt(res['t2i_R@1'])} "
                f"t2i_R@5={_fmt(res['t2i_R@5'])} class_R@1={_fmt(res['t2i_class_R@1'])} "
                f"i2t_R@1={_fmt(res['i2t_R@1'])} last_loss={_fmt(res['last_loss'])}",
                flush=True,
            )
            table["variants"][variant] = {k: v for k, v in res.items() if k != "top"}
    print(json.dumps([(r[0], r[1], r[2]) for r in rows]))
    print("RESULT " + json.dumps(table))
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
