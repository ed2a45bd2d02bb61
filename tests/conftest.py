"""Shared test setup: the ``slow`` and ``gpu`` markers, and ``tests/helpers`` on the import path, here
(pyproject's ``pythonpath``) and in the subprocesses that tests start (``subprocess_env``).

``users_pyplot`` is pyplot as a user's session holds it, checked untouched by the package's figures.

``pytest -m "not slow"`` skips the multi-process tests (DDP, FSDP2, torchrun, several workers, a
PostgreSQL server); ``gpu`` tests run only where CUDA is available.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

HELPERS = Path(__file__).parent / "helpers"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts several processes or a server (tens of seconds)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a subprocess that imports the helpers (tasks given as "tuning_tasks:make_...")."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL server .ci/start_postgres.sh started (STACEY_TEST_POSTGRES_URL). Without one the test
    is skipped, with the reason shown; under CI=true a missing server fails the test instead."""
    url = os.environ.get("STACEY_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but STACEY_TEST_POSTGRES_URL is not set: .ci/start_postgres.sh did not run")
    pytest.skip("no PostgreSQL server: set STACEY_TEST_POSTGRES_URL (source .ci/start_postgres.sh)")


@pytest.fixture
def users_pyplot(tmp_path, monkeypatch):
    """pyplot as a user's session may hold it: a backend of its own (Agg's canvas under another name, as
    Jupyter's inline backend is), no figure open. Checked unchanged after the test, then given back."""
    import matplotlib
    from matplotlib import pyplot

    (tmp_path / "users_backend.py").write_text(
        "from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = matplotlib.get_backend()
    pyplot.switch_backend("module://users_backend")
    pyplot.close("all")
    style = matplotlib.rcParams.copy()
    yield pyplot
    try:
        assert matplotlib.get_backend() == "module://users_backend" and pyplot.get_fignums() == []
        assert dict(matplotlib.rcParams) == dict(style)
    finally:
        pyplot.switch_backend(backend)
