"""The suite's data, all of it small, deterministic and local: scikit-learn's bundled tables (``tables``),
MNIST-1D-like signals (``signals``) and associative recall (``recall``), both generated from fixed seeds, and
the Python standard library's own source as text (``text``). Nothing is downloaded.

Every loader returns ``((train inputs, train targets), (validation inputs, validation targets))`` as
tensors, and the same split whatever the run's seed: runs differ in initial weights and batch order only.
"""
