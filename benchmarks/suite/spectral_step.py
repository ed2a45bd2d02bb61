"""The spectral step on the development half: Stacey's Muon-like anchor (spectral matrices, Adam's norm
elsewhere, tau = 0; ``--rest-norms lp``: p = inf elsewhere, the anchor of rounds 4 to 6) trained whole at
coordinate steps 1e-3 (its middle rung), 3e-3 and 9e-3, one seed, on the dev workloads named. It decided
where Muon's upper rung sits among Stacey's anchors (search/anchors.py).
With ``--horizons``, each step also with Stacey's pull towards z (tau_horizon H: tau * T = 1 / H, alpha as
the anchor's). With ``--rest-scales K``, everything outside the spectral matrices (embeddings, head, vectors)
steps K times the matrices' step, as Muon's AdamW does at its lr (five times its matrices' update RMS); with
``--beta2s``, the momentum's beta2 (Muon's momentum is 0.95, the presets' beta2 0.99). With ``--muon-lrs``,
torch's Muon (``muon``: AdamW on the rest) at those lrs, and with ``--sign-rest-steps`` the same Muon with the
rest of the model stepped sign-like instead (Stacey at p = inf, tau = 0: Lion's step) at those steps: which
of Muon's two halves a Muon-like point lacks; with ``--coupled-horizons``, the same Muon with its matrices
stepped by Stacey with a pull towards z (tau * T = 1 / H), AdamW kept on the rest. Prints each workload's
validation loss (val_loss, the loss the module logs) per configuration.

    python -m benchmarks.suite.spectral_step --workloads stdlib-gru,stdlib-transformer-narrow,recall-transformer
    python -m benchmarks.suite.spectral_step --workloads stdlib-gru --steps 1e-3,3e-3 --horizons inf,0.5
    python -m benchmarks.suite.spectral_step --workloads stdlib-transformer-narrow --steps '' --muon-lrs 0.027 \
        --sign-rest-steps 9e-3,2.7e-2 --seeds 3
    python -m benchmarks.suite.spectral_step --workloads stdlib-gru --steps '' --muon-lrs 0.009 \
        --coupled-horizons inf,1,0.5 --seeds 3
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
from typing import Any

from benchmarks.suite.registry import DEV, select
from benchmarks.suite.run import train_config
from stacey_lightning.optim.muon_with_adamw import MuonWithAdamW
from stacey_lightning.optim.optimizer import Stacey

STEPS = (1e-3, 3e-3, 9e-3)


class _MuonWithStacey(MuonWithAdamW):
    """``muon`` with one of its two torch optimizers replaced by Stacey on the same groups: on the hidden matrices
    (``SIDE`` True) or on the rest (False), built by ``_stacey``."""

    SIDE: bool

    def _stacey(self, groups: list[dict[str, Any]]) -> Stacey:
        raise NotImplementedError

    def _workers(self) -> dict:
        if "_worker_optimizers" not in self.__dict__:
            workers = super()._workers()
            groups = [group for group in self.param_groups if group["muon"] is self.SIDE]
            if groups:
                workers[self.SIDE] = self._stacey(groups)
        return self.__dict__["_worker_optimizers"]


class MuonWithSignRest(_MuonWithStacey):
    """torch's Muon on the hidden matrices (as ``muon``) and, on the rest, Stacey at p = inf and tau = 0 (a sign
    step with the groups' betas, 0.9 and 0.95) at ``rest_lr``: Muon with a Muon-like point's rest."""

    SIDE = False

    def __init__(self, params: Any, rest_lr: float = 9e-3, **options: Any) -> None:
        super().__init__(params, **options)
        for group in self.param_groups:
            if not group["muon"]:
                group["lr"] = rest_lr

    def _stacey(self, groups: list[dict[str, Any]]) -> Stacey:
        return Stacey(groups, p=math.inf, alpha=0.0, tau=0.0)


class CoupledMatricesAdamWRest(_MuonWithStacey):
    """Muon's other way round: on the hidden matrices Stacey in the spectral norm with Muon's momentum (betas
    (mu^2, mu), mu = 0.95) and a pull towards z (``tau``, alpha = 0.1 lr), AdamW on the rest. At tau = 0 it is
    ``muon`` (Stacey's Muon special case): does the coupling pay once the rest is AdamW's?"""

    SIDE = True

    def __init__(self, params: Any, tau: float = 0.0, **options: Any) -> None:
        self._tau = tau
        super().__init__(params, **options)

    def _stacey(self, groups: list[dict[str, Any]]) -> Stacey:
        for group in groups:
            group["betas"] = (0.95**2, 0.95)
        # Stacey's spectral lr is its update's RMS / 0.2, as Muon's match_rms_adamw lr.
        lr = self.defaults["lr"]
        return Stacey(groups, lr=lr, norm="spectral", tau=self._tau, alpha=0.1 * lr)


def _steps_per_run(workload: Any) -> int:
    """The optimizer steps of one run of ``workload`` (its train batches times its epochs), for tau_horizon."""
    from stacey_lightning.tasks import resolve_task

    made = resolve_task(workload.task).make()
    module, datamodule = made if isinstance(made, tuple) else (made, None)
    if datamodule is not None:
        datamodule.setup("fit")
    return len((datamodule or module).train_dataloader()) * workload.epochs


def _numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",") if value.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", required=True, help="comma-separated dev workloads")
    parser.add_argument("--steps", type=_numbers, default=list(STEPS), help="coordinate steps")
    parser.add_argument("--horizons", type=_numbers, default=[math.inf], help="tau_horizon values (inf: tau = 0)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--embedding-scales", type=_numbers, default=[1.0], help="the embeddings' step, times the step")
    parser.add_argument(
        "--rest-scales", type=_numbers, default=[1.0], help="the step outside the spectral kinds, times the step"
    )
    parser.add_argument("--beta2s", type=_numbers, default=[], help="the momentum's beta2 (default: the preset's)")
    parser.add_argument(
        "--rest-norms",
        default="",
        help="the norm outside the spectral kinds: lp (sign-like), adam (default: the rung's)",
    )
    parser.add_argument("--muon-lrs", type=_numbers, default=[], help="torch Muon's lrs (its rest: AdamW)")
    parser.add_argument(
        "--sign-rest-steps", type=_numbers, default=[], help="the same Muon, the rest sign-like at these steps"
    )
    parser.add_argument(
        "--coupled-horizons", type=_numbers, default=[], help="the same Muon's matrices by Stacey at these tau_horizon"
    )
    arguments = parser.parse_args(argv)
    import optuna
    import torch

    from stacey_lightning.compare import compare
    from stacey_lightning.lightning.config import tau_for_horizon
    from stacey_lightning.search.anchors import stacey_ladders
    from stacey_lightning.search.space import SearchSpace

    torch.set_num_threads(1)
    for workload in select(DEV, arguments.workloads.split(",")):
        space = SearchSpace.load(workload.space)
        muon = next(ladder for ladder in stacey_ladders(space) if ladder.name == "muon-like")
        grid = itertools.product(
            arguments.steps, arguments.horizons, arguments.embedding_scales, arguments.rest_scales,
            arguments.beta2s or [None], [norm for norm in arguments.rest_norms.split(",") if norm] or [None],
            range(arguments.seeds),
        )  # fmt: skip
        for step, horizon, scale, rest, beta2, rest_norm, seed in grid:
            # The ladder's rung: the matrices at the step, the rest of the model at ``rest`` times it.
            values = {**muon.rung(step, rest).values, "tau_horizon": horizon}
            if rest_norm is not None:
                values["norm"] = rest_norm
            if math.isfinite(horizon):
                values.pop("tau")  # from the horizon and the run's steps
            config = space.sample_config(optuna.trial.FixedTrial(space.params_for(values)))
            if scale != 1.0 and "embedding" in config["kinds"]:
                config["kinds"]["embedding"]["lr_scale"] *= scale
            if beta2 is not None:
                config["betas"] = [config["betas"][0], beta2]
            (final,) = train_config(workload, config, [seed], monitor="val_loss", direction="minimize")
            extra = (f" rest x{rest:g}" if rest != 1.0 else "") + (f" beta2 {beta2:g}" if beta2 is not None else "")
            extra += f" rest norm {config.get('norm', 'lp')}"
            print(f"{workload.name} muon-like step {step:g} tau_horizon {horizon:g} embedding x{scale:g}{extra} "
                  f"seed {seed}: val_loss {final:.4f}", flush=True)  # fmt: skip
        peers = [("muon", {"lr": lr}, f"muon lr {lr:g}") for lr in arguments.muon_lrs] + [
            (f"{__name__}.MuonWithSignRest", {"lr": lr, "rest_lr": rest}, f"muon lr {lr:g} sign rest {rest:g}")
            for lr in arguments.muon_lrs for rest in arguments.sign_rest_steps
        ]  # fmt: skip
        steps = _steps_per_run(workload) if arguments.coupled_horizons else 0
        peers += [
            (f"{__name__}.CoupledMatricesAdamWRest", {"lr": lr, "tau": tau_for_horizon(horizon, steps)},
             f"muon lr {lr:g} matrices by stacey tau_horizon {horizon:g}")
            for lr in arguments.muon_lrs for horizon in arguments.coupled_horizons
        ]  # fmt: skip
        for (optimizer, options, label), seed in itertools.product(peers, range(arguments.seeds)):
            with tempfile.TemporaryDirectory() as folder:
                result = compare(workload.task, [optimizer], [seed], optimizer_options={optimizer: options},
                                 max_epochs=workload.epochs, monitor="val_loss", direction="minimize",
                                 output_dir=folder)  # fmt: skip
            print(f"{workload.name} {label} seed {seed}: val_loss {result.runs[0].final_metric:.4f}", flush=True)


if __name__ == "__main__":
    main()
