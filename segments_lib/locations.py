"""Where data lives: a local path or a URI (`file://`, `s3a://`, `abfss://`, `gs://`, `hdfs://`, ...).

Every configured location (events, output tables, quarantine, MLflow artifacts, the segments file, an
overlay) is a `Location`. A local one is kept as an absolute path, so it behaves exactly as before;
a remote one keeps its scheme and authority and is joined with `/`, never collapsed into a local path
(`Path("s3a://lake/x")` would be `s3a:/lake/x`). Code that needs the local disk asks for `.path`,
which refuses a remote location by name instead of silently writing next to the checkout.

Storage access on a remote location goes through Spark/Hadoop's FileSystem (`store.filesystem`) or,
for the small non-Spark reads here (YAML files), `pyarrow.fs`.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
# Hadoop's S3A/S3N and MLflow/Arrow/delta-rs's s3 address the same bucket and key.
_S3_SCHEMES = ("s3a", "s3n")


class LocationError(ValueError):
    """A location cannot be used the way it was asked for; the message names it."""


@dataclass(frozen=True)
class Location:
    """A local absolute path, or a URI with a scheme (see the module doc)."""

    uri: str

    @classmethod
    def parse(cls, value: str | os.PathLike[str] | Location, base: Location | None = None) -> Location:
        """A configured value: `$VARIABLES` and `~` expanded; a relative local path anchored at `base`."""
        if isinstance(value, Location):
            return value
        text = os.path.expanduser(os.path.expandvars(os.fspath(value)))
        match = _SCHEME.match(text)
        if match and match.group("scheme").lower() == "file":
            text = unquote(urlsplit(text).path)  # file:///x is the local path /x
        elif match:
            return cls(_normalized_uri(text))
        if os.path.isabs(text) or base is None:
            return cls(os.path.abspath(text))
        return base / text

    @property
    def scheme(self) -> str:
        """'' for a local path, else the URI scheme in lower case ('s3a', 'abfss', 'hdfs', ...)."""
        match = _SCHEME.match(self.uri)
        return match.group("scheme").lower() if match else ""

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def path(self) -> Path:
        """The local path; a remote location is refused, naming it."""
        if not self.is_local:
            raise LocationError(f"{self.uri} is not on the local disk; this step needs a local path")
        return Path(self.uri)

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/")) if self.scheme else os.path.basename(self.uri)

    @property
    def parent(self) -> Location:
        if self.is_local:
            return Location(os.path.dirname(self.uri))
        head, _, path = _split(self.uri)
        return Location(head + (posixpath.dirname(path) or "/"))

    def __truediv__(self, name: str | os.PathLike[str]) -> Location:
        child = os.fspath(name)
        if self.is_local:
            return Location(os.path.normpath(os.path.join(self.uri, child)))
        head, _, path = _split(self.uri)
        return Location(head + _normalized_path(posixpath.join(path or "/", child)))

    def contains(self, other: Location) -> bool:
        """True when `other` lies strictly below this location (symlinks followed on the local disk)."""
        if self.is_local != other.is_local:
            return False
        if self.is_local:
            root, candidate = Path(self.uri).resolve(), Path(other.uri).resolve()
            return root in candidate.parents
        root_head, _, root_path = _split(self.uri)
        head, _, path = _split(other.uri)
        prefix = root_path.rstrip("/") + "/"
        return head == root_head and path.startswith(prefix) and len(path) > len(prefix)

    def for_mlflow(self) -> str:
        """The artifact URI MLflow understands: `file://` for a local path, `s3://` for `s3a://`."""
        return Path(self.uri).as_uri() if self.is_local else _s3(self.uri)

    def for_arrow(self) -> str:
        """The URI pyarrow, delta-rs and DuckDB understand (they spell S3 `s3://`)."""
        return self.uri if self.is_local else _s3(self.uri)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.uri


def _split(uri: str) -> tuple[str, str, str]:
    """('scheme://authority', 'authority', '/path') of a URI."""
    parts = urlsplit(uri)
    return f"{parts.scheme.lower()}://{parts.netloc}", parts.netloc, parts.path


def _normalized_path(path: str) -> str:
    normal = posixpath.normpath(path or "/")  # keeps a leading '//', which an object key never means
    normal = "/" + normal.lstrip("/")
    return "/" if normal == "/." else normal


def _normalized_uri(uri: str) -> str:
    head, authority, path = _split(uri)
    if not authority and not path:
        raise LocationError(f"{uri}: a URI needs a bucket, container or host after '://'")
    return head + _normalized_path(path) if path not in ("", "/") else head


def _s3(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"s3://{rest}" if scheme.lower() in _S3_SCHEMES else uri


def read_text(location: Location) -> str:
    """A small text file (a YAML overlay or segments file): the local disk, else `pyarrow.fs`.

    Object-store credentials and endpoints come from the environment as for every AWS/GCS/Azure
    client (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...); FileNotFoundError when it is missing.
    """
    if location.is_local:
        return location.path.read_text(encoding="utf-8")
    try:
        filesystem, path = pafs.FileSystem.from_uri(location.for_arrow())
        if filesystem.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(location.uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's errors: OSError for I/O, ValueError for a bad URI
        raise LocationError(f"{location.uri}: cannot read it: {exc}") from exc


def is_file(location: Location) -> bool:
    """Whether a small file (a segments file, an overlay) exists there; False when it cannot be reached."""
    if location.is_local:
        return location.path.is_file()
    try:
        filesystem, path = pafs.FileSystem.from_uri(location.for_arrow())
        return filesystem.get_file_info(path).type == pafs.FileType.File
    except (OSError, ValueError):
        return False
