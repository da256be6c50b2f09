"""`train(cfg, run_dir)`: wire the real data, model, loss, doctor and eval into the engine.

This is the application layer: it reads the typed config and calls each package's
factory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from contrastkit.app.eval_splits import val_can_select, warn_small_galleries
from contrastkit.app.evaluation import final_eval, split_evaluator
from contrastkit.app.lit import FlushFeatureCaches, attach_feature_caches
from contrastkit.app.mining import build_miner, record_mining
from contrastkit.app.model_setup import (
    distillation_teacher,
    init_from,
    run_input_specs,
    run_tokenizer,
)
from contrastkit.app.run_files import (
    check_run_data,
    diagnose_end,
    log_skipped,
    run_info,
    write_config,
    write_data_findings,
    write_run_report,
)
from contrastkit.app.rundir import RunLock, check_run_dir, move_aside
from contrastkit.app.train_loader import check_batch_fits, loader_factory, train_probe_batch
from contrastkit.app.zero_shot import AT_START_FILE, at_start_metrics, random_reference
from contrastkit.config import Config
from contrastkit.doctor.run import DATA_FINDINGS_FILE, stop_record, update_run_info
from contrastkit.events import Callback
from contrastkit.models.encoders.hf_clip import with_pretrained_logits
from contrastkit.pairing import select_metric
from contrastkit.train.checkpoint.snapshot import check_resume
from contrastkit.train.distributed import cleanup, init_distributed
from contrastkit.train.engine import Engine
from contrastkit.train.engine.parts import EngineParts
from contrastkit.train.lora import apply_train_lora
from contrastkit.train.nonfinite import NonFiniteError
from contrastkit.train.phases import make_weights_fn
from contrastkit.train.preemption import Preempted, PreemptionWatch


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _monitors(cfg: Config) -> list[Callback]:
    if not cfg.doctor.enabled:
        return []
    from contrastkit.doctor import build_monitors

    return list(build_monitors(cfg))


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
    from contrastkit.eval.probe_keys import check_probe_config
    from contrastkit.losses import build_loss
    from contrastkit.models import build_model

    run_dir = Path(run_dir)
    info = init_distributed(cfg.train.device)
    status = "failed"
    engine: Engine | None = None
    lock = RunLock(run_dir)
    # SIGTERM / SIGUSR1 from here on end the run at a step boundary with a checkpoint.
    watch = PreemptionWatch().install()
    try:
        if info.is_main:
            check_run_dir(run_dir, resume=resume, overwrite=overwrite)
        _seed(cfg.train.seed)
        bundle = build_datasets(cfg.data, eval_splits=cfg.eval.splits)
        train_set = bundle.splits[cfg.data.train_split]
        tokenizer = run_tokenizer(cfg, train_set, run_dir, resume)
        specs, num_classes = (
            run_input_specs(bundle, cfg.data.train_split),
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
        # Checks that depend on the data: a batch larger than the split, a data doctor stop.
        check_batch_fits(train_set, cfg, info)
        warn_small_galleries(bundle, cfg)
        data_findings = check_run_data(bundle, cfg) if info.is_main else []
        # Validated: from here on this command writes into run_dir.
        if info.is_main:
            if overwrite or (resume and resume_from is None):
                move_aside(run_dir)  # --resume auto with nothing to resume: keep the leftovers
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            write_config(cfg, run_dir)
            update_run_info(run_dir, status="running", **run_info(cfg, bundle, info))
            write_data_findings(data_findings, cfg, run_dir)
            log_skipped(bundle, run_dir)
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
        ema, add_teacher = distillation_teacher(cfg, model)
        miner = build_miner(cfg, model, train_set)
        make_loader, steps = loader_factory(train_set, cfg, info, miner)
        val = cfg.data.val_split or ""
        parts = EngineParts(
            model=model,
            criterion=build_loss(with_pretrained_logits(cfg.loss, model)),
            make_loader=make_loader,
            steps_per_epoch=steps,
            weights=make_weights_fn(cfg.loss, cfg.train.phases),
            evaluate=split_evaluator(bundle, cfg, val, final=False)
            if val_can_select(bundle, cfg)
            else None,
            select_metric=select_metric(cfg),
            callbacks=[*_monitors(cfg), *callbacks, FlushFeatureCaches(caches)],
            config=cfg,
            probe_batch=train_probe_batch(train_set, cfg.doctor.probe_size),
            add_teacher=add_teacher,
            ema=ema,
        )
        engine = Engine(cfg.train, parts, run_dir, dist=info)
        fit = engine.fit(resume, preemption=watch)
        signum = watch.agreed(info.device)  # arrived after the last step: before final eval
        if signum:
            raise Preempted(signum, engine.state.step, None)
        if not info.is_main:
            return fit
        record_mining(miner, run_dir / DATA_FINDINGS_FILE)
        summary = {
            **at_start,
            **final_eval(model, bundle, cfg, run_dir),
            **FlushFeatureCaches(caches).flush(),
            "data/rows_skipped": float(len(bundle.skipped)),
            "train/steps": fit["train/steps"],
            "train/seconds": fit["train/seconds"],
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
        status = "finished"
        return summary
    except Preempted:
        status = "preempted"  # not a failure: `--resume auto` continues it
        raise
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
                diagnose_end(cfg, run_dir)
                if status == "finished":
                    write_run_report(run_dir, model, bundle)
        finally:
            lock.release()
            watch.close()
            cleanup()
