"""What every page a user reaches must be, checked the same way on each: it answers, it fits the
screen (nothing wider than the viewport), axe finds no serious accessibility problem, and it
speaks the user's language without the registry's internal codes. Screenshots of each go to
var/screenshots/ for people to look at."""

from __future__ import annotations

import re
from contextlib import contextmanager

from django.utils import translation
from playwright.sync_api import Page, expect

from tests.browser.axe import assert_no_serious_violations
from tests.browser.clinic import PASSWORD
from tests.browser.conftest import SCREENSHOTS

LANGUAGES = ("en", "zh-hans")
VIEWPORTS = {
    "desktop": {"width": 1280, "height": 900},
    "tablet": {"width": 768, "height": 1024},
    "phone": {"width": 390, "height": 844},
}
# The schedule's internal visit names ("day100", "month12", "year5") are never shown: a page
# says "Day 100", "Month 12", "Year 5" in the reader's language.
VISIT_CODE = re.compile(r"(?<![A-Za-z0-9_/.-])(day|month|year)\d+(?![A-Za-z0-9_])")
# Pieces of the data-quality queries' English messages: none may reach a Chinese page.
ENGLISH_QUERY_MESSAGES = (
    "Follow-up visit",
    "its window closed",
    "Baseline incomplete",
    "missing.",
    "still unknown",
    "not assessed",
    "differs from the grade",
    "more than 180 days ago",
    "earlier than the latest recorded",
)
# A page must never tell a user to run a command, nor show a database's own message.
ADMINISTRATOR_TALK = ("manage.py", "compute_analytics", "render_report", "is violated")


def in_language(language: str, message: str) -> str:
    """A message of the catalogue as the page should show it in `language`."""
    with translation.override(language):
        return translation.gettext(message)


def sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    # The URL changes before the page has loaded: its deferred scripts (the language menu's
    # submit-on-change among them) are not running yet.
    page.wait_for_load_state("load")


def switch_language(page: Page, language: str) -> None:
    """The header's language menu, as a user switches it, once the page's scripts run (a
    choice made before that submits nothing, and the test would fail for the wrong reason)."""
    page.wait_for_load_state("load")
    page.get_by_test_id("language").select_option(language)
    expect(page.locator("html")).to_have_attribute("lang", language)


@contextmanager
def viewport(page: Page, name: str):
    """The page at another screen size for a while (desktop afterwards)."""
    page.set_viewport_size(VIEWPORTS[name])
    try:
        yield
    finally:
        page.set_viewport_size(VIEWPORTS["desktop"])


# Visible elements that reach past the right edge of the viewport, outermost first, except
# inside a box that scrolls sideways on its own (a wide table in a scrolling wrapper is fine).
OVERFLOWING = """
() => {
  const width = window.innerWidth;
  const scrollsOnItsOwn = (element) => {
    for (let box = element.parentElement; box && box !== document.body; box = box.parentElement) {
      const overflow = getComputedStyle(box).overflowX;
      if ((overflow === "auto" || overflow === "scroll")
          && box.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const describe = (element) => {
    let name = element.tagName.toLowerCase();
    if (element.id) name += "#" + element.id;
    if (element.classList.length) name += "." + [...element.classList].join(".");
    const text = (element.innerText || element.value || "").trim().slice(0, 40);
    return name + (text ? ` "${text}"` : "");
  };
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    if (found.some((outer) => outer.contains(element))) continue;
    const box = element.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1 || box.right <= width + 1 || box.right <= 0) continue;
    const style = getComputedStyle(element);
    if (style.visibility === "hidden" || style.display === "none") continue;
    if (element.closest("svg") && element.tagName.toLowerCase() !== "svg") continue;
    if (scrollsOnItsOwn(element)) continue;
    found.push(element);
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: width,
    elements: found.slice(0, 15).map((element) =>
      describe(element) + " reaches " + Math.round(element.getBoundingClientRect().right) + "px"),
  };
}
"""


def assert_fits_the_viewport(page: Page) -> None:
    """No sideways scrolling, and nothing (header, menu, form, button) cut off at the right."""
    found = page.evaluate(OVERFLOWING)
    assert found["scrollWidth"] <= found["innerWidth"] and not found["elements"], (
        f"{page.url} at {found['innerWidth']}px is {found['scrollWidth']}px wide; "
        f"past the right edge: {found['elements']}"
    )


def assert_speaks(page: Page, language: str) -> None:
    """The page is in the user's language: no visit codes, no English query messages on a
    Chinese page, no command to run, no database message."""
    expect(page.locator("html")).to_have_attribute("lang", language)
    text = page.locator("body").inner_text()
    codes = sorted({match.group(0) for match in VISIT_CODE.finditer(text)})
    assert not codes, f"{page.url} shows the internal visit codes {codes}"
    for words in ADMINISTRATOR_TALK:
        assert words not in text, f"{page.url} shows {words!r}"
    if language != "en":
        english = [words for words in ENGLISH_QUERY_MESSAGES if words in text]
        assert not english, f"{page.url} in {language} shows English messages: {english}"


def open_every_details(page: Page) -> None:
    """Folded sections (the worklist's queries, the lost patients) are opened, so what they hold
    is checked as a reader who opens them sees it."""
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def check_page(page: Page, language: str, name: str, *, accessibility: bool = True) -> None:
    """The checks every page of every role passes, at the page's current size (its screenshot
    taken first, so that a page that fails them can be looked at)."""
    open_every_details(page)
    screenshot(page, name)
    assert_speaks(page, language)
    assert_fits_the_viewport(page)
    if accessibility:
        assert_no_serious_violations(page)


def visit(page: Page, url: str) -> None:
    """Open a page a user can reach; it must answer with the page, not an error."""
    response = page.goto(url)
    assert response is not None and response.ok, f"{url} answered {response and response.status}"
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    # The URL changes before the page has loaded: its deferred scripts (the language menu's
    # submit-on-change among them) are not running yet.
    page.wait_for_load_state("load")
