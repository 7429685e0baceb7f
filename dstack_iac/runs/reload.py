"""`--reload`: while an attached run's commands run, every change of its working directory
(saved, added, deleted; minus what `.gitignore`/`.dstackignore` leave out) is synced to every
node, so an app that reloads by itself (`uvicorn --reload`, `flask --debug`, streamlit, gradio)
picks it up. Changes are watched with watchfiles (inotify on Linux): a save is seen within tens
of milliseconds and sent at once; bursts (an editor writing several files) go as one batch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dstack_iac.execution.sync import SyncBatch, ignored_path, safe_relative, sync_to_group
from dstack_iac.execution.workdir import IGNORE_FILES, IgnoreRules
from dstack_iac.runs.hooks import RunHook

if TYPE_CHECKING:
    from dstack_iac.runs.lifecycle import Run

QUIET_MS = 50  # a batch is sent once no change came for this long
LONGEST_BATCH_MS = 1000  # and at the latest after this: a save reaches the nodes within a second


class Watcher:
    """Collects changes of `root` into batches for `send`, until `stop()`."""

    def __init__(self, root: Path, send, warn):
        self.root = root.resolve()
        self.send = send
        self.warn = warn
        self._stop = threading.Event()
        self._rules = IgnoreRules.for_directory(self.root)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="reload")

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def wanted(self, _change, path: str) -> bool:
        relative = safe_relative(self.root, Path(path))
        if relative is None:
            return False
        return not ignored_path(self._rules, relative, Path(path).is_dir())

    def batch(self, changes) -> SyncBatch:
        from watchfiles import Change

        if any(Path(path).name in IGNORE_FILES for _change, path in changes):
            self._rules = IgnoreRules.for_directory(self.root)
        batch = SyncBatch()
        for change, path in changes:
            relative = safe_relative(self.root, Path(path))
            if relative is None:
                continue
            target = self.root / relative
            if change == Change.deleted or not (target.exists() or target.is_symlink()):
                batch.deleted.add(relative)
                batch.changed.discard(relative)
            elif target.is_dir() and not target.is_symlink():
                batch.changed.update(self._files_under(relative))
            else:
                batch.changed.add(relative)
                batch.deleted.discard(relative)
        return batch

    def _files_under(self, relative: str) -> set[str]:
        found = set()
        for path in (self.root / relative).rglob("*"):
            inner = safe_relative(self.root, path)
            if inner and (path.is_file() or path.is_symlink()) and not ignored_path(self._rules, inner, False):
                found.add(inner)
        return found

    def _loop(self) -> None:
        from watchfiles import watch

        try:
            for changes in watch(self.root, watch_filter=self.wanted, stop_event=self._stop, step=QUIET_MS,
                                 debounce=LONGEST_BATCH_MS, raise_interrupt=False, recursive=True):
                batch = self.batch(changes)
                if batch:
                    try:
                        self.send(batch)
                    except Exception as exc:  # noqa: BLE001 - a failed sync is said; the next save tries again
                        self.warn(f"Reload: the sync failed ({type(exc).__name__}: {exc}); the next change retries")
        except Exception as exc:  # noqa: BLE001 - watching is a convenience: the run goes on without it
            self.warn(f"Reload: watching {self.root} stopped ({type(exc).__name__}: {exc})")


class ReloadHook(RunHook):
    name = "reload"

    @contextlib.contextmanager
    def executing(self, run: Run) -> Iterator[None]:
        def send(batch: SyncBatch) -> None:
            run.ui.say(sync_to_group(run.group, run.plan.repo_dir, batch).describe())

        watcher = Watcher(run.plan.repo_dir, send, run.ui.warn).start()
        run.ui.say(f"Reload: watching {run.plan.repo_dir} (changes are synced to the nodes while attached)")
        try:
            yield
        finally:
            watcher.stop()
