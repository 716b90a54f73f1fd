"""Where a sweep writes: the work directory (MLflow's SQLite store, reports) and the storage root
(base models, Ray Tune's records, chosen models), both checked before anything starts. Transport to an
object store is `sweeper.storage`'s job; this module only decides and checks the places."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import storage as store
from .errors import SweeperError

DEFAULT_WORKDIR = "sweeper-work"  # the CLI's and the API's default, relative to the current directory


def prepare_workdir(workdir: str | os.PathLike) -> Path:
    """The work directory, created if needed and checked writable (one line if it is not)."""
    path = Path(workdir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise SweeperError(f"work directory {path} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a name of its own: two runs started together in one directory must not delete each other's probe
        with tempfile.NamedTemporaryFile(dir=path, prefix=".sweeper-write-probe-"):
            pass
    except OSError as e:
        raise SweeperError(f"work directory {path} is not writable ({e.strerror or e})") from None
    return path


def storage_choice(storage, experiment_storage: str | None):
    """--storage, else $SWEEPER_STORAGE, else the experiment's `storage:` (None: the work directory)."""
    if storage is not None:
        return storage
    return os.environ.get("SWEEPER_STORAGE") or experiment_storage


def prepare_storage(storage: str | os.PathLike | None, wd: Path, probe: bool = True) -> Path | str:
    """Where base models (`base/`), Ray Tune's records (`ray/`) and chosen models (`models/`) live: the work
    directory by default, a folder every node sees at the same path (an NFS/EFS mount, `file:///shared/...`),
    or an object store (`s3://bucket/prefix`, `gs://...`; see sweeper/storage.py) for a multi-node cluster,
    whose trials must never read the driver's disk. Checked writable before anything starts."""
    if storage is None or str(storage) == "":
        return wd
    text = str(storage)
    if store.is_remote(text):
        if probe:  # not for --dry-run, which writes nothing (it reads the store's manifests all the same)
            store.probe(text)
        return text
    if "://" in text and not text.startswith("file://"):
        raise SweeperError(f"--storage {text}: unknown scheme; use a path, file:///path (a folder every node "
                           "sees), s3://bucket/prefix or gs://bucket/prefix")
    path = Path(text.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.exists() and not path.is_dir():
        raise SweeperError(f"--storage {path} is a file, not a folder")
    probe_dir = path
    while not probe_dir.exists():  # check writability at the nearest existing ancestor: create nothing yet
        probe_dir = probe_dir.parent
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise SweeperError(f"--storage {path} is not writable")
    return path.resolve() if path.exists() else path


def report_folder(wd: Path, sweep: str) -> Path:
    """Each sweep's report in its own folder: two sweeps in one work directory never overwrite each other."""
    return wd / "report" / sweep
