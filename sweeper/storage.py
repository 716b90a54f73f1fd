"""Where a sweep keeps what every node must see: base models (`base/`), Ray Tune's records (`ray/`) and the
chosen models (`models/`). A local folder (the work directory, or a mount every node sees), or an object
store (`s3://bucket/prefix`, `gs://bucket/prefix`) through pyarrow.fs, the file systems Ray Tune itself uses.

An object store has no atomic rename, so a base-model entry is published the way content-addressed stores
do it: each file is uploaded under its own sha256 (`<entry>/blobs/<sha256>`), and the entry's
`manifest.json`, which names those blobs, is written last, in one PUT. S3 and GCS make a single object's
PUT atomic: a reader sees no manifest (not built) or a whole one, and every blob a manifest names was
uploaded before it. Readers download the blobs into a node-local mirror and check each against its sha256
before use; a blob that is missing or does not match makes the entry broken, and it is rebuilt. Two
builders racing on one entry each publish a whole entry; the last manifest wins, and a trial always uses
the entry one manifest names (the mirror is keyed by the manifest's own hash)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from .errors import SweeperError

OBJECT_STORES = ("s3://", "gs://", "gcs://")


def is_remote(root) -> bool:
    return isinstance(root, str) and root.startswith(OBJECT_STORES)


def join(root, *parts: str):
    """`root`/parts: a Path for a local root; for an object store's URI the parts go before its query
    (`s3://b/p?endpoint_override=...` -> `s3://b/p/base?endpoint_override=...`)."""
    if not is_remote(root):
        return Path(root).joinpath(*parts)
    base, sep, query = root.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def display(root) -> str:
    """The root as printed and logged: an object store's query (endpoints, regions) left out."""
    return str(root).partition("?")[0]


@functools.lru_cache(maxsize=16)
def _filesystem(root_uri: str):
    from pyarrow import fs as pafs  # Ray's own dependency; imported only for object stores

    base, _, query = root_uri.partition("?")
    if base.startswith(("gs://", "gcs://")) and "anonymous=" in query:
        return _anonymous_gcs(base, query)
    return pafs.FileSystem.from_uri(root_uri)


def _anonymous_gcs(base: str, query: str):
    """gs://bucket?anonymous=true&...: a public bucket or a local emulator, without Google credentials.
    pyarrow's URI parser has no `anonymous` (its constructor has), so the query is read here; the other
    keys are the ones pyarrow's parser takes."""
    from datetime import timedelta
    from urllib.parse import parse_qsl

    from pyarrow import fs as pafs

    opts = dict(parse_qsl(query, strict_parsing=True))
    kwargs = {"anonymous": opts.pop("anonymous").lower() in ("1", "true", "yes")}
    for key in ("scheme", "endpoint_override", "project_id", "default_bucket_location"):
        if key in opts:
            kwargs[key] = opts.pop(key)
    if "retry_limit_seconds" in opts:
        kwargs["retry_time_limit"] = timedelta(seconds=float(opts.pop("retry_limit_seconds")))
    if opts:
        raise SweeperError(f"{base}: unknown option {sorted(opts)[0]!r} in the storage URI's query")
    return pafs.GcsFileSystem(**kwargs), base.split("://", 1)[1].strip("/")


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for an object-store URI. The file system is made once per
    process for each bucket URI (credentials come from the environment, as for Ray Tune)."""
    base, _, query = uri.partition("?")
    scheme, rest = base.split("://", 1)
    bucket, _, path = rest.partition("/")
    fs, bucket_path = _filesystem(f"{scheme}://{bucket}" + (f"?{query}" if query else ""))
    return fs, "/".join(p for p in (bucket_path.rstrip("/"), path.strip("/")) if p)


def probe(root: str) -> None:
    """Write and delete a small object under `root`: one clear line if the store cannot be used."""
    try:
        fs, path = filesystem(root)
        name = f"{path}/.sweeper-probe-{secrets.token_hex(4)}"
        with fs.open_output_stream(name) as f:
            f.write(b"ok")
        fs.delete_file(name)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SweeperError(f"--storage {display(root)}: cannot write there ({first})") from None


# -- plain objects --------------------------------------------------------------------------------------
def read_bytes(uri: str) -> bytes | None:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_bytes(uri: str, data: bytes) -> None:
    fs, path = filesystem(uri)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_atomic(path: Path, data: bytes) -> None:
    """`data` as the local file `path`, or nothing: written under a temporary name of its own (a pid
    repeats across the nodes sharing a mount) and renamed into place, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upload(local: Path, uri: str) -> None:
    write_bytes(uri, Path(local).read_bytes())


def download_dir(uri: str, local: Path) -> list[Path]:
    """Every object directly under `uri` into the folder `local`; returns the files written."""
    from pyarrow import fs as pafs

    fs, path = filesystem(uri)
    local.mkdir(parents=True, exist_ok=True)
    out = []
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type == pafs.FileType.File:
            target = local / info.base_name
            with fs.open_input_stream(info.path) as f:
                target.write_bytes(f.read())
            out.append(target)
    return out


# -- base-model entries -----------------------------------------------------------------------------------
def read_manifest(entry: str) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, why): "not built" when there is no manifest."""
    from .scenario import NOT_BUILT

    raw = read_bytes(join(entry, "manifest.json"))
    if raw is None:
        return None, NOT_BUILT
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest.get("files"), dict):
            raise ValueError
    except (ValueError, AttributeError):
        return None, "manifest.json unreadable"
    return manifest, None


def entry_status(entry: str, names: tuple[str, ...]) -> str | None:
    """None if the entry's manifest exists and names a blob of the right size for each of `names`, else
    why not (sizes are checked here without downloading; checksums when a node downloads)."""
    from pyarrow import fs as pafs

    manifest, why = read_manifest(entry)
    if manifest is None:
        return why
    fs, _ = filesystem(entry)
    for name in names:
        want = manifest["files"].get(name)
        if not isinstance(want, dict) or "sha256" not in want or "size" not in want:
            return f"{name}: no checksum in manifest.json"
        info = fs.get_file_info(filesystem(join(entry, "blobs", want["sha256"]))[1])
        if info.type != pafs.FileType.File:
            return f"{name}: missing"
        if info.size != want["size"]:
            return f"{name}: {info.size} bytes, expected {want['size']}"
    return None


def publish(folder: Path, entry: str, names: tuple[str, ...]) -> None:
    """Upload a whole local entry: each file under its sha256 first, its manifest.json last."""
    manifest = json.loads((folder / "manifest.json").read_text())
    fs, _ = filesystem(entry)
    for name in names:
        blob = join(entry, "blobs", manifest["files"][name]["sha256"])
        info = fs.get_file_info(filesystem(blob)[1])
        if info.size != manifest["files"][name]["size"]:  # content-addressed: an equal blob is already there
            upload(folder / name, blob)
    write_bytes(join(entry, "manifest.json"), (folder / "manifest.json").read_bytes())


def discard(entry: str) -> None:
    """Remove a broken entry: its manifest first (from then on it reads as not built), then its blobs."""
    fs, path = filesystem(entry)
    try:
        fs.delete_file(filesystem(join(entry, "manifest.json"))[1])
    except FileNotFoundError:
        pass
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError):
        pass  # leftover blobs are unreferenced garbage, never read


def mirror_root(root: str) -> Path:
    """This node's copy of what it read from the object store `root` (SWEEPER_MIRROR, else ~/.cache)."""
    top = Path(os.environ.get("SWEEPER_MIRROR") or Path.home() / ".cache" / "sweeper" / "mirror")
    return top / hashlib.sha256(display(root).encode()).hexdigest()[:16]


def fetch(entry: str, manifest: dict, folder: Path, names: tuple[str, ...]) -> str | None:
    """Download the entry `manifest` names into `folder` (beside it first, then renamed into place),
    checking every blob's sha256. None on success, else why the remote entry is broken."""
    if folder.is_dir():
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name in names:
            want = manifest["files"][name]
            data = read_bytes(join(entry, "blobs", want["sha256"]))
            if data is None:
                return f"{name}: missing"
            if hashlib.sha256(data).hexdigest() != want["sha256"]:
                return f"{name}: checksum mismatch"
            (tmp / name).write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process on this node mirrored it first
            if not folder.is_dir():
                raise
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
