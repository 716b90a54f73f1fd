"""A method from a file outside the package (in a folder no Ray worker imports from): validated like a
built-in, loaded in every worker, swept, reported and logged; bad plugins are one clear line."""
from pathlib import Path

import pytest
from mlflow import MlflowClient

from shared_sweep import PLUGIN, SHARED
from sweeper import cli, config, plugins, readback
from sweeper.registry import methods

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_method.py"


@pytest.fixture
def plugin_dir(plugin_file):
    return plugin_file.parent


@pytest.mark.slow  # reads the shared sweep (tests/conftest.py), which names the plugin file
def test_a_plugin_method_runs_in_a_real_sweep_and_shows_up_everywhere(shared_sweep):
    result = shared_sweep.result
    s = result.summary
    mine = s[(s.method == PLUGIN) & (s.attack == "gaussian")]
    assert len(mine) == 2 and set(mine.status) <= {"ok", "accuracy_violated"} and mine.n_fresh.eq(2).all()
    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(result.name).experiment_id], max_results=1000)
    trials = [r for r in runs if r.data.tags.get("method") == PLUGIN and r.data.tags.get("phase") == "tune"
              and r.data.tags.get("attack") == "gaussian"]
    assert len(trials) == SHARED["trials"] and all(r.info.status in ("FINISHED", "KILLED") for r in trials)
    assert {"lr", "decay"} <= set(trials[0].data.params)
    rebuilt = readback.rebuild_report(result.workdir, result.name)
    assert rebuilt.summary.equals(result.summary)


def test_the_plugin_search_space_is_checked_like_a_built_in(plugin_dir, tmp_path):
    bad = tmp_path / "bad_space.py"
    bad.write_text(EXAMPLE.read_text())
    (tmp_path / "bad_space.yaml").write_text("params:\n  lr: {low: 1.0e-3, high: 1.0e-1}\n  momentum: {low: 0.1, high: 0.9}\n")
    with pytest.raises(config.SweeperError, match=r"bad_space.yaml: params .* must equal"):
        config.load("quickstart", overrides=["methods=[bad_space]"], plugins=[str(bad)])


@pytest.mark.parametrize("source, space, message", [
    ("raise RuntimeError('boom')\n", None, "failed to import: RuntimeError: boom"),
    ("def unlearn(model, data, budget, *, lr=0.1):\n    return model\n", None, "has no search space"),
])
def test_bad_plugins_are_one_line_and_exit_2(tmp_path, capsys, source, space, message):
    path = tmp_path / f"broken_{len(source)}.py"
    path.write_text(source)
    assert cli.main(["validate", "quickstart", "--plugin", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_missing_plugin_file_is_one_line(capsys, tmp_path):
    assert cli.main(["run", "quickstart", "--plugin", "nope.py", "--workdir", str(tmp_path / "wd")]) == 2
    err = capsys.readouterr().err
    assert "nope.py: no such Python file" in err and err.count("\n") == 1
    assert not (tmp_path / "wd").exists()


def test_the_same_file_loads_once_per_process(plugin_dir):
    spec = plugins.spec(plugin_dir / f"{PLUGIN}.py")
    plugins.ensure([spec])
    first = methods.get(PLUGIN)
    plugins.ensure([spec])
    assert methods.get(PLUGIN) is first
    assert PLUGIN not in config.searchable_methods()  # a file's method joins only sweeps that name it


def test_installed_packages_register_through_entry_points(tmp_path, monkeypatch):
    """A distribution on sys.path (as `pip install` leaves one) declaring a sweeper.methods entry point."""
    (tmp_path / "ep_pkg.py").write_text(EXAMPLE.read_text() + "\nSEARCH_SPACE = {'params': {'lr': "
                                        "{'low': 0.001, 'high': 0.1, 'log': True}, 'decay': {'low': 0.1, 'high': 1.0}}}\n")
    info = tmp_path / "ep_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sweeper.methods]\nep_gd = ep_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_SCANNED", False)
    try:
        plugins.load_entry_points()
        assert methods.get("ep_gd").unlearn.__module__ == "ep_pkg"
        assert "ep_gd" in config.searchable_methods()  # installed methods are part of `methods: all`
        assert set(config.search_space("ep_gd").params) == {"lr", "decay"}
    finally:
        methods._entries.pop("ep_gd", None)


def test_a_bad_search_space_beside_a_plugin_is_one_line_naming_the_yaml(tmp_path, capsys):
    (tmp_path / "odd_space.py").write_text(EXAMPLE.read_text())
    (tmp_path / "odd_space.yaml").write_text("params: {lr: {low: 1.0e-3, high: 1.0e-1}, decay: {low: 2, high: 1}}\n")
    argv = ["run", "quickstart", "--plugin", str(tmp_path / "odd_space.py"), "methods=[odd_space]", "--dry-run"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "odd_space.yaml: decay: low 2 > high 1" in err, err
