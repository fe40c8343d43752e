"""Files written whole or not at all (registry.files), on a real full disk (tests/disk.py)."""

from __future__ import annotations

import errno

import pytest
from django.core.files.base import ContentFile

from registry.files import WholeFileStorage, disk_full, write_whole, written_whole
from tests.disk import full_disk

BIG = b"%PDF-1.7 " + bytes(200 * 1024)  # far more than the full disk holds


def test_a_file_written_on_a_full_disk_leaves_nothing_under_its_name_or_beside_it(tmp_path):
    with full_disk(tmp_path) as disk:
        with pytest.raises(OSError) as raised:
            write_whole(tmp_path / "report.pdf", BIG)
        assert disk_full(raised.value) and raised.value.errno == errno.ENOSPC
        assert disk.files() == []


def test_a_file_replaced_on_a_full_disk_keeps_its_previous_content(tmp_path):
    with full_disk(tmp_path) as disk:
        write_whole(tmp_path / "analytics.json", "{}")
        with pytest.raises(OSError):
            write_whole(tmp_path / "analytics.json", BIG)
        assert disk.files() == [tmp_path / "analytics.json"]
        assert (tmp_path / "analytics.json").read_text() == "{}"


def test_an_error_while_writing_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), written_whole(tmp_path / "export.xlsx") as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("the export stopped half-way")
    assert list(tmp_path.iterdir()) == []


def test_the_archive_refuses_a_taken_name_rather_than_inventing_another(tmp_path):
    storage = WholeFileStorage(location=tmp_path)
    assert storage.save("reports/AHP.pdf", ContentFile(b"%PDF- first")) == "reports/AHP.pdf"
    with pytest.raises(FileExistsError):
        storage.save("reports/AHP.pdf", ContentFile(b"%PDF- second"))
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["AHP.pdf"]
    assert (tmp_path / "reports" / "AHP.pdf").read_bytes() == b"%PDF- first"


def test_an_archived_file_has_the_usual_permissions(tmp_path):
    storage = WholeFileStorage(location=tmp_path, file_permissions_mode=0o644)
    storage.save("AHP.pdf", ContentFile(b"%PDF-"))
    assert (tmp_path / "AHP.pdf").stat().st_mode & 0o777 == 0o644
