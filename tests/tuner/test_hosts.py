"""Two "machines" (processes with their own hostnames, through `unshare -u`) sharing one PostgreSQL study:
every trial runs once, none is lost, and the study ends with exactly n_trials finished trials, its
confirmation runs (study/confirm.py) among them, each once although four workers raced to enqueue them."""

import os
import shutil
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from stacey_lightning.attributes import CONFIRMS, TRIAL_SEED
from stacey_lightning.execution.storage import open_storage

N_TRIALS = 6


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-u", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_two_hosts_share_one_postgres_study_exactly(tmp_path, postgres_url, subprocess_env):
    if not _can_unshare():
        pytest.skip("`unshare -u` is not permitted here (it needs root or CAP_SYS_ADMIN)")
    name = f"hosts-{os.getpid()}"
    # Each of the 4 worker processes waits, before its first trial, until all 4 have started one: on a
    # loaded machine one host's workers could otherwise finish the study before the other's had begun.
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    hosts = []
    for host in ("host-a", "host-b"):
        tune = (
            f"{sys.executable} -m stacey_lightning tune --task tuning_tasks:make_rendezvous --task-option "
            f"rendezvous_dir={rendezvous} --task-option workers=4 --monitor val_acc --direction maximize "
            f"--max-epochs 1 --n-trials {N_TRIALS} --workers 2 --storage '{postgres_url}' "
            f"--study-name {name} --output {tmp_path / host}"
        )
        hosts.append(subprocess.Popen(["unshare", "-u", "sh", "-c", f"hostname {host} && exec {tune}"],
                                      env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))  # fmt: skip
    outputs = [host.communicate(timeout=400)[0] for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0], outputs
    study = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == N_TRIALS  # exactly, although four workers on two hosts raced for the last ones
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Left waiting, at most: a second copy of a confirmation run that another worker enqueued and ran (a
    # resumed study fails it before training); nothing that the study still needs.
    held = {(t.user_attrs.get(CONFIRMS), t.user_attrs.get(TRIAL_SEED)) for t in finished}
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert all(CONFIRMS in t.user_attrs and (t.user_attrs[CONFIRMS], t.user_attrs[TRIAL_SEED]) in held for t in waiting)
    surplus = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("surplus") and not t.intermediate_values for t in surplus)  # never trained
    assert {t.user_attrs["hostname"] for t in finished} == {"host-a", "host-b"}
    # The search's trials are all different; the confirmation runs repeat its top two, once each.
    search = [t for t in finished if CONFIRMS not in t.user_attrs]
    confirmations = [t for t in finished if CONFIRMS in t.user_attrs]
    assert len(search) == N_TRIALS - 2 and len({tuple(sorted(t.params.items())) for t in search}) == len(search)
    assert sorted((t.user_attrs[CONFIRMS], t.user_attrs[TRIAL_SEED]) for t in confirmations) == sorted(
        (t.number, 1) for t in sorted(search, key=lambda t: t.value or 0.0, reverse=True)[:2]
    )
    assert all(t.params == trials[t.user_attrs[CONFIRMS]].params for t in confirmations)
