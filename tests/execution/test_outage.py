"""A study rides out its storage (issue 18): calls retry through an outage up to --storage-outage, say so once
when the storage goes and once when it is back, record what finished meanwhile, and past the limit stop in
one line, resumable (stacey_lightning/execution/outage.py).

The PostgreSQL tests start and stop a server of their own: stopping the shared one (STACEY_TEST_POSTGRES_URL)
would break the tests that use it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from stacey_lightning.execution import outage
from stacey_lightning.execution.deaths import fail_dead_trials
from stacey_lightning.execution.outage import (
    CLAIMED_BY,
    CREATION_TOKEN,
    RetryingStorage,
    StorageUnavailable,
    is_outage,
    ride_out,
)
from stacey_lightning.execution.storage import StorageError, mask_password, open_storage
from stacey_lightning.study.places import finished

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class OperationalError(Exception):
    """Named as PEP 249 names a driver's lost-connection error, which is how outages are recognised."""


class _AnswerLost(optuna.storages.InMemoryStorage):
    """A storage whose next call named in ``lose`` takes effect and then raises, as when the server commits
    and the connection dies before its answer arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: set[str] = set()

    def create_new_trial(self, study_id, template_trial=None):
        trial_id = super().create_new_trial(study_id, template_trial)
        self._maybe_lose("create_new_trial")
        return trial_id

    def set_trial_state_values(self, trial_id, state, values=None):
        updated = super().set_trial_state_values(trial_id, state, values)
        self._maybe_lose("set_trial_state_values")
        return updated

    def _maybe_lose(self, name: str) -> None:
        if name in self.lose:
            self.lose.discard(name)
            raise OperationalError("server closed the connection unexpectedly")


def test_outage_errors_are_told_from_refused_requests():
    try:
        try:
            raise OperationalError("connection refused")
        except OperationalError as error:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from error
    except optuna.exceptions.StorageInternalError as wrapped:
        assert is_outage(wrapped)
    assert is_outage(FileNotFoundError("journal folder gone"))
    assert not is_outage(optuna.exceptions.StorageInternalError("value too long"))
    assert not is_outage(ValueError("bad value"))


def test_calls_whose_answer_was_lost_take_effect_once(capsys):
    backend = _AnswerLost()
    study = optuna.create_study(storage=RetryingStorage(backend, "memory", outage_s=30), direction="maximize")
    backend.lose = {"create_new_trial"}
    trial = study.ask()  # the retry finds the trial by its token instead of making another
    backend.lose = {"set_trial_state_values"}
    study.tell(trial, 1.0)  # the retry finds it finished with this state
    study.enqueue_trial({"x": 1.0})
    backend.lose = {"set_trial_state_values"}
    taken = study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})  # only this process claimed it
    assert taken.number == 1 and taken.params == {"x": 1.0}
    assert [(t.number, t.state, t.value) for t in study.trials] == [
        (0, TrialState.COMPLETE, 1.0),
        (1, TrialState.RUNNING, None),
    ]
    assert CREATION_TOKEN in study.trials[0].system_attrs
    out = capsys.readouterr().out.splitlines()
    assert sum("storage memory unreachable (OperationalError: server closed" in line for line in out) == 3
    assert sum("storage memory is back" in line for line in out) == 3


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # fail_stale_trials
def test_a_trial_whose_worker_stopped_before_recording_its_pid_is_failed_and_requeued(capsys, monkeypatch):
    storage = RetryingStorage(optuna.storages.InMemoryStorage(), "memory")
    study = optuna.create_study(storage=storage, direction="maximize")
    ours = study.ask()  # created RUNNING by this process, which is alive: left alone
    assert f"{CLAIMED_BY}{socket.gethostname()}:{os.getpid()}" in study.trials[ours.number].system_attrs
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    # An enqueued trial taken by a process that then stopped (its storage out of reach) before it could
    # record its pid: only the claim it wrote first says whose the trial was.
    study.enqueue_trial({"x": 1.0})
    with monkeypatch.context() as patch:
        patch.setattr(outage, "_claim_key", lambda: f"{CLAIMED_BY}{socket.gethostname()}:{ended.pid}")
        study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
    fail_dead_trials(study)
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING], states
    assert study.trials[2].user_attrs["retry_of"] == 1 and study.trials[2].system_attrs["fixed_params"] == {"x": 1.0}
    assert f"worker (pid {ended.pid} on {socket.gethostname()}) died" in capsys.readouterr().out


def test_a_journal_whose_folder_is_briefly_gone_is_waited_for(tmp_path, capsys):
    folder = tmp_path / "shared"
    folder.mkdir()
    storage = open_storage(f"journal:{folder / 'study.log'}", outage_s=60)
    study = optuna.create_study(storage=storage, study_name="journal", direction="maximize")
    study.tell(study.ask(), 1.0)
    away = tmp_path / "unmounted"
    folder.rename(away)  # as an NFS mount that went away; chmod would not stop root
    back = threading.Timer(1.0, away.rename, args=(folder,))
    back.start()
    try:
        trial = study.ask()  # waits for the folder
        study.tell(trial, 2.0)
    finally:
        back.join()
    assert [t.value for t in study.trials] == [1.0, 2.0]
    out = capsys.readouterr().out
    assert out.count("unreachable (FileNotFoundError") == 1 and out.count("is back after") == 1, out

    # Past the limit: one line that says so and how to go on; once the folder is back, the next call works.
    short = open_storage(f"journal:{folder / 'study.log'}", outage_s=0.5)
    study = optuna.load_study(study_name="journal", storage=short)
    folder.rename(away)
    with pytest.raises(StorageUnavailable, match=r"unreachable for longer than the 0.5 s allowed") as raised:
        study.ask()
    assert "\n" not in str(raised.value) and "run the same command again" in str(raised.value)
    away.rename(folder)
    study.tell(study.ask(), 3.0)
    assert [t.value for t in study.trials] == [1.0, 2.0, 3.0]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # Optuna's heartbeat option
def test_only_a_worker_process_waits_for_a_storage_to_open(capsys):
    with socket.socket() as probe:  # a port where nothing listens: connections are refused
        probe.bind(("127.0.0.1", 0))
        url = f"postgresql://me:s3cret@127.0.0.1:{probe.getsockname()[1]}/studies"
    with pytest.raises(StorageError, match="cannot open storage postgresql://me:\\*\\*\\*@"):
        open_storage(url)  # where the study starts: more likely a wrong URL, said at once
    with pytest.raises(StorageUnavailable, match="unreachable for longer than the 0.6 s allowed"):
        ride_out(lambda: open_storage(url), mask_password(url), 0.6)  # a worker whose parent opened it
    out = capsys.readouterr().out
    assert out.count("storage postgresql://me:***@") == 1 and "unreachable (OperationalError: " in out, out
    assert "s3cret" not in out


def test_mask_password_reads_urls_as_sqlalchemy_does():
    assert mask_password("postgresql://me:s3cret@db:5432/x?sslmode=require") == (
        "postgresql://me:***@db:5432/x?sslmode=require"
    )
    assert mask_password("postgresql://me:p%40ss@db/x") == "postgresql://me:***@db/x"
    assert mask_password("postgresql://me:p@ss@db/x") == "postgresql://me:***@db/x"  # an unescaped @
    assert mask_password("postgresql://me@db/x") == "postgresql://me@db/x"
    assert mask_password("journal:/runs/study.log") == "journal:/runs/study.log"


class _Server:
    """A throw-away PostgreSQL 15 server on 127.0.0.1 (as .ci/start_postgres.sh starts one) that a test may
    stop, as a crash or a failover does, and start again."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="stacey-outage-pg."))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.password = secrets.token_hex(12)
        (self.folder / "password").write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            shutil.chown(self.folder / "password", "postgres")
        self._as_owner(
            "initdb", "-D", self.folder / "data", "-U", "stacey", f"--pwfile={self.folder / 'password'}",
            "--auth=scram-sha-256",
        )  # fmt: skip
        self.url = f"postgresql://stacey:{self.password}@127.0.0.1:{self.port}/postgres"
        self.start()

    def _as_owner(self, program: str, *args: object) -> None:
        # initdb and pg_ctl refuse to run as root.
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*owner, PG_BIN / program, *map(str, args)], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder}"
        self._as_owner(
            "pg_ctl", "-D", self.folder / "data", "-l", self.folder / "server.log", "-w", "-o", options, "start"
        )

    def crash(self) -> None:
        self._as_owner("pg_ctl", "-D", self.folder / "data", "-m", "immediate", "stop")

    def remove(self) -> None:
        try:
            self.crash()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    if not (PG_BIN / "pg_ctl").is_file():
        pytest.skip(f"no PostgreSQL 15 server programs at {PG_BIN} (apt-get install postgresql-15)")
    started = _Server()
    yield started
    started.remove()


def _study_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read by a storage of the test's own (the tuner's would wait out the outage)."""
    psycopg2 = make_url(url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    storage = optuna.storages.RDBStorage(psycopg2)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # the study is not created yet
        return []
    finally:
        storage.engine.dispose()


def _tune_command(server: _Server, output: Path, name: str, n_trials: int, outage_s: float) -> list[str]:
    return [
        sys.executable, "-m", "stacey_lightning", "tune", "--task", "digits", "--task-option", "hidden=8",
        "--task-option", "foreach=true", "--max-epochs", "2", "--n-trials", str(n_trials), "--workers", "2",
        "--storage", server.url, "--study-name", name, "--output", str(output), "--storage-outage", str(outage_s),
    ]  # fmt: skip


def _trial_states(server: _Server, name: str) -> list[str]:
    """The study's trial states, by one plain query: cheap enough to ask five times a second."""
    import psycopg2

    try:
        with closing(psycopg2.connect(server.url)) as connection:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT trials.state FROM trials JOIN studies USING (study_id) WHERE studies.study_name = %s",
                    (name,),
                )
                return [state for (state,) in cursor.fetchall()]
    except psycopg2.errors.UndefinedTable:  # Optuna has not made its tables yet
        return []


class _Tuner:
    """``stacey-tune`` in a subprocess, its output in files (a pipe nobody reads could fill and block it)."""

    def __init__(self, command: list[str], folder: Path) -> None:
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, text=True)

    def output(self) -> tuple[str, str]:
        return self.out.read_text(), self.err.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def _crash_mid_study(server: _Server, tuner: _Tuner, name: str, finished_first: int) -> None:
    """Stop the server once ``finished_first`` of the study's trials have finished and one is running."""
    deadline = time.monotonic() + 180
    while True:
        assert tuner.process.poll() is None, f"the study ended before the outage:\n{tuner.output()}"
        assert time.monotonic() < deadline, f"no trial running after {finished_first} finished within 180 s"
        states = _trial_states(server, name)
        if sum(state in ("COMPLETE", "PRUNED") for state in states) >= finished_first and "RUNNING" in states:
            break
        time.sleep(0.2)
    server.crash()


@pytest.mark.slow
def test_a_study_rides_out_a_database_crash(server, tmp_path):
    name = "rides-out"
    tuner = _Tuner(_tune_command(server, tmp_path, name, 4, outage_s=120), tmp_path)
    _crash_mid_study(server, tuner, name, finished_first=1)
    time.sleep(10)  # the outage: workers train on and wait for the database
    server.start()
    returncode = tuner.wait(timeout=240)
    out, err = tuner.output()
    assert returncode == 0, out + err
    assert "Traceback" not in out + err and "Exception in thread" not in out + err, out + err
    # Each worker says once that the database is gone (with why) and once that it is back.
    assert 1 <= out.count("unreachable (") <= 2 and out.count("unreachable (") == out.count("is back after"), out
    assert "retrying for up to 120 s" in out and server.password not in out + err
    trials = _study_trials(server.url, name)
    assert finished(trials) == 4 and not [t.number for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_an_outage_past_the_limit_stops_in_one_line_and_the_same_command_resumes(server, tmp_path):
    name = "past-the-limit"
    command = _tune_command(server, tmp_path, name, 2, outage_s=2)
    tuner = _Tuner(command, tmp_path)
    _crash_mid_study(server, tuner, name, finished_first=0)
    try:
        returncode = tuner.wait(timeout=120)  # the server stays down
    finally:
        server.start()
    out, err = tuner.output()
    assert returncode == 1, out + err
    assert "Traceback" not in out + err, out + err
    # Lightning's banner aside, stderr is the one line that says why the study stopped and what to do.
    errors = [line for line in err.splitlines() if line.startswith("stacey-tune:")]
    assert len(errors) == 1 and errors[0].startswith("stacey-tune: error: storage postgresql://stacey:***@"), err
    assert "unreachable for longer than the 2 s allowed" in errors[0] and "run the same command again" in errors[0]
    assert "Caught an error from sqlalchemy" not in err, err  # Optuna's fallback warning: quiet in an outage

    again = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    trials = _study_trials(server.url, name)
    assert finished(trials) == 2 and not [t.number for t in trials if t.state == TrialState.RUNNING]
    # The trials the stopped workers were running were failed as a dead worker's and re-queued.
    assert any("died" in t.user_attrs.get("fail_reason", "") for t in trials)
