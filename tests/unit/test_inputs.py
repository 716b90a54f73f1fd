"""Issue 22: what data each run names as its MLflow inputs (sweeper/inputs.py), and the round trip through a
real SQLite store: names, contexts and sweeper's own digests read back as written, on an experiment that
opens on its runs."""
from __future__ import annotations

import torch

from sweeper import discovery, inputs, tracking
from sweeper.data import Split

MANIFEST = {"seed": 3, "poison_indices": [2, 5, 7, 11],
            "data": {"dataset": "digits", "train": "a" * 16, "n_train": 20, "val": "b" * 16, "n_val": 6,
                     "test": "c" * 16, "n_test": 8}}


def by_context(found: list[inputs.Input]) -> dict[str, inputs.Input]:
    return {i.context: i for i in found}


def test_each_method_names_what_it_trained_on_and_what_it_was_asked_to_forget():
    none = by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "none"))
    retrain = by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "retrain"))
    gd = by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "gd"))
    assert set(none) == set(retrain) == {"train", "validation", "test"}
    assert set(gd) == {"train", "forget", "validation", "test"}
    assert (none["train"].name, none["train"].digest, none["train"].rows) == ("digits/gaussian/seed3/poisoned", "a" * 16, 20)
    assert retrain["train"].name == "digits/gaussian/seed3/clean" and retrain["train"].rows == 16
    assert gd["train"] == retrain["train"]  # at level 1 the retain set is the clean set
    assert (gd["forget"].name, gd["forget"].rows) == ("digits/gaussian/seed3/forget", 4)
    assert len({none["train"].digest, retrain["train"].digest, gd["forget"].digest}) == 3
    assert (gd["validation"].digest, gd["test"].digest) == ("b" * 16, "c" * 16)


def test_a_discovery_level_names_its_own_retain_and_forget_sets():
    half = by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "gd", 0.5))
    full = by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "gd"))
    known = discovery.identified_positions(4, 3, 0.5)
    assert (half["forget"].name, half["forget"].rows) == ("digits/gaussian/seed3/forget@d0.5", len(known))
    assert (half["train"].name, half["train"].rows) == ("digits/gaussian/seed3/retain@d0.5", 20 - len(known))
    assert half["forget"].digest != full["forget"].digest and half["train"].digest != full["train"].digest
    ident = by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "retrain_identified", 0.5))
    assert set(ident) == {"train", "validation", "test"} and ident["train"] == half["train"]
    assert by_context(inputs.of_seed(MANIFEST, "gaussian", "k", "retrain", 0.5))["train"] == full["train"]


def test_a_digest_follows_the_data_and_the_indices():
    other_data = {**MANIFEST, "data": {**MANIFEST["data"], "train": "d" * 16}}
    other_poisons = {**MANIFEST, "poison_indices": [2, 5, 7, 12]}
    forget = [by_context(inputs.of_seed(m, "gaussian", "k", "gd"))["forget"].digest
              for m in (MANIFEST, other_data, other_poisons)]
    assert len(set(forget)) == 3


def test_content_digest_sees_every_element_not_only_the_first_ten_thousand():
    x = torch.zeros(3000, 1, 8, 8)
    a, b = Split(x, torch.zeros(3000, dtype=torch.long)), Split(x.clone(), torch.zeros(3000, dtype=torch.long))
    assert a.digest() == b.digest()
    b.x[-1, 0, -1, -1] = 1.0  # element 191,999: past MLflow's numpy digest's first 10,000
    assert a.digest() != b.digest()
    assert Split(x, torch.ones(3000, dtype=torch.long)).digest() != a.digest()


def test_a_run_of_several_seeds_names_each_seed_once_and_the_shared_splits_once():
    second = {**MANIFEST, "seed": 4, "data": {**MANIFEST["data"], "train": "e" * 16}}
    found = inputs.of_run([("k3", MANIFEST), ("k4", second)], "gaussian", "gd")
    names = [i.name for i in found]
    assert sorted(names) == sorted(["digits/val", "digits/test", "digits/gaussian/seed3/clean", "digits/gaussian/seed3/forget",
                                    "digits/gaussian/seed4/clean", "digits/gaussian/seed4/forget"])
    assert inputs.of_seed({k: v for k, v in MANIFEST.items() if k != "data"}, "gaussian", "k", "gd") == []


def test_inputs_and_the_experiment_kind_read_back_as_written(tmp_path):
    uri = tracking.default_uri(tmp_path)
    tracking.open_store(uri, tmp_path)
    record = tracking.SweepRecord(uri, "s", tmp_path)
    record.reserve(numbered=False)
    assert record.client.get_experiment(record.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    writer = tracking.RunWriter(record)
    parent = writer.start_parent("gaussian", "gd", {}, {})
    written = inputs.of_seed(MANIFEST, "gaussian", "k3", "gd")
    child = writer.start_child(parent, "gd-1", {"lr": 0.1}, {}, written)
    writer.log_inputs(parent, written)
    writer.log_inputs(parent, written)  # a resumed sweep logs them again: still one of each
    for run in (child, parent):
        read = record.client.get_run(run).inputs.dataset_inputs
        assert sorted((d.dataset.name, d.dataset.digest, d.tags[0].value) for d in read) == \
            sorted((i.name, i.digest, i.context) for i in written)
