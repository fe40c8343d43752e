import gc
import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()


def warm_up() -> None:
    """What a process would otherwise do at its first requests, done once as the app is loaded:
    under gunicorn's --preload (docker/web.sh), before the workers are forked, so that a worker
    started or replaced (--max-requests) answers its first requests as the others do instead
    of taking a core for about half a second: the URLconf and the views imported, every
    language's translations read, the project's templates compiled (kept by the cached
    template loader when DEBUG is off).

    Then the objects loaded so far (Django, the app and the analytics' pandas, SciPy,
    lifelines, matplotlib: about 340,000) are frozen out of the garbage collector, as Python's
    documentation advises before a fork: a full collection in a worker scanned them all, about
    180 ms of its core, and wrote to every page of memory it shared with the arbiter."""
    from django.conf import settings
    from django.template.loader import get_template
    from django.urls import reverse
    from django.utils import translation

    reverse("home")
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            translation.gettext("Patients")
    for folder in map(Path, settings.TEMPLATES[0]["DIRS"]):
        for template in sorted(folder.rglob("*.html")):
            get_template(template.relative_to(folder).as_posix())
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()


warm_up()
