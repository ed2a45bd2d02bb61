"""Stacey parameter groups by kind of parameter, so that p, the step size and weight decay can follow
the model's structure ("task- and model-adapted geometry").

Kinds:
    matrix     weights of two or more dimensions outside convolutions and embeddings (nn.Linear,
               attention projections, ...)
    conv       weights of convolution modules (nn.Conv1d/2d/3d and their transposes)
    embedding  weights of nn.Embedding and nn.EmbeddingBag
    vector     every parameter of at most one dimension: biases, normalisation scales and shifts

The kind comes from the owning module's type where that says it (a Linear's weight is a matrix
even when FSDP1 has flattened it to one dimension), and from the number of dimensions otherwise.

The spectral norm (``kinds: {matrix: {norm: spectral}}``) is for hidden matrices: a kind set to it
leaves the model's output head, the weight of its last ``nn.Linear``, in a group of its own named
"head" with the config's global norm, p and lr, as Muon's users leave the head to AdamW
(torch.optim.Muon's docs; ``norm: adam`` is that AdamW). In a spectral group, a weight in which one
of torch's recurrent layers stacks its gates' maps (an LSTM's four, a GRU's three) is stepped as those
maps (the group's ``blocks``: ``stacked_matrices``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from stacey_lightning.lightning.config import KINDS, StaceyConfig

__all__ = [
    "KINDS",
    "parameter_kind",
    "parameters_by_kind",
    "output_head",
    "stacked_matrices",
    "param_groups",
    "baseline_param_groups",
    "check_groups",
]

# Modules whose every parameter is a vector whatever its shape (FSDP1 flattens shapes away).
_VECTOR_MODULES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _is_weight(module: nn.Module, param: torch.Tensor) -> bool:
    return getattr(module, "weight", None) is param


def parameter_kind(module: nn.Module, param: torch.Tensor) -> str:
    """The kind of ``param``, a parameter owned directly by ``module``."""
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and _is_weight(module, param):
        return "embedding"
    if isinstance(module, nn.modules.conv._ConvNd) and _is_weight(module, param):
        return "conv"
    if isinstance(module, nn.Linear) and _is_weight(module, param):
        return "matrix"
    if isinstance(module, _VECTOR_MODULES) or getattr(module, "bias", None) is param:
        return "vector"
    return "vector" if param.ndim <= 1 else "matrix"


def parameters_by_kind(
    module: nn.Module, kind_of: Callable[[nn.Module, torch.Tensor], str] = parameter_kind
) -> dict[str, list[torch.Tensor]]:
    """``{kind: [parameters]}`` for the kinds present in ``module``, in the order of ``KINDS``.

    Parameters that do not require grad are left out; a parameter shared between modules is counted
    once, under its first owner.
    """
    by_kind: dict[str, list[torch.Tensor]] = {kind: [] for kind in KINDS}
    seen: set[int] = set()
    for owner in module.modules():
        for param in owner.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            kind = kind_of(owner, param)
            if kind not in by_kind:
                raise ValueError(
                    f"kind_of returned {kind!r} for a parameter of {type(owner).__name__}; "
                    f"it must return one of {', '.join(KINDS)}"
                )
            by_kind[kind].append(param)
    return {kind: params for kind, params in by_kind.items() if params}


def output_head(module: nn.Module) -> torch.Tensor | None:
    """The weight of the last ``nn.Linear`` registered in ``module`` (the output layer of the models
    this package meets: classifiers, language models' heads), None without one."""
    head = None
    for owner in module.modules():
        if isinstance(owner, nn.Linear) and owner.weight.requires_grad:
            head = owner.weight
    return head


def stacked_matrices(module: nn.Module) -> dict[torch.Tensor, int]:
    """``{param: k}`` for each weight of ``module`` in which one of torch's recurrent layers or cells stacks its
    k > 1 gates' maps along its rows: an nn.LSTM's (and nn.LSTMCell's) input and hidden weights 4, an nn.GRU's
    (and nn.GRUCell's) 3. Each gate's map feeds its own nonlinearity: the spectral norm steps them apart
    (Stacey's ``blocks``). An LSTM's projection (``weight_hr``, with proj_size) is one map.

    Attention's stacked query, key and value (nn.MultiheadAttention's in_proj_weight) are left whole: the query
    and key maps act together, through their product, and as maps they trained better on some transformers and
    worse on others (benchmarks/results/suite_dev.md, "Round 14"). A model may declare them, or a stack of its
    own code, with ``StaceyMixin.stacey_stacked_matrices``."""
    stacked: dict[torch.Tensor, int] = {}
    for owner in module.modules():
        if isinstance(owner, (nn.RNNBase, nn.RNNCellBase)):
            gates = _gates(owner)
            for name, param in owner.named_parameters(recurse=False):
                if gates > 1 and name.startswith(("weight_ih", "weight_hh")):
                    stacked[param] = gates
    return stacked


def _gates(owner: nn.Module) -> int:
    """The gates a recurrent layer or cell of torch's stacks in each weight (a plain RNN's one map is the whole
    weight); by its mode or class, so that a subclass counts as its base."""
    if isinstance(owner, nn.RNNBase):
        return {"LSTM": 4, "GRU": 3}.get(owner.mode, 1)
    return 4 if isinstance(owner, nn.LSTMCell) else 3 if isinstance(owner, nn.GRUCell) else 1


def param_groups(
    module: nn.Module,
    config: StaceyConfig,
    kind_of: Callable[[nn.Module, torch.Tensor], str] = parameter_kind,
    stacked: Mapping[torch.Tensor, int] | None = None,
) -> list[dict[str, Any]]:
    """One Stacey param group per kind present in ``module``, in the order of ``KINDS``.

    Each group carries ``kind`` (used by StaceyMonitor), ``name`` (the kind again, which Lightning's
    LearningRateMonitor shows as lr-Stacey/<kind>) and, from ``config.kinds[kind]``,
    ``p``, ``lr = config.lr * lr_scale`` and ``weight_decay``; keys a kind leaves out take the
    config's global value, except that vectors get weight_decay 0 unless their kind sets it.

    Args:
        module: the model.
        config: the validated Stacey config.
        kind_of: ``kind_of(owner_module, param) -> kind``; replace it to classify differently.
        stacked: ``{param: k}``, the weights that stack k maps along their rows, which a spectral group steps
            as k matrices (its ``blocks``). Default: those of torch's modules (``stacked_matrices``).
    """
    groups = []
    head = output_head(module)
    stacked = stacked_matrices(module) if stacked is None else _checked_stacks(module, stacked)
    for kind, params in parameters_by_kind(module, kind_of).items():
        overrides = config.kinds.get(kind, {})
        default_weight_decay = 0.0 if kind == "vector" else config.weight_decay
        group = {
            "params": params,
            "name": kind,  # LearningRateMonitor logs the group as lr-Stacey/<name>
            "kind": kind,
            "p": overrides.get("p", config.p),
            "lr": config.lr * overrides.get("lr_scale", 1.0),
            "weight_decay": overrides.get("weight_decay", default_weight_decay),
            "norm": overrides.get("norm", config.norm),
        }
        # The spectral norm is for hidden matrices: the head takes the config's global geometry and lr
        # (a spectral kind's lr_scale is for its spectral steps), with its kind's weight decay.
        spectral = group["norm"] == "spectral"
        groups.extend(_head_apart(group, head, norm=config.norm, p=config.p, lr=config.lr) if spectral else [group])
    for group in groups:
        blocks = [stacked.get(param, 1) for param in group["params"]]
        if group["norm"] == "spectral" and max(blocks) > 1:
            group["blocks"] = blocks
    return groups


def _checked_stacks(module: nn.Module, stacked: Mapping[torch.Tensor, int]) -> Mapping[torch.Tensor, int]:
    """``stacked``, or a ValueError naming the first key that is not a parameter of ``module`` (a module given
    for its weight, a tensor of another model), which would otherwise be left whole without a word."""
    parameters = {id(param) for param in module.parameters()}
    for key in stacked:
        if id(key) not in parameters:
            what = type(key).__name__ if not isinstance(key, torch.Tensor) else f"a tensor of shape {tuple(key.shape)}"
            raise ValueError(
                f"stacked matrices: {what} is not a parameter of {type(module).__name__}; give each stacked weight "
                "itself (such as self.qkv.weight), with the number of maps it stacks"
            )
    return stacked


def baseline_param_groups(
    module: nn.Module, weight_decay: float | None, head_apart: bool = False
) -> list[dict[str, Any]]:
    """The same groups by kind for another optimizer, with Stacey's no-decay rule: vectors get
    weight_decay 0, every other kind ``weight_decay`` (None: the optimizer takes no weight decay, and
    the groups carry none), so that a comparison is like for like. With ``head_apart`` the output head
    is a group of its own, "head" (of kind matrix), as Stacey's spectral groups leave it, so that an
    optimizer for hidden matrices (``muon``) can leave it out."""
    groups = []
    head = output_head(module)
    for kind, params in parameters_by_kind(module).items():
        group: dict[str, Any] = {"params": params, "name": kind, "kind": kind}
        if weight_decay is not None:
            group["weight_decay"] = 0.0 if kind == "vector" else weight_decay
        groups.extend(_head_apart(group, head) if head_apart else [group])
    return groups


def _head_apart(group: dict[str, Any], head: torch.Tensor | None, **head_settings: Any) -> list[dict[str, Any]]:
    """``group``, with ``head`` (if it holds it) moved first into a group of its own named "head"."""
    hidden = [param for param in group["params"] if param is not head]
    if len(hidden) == len(group["params"]):
        return [group]
    head_group = {**group, "params": [head], "name": "head", **head_settings}
    return [head_group, {**group, "params": hidden}] if hidden else [head_group]


def check_groups(module: nn.Module, groups: list[dict[str, Any]]) -> None:
    """Raise a ValueError unless every parameter of ``module`` that requires grad is in exactly one
    group, naming the first parameter that is missing or repeated."""
    count: dict[int, int] = {}
    for group in groups:
        for param in group["params"]:
            count[id(param)] = count.get(id(param), 0) + 1
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        found = count.get(id(param), 0)
        if found != 1:
            raise ValueError(
                f"Parameter {name!r} is in {found} param groups; every trainable parameter must be "
                "in exactly one (check the grouping function)"
            )
