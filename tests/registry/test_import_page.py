"""The admin's import page speaks to a data manager, not to the person who deployed it: the
size limit as a size, counts with their own grammar, problems in the reader's language."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from registry.models import Patient
from tests.registry.test_cohort_file import ALIVE_CAR_T, DIED_OF_DISEASE, csv_bytes

pytestmark = pytest.mark.django_db
UPLOAD = "/admin/registry/importrun/upload/"


def text(response) -> str:
    """The page as read: tags dropped, non-breaking spaces as spaces."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())).replace(
        "\xa0", " "
    )


def upload(client, rows: list[dict], *, dry_run: bool, **headers):
    data = {"file": SimpleUploadedFile("cohort.csv", csv_bytes(rows), content_type="text/csv")}
    if dry_run:
        data["dry_run"] = "on"
    return client.post(UPLOAD, data, **headers)


@override_settings(IMMUNOREG_MAX_UPLOAD_BYTES=10 * 1024 * 1024)
def test_the_upload_page_states_the_size_limit_as_a_size(client, data_manager):
    client.force_login(data_manager)
    page = text(client.get(UPLOAD))
    assert "Maximum file size: 10.0 MB." in page
    assert "IMMUNOREG_MAX_UPLOAD_BYTES" not in page


@override_settings(IMMUNOREG_MAX_UPLOAD_BYTES=50 * 1024 * 1024)
def test_the_size_limit_is_stated_in_chinese_on_the_chinese_page(client, data_manager):
    client.force_login(data_manager)
    page = text(client.get(UPLOAD, HTTP_ACCEPT_LANGUAGE="zh-hans"))
    assert "最大文件大小：50.0 MB" in page
    assert "IMMUNOREG_MAX_UPLOAD_BYTES" not in page


def test_importing_one_patient_says_one_patient(client, site, data_manager):
    client.force_login(data_manager)
    page = text(upload(client, [ALIVE_CAR_T], dry_run=True))
    assert "Dry run: 1 patient would be imported; nothing was saved." in page
    page = text(upload(client, [ALIVE_CAR_T], dry_run=False))
    assert re.search(r"Imported 1 patient \(run \d+\)\.", page)
    assert "1 patients" not in page
    assert Patient.objects.count() == 1


def test_importing_two_patients_says_patients(client, site, data_manager):
    client.force_login(data_manager)
    page = text(upload(client, [ALIVE_CAR_T, DIED_OF_DISEASE], dry_run=True))
    assert "Dry run: 2 patients would be imported; nothing was saved." in page


def test_the_problems_of_a_refused_file_are_listed_in_the_readers_language(
    client, site, data_manager
):
    client.force_login(data_manager)
    response = upload(
        client, [ALIVE_CAR_T | {"arm": "cart"}], dry_run=True, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    page = text(response)
    assert "文件被拒绝：共 1 个问题；未保存任何数据。" in page
    assert "第 2 行，arm 列：" in page
    assert not Patient.objects.exists()
