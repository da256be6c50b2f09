"""The optimizer monitor: parameters the optimizer misses, decay on the temperature, lr,
and where each module's weights came from (pretrained or random init)."""

from __future__ import annotations

from typing import Any

from torch import nn
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import MAX_NAMES, Monitor
from contrastkit.doctor.monitors.gradients import _trainable_share
from contrastkit.events import State

# Names (last component) of the loss's own parameters: the temperature and the bias.
_LOSS_PARAMS = ("logit_scale", "logit_bias", "temperature")


def temperature_params(criterion: nn.Module) -> dict[int, str]:
    """id -> name of the loss's scalar temperature / bias parameters."""
    return {
        id(p): name
        for name, p in criterion.named_parameters()
        if name.rsplit(".", 1)[-1] in ("logit_scale", "logit_bias", "temperature")
    }


def pretrained_share(
    model: nn.Module, params: list[tuple[str, nn.Parameter]], *, init_from: bool = False
) -> dict[str, float]:
    """`pretrained/<module>`: the share of each module group's parameters that start from
    trained weights rather than random init.

    Trained weights are those of a module that says it loaded them (`pretrained = True`,
    as the Hugging Face / MiniLM encoders do), or every model weight when the run starts
    from `model.init_from` (a run dir or checkpoint). Loss parameters (`criterion.*`) are
    never loaded, so they count as not pretrained.
    """
    loaded = {
        id(p)
        for m in model.modules()
        if getattr(m, "pretrained", False) is True
        for p in m.parameters()
    }
    if init_from:
        loaded |= {id(p) for p in model.parameters()}
    counts: dict[str, list[int]] = {}
    for name, p in params:
        c = counts.setdefault(sig.module_group(name), [0, 0])
        c[0] += p.numel() if id(p) in loaded else 0
        c[1] += p.numel()
    return {f"pretrained/{g}": a / max(b, 1) for g, (a, b) in counts.items()}


class OptimizerMonitor(Monitor):
    """Optimizer sanity: params missing from the optimizer, decay on temperature, lr, and
    (at fit start) which modules start from trained weights.

    Args:
        every: cadence in steps.
        init_from: the run loads its model weights from `model.init_from`.
    """

    name = "optimizer"

    def __init__(self, every: int = 25, init_from: bool = False) -> None:
        super().__init__(every)
        self.init_from = init_from

    def _sanity(self, state: State, event: str) -> None:
        params = sig.named_parameters(state.model, state.criterion)
        in_opt = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        missing = [n for n, p in params if p.requires_grad and id(p) not in in_opt]
        temps = temperature_params(state.criterion)
        decayed = [
            {"param": temps[id(p)], "group": i, "weight_decay": float(g.get("weight_decay", 0.0))}
            for i, g in enumerate(state.optimizer.param_groups)
            for p in g["params"]
            if id(p) in temps
        ]
        values: dict[str, Any] = {
            "event": event,
            "not_in_optimizer": len(missing),
            "not_in_optimizer_names": missing[:MAX_NAMES],
            "temperature_groups": decayed,
            "max_steps": state.max_steps,
            "batch_size": state.batch_size,
        }
        values.update(_trainable_share(params))
        if event == "fit_start":
            values.update(pretrained_share(state.model, params, init_from=self.init_from))
        self.record(state, state.step, values)
        self._last_step = -1  # the lr record of this step may still follow

    @override
    def on_fit_start(self, state: State) -> None:
        self._sanity(state, "fit_start")

    @override
    def on_phase_change(self, state: State) -> None:
        self._sanity(state, "phase_change")

    @override
    def on_batch_end(self, state: State) -> None:
        step = state.step - 1
        if not self.due(step):
            return
        groups = state.optimizer.param_groups
        lrs = [float(g["lr"]) for g in groups]
        # The scheduled base rate (train.lr x schedule), without per-group multipliers: new
        # parameters (temperature) get a floor multiplier, so max lr alone would hide an lr
        # that is zero for every weight of the model.
        base = [
            float(g["lr"]) / float(g.get("lr_scale", 1.0)) for g in groups if g.get("lr_scale", 1.0)
        ]
        # The model's own rate: groups without a temperature / bias parameter. An
        # `lr_scale` of 0 on every tower leaves lr/max and lr/base at the temperature's.
        model = [
            float(g["lr"])
            for g in groups
            if not any(str(n).endswith(_LOSS_PARAMS) for n in g.get("names", ()))
        ]
        values = {
            "event": "lr",
            "lr/model": max(model, default=0.0),
            "lr/max": max(lrs, default=0.0),
            "lr/min": min(lrs, default=0.0),
            "lr/base": max(base, default=0.0),
        }
        # The temperature's own rate: `temperature_frozen` asks whether it could have moved.
        temperature = [
            float(g["lr"])
            for g in groups
            if any(str(n).endswith("logit_scale") for n in g.get("names", ()))
        ]
        if temperature:
            values["lr/temperature"] = max(temperature)
        self.record(state, step, values)
