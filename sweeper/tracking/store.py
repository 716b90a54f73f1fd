"""The tracking store: which URIs MLflow can store runs in, a server that answers, and the default
SQLite file created atomically (never left half-migrated)."""
from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

from .. import procs
from ..errors import SweeperError

SERVER_TIMEOUT_S = 5
STORE_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks"}  # MLflow 3.17's


def default_uri(workdir: Path) -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_location(uri: str, workdir: Path) -> str | None:
    """Local backends keep artifacts in the work directory, never the current directory; a server keeps
    its own."""
    return None if uri.startswith("http") else (Path(workdir).resolve() / "artifacts").as_uri()


def check_server(uri: str) -> None:
    """One clear error if a tracking server does not answer /health within a few seconds."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S) as r:
            if r.status != 200:
                raise SweeperError(f"MLflow server at {uri} answered /health with HTTP {r.status}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise SweeperError(f"MLflow server at {uri} did not answer within {SERVER_TIMEOUT_S} s ({reason})") from None


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__


def open_store(uri: str, workdir: Path) -> None:
    """Make sure the tracking store at `uri` exists and works, before Ray starts or anything is logged:
    a server that answers, a SQLite file that can be written (created atomically) and is not broken."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme not in STORE_SCHEMES:
        raise SweeperError(f"tracking URI {uri!r} is not one MLflow can store runs in; use sqlite:///PATH, "
                           "http(s)://HOST:PORT of an `mlflow server`, or a database URL (postgresql://, mysql://)")
    check_server(uri)
    path = sqlite_path(uri)
    if path is not None:
        _ensure_sqlite(path, workdir)
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - whatever MLflow raises, the user gets one line
        if "out-of-date database schema" in str(e):
            raise SweeperError(f"the MLflow store {uri} was written by another MLflow version: run `mlflow db "
                               f"upgrade {uri}` (after a backup) or pass another --tracking-uri") from None
        if path is not None:
            raise SweeperError(f"the MLflow store {path} is broken ({first_line(e)}); it was probably left "
                               "half-written by an interrupted run: move it away or pass another --tracking-uri"
                               ) from None
        raise SweeperError(f"MLflow cannot use the tracking URI {uri!r} ({first_line(e)})") from None


def _ensure_sqlite(path: Path, workdir: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise SweeperError(f"cannot create the MLflow store {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SweeperError(f"cannot write the MLflow store {path}: permission denied")
    if not path.exists():
        try:
            _create_sqlite(path, (Path(workdir).resolve() / "artifacts").as_uri())
        except OSError as e:  # root passes os.access everywhere; the file system still says no
            raise SweeperError(f"cannot write the MLflow store {path}: {e.strerror or e}") from None


def _create_sqlite(path: Path, artifacts: str) -> None:
    """Build the schema (~10 s of migrations) in a private file, then publish it with a hard link, which
    fails if the name exists: an interrupted creation leaves no half-migrated store, and two runs
    starting together both end up on the one that was published first."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    _remove_abandoned(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.creating-{os.getpid()}-", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as if created plainly (mkstemp makes it private)
    try:
        SqlAlchemyStore(f"sqlite:///{tmp}", artifacts).engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another run published its store first: use that one
    finally:
        os.unlink(tmp)


def _remove_abandoned(path: Path) -> None:
    """Half-built stores of creators that were SIGKILLed (their pid is in the name and gone)."""
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        pid = tmp.name[len(f".{path.name}.creating-"):].split("-", 1)[0]
        if procs.alive({**procs.me(), "pid": pid, "started": ""}) is False:
            tmp.unlink(missing_ok=True)


def exists(uri: str, sweep: str) -> bool:
    return MlflowClient(tracking_uri=uri).get_experiment_by_name(sweep) is not None
