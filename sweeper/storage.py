"""Where a sweep keeps what every node must see: base models (`base/`), Ray Tune's records (`ray/`) and the
chosen models (`models/`). A local folder (the work directory, or a mount every node sees), or an object
store (`s3://bucket/prefix`, `gs://bucket/prefix`) through pyarrow.fs, the file systems Ray Tune itself uses.

Transport only: URIs, file systems, and whole objects read, written, sized and deleted. What is stored
(base-model entries, their manifests and how they are published) is the callers' (sweeper/basecache.py).
S3 and GCS make a single object's PUT atomic, so write_bytes never leaves half an object for a reader."""
from __future__ import annotations

import functools
import os
import secrets
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


def size(uri: str) -> int | None:
    """The size of the object `uri` in bytes, None if there is none (read from its metadata: no download)."""
    from pyarrow import fs as pafs

    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else None


def remove(uri: str) -> None:
    """Delete the object `uri`; one already gone is no error."""
    fs, path = filesystem(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def remove_tree(uri: str) -> None:
    """Delete every object under `uri`; none there is no error, others (OSError) are the caller's to judge."""
    fs, path = filesystem(uri)
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass
