"""`train(cfg, run_dir)`: wire the real data, model, loss, doctor and eval into the engine.

This is the application layer: it reads the typed config and calls each package's
factory.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from contrastkit.app.lit import FlushFeatureCaches, attach_feature_caches
from contrastkit.app.mining import build_miner, record_mining
from contrastkit.app.report.facts import data_summary
from contrastkit.app.rundir import RunLock, check_run_dir, move_aside
from contrastkit.app.zero_shot import (
    AT_START_FILE,
    at_start_metrics,
    random_reference,
    tokenizer_texts,
)
from contrastkit.config import Config, dump_config
from contrastkit.doctor.run import DATA_FINDINGS_FILE, stop_record, update_run_info
from contrastkit.errors import ContrastkitError
from contrastkit.events import Callback
from contrastkit.models.encoders.hf_clip import with_pretrained_logits
from contrastkit.pairing import eval_pairs, select_metric
from contrastkit.protocols import EmbeddingModel
from contrastkit.train import checkpoint as ckpt
from contrastkit.train.distributed import DistInfo, cleanup, init_distributed
from contrastkit.train.ema import EMA, TeacherHook
from contrastkit.train.engine import Engine
from contrastkit.train.lora import apply_train_lora
from contrastkit.train.nonfinite import NonFiniteError
from contrastkit.train.parts import EngineParts
from contrastkit.train.phases import make_weights_fn
from contrastkit.train.snapshot import check_resume

log = logging.getLogger(__name__)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_config(cfg: Config, run_dir: Path) -> None:
    saved = cfg.model_copy(deep=True)
    manifest = Path(saved.data.manifest)
    if saved.data.manifest and not saved.data.manifest.startswith("builtin:") and manifest.exists():
        saved.data.manifest = str(manifest.resolve())  # so load_run works from any cwd
    if isinstance(saved.data.shards, str) and Path(saved.data.shards).is_dir():
        saved.data.shards = str(Path(saved.data.shards).resolve())
    (run_dir / "config.yaml").write_text(dump_config(saved))


def _check_data(bundle: Any, cfg: Config, run_dir: Path) -> list:
    """Run the data doctor; stop when a finding reaches `doctor.fail_on`."""
    if not (cfg.doctor.enabled and cfg.doctor.check_data):
        return []
    from contrastkit.doctor import check_data, should_fail, write_findings

    findings = list(check_data(bundle, cfg))
    write_findings(findings, run_dir / DATA_FINDINGS_FILE)
    if should_fail(findings, cfg.doctor.fail_on):
        lines = "; ".join(f"{f.code} ({f.severity}): {f.cause}" for f in findings)
        raise ContrastkitError(
            f"data doctor stopped the run (doctor.fail_on: {cfg.doctor.fail_on}); see {run_dir / 'findings.json'}: {lines}"
        )
    return findings


def _tokenizer(cfg: Config, train_set: Any, run_dir: Path, resume: str | None) -> Any:
    """The run's own tokenizer when resuming, else a new one built from the train split's
    texts (saved once validated; a resume never gathers the texts)."""
    from contrastkit.models import build_tokenizer, load_tokenizer

    folder = run_dir / "tokenizer"
    if resume and folder.is_dir():
        return load_tokenizer(folder)
    return build_tokenizer(cfg.model.tokenizer, tokenizer_texts(train_set))


def init_from(model: nn.Module, source: str) -> None:
    """Load model weights from a run dir (its best checkpoint) or a checkpoint folder, non-strictly."""
    path = Path(source)
    path = (
        ckpt.resolve_checkpoint(path, "best")
        if (path / "config.yaml").exists()
        else ckpt.resolve_checkpoint(path.parent, path)
    )
    tensors, _ = ckpt.load_checkpoint(path)
    result = model.load_state_dict(ckpt.sub_state(tensors, "model"), strict=False)
    log.info(
        "model.init_from %s: %d missing keys %s, %d unexpected keys %s",
        path,
        len(result.missing_keys),
        result.missing_keys[:5],
        len(result.unexpected_keys),
        result.unexpected_keys[:5],
    )


def _teacher(cfg: Config, model: nn.Module) -> tuple[EMA | None, Callable | None]:
    dcfg = cfg.loss.distillation
    if dcfg is None:
        return None, None
    if dcfg.source == "ema":
        ema = EMA(model, dcfg.ema_decay)
        return ema, TeacherHook(ema.model)
    assert dcfg.teacher is not None  # DistillationConfig requires it for source: teacher
    teacher = ckpt.load_run(dcfg.teacher, "best", with_data=False).model.to(
        next(model.parameters()).device
    )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return None, TeacherHook(teacher)


def _loader_factory(
    dataset: Any, cfg: Config, info: DistInfo, miner: Any = None
) -> tuple[Callable, int]:
    """Train loaders by (epoch, start batch); a hard-negative `miner` supplies (and re-mines
    on schedule) the negatives each epoch's batches are built around."""
    from contrastkit.data import build_loader
    from contrastkit.data.loaders import reuse_loader

    rows = cfg.data.batch_size * cfg.train.accumulate * info.world_size  # global batch per step

    built: dict[str, Any] = {}  # the last loader: its persistent workers serve later epochs

    def make(epoch: int, start_batch: int):
        negatives = None if miner is None else miner.negatives_for(epoch)
        if negatives is None and reuse_loader(built.get("loader"), epoch, start_batch):
            return built["loader"]
        built["loader"] = build_loader(
            dataset,
            cfg.data,
            train=True,
            seed=cfg.train.seed,
            epoch=epoch,
            start_batch=start_batch,
            rank=info.rank,
            world_size=info.world_size,
            batch_size=rows,
            negatives=negatives,
        )
        return built["loader"]

    try:
        steps = len(make(0, 0))
    except TypeError:
        steps = len(dataset) // rows if cfg.data.drop_last else math.ceil(len(dataset) / rows)
    if steps == 0:
        raise ContrastkitError(
            f"the train split has {len(dataset)} rows, fewer than one global batch of {rows} "
            f"(data.batch_size x train.accumulate x world size); lower data.batch_size"
        )
    return make, steps


def _evaluator(
    bundle: Any, cfg: Config, split: str, *, final: bool = True
) -> Callable[[nn.Module], dict[str, float]]:
    """Evaluation of one split. The linear probe (which embeds the whole train split and
    fits a classifier) runs only in the final evaluation, not in the periodic ones."""
    from contrastkit.eval.evaluate import evaluate

    dataset = bundle.splits[split]
    train = bundle.splits.get(cfg.data.train_split) if final else None
    if getattr(train, "streaming", False):  # a streamed train split has no random access
        train = None
    # The engine hands back the model it trains: the ContrastiveModel built here.
    return lambda model: evaluate(
        cast(EmbeddingModel, model),
        dataset,
        cfg.eval,
        split=split,
        pairs=eval_pairs(cfg),
        batch_size=cfg.data.eval_batch_size,
        train_dataset=train,
    )


def _probe_batch(dataset: Any, size: int) -> dict:
    from contrastkit.data import collate

    if getattr(dataset, "streaming", False):
        return collate(dataset.head(size))
    return collate([dataset[i] for i in range(min(size, len(dataset)))])


def _monitors(cfg: Config) -> list[Callback]:
    if not cfg.doctor.enabled:
        return []
    from contrastkit.doctor import build_monitors

    return list(build_monitors(cfg))


def _final_eval(model: nn.Module, bundle: Any, cfg: Config, run_dir: Path) -> dict[str, float]:
    """Evaluate the best (else last) checkpoint on every eval split that exists."""
    tensors, _ = ckpt.load_checkpoint(ckpt.resolve_checkpoint(run_dir, "best"))
    model.load_state_dict(ckpt.sub_state(tensors, "model"))
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for split in cfg.eval.splits:
            if split in bundle.splits and len(bundle.splits[split]) > 0:
                metrics.update(_evaluator(bundle, cfg, split)(model))
    return metrics


def _diagnose(cfg: Config, run_dir: Path) -> None:
    """The end-of-run diagnosis (`doctor.run.diagnose_run`), also after a failed run: a
    run that stops early must still say why in findings.json. A failure of the diagnosis
    itself is logged, never raised over the run's own outcome."""
    if not cfg.doctor.enabled:
        return
    from contrastkit.doctor.run import diagnose_run

    try:
        diagnose_run(run_dir, cfg)
    except Exception:  # noqa: BLE001 - an observer's bug must not mask the run's result
        log.exception("the doctor failed to diagnose %s; `contrastkit doctor run` retries", run_dir)


def _report(run_dir: Path, model: EmbeddingModel, bundle: Any) -> None:
    """report.html from the model and data in hand (best checkpoint loaded by the final
    evaluation). Like the diagnosis, a failure is logged and never loses the run."""
    from contrastkit.app.report import write_report

    try:
        write_report(run_dir, model=model, bundle=bundle)
    except Exception:  # noqa: BLE001 - the run is done; `contrastkit report` retries
        log.exception("report.html not written; `contrastkit report %s` retries", run_dir)


def _run_info(cfg: Config, bundle: Any, info: DistInfo) -> dict[str, Any]:
    """What the doctor and the report need to know about the run that no config holds:
    the *global* batch (per-rank batch x accumulate x world size) and the data's shape."""
    return {
        "world_size": info.world_size,
        "global_batch_size": cfg.data.batch_size * cfg.train.accumulate * info.world_size,
        "splits": data_summary(bundle),  # the report's data table reads it back
        "rows_skipped": len(bundle.skipped),
    }


def _input_specs(bundle: Any, train_split: str) -> dict[str, tuple[int, ...]]:
    """Input shapes from the train split; variable-length token grids take the longest row
    of any split, so evaluation never meets more tokens than the model has positions for."""
    specs = dict(bundle.splits[train_split].input_specs())
    for name, dataset in bundle.splits.items():
        if name == train_split:
            continue
        for column, shape in dataset.input_specs().items():
            if column == "features" and len(shape) == 2 and column in specs:
                specs[column] = (max(specs[column][0], shape[0]), shape[1])
    return specs


def _log_skipped(bundle: Any, run_dir: Path) -> None:
    """Rows dropped by `data.on_error: skip` go to the log and to metrics.jsonl, never silently."""
    if not bundle.skipped:
        return
    for row in bundle.skipped[:10]:
        log.warning(
            "skipped %s row %s (%s): column %r: %s",
            row.manifest,
            row.line,
            row.id,
            row.column,
            row.reason,
        )
    log.warning(
        "data.on_error=skip dropped %d rows (details in findings.json)", len(bundle.skipped)
    )
    record = {"step": 0, "data/rows_skipped": len(bundle.skipped)}
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def train(
    cfg: Config,
    run_dir: Path,
    *,
    resume: str | None = None,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train a model as `cfg` says, writing everything into `run_dir`; returns the summary.

    Nothing is written into `run_dir` until the run directory, data, model and resume
    checkpoint are validated (`app/rundir.py`), so a failed command leaves a finished run as
    it was.

    Args:
        resume: `auto` (newest valid checkpoint, or start fresh), `last`, or a checkpoint folder.
        overwrite: move a non-empty `run_dir` aside (`<dir>.old-<time>`) and start again.
        callbacks: extra callbacks (after the doctor's monitors).
    """
    from contrastkit.data import build_datasets
    from contrastkit.eval.evaluate import check_probe_config
    from contrastkit.losses import build_loss
    from contrastkit.models import build_model

    run_dir = Path(run_dir)
    info = init_distributed(cfg.train.device)
    status = "failed"
    engine: Engine | None = None
    lock = RunLock(run_dir)
    try:
        if info.is_main:
            check_run_dir(run_dir, resume=resume, overwrite=overwrite)
        _seed(cfg.train.seed)
        bundle = build_datasets(cfg.data, eval_splits=cfg.eval.splits)
        train_set = bundle.splits[cfg.data.train_split]
        tokenizer = _tokenizer(cfg, train_set, run_dir, resume)
        specs, num_classes = (
            _input_specs(bundle, cfg.data.train_split),
            len(bundle.label_names) or None,
        )
        model = build_model(
            cfg.model, tokenizer=tokenizer, input_specs=specs, num_classes=num_classes
        )
        check_probe_config(cfg.eval, model, bundle.label_names, cfg.data.manifest)
        # A resumed run reads its at-start numbers back; only a fresh one evaluates.
        fresh = overwrite or not (run_dir / AT_START_FILE).is_file()
        reference = random_reference(cfg, model) if info.is_main and fresh else None
        if cfg.model.init_from:
            init_from(model, cfg.model.init_from)
        apply_train_lora(model, cfg.train)  # after init_from: adapters start at zero
        resume_from = check_resume(run_dir, resume, model, cfg) if resume else None
        # Validated: from here on this command writes into run_dir.
        if info.is_main:
            if overwrite or (resume and resume_from is None):
                move_aside(run_dir)  # --resume auto with nothing to resume: keep the leftovers
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            _write_config(cfg, run_dir)
            update_run_info(run_dir, status="running", **_run_info(cfg, bundle, info))
            _check_data(bundle, cfg, run_dir)
            _log_skipped(bundle, run_dir)
            if not (run_dir / "tokenizer").is_dir():
                tokenizer.save(run_dir / "tokenizer")
            spec = {
                "input_specs": {k: list(v) for k, v in specs.items()},
                "num_classes": num_classes,
            }
            (run_dir / "model_spec.json").write_text(json.dumps(spec))
        model.to(info.device)
        caches = attach_feature_caches(model, cfg, run_dir, train_set.opts)
        at_start = at_start_metrics(model, bundle, cfg, run_dir, reference) if info.is_main else {}
        del reference  # the random-weights copy is only for that evaluation
        ema, add_teacher = _teacher(cfg, model)
        miner = build_miner(cfg, model, train_set)
        make_loader, steps = _loader_factory(train_set, cfg, info, miner)
        val = cfg.data.val_split
        parts = EngineParts(
            model=model,
            criterion=build_loss(with_pretrained_logits(cfg.loss, model)),
            make_loader=make_loader,
            steps_per_epoch=steps,
            weights=make_weights_fn(cfg.loss, cfg.train.phases),
            evaluate=_evaluator(bundle, cfg, val, final=False)
            if val in bundle.splits and len(bundle.splits[val])
            else None,
            select_metric=select_metric(cfg),
            callbacks=[*_monitors(cfg), *callbacks, FlushFeatureCaches(caches)],
            config=cfg,
            probe_batch=_probe_batch(train_set, cfg.doctor.probe_size),
            add_teacher=add_teacher,
            ema=ema,
        )
        engine = Engine(cfg.train, parts, run_dir, dist=info)
        fit = engine.fit(resume)
        if not info.is_main:
            return fit
        record_mining(miner, run_dir / DATA_FINDINGS_FILE)
        summary = {
            **at_start,
            **_final_eval(model, bundle, cfg, run_dir),
            **FlushFeatureCaches(caches).flush(),
            "data/rows_skipped": float(len(bundle.skipped)),
            "train/steps": fit["train/steps"],
            "train/seconds": fit["train/seconds"],
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
        status = "finished"
        return summary
    except BaseException as exc:
        status = f"failed: {type(exc).__name__}: {exc}"[:500]
        if lock.held and (run_dir / "config.yaml").is_file():
            # So that the end-of-run diagnosis explains the stop (loss_nan / run_stopped).
            step = engine.state.step if engine is not None else 0
            stop = stop_record(step, exc, nonfinite=isinstance(exc, NonFiniteError))
            update_run_info(run_dir, stopped=stop)
        raise
    finally:
        try:
            if lock.held and (run_dir / "config.yaml").is_file():
                update_run_info(run_dir, status=status)
                _diagnose(cfg, run_dir)
                if status == "finished":
                    _report(run_dir, model, bundle)
        finally:
            lock.release()
            cleanup()
