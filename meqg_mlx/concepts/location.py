"""Where a concept store lives: a local directory, or a prefix on S3 (or an S3-compatible server).

A store is a handful of small named objects beside a LanceDB database: the metadata
file, the index, fitted projections, and the write lock. `StoreDir` and `S3Prefix`
give those objects the same operations, the `Location` protocol below, so `ConceptStore`
never asks where it is; a third kind of place is one more class that meets it.

Making writes safe without rename. Locally every write goes to a temporary sibling
that is renamed into place (`atomic.py`). S3 has no rename, but a single PUT is
atomic (a reader sees the old object or the new one, never a part) and S3 is
strongly consistent, so:

* the metadata file is one small object, replaced by one PUT, only while holding
  the write lock;
* a set of files (the index) is written under a fresh prefix that nobody reads yet,
  and published by one PUT of a pointer object naming it, the way Lance publishes
  a table version by writing its manifest; older prefixes are deleted afterwards;
* the write lock is a lease object created with `If-None-Match: *` and renewed with
  `If-Match` (S3's conditional writes, which Lance's own commits also rely on);
  see `lock.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import urlparse


from ..atomic import replaced_dir, write_bytes
from ..errors import InputError, StoreError
from ..paths import is_remote, store_uri

T = TypeVar("T")

POINTER = "CURRENT"

# storage_options keys (LanceDB's names, lower case) read from the environment when not configured
ENVIRONMENT_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_ENDPOINT_URL": "aws_endpoint",
    "AWS_ENDPOINT": "aws_endpoint",
    "AWS_REGION": "aws_region",
    "AWS_DEFAULT_REGION": "aws_region",
    "AWS_ALLOW_HTTP": "allow_http",
}
OPTION_ALIASES = {"endpoint": "aws_endpoint", "endpoint_url": "aws_endpoint", "aws_endpoint_url": "aws_endpoint"}
OPTION_ALIASES |= {"region": "aws_region", "access_key_id": "aws_access_key_id"}
OPTION_ALIASES |= {"secret_access_key": "aws_secret_access_key", "session_token": "aws_session_token"}


def resolve_storage_options(configured: dict[str, str] | None = None) -> dict[str, str]:
    """The environment's AWS_* settings overlaid with `store.storage_options`, in LanceDB's key names."""
    options = {key: os.environ[name] for name, key in ENVIRONMENT_OPTIONS.items() if os.environ.get(name)}
    for key, value in (configured or {}).items():
        options[OPTION_ALIASES.get(key.lower(), key.lower())] = str(value)
    if options.get("aws_endpoint", "").startswith("http://"):
        options.setdefault("allow_http", "true")  # a plain-HTTP endpoint (MinIO, moto) is what was asked for
    return options


def open_location(uri: str | Path, storage_options: dict[str, str] | None = None, lease_s: float = 30.0) -> Location:
    """The `StoreDir` or `S3Prefix` for a store URI; other schemes are refused in one line."""
    text = str(uri)
    if not is_remote(text):
        return StoreDir(Path(store_uri(text)))
    scheme = urlparse(text).scheme
    if scheme not in ("s3", "s3a"):
        raise InputError(
            f"store URI scheme {scheme!r} is not supported: a store is a local directory or s3://BUCKET/PATH "
            "(S3-compatible servers through AWS_ENDPOINT_URL or store.storage_options)"
        )
    return S3Prefix(store_uri(text), resolve_storage_options(storage_options), lease_s)


class Writer(Protocol):
    """Files written under a name nobody reads until `publishing` ends."""

    def write_file(self, name: str, fill: Callable[[str], None]) -> None: ...
    def write_text(self, name: str, text: str) -> None: ...


class Reader(Protocol):
    """The files last published under a name."""

    def read_file(self, name: str, read: Callable[[str], T]) -> T: ...
    def read_text(self, name: str) -> str: ...


@runtime_checkable
class Location(Protocol):
    """What a store needs of the place it lives (`StoreDir`, `S3Prefix`)."""

    uri: str
    remote: bool

    @property
    def lance_uri(self) -> str: ...
    @property
    def storage_options(self) -> dict[str, str] | None: ...
    @property
    def lock_key(self) -> str: ...
    def new_lock(self): ...
    def exists(self) -> bool: ...
    def names(self) -> list[str]: ...
    def read_bytes(self, name: str) -> bytes | None: ...
    def write_bytes(self, name: str, data: bytes) -> None: ...  # whole, atomically
    def remove(self, name: str) -> None: ...
    def remove_store(self, keep: str) -> None: ...
    def remove_empty_dir(self, lock_name: str) -> None: ...
    def bytes_under(self, name: str) -> int: ...
    def publishing(self, name: str) -> contextlib.AbstractContextManager[Writer]: ...
    def published(self, name: str) -> Reader | None: ...


class StoreDir:
    """A store in a local directory; writes go through a temporary sibling and a rename."""

    remote = False

    def __init__(self, path: Path):
        self.path = path
        self.uri = str(path)

    @property
    def lance_uri(self) -> str:
        return str(self.path / "lance")

    @property
    def storage_options(self) -> dict[str, str] | None:
        return None

    @property
    def lock_key(self) -> str:
        return os.path.realpath(self.path)

    def new_lock(self):
        from .lock import FileLock

        return FileLock(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def names(self) -> list[str]:
        """Top-level entries (files and directories), empty when the directory is missing."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} exists and is not a directory")
        return sorted(p.name for p in self.path.iterdir()) if self.path.exists() else []

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write_bytes(self, name: str, data: bytes) -> None:
        write_bytes(self.path / name, data)

    def remove(self, name: str) -> None:
        target = self.path / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def remove_store(self, keep: str) -> None:
        """Delete everything but `keep` (the lock, released by the caller afterwards)."""
        for name in self.names():
            if name != keep:
                self.remove(name)

    def remove_empty_dir(self, lock_name: str) -> None:
        (self.path / lock_name).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass  # another process created something meanwhile: leave it

    def bytes_under(self, name: str) -> int:
        return sum(p.stat().st_size for p in (self.path / name).rglob("*") if p.is_file())

    @contextmanager
    def publishing(self, name: str) -> Iterator["_DirWriter"]:
        """Fill a set of files that replaces `name` as a whole when the block succeeds."""
        with replaced_dir(self.path / name) as tmp:
            yield _DirWriter(tmp)

    def published(self, name: str) -> "_DirReader | None":
        directory = self.path / name
        return _DirReader(directory) if directory.is_dir() else None


class _DirWriter:
    def __init__(self, directory: Path):
        self.directory = directory

    def write_file(self, name: str, fill: Callable[[str], None]) -> None:
        """`fill(path)` writes the file itself (a large index never passes through a bytes copy)."""
        fill(str(self.directory / name))

    def write_text(self, name: str, text: str) -> None:
        (self.directory / name).write_text(text, encoding="utf-8")


class _DirReader:
    def __init__(self, directory: Path):
        self.directory = directory

    def read_file(self, name: str, read: Callable[[str], T]) -> T:
        """`read(path)` of the published file."""
        return read(str(self.directory / name))

    def read_text(self, name: str) -> str:
        return (self.directory / name).read_text(encoding="utf-8")


class S3Prefix:
    """A store under s3://BUCKET/PREFIX; every write is one PUT (see the module docstring)."""

    remote = True

    def __init__(self, uri: str, storage_options: dict[str, str], lease_s: float):
        import boto3
        from botocore.config import Config

        parsed = urlparse(uri)
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.lease_s = lease_s
        self._options = storage_options
        if not self.bucket:
            raise InputError(f"store URI {uri!r} names no bucket (s3://BUCKET/PATH)")
        self.client = boto3.client(
            "s3",
            endpoint_url=storage_options.get("aws_endpoint"),
            region_name=storage_options.get("aws_region", "us-east-1"),
            aws_access_key_id=storage_options.get("aws_access_key_id"),
            aws_secret_access_key=storage_options.get("aws_secret_access_key"),
            aws_session_token=storage_options.get("aws_session_token"),
            config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 4, "mode": "standard"}),
        )
        self.lease = None  # set by lock.S3Lease while this process holds the write lock

    @property
    def lance_uri(self) -> str:
        return f"{self.uri}/lance"

    @property
    def storage_options(self) -> dict[str, str]:
        return dict(self._options)

    @property
    def lock_key(self) -> str:
        return self.uri

    def new_lock(self):
        from .lock import S3Lease

        return S3Lease(self, self.lease_s)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    # ----- single objects ----------------------------------------------------------------------
    def call(self, operation: str, **kwargs):
        """One S3 request; unreachable servers and missing buckets become one-line StoreErrors."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise StoreError(f"no bucket {self.bucket!r} for store {self.uri}") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(f"access to {self.uri} denied ({code}): check AWS credentials") from None
            raise
        except BotoCoreError as exc:
            raise StoreError(f"cannot reach the object store for {self.uri}: {exc}") from None

    def exists(self) -> bool:
        return bool(self.names())

    def names(self) -> list[str]:
        """Top-level names under the prefix (a "directory" shows once)."""
        listing = self.call("list_objects_v2", Prefix=self.key(""), Delimiter="/")
        base = len(self.key(""))
        files = [item["Key"][base:] for item in listing.get("Contents", [])]
        folders = [item["Prefix"][base:].rstrip("/") for item in listing.get("CommonPrefixes", [])]
        return sorted(files + folders)

    def read_bytes(self, name: str) -> bytes | None:
        return self.read_object(self.key(name))

    def read_object(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.call("get_object", Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.lease is not None:
            self.lease.check_held()
        self.call("put_object", Key=self.key(name), Body=data)

    def remove(self, name: str) -> None:
        self._delete_prefix(self.key(name) + "/")
        self.call("delete_object", Key=self.key(name))

    def remove_store(self, keep: str) -> None:
        for name in self.names():
            if name != keep:
                self.remove(name)

    def remove_empty_dir(self, lock_name: str) -> None:
        """Nothing to do: an object store has no directories (the lock object goes with its release)."""

    def _delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.call("delete_objects", Delete={"Objects": keys, "Quiet": True})

    def bytes_under(self, name: str) -> int:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.key(name) + "/")
        return sum(item["Size"] for page in pages for item in page.get("Contents", []))

    # ----- sets of files, published by a pointer ----------------------------------------------------
    @contextmanager
    def publishing(self, name: str) -> Iterator["_PrefixWriter"]:
        """Write under NAME/<fresh token>/, then point NAME/CURRENT at it; earlier tokens are deleted."""
        token = uuid.uuid4().hex
        writer = _PrefixWriter(self, self.key(f"{name}/{token}"))
        try:
            yield writer
        except BaseException:
            self._delete_prefix(writer.prefix + "/")
            raise
        self.write_bytes(f"{name}/{POINTER}", json.dumps({"token": token}).encode())
        for entry in self.call("list_objects_v2", Prefix=self.key(f"{name}/"), Delimiter="/").get("CommonPrefixes", []):
            if entry["Prefix"].rstrip("/").rsplit("/", 1)[-1] != token:
                self._delete_prefix(entry["Prefix"])

    def published(self, name: str) -> "_PrefixReader | None":
        pointer = self.read_bytes(f"{name}/{POINTER}")
        if pointer is None:
            return None
        return _PrefixReader(self, self.key(f"{name}/{json.loads(pointer)['token']}"))


class _PrefixWriter:
    def __init__(self, location: S3Prefix, prefix: str):
        self.location = location
        self.prefix = prefix

    def write_file(self, name: str, fill: Callable[[str], None]) -> None:
        """`fill(path)` writes a local temporary file, uploaded in parts (memory: one part)."""
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, name)
            fill(path)
            self.location.client.upload_file(path, self.location.bucket, f"{self.prefix}/{name}")

    def write_text(self, name: str, text: str) -> None:
        self.location.call("put_object", Key=f"{self.prefix}/{name}", Body=text.encode("utf-8"))


class _PrefixReader:
    def __init__(self, location: S3Prefix, prefix: str):
        self.location = location
        self.prefix = prefix

    def _read(self, name: str) -> bytes:
        data = self.location.read_object(f"{self.prefix}/{name}")
        if data is None:
            raise FileNotFoundError(f"{self.location.uri}: {self.prefix}/{name}")  # replaced while we read
        return data

    def read_file(self, name: str, read: Callable[[str], T]) -> T:
        """`read(path)` of a local temporary copy of the published object."""
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, name)
            from botocore.exceptions import ClientError

            try:
                self.location.call("download_file", Key=f"{self.prefix}/{name}", Filename=path)
            except ClientError:  # replaced while we read: the caller treats it as no index
                raise FileNotFoundError(f"{self.location.uri}: {self.prefix}/{name}") from None
            return read(path)

    def read_text(self, name: str) -> str:
        return self._read(name).decode("utf-8")
