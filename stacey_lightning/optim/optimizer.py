"""``Stacey``: the torch.optim.Optimizer. Validation, state and dispatch; the math is in _functional,
the compiled path in _fused."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from stacey_lightning.optim._adam import adam_stacey
from stacey_lightning.optim._average import average, swap
from stacey_lightning.optim._functional import _multi_tensor_stacey, _single_tensor_stacey
from stacey_lightning.optim._fused import RUNTIME, fused_stacey
from stacey_lightning.optim._spectral import NS_STEPS, check_ns_dtype, spectral_stacey

__all__ = ["Stacey", "stacey", "VARIANTS", "NORMS", "ELEMENTWISE_NORMS", "check_hyperparameters", "check_norm_shapes"]

VARIANTS = ("p2", "pp")
# The second moment's coefficient in Adam's geometry: Moonshot's AdamW beside Muon, and MuonWithAdamW's.
BETA_V = 0.95
NORMS = ("lp", "spectral", "adam")
# The norms whose direction is elementwise: every parameter of any shape can step in them.
ELEMENTWISE_NORMS = ("lp", "adam")


def check_hyperparameters(group: dict[str, Any]) -> None:
    """Raise a ValueError naming the argument and its bad value."""
    p = group["p"]
    if not (isinstance(p, (int, float)) and p > 1):
        raise ValueError(f"Invalid p: {p!r} (Stacey needs p > 1; use math.inf for the sign-like limit)")
    if not 0.0 <= group["lr"]:
        raise ValueError(f"Invalid lr: {group['lr']!r} (must be >= 0)")
    if not 0.0 <= group["alpha"]:
        raise ValueError(f"Invalid alpha: {group['alpha']!r} (must be >= 0)")
    if not 0.0 <= group["tau"] <= 1.0:
        raise ValueError(f"Invalid tau: {group['tau']!r} (must be in [0, 1])")
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))")
    for index, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta!r} (must be in [0, 1))")
    beta_v = group.get("beta_v", BETA_V)
    if not (isinstance(beta_v, (int, float)) and 0.0 <= beta_v < 1.0):
        raise ValueError(f"Invalid beta_v: {beta_v!r} (must be in [0, 1))")
    if not group["eps"] > 0.0:
        raise ValueError(f"Invalid eps: {group['eps']!r} (must be > 0)")
    if not 0.0 <= group["weight_decay"]:
        raise ValueError(f"Invalid weight_decay: {group['weight_decay']!r} (must be >= 0)")
    if group["variant"] not in VARIANTS:
        raise ValueError(f"Invalid variant: {group['variant']!r} (choose one of {', '.join(VARIANTS)})")
    if group["variant"] == "pp" and p == math.inf:
        raise ValueError(
            "Invalid p: inf with variant='pp' (the (1/p)||.||_p^p mirror map needs a finite p; "
            "use variant='p2' for p = inf)"
        )
    norm = group.get("norm", "lp")
    if norm not in NORMS:
        raise ValueError(f"Invalid norm: {norm!r} (choose one of {', '.join(NORMS)})")
    if norm != "lp" and group["variant"] != "p2":
        raise ValueError(
            f"Invalid variant: {group['variant']!r} with norm={norm!r} (the {norm} direction has the "
            "Euclidean dual step of variant 'p2' only)"
        )
    ns_steps = group.get("ns_steps", NS_STEPS)
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or not 1 <= ns_steps < 100:
        raise ValueError(f"Invalid ns_steps: {ns_steps!r} (must be an integer from 1 to 99)")
    check_ns_dtype(group.get("ns_dtype"))
    if not isinstance(group["tau_follows_lr"], bool):
        raise ValueError(f"Invalid tau_follows_lr: {group['tau_follows_lr']!r} (must be True or False)")
    if group["fused"] and group["foreach"]:
        raise ValueError("Invalid fused/foreach: fused=True and foreach=True are mutually exclusive")
    decay = group.get("average_decay")
    if decay is not None and not (isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0 <= decay < 1):
        raise ValueError(f"Invalid average_decay: {decay!r} (must be in [0, 1), or None for no average)")


def _dtype_name(dtype: Any) -> Any:
    """A torch dtype's name ("bfloat16" for torch.bfloat16); anything else as it is (the check judges it).
    Groups keep the name: it reads the same in a checkpoint, a log and a YAML file."""
    return str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype


def check_norm_shapes(group: dict[str, Any]) -> None:
    """Raise a ValueError if a spectral group holds a parameter that is not a matrix (ndim < 2), or ``blocks``
    is not one count, or one per parameter, of matrices that each parameter's rows split into."""
    if group.get("norm", "lp") == "spectral":
        for param in group["params"]:
            if param.ndim < 2:
                raise ValueError(
                    f"Invalid norm: 'spectral' for a parameter of shape {tuple(param.shape)} in {_where(group)}: "
                    "the spectral norm needs a matrix (ndim >= 2); put vectors and biases in a group with norm='lp'"
                )
    block_counts(group)


def block_counts(group: dict[str, Any]) -> list[int]:
    """The matrices each parameter of ``group`` stacks along its rows: ``group["blocks"]``, one count for every
    parameter or one per parameter (default 1); a ValueError naming the group if it is neither, or if in a
    spectral group a parameter's rows do not split into its count (checked at each step too: a group's
    options may be set by hand after construction)."""
    blocks, params = group.get("blocks", 1), group["params"]
    counts = [blocks] * len(params) if isinstance(blocks, int) and not isinstance(blocks, bool) else blocks
    if isinstance(counts, (list, tuple)) and len(counts) != len(params):
        raise ValueError(
            f"Invalid blocks: a list of {len(counts)} for the {len(params)} parameters of {_where(group)} (one count "
            "for each, in the order of the group's params)"
        )
    if not isinstance(counts, (list, tuple)) or any(not _is_count(k) for k in counts):
        raise ValueError(
            f"Invalid blocks: {blocks!r} in {_where(group)} (must be an integer >= 1, or a list of one per parameter)"
        )
    for param, k in zip(group["params"], counts):
        if group.get("norm", "lp") == "spectral" and param.shape[0] % k:
            raise ValueError(
                f"Invalid blocks: {k} for a parameter of shape {tuple(param.shape)} in {_where(group)}: its "
                f"{param.shape[0]} rows do not split into {k} matrices"
            )
    return list(counts)


def _is_count(k: Any) -> bool:
    return isinstance(k, int) and not isinstance(k, bool) and k >= 1


def _where(group: dict[str, Any]) -> str:
    return f"group {group['name']!r}" if "name" in group else "a group"


class Stacey(Optimizer):
    r"""Stacey: accelerated stochastic steepest descent in the l_p norm (Luo et al., ICML 2025).

    For each parameter x with gradient g, dual iterate z (starts as a copy of x) and momentum m
    (starts at 0)::

        c = beta1 * m + (1 - beta1) * g
        z = z - alpha_t * c                                   # variant "p2"
        x = tau * z + (1 - tau) * (x - lr * s(c)) - lr * weight_decay * x
        m = beta2 * m + (1 - beta2) * g
        s(c) = c * (|c| + eps) ** ((2 - p) / (p - 1))           # c / (|c| + eps) at p = inf

    Variant "pp" replaces the z step by mirror descent with (1/p)||z||_p^p. With ``norm="spectral"``
    the direction of a matrix is d = msign(c) * 0.2 * sqrt(max(rows, cols)) instead of s(c) (Newton-
    Schulz, as torch.optim.Muon; see optim/_spectral.py): tau = 0, betas = (mu^2, mu) is Muon. With
    ``norm="adam"`` it is Adam's, d = c_hat / (sqrt(v_hat) + eps) (optim/_adam.py): tau = 0, betas = (b, b)
    is torch.optim.AdamW(betas=(b, beta_v)).
    The parameters hold the primal iterate x: evaluate and save them as they are, unless the group keeps
    an average of them (``average_decay``): then ``eval()`` puts the average in the parameters' place and
    ``train()`` the iterate back, as Schedule-Free's optimizer does (``StaceyMixin`` calls both where
    Lightning switches the module).

    Args:
        params: parameters or parameter groups (dicts); every argument below may differ per group.
        lr: primal step eta, in ``group["lr"]``, so every torch.optim.lr_scheduler drives it.
            Default 1e-2.
        p: exponent of the primal norm, any p > 1 or ``math.inf``. 2 is SGD-like, inf is
            signSGD/Lion-like. Default 4.
        alpha: dual step at the initial lr. A scheduler that scales lr scales the dual step by the
            same factor: alpha_t = alpha * lr / initial lr (exactly alpha without a scheduler).
            The initial lr is recorded per group as ``group["initial_lr_for_alpha"]``. Default 0.1.
        tau: interpolation between the dual iterate z (tau = 1) and the primal step (tau = 0),
            in [0, 1]. Default 0.01.
        betas: (beta1, beta2): beta1 interpolates momentum and gradient for the step, beta2 updates
            the momentum, as in Lion. Default (0.9, 0.99).
        weight_decay: decoupled weight decay lambda; the step subtracts lr * lambda * x. Default 0.
        eps: added to |c| inside the power's base (to sqrt(v_hat) in Adam's norm). Default 1e-8.
        variant: "p2" (Algorithm 1, Euclidean dual step) or "pp" (Algorithm 2, finite p only).
        norm: the primal norm: "lp" (the paper's l_p steepest descent, default), "spectral" (the
            spectral norm of each matrix, viewed as (shape[0], -1); every parameter of the group must
            have ndim >= 2) or "adam" (Adam's diagonal one, any shape). For both the variant must be "p2"
            and p is not used; their lr is AdamW's (their update's RMS is about 0.2 lr).
        beta_v: the coefficient of the second moment v of ``norm="adam"`` (AdamW's beta2). Default 0.95.
        ns_steps: Newton-Schulz iterations of the spectral direction. Default 5 (torch.optim.Muon's).
        ns_dtype: the precision of Newton-Schulz, "bfloat16", "float32" or "float64" (or the torch
            dtype). Default (None): bfloat16 on CUDA, as torch.optim.Muon; float32 at least on the CPU,
            where "bfloat16" is 2-4x faster on CPUs that multiply it natively (AVX512-BF16, AMX) but
            trained worse (optim/_spectral.py).
        blocks (a group's key, not an argument): the matrices a spectral parameter stacks along its first
            dimension, as torch's recurrent layers keep their gates (nn.LSTM 4, nn.GRU 3) and
            nn.MultiheadAttention its query, key and value (its in_proj_weight 3): the direction is msign of
            each, the steepest direction when each map is measured in its own spectral norm. One count for every
            parameter of the group or a list of one per parameter, in the order of the group's params (a
            wrapper that reorders a group's params must reorder it too). Default 1 (the whole matrix, as
            torch.optim.Muon takes it); ``StaceyMixin`` sets it for recurrent layers' gates.
        average_decay: keep an exponential moving average of the parameters, a = decay * a + (1 - decay) * x
            after each step (from x after the first), to evaluate and save at: ``eval()`` swaps it in
            (exactly, bit for bit), ``train()`` swaps the iterate back, and ``step()`` in eval mode is an error.
            Training goes on from the iterate. ``StaceyConfig.average_horizon`` sets it for a run
            (optim/_average.py). Default None: no average, eval() and train() do nothing.
        tau_follows_lr: scale tau with lr as alpha is scaled, tau_t = min(1, tau * lr / initial lr),
            so that a schedule scales all three of lr, alpha and tau: to first order, a decaying
            schedule then slows Stacey's dynamics down as it slows SGD's, instead of pulling x towards
            a z that no longer moves. Without a scheduler tau_t = tau: the paper's update. Default False.
        maximize: ascend instead of descend (keyword-only, as are foreach and fused). Default False.
        foreach: use the multi-tensor path; ``False`` forces the plain per-tensor loop.
        fused: use the compiled single-pass path. Default (None): fused wherever torch.compile
            works, falling back to foreach with one warning where it cannot compile. On the CPU the
            float32 steps of variant "p2" run a C kernel built with the machine's C compiler on first
            use instead (the compiled kernel where it cannot be built, with one warning), and so do
            Adam groups' (one pass where the multi-tensor path makes nine); elsewhere Adam groups run
            multi-tensor kernels. Spectral groups run their elementwise parts in multi-tensor kernels
            around the matmuls whatever ``fused`` says (``foreach=False`` still chooses the plain loop).

    The defaults were chosen on small tasks (docs/algorithm.md); tune p jointly with lr, alpha and tau.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        p: float = 4.0,
        alpha: float = 0.1,
        tau: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        variant: str = "p2",
        tau_follows_lr: bool = False,
        norm: str = "lp",
        ns_steps: int = NS_STEPS,
        beta_v: float = BETA_V,
        ns_dtype: str | torch.dtype | None = None,
        average_decay: float | None = None,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            p=p,
            alpha=alpha,
            tau=tau,
            betas=tuple(betas),
            weight_decay=weight_decay,
            eps=eps,
            variant=variant,
            tau_follows_lr=tau_follows_lr,
            norm=norm,
            ns_steps=ns_steps,
            ns_dtype=_dtype_name(ns_dtype),
            beta_v=beta_v,
            average_decay=average_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        check_hyperparameters(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["p"] = float(group["p"])
        group["betas"] = tuple(group["betas"])
        group["ns_dtype"] = _dtype_name(group.get("ns_dtype"))
        group.setdefault("blocks", 1)
        check_hyperparameters(group)
        check_norm_shapes(group)
        if group["average_decay"] is not None:
            group.setdefault("train_mode", True)  # only averaging groups have modes (the mixin reads them)
        for param in group["params"]:
            if torch.is_complex(param):
                raise ValueError(
                    "Stacey does not support complex parameters: pass torch.view_as_real(param) "
                    "as a real parameter instead"
                )
        group.setdefault("initial_lr_for_alpha", group["lr"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # State dicts saved before an option existed keep loading, with that option's default.
        for group in self.param_groups:
            group.setdefault("variant", "p2")
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("initial_lr_for_alpha", group["lr"])
            group.setdefault("tau_follows_lr", False)
            group.setdefault("norm", "lp")
            group.setdefault("ns_steps", NS_STEPS)
            group.setdefault("ns_dtype", None)
            group.setdefault("beta_v", BETA_V)
            group.setdefault("blocks", 1)
            group.setdefault("average_decay", None)
            if group["average_decay"] is not None:
                group.setdefault("train_mode", True)

    def _lr_ratio(self, group: dict[str, Any]) -> float:
        """lr / initial lr: how far a scheduler has scaled the step (1 without one)."""
        initial_lr = group["initial_lr_for_alpha"]
        return group["lr"] / initial_lr if initial_lr > 0 else 1.0

    def _tau(self, group: dict[str, Any]) -> float:
        return min(1.0, group["tau"] * self._lr_ratio(group)) if group["tau_follows_lr"] else group["tau"]

    def _dual_step(self, group: dict[str, Any]) -> float:
        return group["alpha"] * self._lr_ratio(group)

    def _init_group(self, group: dict[str, Any]) -> tuple[list, list, list, list, list, list]:
        """The group's parameters with gradients, their gradients and their state: z, m, and in Adam's
        norm v and the step count (empty lists otherwise)."""
        params, grads, zs, ms, vs, steps = [], [], [], [], [], []
        adam = group["norm"] == "adam"
        for param in group["params"]:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError(
                    "Stacey does not support sparse gradients (e.g. nn.Embedding(sparse=True)); use dense gradients"
                )
            state = self.state[param]
            if not state:
                # Contiguous whatever the parameter's layout, so the fused path can flatten them.
                state["z"] = param.detach().clone(memory_format=torch.contiguous_format)
                state["m"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
            if adam and "v" not in state:
                state["v"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
                state["step"] = torch.tensor(0.0)  # on the CPU, as torch.optim.AdamW keeps it
            params.append(param)
            grads.append(param.grad)
            zs.append(state["z"])
            ms.append(state["m"])
            if adam:
                vs.append(state["v"])
                steps.append(state["step"])
        return params, grads, zs, ms, vs, steps

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one step; returns the closure's loss (None without a closure)."""
        if not all(group.get("train_mode", True) for group in self.param_groups):
            raise RuntimeError(
                "Stacey.step() in eval mode: the parameters hold the average, not the iterate; "
                "call optimizer.train() before training"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, zs, ms, vs, steps = self._init_group(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            # What every norm's step takes; the direction's own settings are added below.
            common = dict(
                lr=group["lr"],
                alpha=self._dual_step(group),
                tau=self._tau(group),
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                maximize=group["maximize"],
                foreach=group["foreach"],
            )
            if group["norm"] == "spectral":
                blocks = dict(zip(map(id, group["params"]), block_counts(group)))
                spectral_stacey(params, grads, zs, ms, ns_steps=group["ns_steps"], ns_dtype=group["ns_dtype"],
                                blocks=[blocks[id(param)] for param in params], **common)  # fmt: skip
            elif group["norm"] == "adam":
                adam_stacey(params, grads, zs, ms, vs, steps, beta_v=group["beta_v"], eps=group["eps"],
                            fused=group["fused"], **common)  # fmt: skip
            else:
                stacey(params, grads, zs, ms, p=group["p"], eps=group["eps"], variant=group["variant"],
                       fused=group["fused"], **common)  # fmt: skip
            if group["average_decay"] is not None:
                self._average(group)
        return loss

    def _average(self, group: dict[str, Any]) -> None:
        """Move the group's averages towards its parameters; a parameter's first step starts its average."""
        group.setdefault("train_mode", True)  # a group that began averaging after construction
        params, averages = [], []
        for param in group["params"]:
            state = self.state[param]
            if not state:  # never stepped: nothing to average yet
                continue
            if "average" not in state:
                state["average"] = param.detach().clone(memory_format=torch.contiguous_format)
                continue
            params.append(param)
            averages.append(state["average"])
        average(params, averages, group["average_decay"], group["foreach"])

    def eval(self) -> None:
        """Put each averaging group's averages in its parameters' place (to evaluate or save there)."""
        self._switch(training=False)

    def train(self) -> None:
        """Put the iterates back (after ``eval()``), to train on from where training left off."""
        self._switch(training=True)

    def _switch(self, training: bool) -> None:
        for group in self.param_groups:
            if group.get("train_mode", training) == training:  # no modes, or in that one already
                continue
            # (Not self.state[param], which would add an empty state for a parameter never stepped.)
            averaged = [param for param in group["params"] if "average" in self.state.get(param, {})]
            if not averaged:  # before its first step a group's parameters are the iterate, in either mode
                continue
            for param in averaged:
                # A new state mapping: a state_dict() taken before holds the old one (torch's packs each
                # parameter's mapping itself, not a copy), which keeps what it held.
                state = self.state[param]
                self.state[param] = {**state, "average": swap(param, state["average"])}
            group["train_mode"] = training


def stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    lr: float,
    p: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
    variant: str,
    maximize: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
) -> None:
    """Functional Stacey step over lists of tensors (updated in place); see ``Stacey``.

    ``alpha`` is the dual step of this step (the class scales it with lr). Path: ``fused``
    (compiled, the default where torch.compile works), else ``foreach`` (multi-tensor kernels)
    unless ``foreach=False`` asks for the plain per-tensor loop.
    """
    if fused and foreach:
        raise ValueError("Stacey: fused=True and foreach=True are mutually exclusive; choose one")
    hyperparameters = dict(
        lr=lr,
        p=p,
        alpha=alpha,
        tau=tau,
        beta1=beta1,
        beta2=beta2,
        weight_decay=weight_decay,
        eps=eps,
        variant=variant,
        maximize=maximize,
    )
    if fused is None and foreach is None:
        fused = _fused_by_default(params)
    if fused:
        fused_stacey(params, grads, zs, ms, **hyperparameters)
    elif foreach is False:
        _single_tensor_stacey(params, grads, zs, ms, **hyperparameters)
    else:
        _multi_tensor_stacey(params, grads, zs, ms, **hyperparameters)


def _fused_by_default(params: list[Tensor]) -> bool:
    if torch.compiler.is_compiling():  # the caller compiles the whole step: trace the foreach path
        return False
    return RUNTIME.supported() and all(t.device.type in ("cpu", "cuda") for t in params)
