"""A suite of small workloads, split once and for all into a development half and a validation half.

Defaults (Stacey's config, its search spaces, the finder's constants) are chosen on the ``dev`` workloads
only. The ``validation`` workloads are run to report how those choices hold on models they were not
chosen on, never to choose: a default changed after looking at a validation result has made that
workload a development one, and the split in ``registry`` is no longer honest. Both halves hold some of
the same architecture families (an MLP, a recurrent network and a transformer language model on each
side), and each half has families the other lacks.

From the repository root::

    python -m benchmarks.suite --list                         # name, split, architecture, seconds per run
    python -m benchmarks.suite --list --measure               # the same, each workload timed again here
    python -m benchmarks.suite --run --budgets 4,8 --workdir runs/suite        # dev: tune, retrain, report
    python -m benchmarks.suite --run --split validation --workdir runs/suite   # then report on validation
    python -m benchmarks.suite --run --smoke --workloads cancer-mlp            # seconds: checks the driver

``registry`` holds the workloads and the split; ``workloads/`` the networks and their ``make`` tasks, one
file per architecture family; ``datasets/`` the data, generated or read locally (nothing is downloaded);
``training`` the one LightningModule and DataModule they share; ``run`` the driver (equal-budget tuning
through ``stacey_lightning.compare``, the geometry finder, three seeds each, resumable); ``summary`` the
AlgoPerf-style scores; ``report`` the Markdown written to ``benchmarks/results/suite.md``.
"""
