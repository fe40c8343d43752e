"""INTERFACES.md section 5, "Who may do what", as one table and one function."""

from __future__ import annotations

from enum import StrEnum

from registry.domain.vocabulary import Role


class Action(StrEnum):
    VIEW = "view"
    EDIT = "edit"  # add or edit clinical data
    DELETE = "delete"
    RESOLVE_QUERIES = "resolve_queries"
    IMPORT = "import"
    EXPORT_IDENTIFIED = "export_identified"
    EXPORT_DEIDENTIFIED = "export_deidentified"
    ANALYTICS = "analytics"
    ADMIN_SITE = "admin_site"
    MANAGE_USERS = "manage_users"


# Which roles may do what at their own sites; administrators may do everything everywhere.
ALLOWED: dict[Action, frozenset[Role]] = {
    Action.VIEW: frozenset({Role.NURSE, Role.DATA_MANAGER, Role.PI}),
    Action.EDIT: frozenset({Role.NURSE, Role.DATA_MANAGER}),
    Action.DELETE: frozenset(),
    Action.RESOLVE_QUERIES: frozenset({Role.DATA_MANAGER}),
    Action.IMPORT: frozenset({Role.DATA_MANAGER}),
    Action.EXPORT_IDENTIFIED: frozenset({Role.DATA_MANAGER}),
    Action.EXPORT_DEIDENTIFIED: frozenset({Role.DATA_MANAGER, Role.PI}),
    Action.ANALYTICS: frozenset({Role.DATA_MANAGER, Role.PI}),
    Action.ADMIN_SITE: frozenset({Role.DATA_MANAGER}),
    Action.MANAGE_USERS: frozenset(),
}


def user_site_ids(user) -> set[int] | None:
    """The sites a user works at; None for administrators, who see all of them."""
    if not user.is_authenticated or not user.is_active:
        return set()
    if user.is_administrator:
        return None
    cached = getattr(user, "_site_ids", None)
    if cached is None:
        cached = {site.pk for site in user_sites(user)}
        user._site_ids = cached
    return cached


def sites_to_read(user) -> int | None:
    """The user whose sites bound what a page shows, for the page to read them together with
    its own rows (registry.selectors.patient_page) and hand them to remember_sites: their id;
    None for an administrator, who sees every site, and for a user signed out or deactivated,
    who sees none (user_site_ids tells the two apart without a query)."""
    if not user.is_authenticated or not user.is_active or user.is_administrator:
        return None
    return user.pk


def remember_sites(user, sites: list) -> None:
    """The user's sites (by code, as user_sites reads them) read with other rows: the
    permissions and the page header use them without reading them again."""
    user._sites = sites
    user._site_ids = {site.pk for site in sites}


def user_sites(user) -> list:
    """The sites a user is attached to, by code (read once per request: the permissions and the
    page header share them). An administrator may be attached to none and still see all."""
    cached = getattr(user, "_sites", None)
    if cached is None:
        cached = list(user.sites.only("pk", "code").order_by("code"))
        user._sites = cached
    return cached


def can(user, action: Action, site_id: int | None = None) -> bool:
    """May this user do this, at this site (or, with no site, at some site of theirs)?"""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_administrator:
        return True
    if Role(user.role) not in ALLOWED[action]:
        return False
    sites = user_site_ids(user)
    return bool(sites) if site_id is None else site_id in sites
