"""The suite's networks and tasks, one file per architecture family. Every ``make_*`` is a task in the
repository's form, ``make(trial=None, seed=0, **options) -> (SuiteModule, LightningDataModule)``: the seed
sets the initial weights (``build_seeded``) and the batch order, never the data split; its defaults are the
workload as ``registry`` lists it, and its options shrink it for smoke runs.
"""
