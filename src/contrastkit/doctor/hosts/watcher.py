"""The watcher: contrastkit's doctor on a training loop it does not own.

`attach(model, optimizer, run_dir=..., batch_size=...)` returns a `Watcher` that drives
the engine's own monitors (`build_monitors`) from outside the engine. It keeps one
`events.State` and fires the same events the engine fires, at the matching points of a
foreign loop:

| engine event | in a foreign loop | source |
|---|---|---|
| FIT_START | `attach` | the call itself |
| AFTER_FORWARD, AFTER_LOSS | each `observe(loss=...)` | the user (or a host callback) |
| AFTER_BACKWARD | before `optimizer.step()`: gradients present | `Optimizer.register_step_pre_hook` |
| BATCH_END | after `optimizer.step()`: the step counter moves | `Optimizer.register_step_post_hook` |
| EVAL_END | `evaluate(metrics)` | the user (or a host callback) |
| FIT_END | `close()` | the user (or a host callback) |

So gradients, learning rates and weight drift need no call from the user, and there is
one implementation of every measurement: a new monitor registered in `build_monitors`
runs here too. `close()` diagnoses the records with the same rules (`diagnose`) against
a `host_config` description of the run, translates the fixes into the host's words
(`fixes.translate_findings`) and writes the run directory's files. Host callbacks (HF
`Trainer`, Lightning) call `before_step` / `after_step` from their own hooks instead of
the optimizer hooks (`step_hooks=False`), because a Lightning optimizer runs the forward
*inside* `optimizer.step(closure)`.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import Config, dump_config
from contrastkit.doctor.findings import Finding, write_findings
from contrastkit.doctor.hosts.fixes import HOSTS, translate_findings
from contrastkit.doctor.hosts.host_config import host_config
from contrastkit.doctor.monitors.base import SIGNALS_FILE
from contrastkit.doctor.monitors.builder import build_monitors
from contrastkit.doctor.monitors.negatives import NegativesMonitor
from contrastkit.doctor.report import plot_curves
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.run import RUN_INFO_FILE
from contrastkit.errors import ConfigError
from contrastkit.events import Callback, Event, State, fire
from contrastkit.losses.result import ContrastiveResult, LossOutput
from contrastkit.models.outputs import ModelOutput, TowerOutput

# Parameter names (last component) that hold a temperature or bias: the optimizer
# monitor checks their weight decay, as it does for contrastkit's criterion.
TEMPERATURE_NAMES = ("logit_scale", "logit_bias", "temperature")
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"

log = logging.getLogger(__name__)
_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def _is_temperature(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in TEMPERATURE_NAMES


class _Temperatures(nn.Module):
    """The host model's temperature / bias parameters under their short names, standing in
    for contrastkit's criterion: the optimizer monitor checks their weight decay there,
    and they report as the `criterion` group, as in a contrastkit run."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name, p in model.named_parameters():
            short = name.rsplit(".", 1)[-1]
            if _is_temperature(name) and short not in self._parameters:
                self.register_parameter(short, p)


class _ModelView(nn.Module):
    """The host model's top-level children and direct parameters, without its direct
    temperature parameters (those belong to `_Temperatures`).

    Only enumerated, never run: the monitors group parameters by their first name
    component (`text_model`, `visual_projection`, ...), and a top-level `logit_scale`
    would otherwise be a module group of its own whose records (`trainable/logit_scale`)
    read like the temperature signal `<objective>/logit_scale`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, p in model.named_parameters(recurse=False):
            if not _is_temperature(name):
                self.register_parameter(name, p)


def _is_main() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _scalar(value: Tensor | float, what: str) -> Tensor:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"observe({what}=...): expected a scalar, got shape {list(value.shape)}"
            )
        return value.reshape(())
    if isinstance(value, int | float):
        return torch.tensor(float(value))
    raise TypeError(
        f"observe({what}=...): expected a tensor or a number, got {type(value).__name__}"
    )


class Watcher:
    """The doctor attached to a foreign training loop (see the module docstring).

    Build it with `attach`. Per step call `observe(loss=...)` (everything else optional),
    optionally `evaluate(metrics)`, and `close()` at the end (or use it as a context
    manager).

    Args:
        model, optimizer, run_dir, batch_size: see `attach`.
        host: whose words the fixes use (`fixes.HOSTS`).
        towers: names of the two embedding sets `observe(embeddings=...)` passes.
        objective: `clip` (softmax / InfoNCE, MNRL) or `siglip`.
        objective_name: the contrastive term's name in `observe(terms=...)`.
        weights: loss-term weights (default 1 each).
        temperature: the starting temperature; default 1 / the first observed scale.
        learnable_temperature: whether the host learns it.
        pretrained: the model starts from pretrained weights.
        select_metric, select_mode: the evaluation key the at-start rule reads.
        max_steps, warmup_steps, amp: the host's schedule and precision, for the rules.
        every: steps between records (contrastkit's `doctor.every`).
        criterion: a loss module holding the temperature (default: the model's own
            `logit_scale` / `logit_bias` / `temperature` parameters).
        step_hooks: record gradients and steps through hooks on `optimizer.step()`
            (host callbacks pass False and call `before_step` / `after_step`).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        run_dir: str | Path,
        batch_size: int,
        host: str = "plain",
        towers: Sequence[str] = ("a", "b"),
        objective: str = "clip",
        objective_name: str = "contrastive",
        weights: Mapping[str, float] | None = None,
        temperature: float | None = None,
        learnable_temperature: bool = True,
        pretrained: bool = False,
        select_metric: str | None = None,
        select_mode: str = "max",
        max_steps: int | None = None,
        amp: str = "none",
        warmup_steps: int = 0,
        every: int = 25,
        criterion: nn.Module | None = None,
        step_hooks: bool = True,
    ) -> None:
        if host not in HOSTS:
            raise ConfigError(f"attach(host={host!r}): known hosts are {list(HOSTS)}")
        if every < 1:
            raise ConfigError(f"attach(every={every}): must be >= 1")
        self.host = host
        self.towers = tuple(towers)
        self.objective_name = objective_name
        self.weights = dict(weights or {})
        self.select_metric = select_metric
        self._facts: dict[str, Any] = {
            "batch_size": batch_size,
            "objective": objective,
            "towers": self.towers,
            "objective_name": objective_name,
            "learnable_temperature": learnable_temperature,
            "pretrained": pretrained,
            "select_mode": select_mode,
            "amp": amp,
            "max_steps": max_steps,
            "warmup_steps": warmup_steps,
            "every": every,
        }
        self._temperature = temperature
        self._bias: float | None = None  # the first observed SigLIP bias: its start
        # Under DDP the wrapper's one child `module` would be the only module group.
        model = getattr(model, "module", model) if isinstance(model, _WRAPPERS) else model
        lr = max((float(g.get("lr", 0.0)) for g in optimizer.param_groups), default=0.0)
        self._facts["lr"] = lr if lr > 0 else 1e-3  # an lr of 0 is what lr_zero reports
        self._observed = 0  # observe() calls since the last optimizer step
        self._accumulate = 1  # micro-batches per optimizer step, as observed
        cfg = self.config()  # validates the description now, not at close()
        self.monitors: list[Callback] = build_monitors(cfg)
        self._every = every
        self._every_step = {
            e: [m for m in self.monitors if e in getattr(m, "every_step", ())] for e in Event
        }
        self.state = State(
            model=_ModelView(model),
            criterion=criterion if criterion is not None else _Temperatures(model),
            optimizer=optimizer,
            run_dir=Path(run_dir),
            max_steps=max_steps or 0,
            is_main=_is_main(),
            batch_size=batch_size,
        )
        self.evaluations: list[dict[str, Any]] = []
        self.findings: list[Finding] | None = None
        self._handles = []
        if step_hooks:
            self._handles = [
                optimizer.register_step_pre_hook(lambda *_: self.before_step()),
                optimizer.register_step_post_hook(lambda *_: self.after_step()),
            ]
        if self.state.is_main:
            self.state.run_dir.mkdir(parents=True, exist_ok=True)
            (self.state.run_dir / SIGNALS_FILE).unlink(missing_ok=True)  # one run per folder
        fire(self.monitors, Event.FIT_START, self.state)

    @property
    def step(self) -> int:
        """Optimizer steps taken since `attach`."""
        return self.state.step

    def config(self) -> Config:
        """The `host_config` description of this run (temperature from the first observed
        logit scale when `attach` was not told it)."""
        facts = dict(self._facts)
        if self._accumulate > 1:
            # batch_size is one loss call's rows; the step's rows are the global batch.
            facts.update(
                accumulate=self._accumulate,
                accumulation="naive",
                batch_size=self._facts["batch_size"] * self._accumulate,
            )
        if self._temperature is not None and facts["objective"] == "siglip":
            facts["init_logit_scale"] = math.log(1.0 / self._temperature)  # t' of t = 1/temp
            if self._bias is not None:
                facts["init_logit_bias"] = self._bias
        elif self._temperature is not None:
            facts["temperature"] = self._temperature
            # A start above CLIP's clamp (e.g. a host without one) must stay describable.
            facts["max_logit_scale"] = max(100.0, 1.0 / self._temperature)
        if self.select_metric is not None:
            facts["select_metric"] = self.select_metric
        return host_config(**facts)

    def select(self, metric: str, mode: str = "max") -> None:
        """The evaluation metric the at-start comparison reads; `mode` is `max` when
        higher is better."""
        if mode not in ("max", "min"):
            raise ValueError(f"select(mode={mode!r}): must be 'max' or 'min'")
        self.select_metric = metric
        self._facts["select_mode"] = mode

    def observe(
        self,
        loss: Tensor | float,
        *,
        terms: Mapping[str, Tensor | float] | None = None,
        embeddings: Sequence[Tensor] | Mapping[str, Tensor] | None = None,
        groups: Tensor | Sequence[Any] | None = None,
        logit_scale: Tensor | float | None = None,
        logit_bias: Tensor | float | None = None,
        step: int | None = None,
    ) -> None:
        """Record one training step's loss and, when given, what it was computed from.

        Call it after the loss and before `backward()` when `terms` carry their graph, so
        the interference monitor can take each term's gradient; after works too (that
        measurement is then skipped). Call it once per loss computation: several calls
        in one optimizer step mean gradient accumulation over micro-batches with one loss
        each (naive: no added negatives), which `naive_accumulation_no_negatives` reports;
        the loss record keeps the first, the negatives record sees every micro-batch.
        Off the cadence (`every`) only the non-finite count runs.

        Args:
            loss: the total loss of this loss computation, before any division by the
                accumulation steps (chance level is judged on it).
            terms: the unweighted loss terms by name, one of them the contrastive term
                (`objective_name`, default `contrastive`); weights come from `attach`.
                Enables the domination and interference rules.
            embeddings: the two towers' embeddings of the batch (B x D each; a pair in
                `towers` order or a mapping by tower name). Enables alignment and collapse.
            groups: one id per row (rows sharing an id are positives). Default: each row
                is its own positive, which is what CLIP and MNRL losses assume.
            logit_scale: the multiplier of the cosine similarities (1 / temperature, i.e.
                `logit_scale.exp()` for CLIP's log-parameter). Enables the temperature rules.
            logit_bias: SigLIP's bias.
            step: the step to file the record under (host callbacks that call after the
                optimizer step); default: optimizer steps taken so far.
        """
        total = _scalar(loss, "loss")
        raw = dict(terms) if terms else {self.objective_name: total}
        if self.objective_name not in raw:
            raise ValueError(
                f"observe(terms=...): no contrastive term {self.objective_name!r} among "
                f"{sorted(raw)}; name it so, or attach(..., objective_name=...)"
            )
        if step is None:
            self._observed += 1  # loss calls in this optimizer step (accumulation)
        self.state.step = self.step if step is None else int(step)
        first_scale = logit_scale is not None and self._temperature is None
        first_bias = logit_bias is not None and self._bias is None
        if not (self._cadence(self.state.step) or first_scale or first_bias):
            # Off the cadence no monitor records; only the every-step ones (the non-finite
            # count) see the total. Building the rest (normalised embeddings, term
            # tensors) every step is what made the watcher cost ~0.5 ms a step.
            self._pair(embeddings, groups)  # the inputs are checked on every call
            self.state.loss = LossOutput(total=total, terms={}, weights={}, results={})
            self.state.output = self.state.batch = None
            self._fire_step(Event.AFTER_FORWARD, on_cadence=False)
            self._fire_step(Event.AFTER_LOSS, on_cadence=False)
            return
        term_tensors = {k: _scalar(v, f"terms[{k!r}]") for k, v in raw.items()}
        scale = (
            None if logit_scale is None else _scalar(logit_scale, "logit_scale").detach().float()
        )
        if scale is not None and self._temperature is None and float(scale) > 0:
            self._temperature = 1.0 / float(scale)  # the start the temperature rule judges
        bias = None if logit_bias is None else _scalar(logit_bias, "logit_bias").detach().float()
        if bias is not None and self._bias is None:
            self._bias = float(bias)
        output, batch = self._output(embeddings, groups)
        if self._observed > 1 and step is None and batch is not None and self.state.batch:
            # A later micro-batch of an accumulated step: the negatives monitor splits the
            # step's rows back into its micro-batches (its contrastive batches).
            before = self.state.batch["group_ids"]
            ids = batch["group_ids"] + (0 if groups is not None else int(before.max()) + 1)
            batch = {"group_ids": torch.cat([before, ids.to(before.device)])}
            output = self.state.output
        self.state.output, self.state.batch = output, batch
        result = ContrastiveResult(
            loss=term_tensors[self.objective_name], logit_scale=scale, logit_bias=bias
        )
        self.state.loss = LossOutput(
            total=total,
            terms=term_tensors,
            weights={k: float(self.weights.get(k, 1.0)) for k in term_tensors},
            results={self.objective_name: result},
        )
        fire(self.monitors, Event.AFTER_FORWARD, self.state)
        fire(self.monitors, Event.AFTER_LOSS, self.state)

    def _cadence(self, step: int) -> bool:
        """A step the monitors record (`every` steps, from 0)."""
        return step % self._every == 0

    def _fire_step(self, event: Event, *, on_cadence: bool) -> None:
        """Fire a per-step event: to every monitor on a cadence step, else only to those
        that need it every step (`Monitor.every_step`)."""
        fire(self.monitors if on_cadence else self._every_step[event], event, self.state)

    def _pair(
        self, embeddings: Sequence[Tensor] | Mapping[str, Tensor] | None, groups: Any = None
    ) -> list[Tensor] | None:
        """The two towers' embeddings in `towers` order, checked (B x D each); None if
        absent, when `groups` must be absent too."""
        if embeddings is None:
            if groups is not None:
                raise ValueError("observe(groups=...) needs embeddings=(a, b) of the same rows")
            return None
        if isinstance(embeddings, Mapping):
            if set(embeddings) != set(self.towers):
                raise ValueError(
                    f"observe(embeddings={{...}}): keys {sorted(embeddings)} are not the towers "
                    f"{list(self.towers)} given to attach(towers=...)"
                )
            pair = [embeddings[t] for t in self.towers]
        else:
            pair = list(embeddings)
            if len(pair) != 2:
                raise ValueError(
                    f"observe(embeddings=...): expected two tensors (a, b), got {len(pair)}"
                )
        rows = pair[0].shape[0]
        for t, e in zip(self.towers, pair, strict=True):
            if e.dim() != 2 or e.shape[0] != rows:
                raise ValueError(
                    f"observe(embeddings=...): {t} has shape {list(e.shape)}; expected {rows} x D "
                    "like the first tower"
                )
        return pair

    def _output(
        self, embeddings: Sequence[Tensor] | Mapping[str, Tensor] | None, groups: Any
    ) -> tuple[ModelOutput | None, dict[str, Any] | None]:
        pair = self._pair(embeddings, groups)
        if pair is None:
            return None, None
        rows = pair[0].shape[0]
        if groups is None:
            group_ids = torch.arange(rows)
        else:
            group_ids = torch.as_tensor(groups).reshape(-1)
            if group_ids.numel() != rows:
                raise ValueError(f"observe(groups=...): {group_ids.numel()} ids for {rows} rows")
        towers = {}
        for t, e in zip(self.towers, pair, strict=True):
            unit = nn.functional.normalize(e.detach().float(), dim=-1)
            towers[t] = TowerOutput(tokens=unit[:, None], pooled=unit, embedding=unit)
        return ModelOutput(towers=towers), {"group_ids": group_ids.to(pair[0].device)}

    def before_step(self) -> None:
        """Gradients are final and the optimizer is about to step (AFTER_BACKWARD)."""
        self._fire_step(Event.AFTER_BACKWARD, on_cadence=self._cadence(self.state.step))

    def after_step(self) -> None:
        """The optimizer stepped (BATCH_END): the step counter moves on.

        Several `observe` calls since the last step mean the host accumulates gradients
        over micro-batches, one loss each (naive accumulation: no added negatives); the
        description and the negatives monitor then say so.
        """
        if self._observed > self._accumulate:  # the most seen (a last step may be short)
            self._accumulate = self._observed
            for m in self.monitors:
                if isinstance(m, NegativesMonitor):
                    m.accumulate, m.mode = self._accumulate, "naive"
        self._observed = 0
        self.state.step += 1
        self._fire_step(Event.BATCH_END, on_cadence=self._cadence(self.state.step - 1))

    def evaluate(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Record evaluation metrics. One before the first optimizer step is the at-start
        reference (`worse_than_start` compares the last evaluation with it).

        Args:
            metrics: name -> value; the first call's first key is the selection metric
                unless `attach(select_metric=...)` named one.
            step: the step to file them under (default: optimizer steps so far).
        """
        values = {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if not values:
            raise ValueError(f"evaluate(metrics=...): no numeric value in {dict(metrics)!r}")
        if self.select_metric is None:
            self.select_metric = next(iter(values))
        at = self.step if step is None else int(step)
        prefix = "at_start/" if at == 0 and not any(e["step"] > 0 for e in self.evaluations) else ""
        record = {"step": at, "monitor": "eval", **{prefix + k: v for k, v in values.items()}}
        self.evaluations.append(record)
        self.state.eval_metrics = values
        fire(self.monitors, Event.EVAL_END, self.state)

    def signals(self) -> list[dict[str, Any]]:
        """Every record so far: the monitors' and the evaluations', in step order."""
        records = [r for m in self.monitors for r in getattr(m, "history", [])]
        return sorted([*records, *self.evaluations], key=lambda r: r.get("step", 0))

    def diagnose(self) -> list[Finding]:
        """The findings so far (same rules as a contrastkit run), fixes in the host's words."""
        cfg = self.config()
        found = diagnose(self.signals(), cfg, batch_size=cfg.data.batch_size)
        return translate_findings(found, self.host, weights=self.weights)

    def close(self, *, report: bool = True) -> list[Finding]:
        """End of training: FIT_END, remove the hooks, diagnose, and (rank 0) write the
        run directory (`_write`). Calling it again returns the same findings.

        Args:
            report: also render `report.html` (`write_report_page`).
        """
        if self.findings is not None:
            return self.findings
        fire(self.monitors, Event.FIT_END, self.state)
        for h in self._handles:
            h.remove()
        self.findings = self.diagnose()
        if self.state.is_main:
            self._write(self.findings)
            if report:
                write_report_page(self.state.run_dir)
        return self.findings

    def _write(self, findings: list[Finding]) -> None:
        """`signals.jsonl` (written by the monitors as they record), `findings.json`,
        `training_curves.png`, and what makes the folder a run directory that `contrastkit
        report` / `compare` read: `config.yaml` (the host description), `run.json`,
        `metrics.jsonl` (the evaluations) and `summary.json` (the last evaluation; its
        presence marks the run finished, so the report keeps these host-worded findings
        instead of diagnosing again)."""
        run_dir = self.state.run_dir
        write_findings(findings, run_dir / "findings.json")
        signals = self.signals()
        if signals:
            plot_curves(signals, run_dir / "training_curves.png")
        (run_dir / "config.yaml").write_text(dump_config(self.config()), encoding="utf-8")
        info = {
            "global_batch_size": self._facts["batch_size"],
            "host": self.host,
            "steps": self.step,
            "status": "finished",
        }
        (run_dir / RUN_INFO_FILE).write_text(json.dumps(info, indent=1, sort_keys=True))
        with (run_dir / METRICS_FILE).open("w") as f:
            for rec in self.evaluations:
                line = {k: v for k, v in rec.items() if k != "monitor"}
                f.write(json.dumps(line, default=_json_float) + "\n")
        last = [r for r in self.evaluations if not any(k.startswith("at_start/") for k in r)]
        summary = {
            k: v for k, v in (last[-1] if last else {}).items() if k not in ("step", "monitor")
        }
        (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=_json_float))

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        """`close()`."""
        self.close()


def write_report_page(run_dir: Path) -> bool:
    """Render `report.html` for a watcher's run directory; False (with a warning) if that failed.

    The page is the application's (`contrastkit.app.report`), which the doctor package
    must not import (docs/architecture.md: nothing imports `app/`), so it is rendered
    as a user would, by `python -m contrastkit report RUN_DIR` in a child process (a few
    seconds, once, at the end of training).
    """
    cmd = [sys.executable, "-m", "contrastkit", "report", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("report.html not written (%s): %s", " ".join(cmd), done.stderr.strip()[-500:])
        return False
    return True


def _json_float(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else str(value)


def attach(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    run_dir: str | Path,
    batch_size: int,
    **options: Any,
) -> Watcher:
    """Attach contrastkit's doctor to any PyTorch training loop.

    Args:
        model: the model being trained (its parameters' gradients and drift are measured).
        optimizer: its optimizer; hooks on its `step` record gradients, learning rates
            and the step count.
        run_dir: where `close()` writes signals.jsonl, findings.json, training_curves.png.
        batch_size: how many candidates each query is scored against in one call of
            your loss (the rows of the other side of the similarity matrix: per device
            when the loss does not gather across processes, global when it does; with
            gradient accumulation, one micro-batch, since summed gradients add no
            negatives; the watcher counts the micro-batches from `observe` calls); chance
            level is its log, too_few_negatives reads it.
        **options: the rest of `Watcher`'s keyword arguments (towers, objective,
            weights, temperature, pretrained, select_metric, every, host, ...).

    Example::

        watcher = attach(model, optimizer, run_dir="runs/mine", batch_size=256)
        for batch in loader:
            a, b = model(batch)
            loss = clip_loss(a, b, scale)
            watcher.observe(loss, embeddings=(a, b), logit_scale=scale)
            loss.backward(); optimizer.step(); optimizer.zero_grad()
        findings = watcher.close()
    """
    return Watcher(model, optimizer, run_dir=run_dir, batch_size=batch_size, **options)
