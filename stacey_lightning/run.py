"""One training run of a task: build it with a seed, give it its optimizer, fit it, record the result.

Both the tuner (one run per trial) and ``stacey-compare`` (one run per optimizer and seed) train
through these functions, so a run means the same in both: ``--seed S`` calls
``seed_everything(S)``, builds the task with ``make(seed=S)`` when ``make`` takes a seed, and seeds
again just before ``fit``. With the same seed, epochs and config, ``stacey-compare`` reproduces a
tuning trial exactly on CPU.

This module knows nothing of Optuna: the trial, where there is one, is only passed to ``make``.
"""

from __future__ import annotations

import copy
import inspect
import signal
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "build",
    "use_optimizer",
    "make_logger",
    "make_trainer",
    "fit",
    "final_metric",
    "log_final_hparams",
    "TRAINER_DEFAULTS",
    "FSDP2",
    "optimizer_choice",
]

FSDP2 = "fsdp2"  # a strategy name of ours: see make_trainer
# A tuning trial or a compared run shows one line, not Lightning's progress bars and summaries, and
# checkpoints nothing; log_every_n_steps=10 keeps train_loss curves for small tasks (digits: 45 steps
# an epoch).
TRAINER_DEFAULTS = dict(
    enable_progress_bar=False,
    enable_model_summary=False,
    enable_checkpointing=False,
    num_sanity_val_steps=0,
    log_every_n_steps=10,
)


def _takes(function: Callable, name: str) -> bool:
    parameters = inspect.signature(function).parameters
    return name in parameters or any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def build(make: Callable, *, seed: int, options: Mapping[str, Any] | None = None, trial: Any = None) -> tuple:
    """``seed_everything(seed)``, then ``make(**options, seed=seed, trial=trial)`` (each when ``make``
    takes it). Returns (module, datamodule).

    Lightning's own start-of-fit hyperparameter record is switched off: the caller records the run's
    hyperparameters once, with its final metric (``log_final_hparams``).
    """
    from lightning.pytorch import seed_everything

    seed_everything(seed, workers=True, verbose=False)
    kwargs = dict(options or {})
    if _takes(make, "seed"):
        kwargs["seed"] = seed
    if _takes(make, "trial"):
        kwargs["trial"] = trial
    built = make(**kwargs)
    if not (isinstance(built, tuple) and len(built) == 2):
        raise TypeError(
            f"the task's make() must return (LightningModule, LightningDataModule), got {type(built).__name__}"
        )
    for part in built:
        if part is not None and hasattr(part, "_log_hyperparams"):
            part._log_hyperparams = False
    return built


def optimizer_choice(optimizer: str, options: Any = None) -> Any:
    """The ``OptimizerChoice`` for ``optimizer``: "stacey" with ``options`` as its config (a
    StaceyConfig; a mapping names only the keys it overrides on the module's own config; None keeps
    that config), or a baseline name or class path with ``options`` over its defaults."""
    from stacey_lightning.baselines import STACEY
    from stacey_lightning.baselines import optimizer_choice as baseline_choice
    from stacey_lightning.lightning.choice import OptimizerChoice
    from stacey_lightning.lightning.config import StaceyConfig

    if optimizer != STACEY:
        return baseline_choice(optimizer, options)
    if options is not None and not isinstance(options, StaceyConfig):
        StaceyConfig.from_source(options)  # a bad key or value fails here, before anything is built
    return OptimizerChoice.stacey(options)


def use_optimizer(module: Any, choice: Any) -> dict[str, Any]:
    """Make ``module`` train with ``choice`` (an ``OptimizerChoice``) through its StaceyMixin's
    ``set_optimizer_choice``; a module without the mixin is given it first (``lightning.adopt``: its
    own configure_optimizers is replaced, said once). Returns what the optimizer is built with:
    Stacey's resolved config, or the baseline's options."""
    if not hasattr(module, "set_optimizer_choice"):
        from stacey_lightning.lightning.adopt import adopt

        adopt(module)
    module.set_optimizer_choice(choice)
    return module.stacey_config().to_dict() if choice.is_stacey else dict(choice.options)


def make_logger(root: str, name: str, version: str) -> Any:
    """A TensorBoard run at root/name/version, without Lightning's placeholder hp_metric."""
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(root, name=name, version=version, default_hp_metric=False)


def make_trainer(*, max_epochs: int, logger: Any, callbacks: list, trainer_kwargs: Mapping[str, Any]) -> Any:
    """A Trainer with ``TRAINER_DEFAULTS``, overridden by ``trainer_kwargs``; their ``callbacks`` come after ours.

    ``strategy="fsdp2"`` is Lightning's ModelParallelStrategy with every device in data parallelism
    (``fully_shard`` over ``device_mesh["data_parallel"]`` in the module's ``configure_model``); its own
    "auto" sizes put a single node's devices in tensor parallelism. A strategy object is copied, so
    that every run gets a fresh one.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.strategies import Strategy

    kwargs = {**TRAINER_DEFAULTS, "max_epochs": max_epochs, **trainer_kwargs}
    kwargs["callbacks"] = [*callbacks, *trainer_kwargs.get("callbacks", [])]
    if kwargs.get("strategy") == FSDP2:
        kwargs["strategy"] = _fsdp2(kwargs.get("devices", "auto"), kwargs.get("num_nodes", 1))
    elif isinstance(kwargs.get("strategy"), Strategy):
        kwargs["strategy"] = copy.deepcopy(kwargs["strategy"])
    return Trainer(logger=logger, **kwargs)


def _fsdp2(devices: Any, num_nodes: int) -> Any:
    from lightning.pytorch.strategies import ModelParallelStrategy

    if not isinstance(devices, int):
        raise ValueError(f"strategy {FSDP2}: give the number of devices per node (devices=N), not {devices!r}")
    return ModelParallelStrategy(data_parallel_size=devices * num_nodes, tensor_parallel_size=1)


def fit(trainer: Any, module: Any, datamodule: Any, seed: int) -> None:
    """``trainer.fit`` after ``seed_everything(seed)``; Ctrl-C inside fit raises KeyboardInterrupt."""
    from lightning.pytorch import seed_everything

    seed_everything(seed, workers=True, verbose=False)
    sigint_handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=datamodule)
    except SystemExit as error:
        # Lightning answers Ctrl-C inside fit with sys.exit(1) after setting SIGINT to SIG_IGN: restore
        # the handler and raise KeyboardInterrupt again, so that the caller can keep what is finished
        # instead of the process ending mid-way.
        if not isinstance(error.__context__, KeyboardInterrupt):
            raise
        if sigint_handler is not None:
            signal.signal(signal.SIGINT, sigint_handler)
        raise KeyboardInterrupt from None


def final_metric(trainer: Any, monitor: str) -> float | None:
    """The last logged value of ``monitor``, or None if it was never logged."""
    value = trainer.callback_metrics.get(monitor)
    return None if value is None else float(value)


def log_final_hparams(
    logger: Any, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int | None = None
) -> None:
    """One HParams record for the run, with its final metrics (at ``step``), and close the logger."""
    if logger is None:
        return
    logger.log_hyperparams(dict(hparams), dict(metrics), step=step)
    logger.finalize("success")
