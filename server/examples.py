"""The project's test files as example lines (docs/method.md 7.1) for the server's documents.

One `ProjectExamples` (engine/examples/project.py) per project root: the deepest
workspace folder holding the document, else the nearest folder above it with
pyproject.toml, setup.cfg, setup.py or .git. The handlers tell it what the
editor does: an open or changed test file overrides the file on disk
(`changed`), a closed one no longer does (`closed`), a saved or watched file
is read again (`invalidated`). Everything here is quick except `examples`,
which reads files: call it off the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pygls.uris import to_fs_path

from cascode.engine.examples import ProjectExamples, find_project_root, top_level_names
from cascode.engine.extract import assert_subject
from cascode.engine.types import Example, Task

log = logging.getLogger(__name__)


class TestExamples:
    """The test-file examples of the documents' projects, one `ProjectExamples` per root."""

    __test__ = False  # not a pytest class

    def __init__(self, max_files: int = 200) -> None:
        self.max_files = max_files
        self._folders: tuple[Path, ...] = ()
        self._projects: dict[Path, ProjectExamples] = {}
        self._roots: dict[Path, Path | None] = {}  # document -> its project root
        # The open documents, by path: given again to a project made after they opened.
        self._buffers: dict[Path, tuple[str, object]] = {}
        self._lock = threading.Lock()

    def configure(self, folders: Iterable[str], max_files: int) -> None:
        """The workspace folders (paths) and the `testScanFiles` setting; a change
        forgets every project (they are read again on the next request)."""
        resolved = tuple(sorted({Path(f).resolve() for f in folders}))
        with self._lock:
            if (resolved, max_files) == (self._folders, self.max_files):
                return
            self._folders, self.max_files = resolved, max_files
            self._projects.clear()
            self._roots.clear()

    def _locate(self, uri: str) -> tuple[Path, ProjectExamples] | None:
        """The document's path and its project, or None (no file, no project)."""
        path = uri_path(uri)
        if path is None:
            return None
        with self._lock:
            if path not in self._roots:
                inside = [f for f in self._folders if path.is_relative_to(f)]
                self._roots[path] = (max(inside, key=lambda f: len(f.parts)) if inside
                                     else find_project_root(path))
            root = self._roots[path]
            if root is None:
                return None
            project = self._projects.get(root)
            if project is None:
                project = ProjectExamples([root], max_files=self.max_files)
                for open_path, (text, version) in self._buffers.items():
                    if open_path.is_relative_to(root):
                        project.set_buffer(open_path, text, version)
                self._projects[root] = project
            return path, project

    # -- what the editor did ---------------------------------------------------

    def changed(self, uri: str, text: str, version: object) -> None:
        """A document was opened or changed: a test file's buffer overrides the disk."""
        found = self._locate(uri)
        if found is not None and found[1].set_buffer(found[0], text, version):
            with self._lock:
                self._buffers[found[0]] = (text, version)

    def closed(self, uri: str) -> None:
        found = self._locate(uri)
        if found is not None:
            with self._lock:
                self._buffers.pop(found[0], None)
            found[1].drop_buffer(found[0])

    def invalidated(self, uri: str) -> None:
        """A file was saved, created, changed or deleted on disk."""
        found = self._locate(uri)
        if found is not None:
            found[1].invalidate(found[0])

    # -- for a request ------------------------------------------------------------

    def examples(self, uri: str, task: Task) -> tuple[Example, ...]:
        """The test files' examples for `task` in document `uri` (blocking: reads files)."""
        found = self._locate(uri)
        if found is None:
            return ()
        path, project = found
        examples: tuple[Example, ...] = project.examples(
            assert_subject(task), top_level_names(task.context), path)
        return examples


def workspace_folders(workspace: Any) -> list[str]:
    """The paths of a pygls workspace's folders (its root when the client sent none)."""
    uris = [folder.uri for folder in workspace.folders.values()]
    if not uris and workspace.root_uri:
        uris = [workspace.root_uri]
    paths = [uri_path(uri) for uri in uris]
    return [str(p) for p in paths if p is not None]


def uri_path(uri: str) -> Path | None:
    """The file a `file:` URI names (None for any other scheme: an unsaved buffer)."""
    if not uri.startswith("file:"):
        return None
    fs_path = to_fs_path(uri)
    return Path(fs_path).resolve() if fs_path else None
