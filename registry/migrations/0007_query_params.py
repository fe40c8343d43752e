"""Data-quality queries keep what their message is written from (kind + params), so that pages
write it in the reader's language (issue #12); existing rows get theirs from their English
message and key. The nightly refresh writes them anew in any case."""

import re

from django.db import migrations, models

BASELINE_FIELDS = {
    "disease burden": "disease_burden",
    "relapse status": "relapse_status",
    "marrow blasts": "bm_blast_pct",
}
DATE = r"(\d{4}-\d{2}-\d{2})"


def params_of(query, latest_treatment) -> dict:
    message, key = query.message, query.key
    if query.kind == "baseline_incomplete":
        found = re.match(r"Baseline incomplete: (.+) missing\.", message)
        names = found.group(1).split(", ") if found else []
        if names and all(name in BASELINE_FIELDS for name in names):
            return {"fields": [BASELINE_FIELDS[name] for name in names]}
    elif query.kind in ("crs_status_unknown", "response_not_assessed"):
        return {}
    elif query.kind == "follow_up_overdue":
        keyed = re.fullmatch(r"t(\d+):(\w+)", key)
        closes = re.search(rf"closed on {DATE}", message)
        if keyed and closes:
            return {
                "treatment": int(keyed.group(1)),
                "visit": keyed.group(2),
                "closes": closes.group(1),
            }
    elif query.kind == "lost_to_follow_up":
        last = re.search(rf"last contact {DATE}", message)
        if last:
            return {"treatment": latest_treatment, "last_seen": last.group(1)}
    elif query.kind == "contact_before_event":
        dates = re.findall(DATE, message)
        if len(dates) == 2:
            return {"treatment": latest_treatment, "last_contact": dates[0], "event": dates[1]}
    elif query.kind == "grade_mismatch":
        keyed = re.fullmatch(r"(crs|icans)episode(\d+)", key)
        grades = re.search(rf"grade (\d) differs from the grade (\d) .* of {DATE}", message)
        if keyed and grades:
            return {
                "episode": keyed.group(1),
                "pk": int(keyed.group(2)),
                "recorded": int(grades.group(1)),
                "derived": int(grades.group(2)),
                "onset": grades.group(3),
            }
    return {}


def fill_params(apps, schema_editor):
    Query = apps.get_model("registry", "DataQualityQuery")
    Treatment = apps.get_model("registry", "Treatment")
    latest = {}
    for patient_id, pk in Treatment.objects.order_by("day0", "pk").values_list("patient_id", "pk"):
        latest[patient_id] = pk
    changed = []
    for query in Query.objects.filter(params={}).iterator(chunk_size=2000):
        query.params = params_of(query, latest.get(query.patient_id))
        if query.params:
            changed.append(query)
    Query.objects.bulk_update(changed, ["params"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0006_site_data_token"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataqualityquery",
            name="params",
            field=models.JSONField(blank=True, default=dict, verbose_name="details"),
        ),
        migrations.AddField(
            model_name="historicaldataqualityquery",
            name="params",
            field=models.JSONField(blank=True, default=dict, verbose_name="details"),
        ),
        migrations.RunPython(fill_params, migrations.RunPython.noop),
    ]
