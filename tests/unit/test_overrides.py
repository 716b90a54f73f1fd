"""Hydra-style KEY=VALUE overrides on the command line: applied over the file and its profile, read as YAML
(1e-4 is a float), validated exactly like the file, and shown resolved by `sweeper validate ... --show`."""
import copy

import pytest
import yaml

from sweeper import cli, config


def test_overrides_equal_editing_the_file(tmp_path):
    doc = yaml.safe_load(config.resources.files("sweeper.experiments").joinpath("backdoor.yaml").read_text())
    edited = copy.deepcopy(doc)
    edited.update(trials=20, budgets=[0.05, 0.1], methods=["gd", "scrub"])
    edited["recipe"] = {**edited["recipe"], "epochs": 10}
    edited["attack"] = {**edited["attack"], "fraction": 1e-4}
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    by_file = config.load(str(tmp_path / "edited.yaml"))
    by_cli = config.load("backdoor", overrides=["trials=20", "budgets=[0.05,0.1]", "recipe.epochs=10",
                                                "methods=[gd,scrub]", "attack.fraction=1e-4"])
    assert by_cli.as_dict() == {**by_file.as_dict(), "name": "backdoor"}
    assert by_cli.scenario.attack_params["fraction"] == 1e-4  # YAML 1.1 would have made it a string


def test_overrides_win_over_the_profile():
    exp = config.load("quickstart", "tiny", overrides=["trials=3", "recipe.lr=0.1"])
    assert exp.trials == 3 and exp.scenario.recipe.lr == 0.1 and exp.scenario.recipe.epochs == 8  # tiny's epochs


def test_files_read_1e_minus_4_as_a_float(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("dataset: digits\nmodel: small_cnn\nattack: gaussian\nmethods: [gd]\nbudgets: [0.02]\n"
                    "trials: 1\nseeds: [0]\nspaces: {gd: {params: {lr: {low: 1e-4, high: 1e-1, log: true}}}}\n")
    assert config.load(str(path)).search_space("gd").params["lr"].low == 1e-4


def test_validate_show_prints_the_resolved_experiment(capsys):
    assert cli.main(["validate", "quickstart", "trials=5", "methods=[gd]", "--show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["trials"] == 5 and shown["methods"] == ["gd"] and shown["name"] == "quickstart"


@pytest.mark.parametrize("override, message", [
    ("trialz=3", "unknown key(s) trialz"),
    ("recipe.epochs=abc", "recipe.epochs must be an integer"),
    ("budgets=[0.05,2]", "budget"),
    ("noequals", "expected KEY=VALUE"),
    ("trials.x=1", "trials is not a mapping"),
    ("methods=[gd", "not a YAML value"),
])
def test_bad_overrides_are_one_line_and_exit_2(capsys, tmp_path, override, message):
    for argv in (["validate", "quickstart", override], ["run", "quickstart", override, "--workdir", str(tmp_path / "wd")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "wd").exists()


def test_overrides_may_follow_options(capsys):
    """argparse takes positionals in one run; settings after an option are overrides all the same."""
    assert cli.main(["validate", "quickstart", "--profile", "tiny", "trials=3", "--show", "recipe.lr=0.1"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["trials"] == 3 and shown["profile"] == "tiny" and shown["scenarios"][0]["recipe"]["lr"] == 0.1
    with pytest.raises(SystemExit) as stop:  # an unknown option is still argparse's usage error
        cli.main(["validate", "quickstart", "--show", "--bogus"])
    assert stop.value.code == 2
