"""``StaceyMixin``: Stacey for a LightningModule without writing ``configure_optimizers``.

    class Net(StaceyMixin, LightningModule):
        ...

Where the config comes from, highest precedence first:
    1. ``set_stacey_config(config)`` (a dict, a StaceyConfig or a YAML path; the tuner uses it);
    2. hyperparameters saved with ``save_hyperparameters()`` under Stacey's argument names
       (lr, p, alpha, tau, betas, weight_decay, eps, variant; maximize, foreach, fused are passed
       to Stacey as they are);
    3. the documented defaults of StaceyConfig.
A dict or YAML file given to ``set_stacey_config`` overrides only the keys it names.
Checkpoints store the resolved config under "stacey_config"; a module restored from one uses it
unless ``set_stacey_config`` was called first.

``set_optimizer_choice(choice)`` is the one door for every run: Stacey with a config, or a baseline
(``OptimizerChoice``) built from the same parameter groups by kind, vectors without weight decay.

An optimizer with ``train()`` and ``eval()`` methods (Schedule-Free's protocol: its parameters hold the
point where gradients are taken while training, the averaged point after ``eval()``) is switched with
the module: to eval wherever Lightning puts the module in eval mode (validation, test, predict) and at
the end of fit, to train when training starts or resumes, and to eval while a checkpoint is written,
so that what is evaluated, saved and left in the module after fit is always the averaged point.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch

from stacey_lightning.lightning.choice import OptimizerChoice
from stacey_lightning.lightning.config import HYPERPARAMETERS, RUN_HORIZONS, ConfigSource, StaceyConfig
from stacey_lightning.lightning.param_groups import (
    baseline_param_groups,
    check_groups,
    param_groups,
    stacked_matrices,
)
from stacey_lightning.lightning.schedule import build_scheduler
from stacey_lightning.optim.optimizer import Stacey

__all__ = ["StaceyMixin", "OPTION_NAMES"]

# Stacey's keyword-only options choose its behaviour or implementation; saved hyperparameters of these
# names are passed through to the optimizer (its other arguments are the config's HYPERPARAMETERS).
OPTION_NAMES = tuple(
    name
    for name, parameter in inspect.signature(Stacey).parameters.items()
    if parameter.kind == inspect.Parameter.KEYWORD_ONLY
)


class StaceyMixin:
    """Gives a LightningModule ``configure_optimizers`` building Stacey, its param groups by kind and
    its schedule from a StaceyConfig. Put it before LightningModule in the bases."""

    def set_stacey_config(self, config: ConfigSource) -> None:
        """Use ``config`` (a dict, a StaceyConfig or a YAML path) for the optimizer; it takes precedence
        over saved hyperparameters. Validated now, so a bad key or value fails before training."""
        StaceyConfig.from_source(config)
        self._stacey_config_source = copy.deepcopy(config)

    def set_optimizer_choice(self, choice: OptimizerChoice) -> None:
        """Train with ``choice``: Stacey (its config, if it has one, as ``set_stacey_config``) or a
        baseline optimizer, both through ``configure_optimizers`` and the parameter groups by kind."""
        if choice.is_stacey and choice.config is not None:
            self.set_stacey_config(choice.config)
        self._optimizer_choice = choice

    def optimizer_choice(self) -> OptimizerChoice:
        """The choice in use: the one set by ``set_optimizer_choice``, else Stacey with this module's config."""
        return getattr(self, "_optimizer_choice", None) or OptimizerChoice.stacey()

    def stacey_config(self) -> StaceyConfig:
        """The config in use, resolved by precedence (set_stacey_config > hparams > defaults)."""
        # None in hparams means "not set", as for an optional __init__ argument.
        saved = {
            key: value for key, value in self._stacey_hparams().items() if key in HYPERPARAMETERS and value is not None
        }
        try:
            from_hparams = StaceyConfig.from_source(saved)
        except ValueError as error:
            raise ValueError(f"{error} (from {type(self).__name__}'s saved hyperparameters)") from None
        source = getattr(self, "_stacey_config_source", None)
        if source is None:
            return from_hparams
        return StaceyConfig.from_source(source, defaults=from_hparams)

    def stacey_param_groups(self, config: StaceyConfig) -> list[dict[str, Any]]:
        """The param groups for Stacey; by default one per kind (see param_groups). Override it to
        group parameters your own way: every parameter requiring grad must be in exactly one group."""
        return param_groups(self, config, stacked=self.stacey_stacked_matrices())

    def stacey_stacked_matrices(self) -> dict[torch.Tensor, int]:
        """``{weight: k}`` for the weights that stack k maps along their rows, which the spectral norm steps as
        k matrices: by default the gates torch's recurrent layers stack (nn.LSTM's 4, nn.GRU's 3;
        ``param_groups.stacked_matrices``). Override it to add the model's own, such as a hand-written cell's
        ``self.gates = nn.Linear(n, 4 * h)``: ``return {**super().stacey_stacked_matrices(), self.gates.weight: 4}``."""
        return stacked_matrices(self)

    def stacey_optimizer_config(self, config: ConfigSource | None = None) -> dict[str, Any]:
        """``{"optimizer": Stacey, "lr_scheduler": {...}}`` (no lr_scheduler for the constant schedule),
        in the form ``configure_optimizers`` returns. Call it from your own configure_optimizers.

        Args:
            config: used instead of the resolved config (``stacey_config()``) when given.
        """
        config = self.stacey_config() if config is None else StaceyConfig.from_source(config)
        groups = self.stacey_param_groups(config)
        check_groups(self, groups)
        options = {key: value for key, value in self._stacey_hparams().items() if key in OPTION_NAMES}
        total_steps = self._stacey_total_steps(config)
        optimizer = Stacey(groups, **config.optimizer_arguments(total_steps), **options)
        scheduler = build_scheduler(optimizer, config.schedule, total_steps)
        if scheduler is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def configure_optimizers(self) -> dict[str, Any]:
        choice = self.optimizer_choice()
        if choice.is_stacey:
            return self.stacey_optimizer_config()
        options = dict(choice.options)
        # An optimizer for hidden matrices (MuonWithAdamW) says so, and gets the output head apart.
        head_apart = getattr(choice.optimizer_class, "output_head_apart", False)
        groups = baseline_param_groups(self, options.pop("weight_decay", None), head_apart)
        # A baseline trains at a constant lr: the comparison is of optimizers, not of schedules.
        return {"optimizer": choice.optimizer_class(groups, **options)}

    def on_train_start(self) -> None:
        super().on_train_start()
        _switch_optimizers(self, "train")

    def on_validation_model_eval(self) -> None:
        super().on_validation_model_eval()
        _switch_optimizers(self, "eval")

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()
        if self.trainer.state.fn == "fit":  # back to training; not after a validate() of its own
            _switch_optimizers(self, "train")

    def on_train_end(self) -> None:
        super().on_train_end()
        _switch_optimizers(self, "eval")  # the fitted module holds the averaged point

    def on_test_model_eval(self) -> None:
        super().on_test_model_eval()
        _switch_optimizers(self, "eval")

    def on_predict_model_eval(self) -> None:
        super().on_predict_model_eval()
        _switch_optimizers(self, "eval")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stacey_config"] = self.stacey_config().to_dict()
        switched = _switch_optimizers(self, "eval")
        if switched:
            # Saved outside validation (at a training epoch's end): Lightning has already taken the weights
            # and optimizer states at the training point; take them again at the averaged point (the
            # optimizers' only where the checkpoint has them: not for save_weights_only). The weights as
            # copies: a state_dict's tensors are the parameters, which train() moves back in place. The
            # optimizers' need none: Schedule-Free's modes leave its state as it is, and Stacey's swap gives
            # each parameter a new average tensor, leaving the one taken here as it was.
            strategy = self.trainer.strategy
            checkpoint["state_dict"] = {
                key: value.clone() if isinstance(value, torch.Tensor) else value
                for key, value in strategy.lightning_module_state_dict().items()
            }
            if "optimizer_states" in checkpoint:
                checkpoint["optimizer_states"] = [strategy.optimizer_state(o) for o in self.trainer.optimizers]
            for optimizer in switched:
                optimizer.train()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed or reloaded module gets the schedule and kinds it was trained with, unless
        # set_stacey_config already chose a config for it.
        if getattr(self, "_stacey_config_source", None) is None and "stacey_config" in checkpoint:
            self.set_stacey_config(checkpoint["stacey_config"])

    def _stacey_hparams(self) -> dict[str, Any]:
        return dict(getattr(self, "hparams", {}))

    def _stacey_total_steps(self, config: StaceyConfig) -> float:
        """The fit's optimizer steps, where the config needs them (warmup_cosine, tau_horizon,
        average_horizon), else inf."""
        horizons = [key for key in RUN_HORIZONS if getattr(config, key) is not None]
        if config.schedule["name"] != "warmup_cosine" and not horizons:
            return float("inf")
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            needs = "schedule warmup_cosine" if config.schedule["name"] == "warmup_cosine" else horizons[0]
            raise ValueError(
                f"{needs} needs the Trainer's step count: build the optimizer inside "
                "Trainer.fit (configure_optimizers), not before"
            )
        return trainer.estimated_stepping_batches


def _switch_optimizers(module: Any, mode: str) -> list[Any]:
    """Put the trainer's optimizers that have train()/eval() modes into ``mode``; returns those that were
    in the other mode (the ones switched). An optimizer has modes where its groups say ``train_mode``
    (Schedule-Free's all, Stacey's those that keep an average): one without has nothing to switch."""
    trainer = getattr(module, "_trainer", None)
    switched = []
    for optimizer in trainer.optimizers if trainer is not None else ():
        if not (callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))):
            continue
        modes = [group["train_mode"] for group in optimizer.param_groups if "train_mode" in group]
        if not modes:
            continue
        training = all(modes)
        if training != (mode == "train"):
            getattr(optimizer, mode)()
            switched.append(optimizer)
    return switched
