"""No page shows a user a link they may not follow (issue #12).

For each role, from their home, every same-origin link of every page they reach is followed,
breadth first: none answers 403 or 404 (or any error, or sends them back to sign in), and
no page tells them to run a command. Links are fetched with the browser's own session
(page.request); files (downloads) are fetched and not read for links. Signing out and the
admin's delete pages are not followed (both act, they are not places to read).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from tests.browser.clinic import Clinic
from tests.browser.walk import sign_in

# Not transactional: the module's tests share one registry (the `clinic` fixture), unflushed.
pytestmark = pytest.mark.django_db

# Enough for every kind of page each role can reach in the test registry (the data manager's
# admin is the largest). A link to a kind of page already fetched twice is not fetched again;
# in the admin (dozens of lists, each with its filters, sort orders and history pages) once.
MOST_FETCHES = 400
SAME_KIND_AT_MOST = 2
NOT_FOLLOWED = re.compile(r"/logout/|/delete/|^/static/|^/media/")
COMMANDS = ("manage.py", "compute_analytics", "render_report")


class Links(HTMLParser):
    """The href of every <a> of a page, and its visible text (without scripts and styles)."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skipping += 1
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data):
        if not self._skipping:
            self.text.append(data)


def kind_of(url: str) -> tuple[str, bool]:
    """Links to the same kind of page: the path with its numbers as N, and whether it has a
    query string (the admin's many filters and sort orders of one list are one kind)."""
    parts = urlsplit(url)
    return re.sub(r"\d+", "N", parts.path), bool(parts.query)


@dataclass
class Refusal:
    url: str
    found_on: str
    problem: str

    def __str__(self) -> str:
        return f"{self.url} (linked from {self.found_on}): {self.problem}"


def crawl(page, start: str) -> tuple[list[Refusal], int]:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(start))
    queue: deque[tuple[str, str]] = deque([(start, "sign-in")])
    queued = {start}
    kinds: dict[tuple, int] = {}
    refusals: list[Refusal] = []
    fetched = 0
    while queue and fetched < MOST_FETCHES:
        url, found_on = queue.popleft()
        fetched += 1
        response = page.request.get(url)
        landed = response.url
        if response.status >= 400:
            refusals.append(Refusal(url, found_on, f"answers {response.status}"))
            continue
        if "/accounts/login/" in landed and "/accounts/login/" not in url:
            refusals.append(Refusal(url, found_on, "sends the user back to sign in"))
            continue
        content_type = response.headers.get("content-type", "")
        disposition = response.headers.get("content-disposition", "")
        if not content_type.startswith("text/html") or "attachment" in disposition:
            continue  # a file: it answered, and holds no links
        links = Links()
        links.feed(response.text())
        text = " ".join(links.text)
        for command in COMMANDS:
            if command in text:
                refusals.append(Refusal(url, found_on, f"tells the user to run {command!r}"))
        for href in links.hrefs:
            target, _ = urldefrag(urljoin(landed, href))
            parts = urlsplit(target)
            if (
                parts.scheme not in ("http", "https")
                or f"{parts.scheme}://{parts.netloc}" != origin
            ):
                continue
            if NOT_FOLLOWED.search(parts.path) or target in queued:
                continue
            kind = kind_of(target)
            once = kind[1] or kind[0].startswith("/admin/")
            if kinds.get(kind, 0) >= (1 if once else SAME_KIND_AT_MOST):
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            queued.add(target)
            queue.append((target, url))
    return refusals, fetched


@pytest.mark.parametrize("username", ["nurse", "nurse_xhc", "pi", "datamanager"])
def test_every_link_a_role_can_reach_answers_without_403_or_404(page, clinic: Clinic, username):
    sign_in(page, clinic.url, username)
    refusals, fetched = crawl(page, page.url)
    assert fetched > 5, f"only {fetched} pages reachable from {username}'s home"
    assert not refusals, f"{len(refusals)} of {fetched} links fail for {username}:\n" + "\n".join(
        map(str, refusals)
    )
