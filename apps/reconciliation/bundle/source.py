"""Where a bundle's files come from: a folder or a .zip, each file opened as a text stream."""

from __future__ import annotations

import io
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO


class BundleError(Exception):
    """The bundle cannot be reconciled at all (missing path or file, unreadable pricing.json...)."""


class BundleSource(AbstractContextManager["BundleSource"]):
    """A folder or a zip archive holding the bundle's files; files are streamed, never loaded whole."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if not self.path.exists():
            raise BundleError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            return
        if not zipfile.is_zipfile(self.path):
            raise BundleError(f"{self.path}: not a folder or a .zip file")
        self._zip = zipfile.ZipFile(self.path)
        self._members = self._index(self._zip)

    @staticmethod
    def _index(archive: zipfile.ZipFile) -> dict[str, str]:
        # Zipping a folder usually nests the files one level down ("bundle-2026-10/events.csv"):
        # files are found by name wherever they sit, as long as each name is unambiguous.
        members: dict[str, str] = {}
        for info in archive.infolist():
            if info.is_dir() or PurePosixPath(info.filename).name.startswith("."):
                continue
            name = PurePosixPath(info.filename).name
            if name in members:
                raise BundleError(
                    f"the zip holds two files named {name}: {members[name]} and {info.filename}"
                )
            members[name] = info.filename
        return members

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return name in self._members
        return (self.path / name).is_file()

    def open_text(self, name: str) -> IO[str]:
        """Open one file as UTF-8 text (a BOM is skipped); undecodable bytes become U+FFFD.

        Replacing instead of failing lets a single garbled row be reported and skipped while
        the rest of the file is still read.
        """
        if not self.exists(name):
            raise BundleError(f"{name}: file is missing from the bundle {self.path}")
        if self._zip is not None:
            raw: IO[bytes] = self._zip.open(self._members[name])
        else:
            raw = (self.path / name).open("rb")
        return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
