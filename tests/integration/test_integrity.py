"""Nothing wrong, nothing lost (fast part): rebuilt reports equal live ones, a missing fresh measurement
is never replaced by a tuning value, the MLflow store is created atomically and a broken one is named,
sweep names are reserved atomically, and Ray addresses that are not Ray fail in seconds."""
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from helpers import SWEEPER

from sweeper import cli, readback, report, tracking, workdir
from sweeper.listener import Listener

PLAN_EXPERIMENT = {"name": "ids", "scenarios": [{"attack": "gaussian"}], "methods": ["gd", "ga"],
                   "budgets": [0.02, 0.04], "fresh_seeds": [10, 11, 12], "delta": 0.1, "spaces": {}}


def ref(method, phase, seed, effect):
    return {"attack": "gaussian", "method": method, "trial_id": method, "phase": phase, "seed": seed,
            "run_status": "FINISHED", "hparams": "{}", "budget": 0.0 if method == "none" else 1.0,
            "attack/effect": effect, "attack/effect_se": 0.05, "acc/val": 0.98, "acc/test": 0.98, "removal": 0.0,
            "objective": 0.0, "cost/fraction": 0.0, "cost/units": 0, "cost/seconds": 0.0, "mia/auc": 0.5,
            "gus/sum": -effect * 100, "gus/n_valid": 100, "n_seeds": 1}


def trial(tid, budget, removal, phase="tune", seed=None, source=None):
    """A gd checkpoint whose effect is the one its removal implies (m_poisoned 0.3, m_retrain 0)."""
    effect = 0.3 * (1 - removal) if removal == removal else 0.1
    return {**ref("gd", phase, seed, effect), "trial_id": tid, "budget": budget, "objective": removal,
            "removal": removal, "hparams": json.dumps({"lr": 0.1}), "source_trial": source, "cost/fraction": budget}


def live_rows() -> pd.DataFrame:
    """Tune ids that pandas would read as numbers: 14095149 (an int) and 890922e8 (a float, 8.9e13)."""
    out = [ref("none", "tune", None, 0.3), ref("retrain", "tune", None, 0.0)]
    out += [ref(m, "fresh", s, e) for s in (10, 11, 12) for m, e in (("none", 0.3), ("retrain", 0.0))]
    out += [trial("14095149", 0.02, 0.5), trial("14095149", 0.04, 0.6),
            trial("890922e8", 0.02, 0.2), trial("890922e8", 0.04, 0.9)]
    out += [trial(f"{t}-fresh{s}", b, r, "fresh", s, t) for s, r in zip((10, 11, 12), (0.3, 0.4, 0.5))
            for t, b in (("14095149", 0.02), ("890922e8", 0.04))]
    return pd.DataFrame(out)


def log_sweep(wd, rows: pd.DataFrame, name="ids", status="finished") -> tracking.RunWriter:
    """Write a sweep's parents as `run_sweep` does (real MLflow, SQLite in `wd`)."""
    uri = tracking.default_uri(wd)
    tracking.open_store(uri, wd)
    record = tracking.SweepRecord(uri, name, wd)
    record.reserve(numbered=False)
    tracker = tracking.RunWriter(record)
    for method in ("none", "retrain", "gd", "ga"):
        parent = tracker.start_parent("gaussian", method, {}, PLAN_EXPERIMENT)
        mine = rows[rows.method == method]
        tracker.end_parent(parent, mine.to_dict("records"))
    record.set_status(status)
    return tracker


def test_a_rebuilt_report_equals_the_live_one_when_trial_ids_look_numeric(tmp_path):
    rows = live_rows()
    live = report.summarize(rows, 0.1, report.plan_of(PLAN_EXPERIMENT))
    log_sweep(tmp_path, rows)
    rebuilt = readback.rebuild_report(tmp_path).summary
    pd.testing.assert_frame_equal(rebuilt, live, check_dtype=False)
    gd = rebuilt[(rebuilt.method == "gd") & (rebuilt.budget == 0.04)].iloc[0]
    assert gd.trial_id == "890922e8" and gd.n_fresh == 3 and gd.removal == pytest.approx(0.4)
    assert gd.removal_tuning == pytest.approx(0.9)  # the tuning value stays beside it, never instead of it
    assert set(rebuilt[rebuilt.method == "ga"].status) == {"not_run"}  # configured, never ran: still a row


def test_a_missing_fresh_measurement_is_never_replaced_by_the_tuning_value():
    rows = live_rows()
    rows = rows[~((rows.phase == "fresh") & (rows.source_trial == "890922e8"))]
    s = report.summarize(rows, 0.1, report.plan_of(PLAN_EXPERIMENT))
    gd = s[(s.method == "gd") & (s.budget == 0.04)].iloc[0]
    assert gd.status == "no_fresh" and gd.n_fresh == 0 and pd.isna(gd.removal) and gd.removal_tuning == 0.9
    failed = pd.concat([rows, pd.DataFrame([{**trial("890922e8-fresh10", float("nan"), 0.0, "fresh", 10, "890922e8"),
                                             "run_status": "FAILED", "error": "RuntimeError: boom"}])])
    s = report.summarize(failed, 0.1, report.plan_of(PLAN_EXPERIMENT))
    assert s[(s.method == "gd") & (s.budget == 0.04)].iloc[0].status == "fresh_failed"


def test_failed_references_give_failed_rows_not_a_verdict():
    rows = live_rows()
    rows = rows[rows.method != "none"]
    rows = pd.concat([rows, pd.DataFrame([{"attack": "gaussian", "method": "none", "trial_id": "none",
                                           "phase": "tune", "run_status": "FAILED", "error": "EOFError: x"}])])
    s = report.summarize(rows, 0.1, report.plan_of(PLAN_EXPERIMENT))
    assert s[s.method == "none"].iloc[0].status == "failed"
    assert set(s[s.method == "gd"].status) == {"reference_failed"} and s[s.method == "gd"].removal.isna().all()


def test_an_interrupted_sweep_rebuilds_as_a_partial_report(tmp_path):
    log_sweep(tmp_path, live_rows(), status="interrupted")
    result = readback.rebuild_report(tmp_path)
    assert "PARTIAL: interrupted" in (result.report_dir / "report.html").read_text()
    assert (result.report_dir / "PARTIAL.txt").exists()


# -- the MLflow store -------------------------------------------------------------------------------------
OPEN_STORE = ("import sys; from pathlib import Path; from sweeper import tracking; "
              "tracking.open_store(tracking.default_uri(Path(sys.argv[1])), Path(sys.argv[1]))")


def test_the_store_is_created_atomically_and_once_by_concurrent_runs(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(tmp_path)], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no half-built leftovers
    record = tracking.SweepRecord(tracking.default_uri(tmp_path), "x", tmp_path)
    assert record.reserve(numbered=True) == "x"


def test_concurrent_runs_pass_the_work_directory_check_together(tmp_path):
    # two `sweeper run`s started at once once made one fail: they probed writability under one file name
    errors = []

    def check():
        for _ in range(300):
            try:
                workdir.prepare_workdir(tmp_path / "wd")
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(str(e))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and list((tmp_path / "wd").iterdir()) == []  # and no probe left behind


def test_an_interrupted_creation_leaves_no_store(tmp_path):
    """SIGKILL while the schema is being built: no mlflow.db appears; the next opener cleans up."""
    proc = subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(tmp_path)])
    deadline = time.time() + 60
    while not list(tmp_path.glob(".mlflow.db.creating-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    if not list(tmp_path.glob(".mlflow.db.creating-*")):
        pytest.skip("the creation finished before it could be killed")
    assert not (tmp_path / "mlflow.db").exists()
    tracking.open_store(tracking.default_uri(tmp_path), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_a_broken_store_is_one_clear_line(tmp_path, capsys):
    # Built in another process: MLflow caches a store per URI, and this process must meet it fresh.
    subprocess.run([sys.executable, "-c", OPEN_STORE, str(tmp_path)], check=True, timeout=120)
    # What a creation killed mid-migration leaves (seen with SIGKILL ~2 s into MLflow's own creation):
    # alembic_version names an early revision, some later tables exist and others do not. MLflow then
    # re-runs migrations and fails with "index ... already exists" on every later run.
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'a8c4a736bde6'")
        db.execute("DROP TABLE secrets")
    for args in (["run", "--workdir", str(tmp_path), "--profile", "tiny"], ["report", "--workdir", str(tmp_path)]):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is broken" in err and "already exists" in err and "Traceback" not in err


# -- sweep names ------------------------------------------------------------------------------------------
def test_names_are_reserved_atomically(tmp_path):
    uri = tracking.default_uri(tmp_path)
    tracking.open_store(uri, tmp_path)
    got = []
    threads = [threading.Thread(target=lambda: got.append(tracking.SweepRecord(uri, "s", tmp_path).reserve(True)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == ["s", "s-2", "s-3", "s-4"]
    with pytest.raises(Exception, match="already exists"):
        tracking.SweepRecord(uri, "s", tmp_path).reserve(numbered=False)


def test_name_of_an_existing_sweep_is_refused_before_anything_runs(tmp_path, capsys):
    log_sweep(tmp_path, live_rows(), name="taken")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(["run", "--workdir", str(tmp_path), "--profile", "tiny", "--name", "taken"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a sweep named 'taken' already exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sweeps_lists_each_sweep_with_its_state_its_report_and_how_to_resume_it(tmp_path, capsys):
    done = log_sweep(tmp_path, live_rows(), name="done")
    parent = done.start_parent("gaussian", "gd", {}, PLAN_EXPERIMENT)
    done.end_child(done.start_child(parent, "gd/t1", {}, {"phase": "tune", "method": "gd", "trial_id": "t1"}),
                   "FINISHED", [])
    (tmp_path / "report" / "done").mkdir(parents=True)
    (tmp_path / "report" / "done" / "report.html").write_text("<html></html>")
    log_sweep(tmp_path, live_rows(), name="cut", status="interrupted")
    reserve = ("import sys; from pathlib import Path; from sweeper import tracking; wd = Path(sys.argv[1]); "
               "tracking.SweepRecord(tracking.default_uri(wd), 'gone', wd).reserve(numbered=False)")
    subprocess.run([sys.executable, "-c", reserve, str(tmp_path)], check=True, timeout=120)  # its driver has exited
    table = readback.list_sweeps(tmp_path)
    assert list(table.sweep) == ["gone", "cut", "done"]  # newest first
    assert list(table.status) == ["died", "interrupted", "finished"]
    assert list(table.tuning_trials) == [0, 0, 1]
    assert list(table.resume) == ["sweeper run gone --resume gone", "sweeper run ids --resume cut", ""]  # from Python
    assert list(table.report) == ["", "", str(tmp_path / "report" / "done" / "report.html")]
    assert cli.main(["sweeps", "--workdir", str(tmp_path)]) == 0
    assert "sweeper run ids --resume cut" in capsys.readouterr().out
    assert cli.main(["sweeps", "--workdir", str(tmp_path / "none")]) == 2
    assert "no sweep found" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_the_resume_command_is_the_starting_one_with_resume_in_place_of_name():
    started = ["sweeper", "run", "my exp.yaml", "--name", "a", "trials=3", "--storage", "s3://b/p?x=1", "--name=b"]
    assert readback.resume_command(started, "a", {}) == "sweeper run 'my exp.yaml' trials=3 --storage 's3://b/p?x=1' --resume a"
    assert readback.resume_command(None, "q-2", {"name": "q", "profile": "tiny"}) == "sweeper run q --profile tiny --resume q-2"


def test_a_sweep_started_from_the_command_line_records_how_to_resume_it(tmp_path):
    wd = tmp_path / "wd"
    tracking.open_store(tracking.default_uri(wd), workdir.prepare_workdir(wd))
    argv = ["sweeper", "run", "quickstart", "--workdir", str(wd), "trials=2", "--name", "x"]
    tracking.SweepRecord(tracking.default_uri(wd), "x", wd).reserve(numbered=False, command=argv)
    tracking.SweepRecord(tracking.default_uri(wd), "x", wd).set_status("interrupted")
    assert list(readback.list_sweeps(wd).resume) == [f"sweeper run quickstart --workdir {wd} trials=2 --resume x"]


# -- Ray addresses ----------------------------------------------------------------------------------------
def _server(reply: bytes | None):
    """A TCP server on 127.0.0.1 that accepts and then stays silent (reply None) or answers `reply`."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held, stop = [], threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = srv.accept()[0]
            except OSError:
                continue
            held.append(conn)
            if reply is not None:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return srv, stop


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"], ids=["silent", "http1"])
def test_an_open_port_that_is_not_ray_fails_within_seconds(tmp_path, capsys, reply):
    srv, stop = _server(reply)
    port = srv.getsockname()[1]
    try:
        start = time.perf_counter()
        code = cli.main(["run", "--workdir", str(tmp_path / "wd"), "--profile", "tiny",
                         "--address", f"127.0.0.1:{port}"])
        assert time.perf_counter() - start < 15
    finally:
        stop.set()
        srv.close()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in err
    assert not (tmp_path / "wd").exists()


def test_address_auto_with_a_stale_record_fails_within_seconds(tmp_path):
    """Ray's record of the last cluster points at a port where nothing listens (its head was killed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ray_tmp = stale_ray_tmpdir(port)
    start = time.perf_counter()
    out = subprocess.run([SWEEPER, "run", "--workdir", str(tmp_path / "wd"),
                          "--profile", "tiny", "--address", "auto"], capture_output=True, text=True, timeout=60,
                         env=_env(RAY_TMPDIR=ray_tmp, RAY_ADDRESS=""))
    assert time.perf_counter() - start < 15
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "--address auto found" in err[0] and f":{port}" in err[0], out.stderr
    assert not (tmp_path / "wd").exists()


def stale_ray_tmpdir(port: int) -> str:
    """A private Ray temp dir (short: Ray's socket paths must fit 107 bytes) recording a dead cluster."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    (folder / "ray").mkdir()
    (folder / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    return str(folder)


def _env(**extra):
    import os

    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **extra}


def test_address_auto_prefers_ray_address_and_the_record_over_any_running_ray(monkeypatch):
    """Ray's own "auto" joins any single running GCS even when another cluster is recorded (a test
    session's embedded Ray, another user's); ours takes RAY_ADDRESS, then the record."""
    from sweeper import tuning

    monkeypatch.setenv("RAY_TMPDIR", stale_ray_tmpdir(6379))
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert tuning.resolve_auto().endswith(":6379")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:7000")
    assert tuning.resolve_auto().endswith(":7000")


def test_a_trial_that_fails_before_it_starts_still_gets_exactly_one_run(tmp_path):
    """A node that dies while Tune places a trial: Tune reports the retry (and possibly the final error)
    without ever reporting the start. Seen in CI: `retries` was tagged on a run that did not exist."""
    wd = tmp_path
    record = tracking.SweepRecord(tracking.default_uri(wd), "early", wd)
    record.reserve(numbered=False)
    tracker = tracking.RunWriter(record)
    parent = tracker.start_parent("gaussian", "gd", {}, {})
    lines = []
    listener = Listener(tracker, parent, "gaussian", "gd", {}, trials=2, progress=lines.append)
    listener.trial_restarted("t1", "ActorDiedError: node gone", {"lr": 0.1})
    listener.trial_started("t1", {"lr": 0.1})  # the retry starts: the same run, not a second one
    listener.trial_result("t1", {"budget": 0.02, "objective": 0.5, "removal": 0.5})
    listener.trial_finished("t1", "FINISHED", None, {"lr": 0.1})
    listener.trial_finished("t2", "FAILED", "ActorDiedError: node gone", {"lr": 0.2})  # never started at all
    runs = {r.data.tags["trial_id"]: r for r in tracker.client.search_runs([record.experiment_id])
            if r.data.tags.get("level") == "trial"}
    assert set(runs) == {"t1", "t2"}
    assert runs["t1"].data.tags["retries"] == "1" and runs["t1"].info.status == "FINISHED"
    assert runs["t1"].data.params == {"lr": "0.1"} and runs["t2"].data.params == {"lr": "0.2"}
    assert runs["t2"].info.status == "FAILED" and runs["t2"].data.tags["error"] == "ActorDiedError: node gone"
    assert listener.finished == 2 and "FAILED (ActorDiedError: node gone)" in lines[-1]


def test_a_resumed_trial_that_tune_runs_again_gets_a_new_run_without_the_lost_attempts_metrics(tmp_path):
    """--resume: a trial that finished after Tune's last saved state is run again, and ASHA may stop the
    new attempt earlier. MLflow cannot delete a metric, so a reopened run would keep the lost attempt's
    budget-0.04 objective as its last one (seen in CI: the Optuna study and MLflow then disagreed)."""
    wd = tmp_path
    record = tracking.SweepRecord(tracking.default_uri(wd), "again", wd)
    record.reserve(numbered=False)
    tracker = tracking.RunWriter(record)
    parent = tracker.start_parent("gaussian", "gd", {}, {})
    first = Listener(tracker, parent, "gaussian", "gd", {}, trials=1, progress=lambda line: None)
    first.trial_started("t1", {"lr": 0.1})
    for budget, objective in ((0.02, 0.5), (0.04, 0.9)):
        first.trial_result("t1", {"budget": budget, "objective": objective})
    first.trial_finished("t1", "FINISHED", None, {"lr": 0.1})
    old = first.runs["t1"]

    resumed = Listener(tracker, parent, "gaussian", "gd", {}, trials=1, progress=lambda line: None)
    resumed.restore("t1", old, {"lr": 0.1}, "FINISHED", [{"budget": 0.02, "objective": 0.5}])
    resumed.trial_started("t1", {"lr": 0.1})  # Tune's saved state predates its end: it runs again
    resumed.trial_result("t1", {"budget": 0.02, "objective": 0.3})
    resumed.trial_finished("t1", "KILLED", None, {"lr": 0.1})  # stopped at the first rung this time

    runs = [r for r in tracker.client.search_runs([record.experiment_id]) if r.data.tags.get("level") == "trial"]
    assert [r.info.run_id for r in runs] == [resumed.runs["t1"]] != [old]
    assert runs[0].info.status == "KILLED" and runs[0].data.metrics["objective"] == 0.3
    assert [m.value for m in tracker.client.get_metric_history(runs[0].info.run_id, "objective")] == [0.3]
    assert resumed.finished == 1 and resumed.outcome("t1")["rows"] == [{"budget": 0.02, "objective": 0.3}]
