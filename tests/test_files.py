"""Files the zoo writes are replaced whole (zoo.files): a failure midway leaves the previous
file and no temporary one; what is written is readable by others (0644)."""
import errno
import json
import stat
from pathlib import Path

import pytest

from training import formats, readme
from training.bench import render
from zoo import files


@pytest.fixture
def disk_full(monkeypatch):
    """Every Path.write_text / write_bytes writes half its data, then fails as a full disk does."""
    def half(path, data, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write((data.encode() if isinstance(data, str) else data)[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", half)
    monkeypatch.setattr(Path, "write_bytes", half)


def bench_results():
    from tests.test_bench import _results
    return _results(0.7, 6.0, 2.0, 1.5)


def formats_results():
    from tests.test_formats import synthetic_results
    return synthetic_results()


def test_written_files_are_whole_and_readable_by_others(tmp_path):
    target = tmp_path / "deeper" / "file.json"
    files.write_atomically(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [path.name for path in target.parent.iterdir()] == ["file.json"]


@pytest.mark.parametrize("writer", ["write_atomically", "bench", "formats", "readme"])
def test_a_failed_write_keeps_the_previous_file(writer, tmp_path, disk_full):
    readme_file = tmp_path / "README.md"
    previous = {tmp_path / name: "previous\n" for name in ("bench.json", "bench.md", "formats.json", "formats.md")}
    previous[readme_file] = "<!-- formats:start -->\nold\n<!-- formats:end -->\n"
    for path, text in previous.items():
        with open(path, "w") as handle:
            handle.write(text)
    with pytest.raises(OSError, match="No space left"):
        if writer == "write_atomically":
            files.write_atomically(tmp_path / "bench.json", b"new content")
        elif writer == "bench":
            render.write_reports(bench_results(), tmp_path, update_readme=False)
        elif writer == "formats":
            formats.write(formats_results(), tmp_path)
        else:
            readme.update_section("formats", "new", readme=readme_file)
    assert {path: path.read_text() for path in previous} == previous
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in previous)


def test_reports_that_are_missing_or_malformed_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^error: .*formats.json does not exist; --markdown-only renders"):
        formats.main(["--markdown-only", "--output", str(tmp_path)])
    (tmp_path / "formats.json").write_text('{"models": {')
    with pytest.raises(SystemExit, match=r"^error: .*formats.json is unreadable \(Expecting") as raised:
        formats.main(["--output", str(tmp_path), "no_such_model"])
    assert "\n" not in str(raised.value)
    (tmp_path / "formats.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="expected a JSON object, got list"):
        formats.main(["--markdown-only", "--output", str(tmp_path)])
    (tmp_path / "formats.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(SystemExit, match="holds no measured models"):
        formats.main(["--markdown-only", "--output", str(tmp_path)])
    assert readme.read_report(tmp_path / "absent.json", {"models": {}}) == {"models": {}}
