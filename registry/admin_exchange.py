"""The cohort import in the admin (data managers and administrators), and the logs of imports
and exports. Registered by `from registry import admin_exchange` in registry/admin.py.

The upload page runs registry.cohort_file.import_cohort, the same as `import_cohort`: all or
nothing, every problem listed as `row R, column C: message`, a dry run on request.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from registry import cohort_file, import_runs
from registry.admin_links import LinksOnlyWhereAllowed
from registry.admin_scope import SiteScopedAdmin
from registry.models import ExportLog, ImportRun
from registry.permissions import Action, can


class ImportForm(forms.Form):
    file = forms.FileField(label=_("Cohort file"))
    labs = forms.FileField(
        label=_("Laboratory file (optional)"),
        required=False,
        help_text=_(
            "One row per treatment and date: study_id, site, date and the laboratory values, "
            "as the export writes it beside the cohort file (name-labs.csv). An .xlsx cohort "
            "file may carry it on a sheet named “labs” instead."
        ),
    )
    dry_run = forms.BooleanField(
        label=_("Dry run: check everything, save nothing"), required=False, initial=True
    )
    create_sites = forms.BooleanField(
        label=_("Create the sites the registry does not know (administrators)"), required=False
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The limit the upload handler enforces, as a person reads a size, in their language.
        self.fields["file"].help_text = _(
            "UTF-8 CSV with a header row, or an .xlsx workbook. Maximum file size: %(size)s."
        ) % {"size": filesizeformat(settings.IMMUNOREG_MAX_UPLOAD_BYTES)}


class LogAdmin(SiteScopedAdmin, LinksOnlyWhereAllowed, admin.ModelAdmin):
    """A log is read, never added, changed or deleted by hand (INTERFACES.md section 6)."""

    action = Action.IMPORT
    actions = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can(request.user, self.action)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return can(request.user, self.action)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def scope_queryset(self, request: HttpRequest, queryset):
        """A log is its author's (the same user may work at several sites); every log is an
        administrator's."""
        queryset = queryset.select_related("user")
        if request.user.is_authenticated and request.user.is_administrator:
            return queryset
        return (
            queryset.filter(user=request.user) if request.user.is_authenticated else queryset.none()
        )


@admin.register(ImportRun)
class ImportRunAdmin(LogAdmin):
    list_display = (
        "pk",
        "started_at",
        "user",
        "file_name",
        "dry_run",
        "outcome",
        "rows",
        "patients_created",
        "problem_count",
    )
    list_filter = ("outcome", "dry_run")
    change_list_template = "registry/exchange/importrun_change_list.html"

    def get_urls(self):
        upload = path(
            "upload/",
            self.admin_site.admin_view(self.upload_view),
            name="registry_importrun_upload",
        )
        return [upload, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        import_runs.close_abandoned()  # runs whose process is gone show as failed, not running
        return super().changelist_view(request, extra_context)

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not can(request.user, Action.IMPORT):
            raise PermissionDenied(_("Only data managers and administrators may import."))
        import_runs.close_abandoned()
        form = ImportForm(request.POST or None, request.FILES or None)
        if not can(request.user, Action.MANAGE_USERS):
            del form.fields["create_sites"]
        result, unreadable = None, ""
        if request.method == "POST" and form.is_valid():
            upload, labs = form.cleaned_data["file"], form.cleaned_data.get("labs")
            try:
                # The upload as a stream, read within cohort_file.ImportLimits.
                result = cohort_file.import_cohort(
                    upload,
                    name=upload.name,
                    user=request.user,
                    dry_run=form.cleaned_data["dry_run"],
                    create_sites=form.cleaned_data.get("create_sites", False),
                    via="admin",
                    labs=labs or None,
                    labs_name=labs.name if labs else "",
                )
            except cohort_file.UnreadableFile as error:
                unreadable = str(error)
            else:
                if result.ok and result.dry_run:
                    messages.success(
                        request,
                        ngettext(
                            "Dry run: %(n)s patient would be imported; nothing was saved.",
                            "Dry run: %(n)s patients would be imported; nothing was saved.",
                            result.rows,
                        )
                        % {"n": result.rows},
                    )
                elif result.ok:
                    messages.success(
                        request,
                        ngettext(
                            "Imported %(n)s patient (run %(run)s).",
                            "Imported %(n)s patients (run %(run)s).",
                            result.patients_created,
                        )
                        % {"n": result.patients_created, "run": result.run.pk},
                    )
                if result.ok and result.lab_rows:
                    messages.success(request, _lab_message(result))
        # The page lists at most max_problems_shown problems, then says how many more.
        shown = cohort_file.ImportLimits.from_settings().max_problems_shown
        problems = result.problems[:shown] if result else []
        context = {
            **self.admin_site.each_context(request),
            "problems": problems,
            "more_problems": len(result.problems) - len(problems) if result else 0,
            "title": _("Import a cohort file"),
            "opts": self.model._meta,
            "form": form,
            "result": result,
            "unreadable": unreadable,
            "columns": [list(line.values()) for line in cohort_file.codebook()],
        }
        return TemplateResponse(request, "registry/exchange/import_upload.html", context)


def _lab_message(result: cohort_file.ImportResult) -> str:
    if result.dry_run:
        return ngettext(
            "Dry run: %(n)s laboratory value row would be imported with them.",
            "Dry run: %(n)s laboratory value rows would be imported with them.",
            result.lab_rows,
        ) % {"n": result.lab_rows}
    return ngettext(
        "Imported %(n)s laboratory value row with them; ICAHT derived from the series.",
        "Imported %(n)s laboratory value rows with them; ICAHT derived from the series.",
        result.lab_values_created,
    ) % {"n": result.lab_values_created}


@admin.register(ExportLog)
class ExportLogAdmin(LogAdmin):
    action = Action.EXPORT_DEIDENTIFIED
    list_display = ("created_at", "user", "format", "identified", "scope", "rows", "via")
    list_filter = ("identified", "format", "via")
