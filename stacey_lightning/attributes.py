"""What a study records: the names below search/, study/, execution/ and tuner/, which all read them.

Trial user attributes (optuna-dashboard and ``stacey-report`` show them; the tuner reads them back):
"""

from __future__ import annotations

__all__ = [
    "CONFIG",
    "OPTIMIZER_OPTIONS",
    "TASK_PARAMS",
    "HOSTNAME",
    "PID",
    "RETRY_OF",
    "WORKER_DEATHS",
    "FAIL_REASON",
    "TRACEBACK",
    "STOP_REASON",
    "ANCHOR",
    "LADDER",
    "LADDER_STEP",
    "LADDER_REST",
    "LADDER_EMBEDDING",
    "LADDER_COUPLING",
    "RUNG_COORDINATES",
    "SURPLUS",
    "GRADIENT_SCALE",
    "MODEL_KINDS",
    "EPOCHS",
    "CONFIRMS",
    "TRIAL_SEED",
    "DDP_KEY",
    "DDP_RUN",
    "STUDY_OPTIMIZER",
    "STUDY_SPACE",
    "ANCHORS_ENQUEUED",
    "DDP_DONE_PREFIX",
    "SAMPLERS",
    "PRUNERS",
    "DEFAULT_SAMPLER",
    "DEFAULT_PRUNER",
    "DEFAULT_STORAGE_OUTAGE_S",
]

CONFIG = "stacey_config"  # a Stacey trial's config, StaceyConfig.to_dict()
OPTIMIZER_OPTIONS = "optimizer_options"  # a baseline trial's optimizer keyword arguments
TASK_PARAMS = "task_params"  # what the task's own make() sampled on the trial (e.g. a hidden width)
HOSTNAME = "hostname"  # the host of the worker running the trial
PID = "pid"  # that worker's process id
RETRY_OF = "retry_of"  # the number of the failed trial whose parameters this trial runs again
# How the worker processes that ran these parameters before died (every earlier trial of the retry chain
# that died with its process), one entry each: the exit code, negative for a signal (-9: SIGKILL), or None
# where it is not known (the process was gone, or its heartbeat stopped). storage.MAX_TRIES bounds the chain.
WORKER_DEATHS = "worker_deaths"
FAIL_REASON = "fail_reason"  # why the trial failed, in one line
TRACEBACK = "traceback"  # the task's traceback when it raised
STOP_REASON = "stop_reason"  # why the run stopped early (pruned, non-finite loss); absent if it did not
ANCHOR = "anchor"  # the name of the anchor point the trial runs (see anchors.py)
LADDER = "ladder"  # the ladder an anchor is a rung of ("muon-like"; search/ladder.py climbs it)
LADDER_STEP = "ladder_step"  # that rung's step (a baseline's: its lr)
LADDER_REST = "ladder_rest"  # a Muon-like rung's step of the rest of the model, times its step (1: alike)
LADDER_EMBEDDING = "ladder_embedding"  # a Muon-like rung's embeddings' step, times the rest's (1: alike)
LADDER_COUPLING = "ladder_coupling"  # a rung's pull towards z, 1 / tau_horizon (0: its geometry's own horizon)
# Where a rung records each of its coordinates, in Anchor.coordinates' order, with the value of a rung that has not
# moved along it (None: every rung records it), which a rung from an older study without it reads.
RUNG_COORDINATES = {LADDER_STEP: None, LADDER_REST: 1.0, LADDER_EMBEDDING: 1.0, LADDER_COUPLING: 0.0}
SURPLUS = "surplus"  # asked for by a racing worker after the study was full: failed before training
EPOCHS = "epochs"  # the epochs the trial trained, recorded when its fit ends (budget.py)
CONFIRMS = "confirms"  # a confirmation run: the number of the trial it trains again on another seed (confirm.py)
TRIAL_SEED = "seed"  # the seed a confirmation run trains with (others use the study's)
GRADIENT_SCALE = "gradient_scale"  # 99th percentile of |momentum| at the end of a Stacey trial (calibration.py)
MODEL_KINDS = "model_kinds"  # the kinds of parameter a Stacey trial's model has (search/ladder.py reads them)
DDP_KEY = "ddp_key"  # plain DDP: the job whose rank 0 trains this trial (see ddp.py)
DDP_RUN = "ddp_run"  # plain DDP: which of that job's training runs it is

# Study user attributes.
STUDY_OPTIMIZER = "optimizer"  # the optimizer the study tunes: "stacey" or a baseline name
STUDY_SPACE = "space"  # the search space's fingerprint (SpaceParser.fingerprint) when the study was created
ANCHORS_ENQUEUED = "anchors_enqueued"  # how many of the study's anchor points it has enqueued (anchors.py)
DDP_DONE_PREFIX = "stacey_ddp_done:"  # + DDP key: rank 0 of that job has finished after this many runs

# Samplers and pruners by name (samplers.py builds them); here, where the command line can read them
# without importing Optuna.
SAMPLERS = ("tpe", "gp", "cmaes", "random", "qmc")
PRUNERS = ("hyperband", "median", "none")
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "hyperband"
# How long a study waits for an unreachable database (execution/outage.py); here for the command line, as above.
DEFAULT_STORAGE_OUTAGE_S = 300.0
