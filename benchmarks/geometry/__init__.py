"""The geometry experiments: where Stacey wins on the byte-level LM, how its lr transfers across p, what tau
does, and how schedules interact with it. Results: ``benchmarks/results/geometry.md`` and ``geometry.csv``.

From the repository root::

    python -m benchmarks.geometry.experiments --list          # every named experiment, with its runs
    python -m benchmarks.geometry.experiments --run exp1      # train its runs, append them to geometry.csv
    python -m benchmarks.geometry.tables                      # the appendix tables of geometry.md
    python -m benchmarks.geometry.lr_transfer C.pt            # lr transfer across p on a stored snapshot of c

``experiments`` holds the registry (name -> runs), ``runner`` trains one run through
``stacey_lightning.run`` (build, make_trainer, fit), as a tuning trial does.
"""
