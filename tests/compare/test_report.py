"""stacey-report on small studies made here (no training): plots as HTML and PNG, the summary, errors."""

from __future__ import annotations

import math

import optuna
import pytest

from stacey_lightning.cli import report_main
from stacey_lightning.report import report

PLOTS = ("history", "importances", "p", "parallel")


def _objective(trial: optuna.Trial) -> float:
    # Sampled as the tuner does: p through r = 1/(p-1), r = 0 being p = inf.
    r = trial.suggest_float("r", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    trial.set_user_attr("stacey_config", {"p": math.inf if r == 0 else 1 + 1 / r, "lr": lr})
    if trial.number == 3:
        raise optuna.TrialPruned()
    if trial.number == 4:
        raise RuntimeError("diverged")
    return 1.0 - (r - 0.5) ** 2 - (math.log10(lr) + 2) ** 2 / 10


def _study(path, name: str, n_trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{path}",
        study_name=name,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(_objective, n_trials=n_trials, catch=(RuntimeError,))
    return study


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    study = _study(directory / "study.db", "digits-p", 8)
    return study, report(f"sqlite:///{directory / 'study.db'}", output_dir=directory / "out")


def test_every_plot_is_written_as_html_and_png(reported):
    import matplotlib.image

    _, written = reported
    for name in PLOTS:
        html = open(written[f"{name}.html"], encoding="utf-8").read()
        assert 'src="plotly.min.js"' in html  # the one local copy: opens offline
        image = matplotlib.image.imread(written[f"{name}.png"])
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].var() > 0
    p_page = open(written["p.html"], encoding="utf-8").read()
    assert "Objective against p" in p_page and '"inf"' in p_page  # r axis relabelled in p


def test_the_plots_are_drawn_without_touching_the_users_pyplot(users_pyplot, reported, tmp_path):
    study, written = reported
    storage = written["summary"].rsplit("/out/", 1)[0] + "/study.db"
    again = report(f"sqlite:///{storage}", output_dir=tmp_path / "out")
    assert all(f"{name}.png" in again for name in PLOTS)


def test_summary_has_best_trial_states_and_time(reported):
    study, written = reported
    summary = open(written["summary"], encoding="utf-8").read()
    best = study.best_trial
    assert f"Trial {best.number}: objective **{best.value:.6g}**" in summary
    assert f"| r | {best.params['r']:.6g} (p = {1 + 1 / best.params['r']:g}) |" in summary
    assert "stacey_config:" in summary  # the config recorded with the trial, as YAML
    assert "| COMPLETE | 6 |" in summary and "| PRUNED | 1 |" in summary and "| FAIL | 1 |" in summary
    assert "| total | 8 |" in summary
    assert "trials, summed:" in summary and "over 8 finished trials" in summary
    assert "Plots not drawn" not in summary


def test_a_study_with_one_completed_trial_says_which_plots_it_skipped(tmp_path):
    _study(tmp_path / "one.db", "one", 1)
    written = report(f"sqlite:///{tmp_path / 'one.db'}", output_dir=tmp_path / "out")
    assert "importances.png" not in written and "history.png" in written
    assert "- importances: needs 2 or more completed trials, the study has 1" in open(written["summary"]).read()


def test_several_studies_need_a_name_and_the_error_lists_them(tmp_path):
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'two.db'}", study_name="alpha")
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'two.db'}", study_name="beta")
    with pytest.raises(ValueError, match="2 studies: alpha, beta; choose one with --study NAME"):
        report(f"sqlite:///{tmp_path / 'two.db'}", output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="No study 'gamma'.*alpha, beta"):
        report(f"sqlite:///{tmp_path / 'two.db'}", "gamma", output_dir=tmp_path / "out")
    written = report(f"sqlite:///{tmp_path / 'two.db'}", "beta", output_dir=tmp_path / "out")
    assert "No completed trial." in open(written["summary"]).read()


def test_a_missing_sqlite_file_is_not_created(tmp_path):
    with pytest.raises(ValueError, match="No storage file"):
        report(f"sqlite:///{tmp_path / 'typo.db'}", output_dir=tmp_path / "out")
    assert not (tmp_path / "typo.db").exists()


def test_passwords_are_masked_in_errors_and_output(tmp_path, capsys):
    url = "postgresql://stacey:s3cret@127.0.0.1:9/studies"  # nothing listens on port 9
    assert report_main([url, "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "stacey:***@127.0.0.1:9" in error and "s3cret" not in error


def test_cli_prints_the_summary(reported, tmp_path, capsys):
    study, written = reported
    storage = written["summary"].rsplit("/out/", 1)[0] + "/study.db"
    assert report_main([f"sqlite:///{storage}", "--study", study.study_name, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"# Study `{study.study_name}`" in out and "optuna-dashboard sqlite:///" in out


def test_a_journal_file_storage_is_read_like_the_tuner_writes_it(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
    optuna.create_study(storage=storage, study_name="journal").optimize(
        lambda trial: trial.suggest_float("r", 0, 1), n_trials=2
    )
    written = report(f"journal:{tmp_path / 'study.log'}", output_dir=tmp_path / "out")
    assert "# Study `journal`" in open(written["summary"]).read() and "history.png" in written
    with pytest.raises(ValueError, match="No storage file"):
        report(f"journal:{tmp_path / 'typo.log'}", output_dir=tmp_path / "out")
