"""A corrupted base-model cache is never trusted: a truncated, altered or half-present entry is detected
by its manifest's checksums, named, and rebuilt bit for bit; a corrupt shared importance file is
recomputed; temporary folders of dead builds are removed, those of live ones kept."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from helpers import states_equal

from sweeper import basecache, scenario, tuning
from sweeper.methods import UnlearnData
from sweeper.methods.ssd import importances
from sweeper.basecache import base_folder, base_models, check_entry, is_cached


@pytest.fixture
def root(tiny_base, tmp_path):
    """A private base directory holding a copy of the session's tiny seed-0 entry, free to break."""
    root = tmp_path / "base"
    shutil.copytree(tiny_base.path, root / tiny_base.path.name)
    return root


def flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0xFF]))


def leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_truncated_state_dict_is_named_and_rebuilt_bit_for_bit(tiny_base, tiny_scenario, root):
    path = base_folder(tiny_scenario, 0, root) / "poisoned.pt"
    size = path.stat().st_size
    os.truncate(path, size // 2)
    assert not is_cached(tiny_scenario, 0, root)
    assert check_entry(path.parent) == f"poisoned.pt: truncated ({size // 2} of {size} bytes)"
    with pytest.warns(UserWarning, match="poisoned.pt: truncated"):
        rebuilt = base_models(tiny_scenario, 0, root)
    # CPU training on one thread is deterministic: the rebuild is the original, file for file
    assert states_equal(rebuilt.poisoned, tiny_base.poisoned) and states_equal(rebuilt.retrain, tiny_base.retrain)
    for name in ("poisoned.pt", "retrain.pt"):  # (poisoning.pt records the crafting's wall time)
        assert rebuilt.manifest["files"][name] == tiny_base.manifest["files"][name]
    assert rebuilt.manifest["poison_indices"] == tiny_base.manifest["poison_indices"]
    assert is_cached(tiny_scenario, 0, root) and leftovers(root) == []


def test_entry_without_manifest_is_rebuilt(tiny_base, tiny_scenario, root):
    """Before: training went to a temporary folder whose rename onto the non-empty entry failed, forever."""
    folder = base_folder(tiny_scenario, 0, root)
    (folder / "manifest.json").unlink()
    assert check_entry(folder) == "manifest.json missing"
    with pytest.warns(UserWarning, match="manifest.json missing"):
        rebuilt = base_models(tiny_scenario, 0, root)
    assert states_equal(rebuilt.poisoned, tiny_base.poisoned)
    assert check_entry(folder) is None and leftovers(root) == []


@pytest.mark.parametrize("damage, reason", [
    pytest.param(lambda f: flip_byte(f / "retrain.pt"), "retrain.pt: checksum mismatch", id="flip-retrain"),
    pytest.param(lambda f: flip_byte(f / "poisoning.pt"), "poisoning.pt: checksum mismatch", id="flip-poisoning"),
    pytest.param(lambda f: (f / "poisoned.pt").unlink(), "poisoned.pt: missing", id="deleted-poisoned"),
    pytest.param(lambda f: (f / "manifest.json").write_text('{"seed": 0, "fi'), "manifest.json unreadable",
                 id="truncated-manifest"),
    pytest.param(lambda f: (f / "manifest.json").write_text("{}"), "manifest.json unreadable", id="empty-manifest"),
])
def test_damage_of_the_same_size_or_elsewhere_is_named(tiny_scenario, root, damage, reason):
    folder = base_folder(tiny_scenario, 0, root)
    assert check_entry(folder) is None  # verified (and memoised) before the damage
    damage(folder)
    assert check_entry(folder) == reason and not is_cached(tiny_scenario, 0, root)


def test_verification_is_memoised_until_a_file_changes(tiny_scenario, root, monkeypatch):
    folder = base_folder(tiny_scenario, 0, root)
    hour_ago = time.time() - 3600
    for name in scenario.FILES:  # files written just now are re-hashed every time (racy mtimes)
        os.utime(folder / name, (hour_ago, hour_ago))
    hashed = []
    real = basecache._sha256
    monkeypatch.setattr(basecache, "_sha256", lambda p: hashed.append(p.name) or real(p))
    assert check_entry(folder) is None and check_entry(folder) is None
    assert sorted(hashed) == sorted(scenario.FILES)
    flip_byte(folder / "retrain.pt")
    assert check_entry(folder) == "retrain.pt: checksum mismatch"
    assert hashed[-1] == "retrain.pt"


@pytest.mark.parametrize("damage", [pytest.param(lambda p: os.truncate(p, p.stat().st_size - 100), id="truncated"),
                                    pytest.param(flip_byte, id="flipped")])
def test_corrupt_shared_file_is_recomputed(tiny_base, tmp_path, damage):
    p = tiny_base.poisoning
    data = UnlearnData(p.retain, p.forget_set, tiny_base.data.num_classes, tiny_base.scenario.recipe, 0,
                       tmp_path / "shared")
    calls = []

    def compute():
        calls.append(1)
        return importances(tiny_base.model("poisoned"), data.forget)

    first = data.shared("imp", compute)
    path = tmp_path / "shared" / "imp.pt"
    whole = path.read_bytes()
    damage(path)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        again = data.shared("imp", compute)
    assert len(calls) == 2 and states_equal(again, first)
    assert path.read_bytes() == whole  # replaced by a whole file, which the next trial just loads
    assert states_equal(data.shared("imp", compute), first) and len(calls) == 2


def test_build_bases_reports_trained_cached_and_rebuilt(ray_here, tiny_scenario, root):
    broken = base_folder(tiny_scenario, 1, root)
    broken.mkdir()
    (broken / "poisoned.pt").write_bytes(b"half a state dict")  # an entry whose manifest was deleted
    summary = tuning.build_bases([tiny_scenario], [0, 1, 2], str(root))
    assert (summary.trained, summary.cached, summary.rebuilt) == (1, 1, [("gaussian", 1, "manifest.json missing")])
    assert str(summary) == "1 trained, 1 cached, 1 rebuilt (gaussian seed 1: manifest.json missing)"
    assert all(is_cached(tiny_scenario, s, root) for s in (0, 1, 2)) and leftovers(root) == []


def test_build_bases_removes_temp_folders_of_dead_builds_only(ray_here, tiny_scenario, root):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host, entry = socket.gethostname(), base_folder(tiny_scenario, 0, root).name
    names = {"dead": f".{entry}-{host}-{dead.pid}-abcd_123", "live": f".{entry}-{host}-{os.getpid()}-efgh_456",
             "elsewhere": f".{entry}-other-host-{dead.pid}-ijkl_789", "old": f".{entry}-mnop_012",
             "recent": f".{entry}-qrst_345"}
    for name in names.values():
        (root / name).mkdir()
        (root / name / "poisoned.pt").write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in (root / names["old"] / "poisoned.pt", root / names["old"]):
        os.utime(path, (two_hours_ago, two_hours_ago))
    summary = tuning.build_bases([tiny_scenario], [0], str(root))
    assert (summary.trained, summary.cached, summary.rebuilt) == (0, 1, [])
    assert sorted(summary.removed) == sorted([names["dead"], names["old"]])
    assert leftovers(root) == sorted([names["live"], names["elsewhere"], names["recent"]])
    assert "removed 2 stale temporary folders" in str(summary)


def test_new_temp_folders_name_their_owner(tiny_scenario, tmp_path, monkeypatch):
    seen = []

    def fake_train(scenario_, seed, data, folder, device):
        seen.append(folder.name)
        raise RuntimeError("killed")

    monkeypatch.setattr(basecache, "train_base", fake_train)
    with pytest.raises(RuntimeError):
        base_models(tiny_scenario, 0, tmp_path, data=object())
    entry = tiny_scenario.key(0)
    assert re.fullmatch(rf"\.{entry}-{re.escape(socket.gethostname())}-{os.getpid()}-[^-]+", seen[0])
    assert json.dumps(leftovers(tmp_path)) == "[]"  # a failed build cleans up after itself
