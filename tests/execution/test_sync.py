"""Which changes `--reload` sends: the upload's ignore rules, whole batches, new directories."""

from __future__ import annotations

import io
import tarfile

from watchfiles import Change

from dstack_iac.execution.sync import SyncReport, ignored_path, pack_files
from dstack_iac.execution.workdir import IgnoreRules
from dstack_iac.runs.reload import Watcher


def test_ignored_paths_follow_the_upload_rules(tmp_path):
    rules = IgnoreRules(["*.ckpt", "build/", ".git/", "__pycache__/"])
    assert ignored_path(rules, "model.ckpt", False)
    assert ignored_path(rules, "build/out.bin", False)
    assert ignored_path(rules, ".git/objects/ab", False)
    assert ignored_path(rules, "pkg/__pycache__/m.pyc", False)
    assert not ignored_path(rules, "app.py", False) and not ignored_path(rules, "src/build.py", False)


def test_a_batch_sends_changes_deletes_removals_and_reads_new_rules(tmp_path):
    (tmp_path / ".dstackignore").write_text("secret.txt\n")
    (tmp_path / "app.py").write_text("print(1)")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.py").write_text("a")
    (tmp_path / "new" / "secret.txt").write_text("s")
    watcher = Watcher(tmp_path, send=lambda batch: None, warn=print)
    batch = watcher.batch({(Change.modified, str(tmp_path / "app.py")), (Change.added, str(tmp_path / "new")),
                           (Change.deleted, str(tmp_path / "old.py"))})
    assert batch.changed == {"app.py", "new/a.py"}
    assert batch.deleted == {"old.py"}
    assert not watcher.wanted(Change.modified, str(tmp_path / "new" / "secret.txt"))
    (tmp_path / ".dstackignore").write_text("app.py\n")
    watcher.batch({(Change.modified, str(tmp_path / ".dstackignore"))})
    assert not watcher.wanted(Change.modified, str(tmp_path / "app.py"))
    assert not watcher.wanted(Change.modified, "/elsewhere/app.py")


def test_only_the_changed_files_are_packed(tmp_path):
    (tmp_path / "a.txt").write_text("aaa")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "link").symlink_to("a.txt")
    data, packed = pack_files(tmp_path, {"a.txt", "link", "gone.txt"})
    assert packed == [("a.txt", 3), ("link", len("a.txt"))]
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert sorted(archive.getnames()) == ["a.txt", "link"]
        assert archive.getmember("link").issym()


def test_the_report_says_what_it_sent():
    report = SyncReport(sent=[("app.py", 1200)], deleted=["old.py"], nodes=2, seconds=0.042)
    assert report.describe() == "Reload: sent app.py (1 file, 1.2 KB) and deleted old.py to 2 nodes in 42 ms"
