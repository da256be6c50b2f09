"""Signals: pure functions that turn model, gradients and embeddings into numbers.

The monitors (monitors/) call these on engine events; keeping them pure lets the tests
check each against hand-computed values. Parameters are grouped by the model's module
prefixes (docs/architecture.md): `towers.<t>.encoders.<stream>`, `towers.<t>.fusion`,
`towers.<t>.projection`, and the heads `captioning`, `masked`, `classifier`; loss
parameters (temperature, bias) form the `criterion` group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from contrastkit.eval.stats import collapse_stats, similarity_stats

__all__ = ["collapse_stats", "similarity_stats"]  # re-exported: the monitors call them as sig.*

CRITERION = "criterion"
BACKBONE_PARTS = ("encoders", "fusion")  # towers.<t>.<part>: pretrained feature extractors


def module_group(name: str) -> str:
    """The reporting group of a parameter name.

    `towers.image.encoders.image.conv.weight` -> `towers.image.encoders.image`;
    `towers.text.projection.weight` -> `towers.text.projection`; `captioning.x` ->
    `captioning`; anything else -> its first component.
    """
    parts = name.split(".")
    if parts[0] == "towers" and len(parts) >= 4 and parts[2] == "encoders":
        return ".".join(parts[:4])
    if parts[0] == "towers" and len(parts) >= 3:
        return ".".join(parts[:3])
    return parts[0]


def is_backbone(group: str) -> bool:
    """Encoders and fusion are the backbone; projections and heads are heads."""
    parts = group.split(".")
    return parts[0] == "towers" and len(parts) >= 3 and parts[2] in BACKBONE_PARTS


def named_parameters(
    model: nn.Module, criterion: nn.Module | None = None
) -> list[tuple[str, nn.Parameter]]:
    """Model parameters (de-duplicated: shared towers appear once) plus `criterion.*` ones."""
    seen: set[int] = set()
    out = []
    sources: list[tuple[str, nn.Module]] = [("", model)]
    if criterion is not None:
        sources.append((CRITERION + ".", criterion))
    for prefix, module in sources:
        for name, p in module.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append((prefix + name, p))
    return out


def grad_norms(params: Iterable[tuple[str, nn.Parameter]]) -> dict[str, float]:
    """L2 norm of the gradient per module group (a missing `.grad` counts as 0)."""
    squares: dict[str, list[Tensor]] = {}
    for name, p in params:
        g = squares.setdefault(module_group(name), [])
        if p.grad is not None:
            g.append(p.grad.detach().float().pow(2).sum())
    names = list(squares)
    totals = [torch.stack(squares[n]).sum() if squares[n] else torch.zeros(()) for n in names]
    values = torch.stack([t.cpu() for t in totals]).sqrt().tolist() if totals else []
    return dict(zip(names, values, strict=True))


def backbone_head_ratio(norms: dict[str, float]) -> float | None:
    """Gradient norm of the backbone over that of the heads (None without either)."""
    back = math.sqrt(sum(v * v for k, v in norms.items() if is_backbone(k)))
    head = math.sqrt(sum(v * v for k, v in norms.items() if not is_backbone(k) and k != CRITERION))
    if not any(is_backbone(k) for k in norms) or head == 0:
        return None
    return back / head


def param_snapshot(params: Iterable[tuple[str, nn.Parameter]]) -> dict[str, Tensor]:
    """Detached CPU copies of the parameters (reference for drift)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in params}


def param_drift(
    params: Iterable[tuple[str, nn.Parameter]], snapshot: dict[str, Tensor]
) -> dict[str, float]:
    """Relative L2 change per module group: ||theta - theta_0|| / ||theta_0||."""
    diff: dict[str, float] = {}
    ref: dict[str, float] = {}
    for name, p in params:
        if name not in snapshot:
            continue
        group = module_group(name)
        p0 = snapshot[name]
        diff[group] = diff.get(group, 0.0) + float(
            (p.detach().cpu().float() - p0.float()).pow(2).sum()
        )
        ref[group] = ref.get(group, 0.0) + float(p0.float().pow(2).sum())
    return {g: math.sqrt(diff[g]) / max(math.sqrt(ref[g]), 1e-12) for g in diff}


def embedding_drift(now: Tensor, ref: Tensor) -> dict[str, float]:
    """Mean cosine and mean L2 distance between the same rows' embeddings now and at ref."""
    now, ref = now.detach().float().cpu(), ref.detach().float().cpu()
    cos = nn.functional.cosine_similarity(now, ref, dim=-1).mean()
    l2 = (now - ref).norm(dim=-1).mean()
    return {"cosine": float(cos), "l2": float(l2), "drift": 1.0 - float(cos)}


def gradient_cosines(grads: Mapping[str, Sequence[Tensor | None]]) -> dict[str, dict[str, float]]:
    """Per-term gradient norms and pairwise cosines on the shared parameters.

    A parameter is shared when at least two terms give it a gradient. Conflict in the
    sense of PCGrad (Yu et al. 2020) is a negative cosine between two terms' gradients.

    Args:
        grads: term -> one gradient (or None) per parameter, in the same parameter order.

    Returns:
        {"norm": {term: norm on shared params}, "cosine": {"a|b": cosine},
         "shared_params": {"count": n}}.
    """
    terms = list(grads)
    n = len(next(iter(grads.values()), []))
    shared = [i for i in range(n) if sum(grads[t][i] is not None for t in terms) >= 2]
    flat: dict[str, Tensor] = {}
    for t in terms:
        parts = []
        for i in shared:
            g = grads[t][i]
            ref = next(r for u in terms if (r := grads[u][i]) is not None)
            parts.append(
                (g if g is not None else torch.zeros_like(ref)).detach().float().reshape(-1)
            )
        flat[t] = torch.cat(parts) if parts else torch.zeros(0)
    norms = {t: float(flat[t].norm()) for t in terms}
    cosines = {}
    for i, a in enumerate(terms):
        for b in terms[i + 1 :]:
            denom = norms[a] * norms[b]
            if denom > 0:
                cosines[f"{a}|{b}"] = float(flat[a] @ flat[b]) / denom
    return {"norm": norms, "cosine": cosines, "shared_params": {"count": float(len(shared))}}
