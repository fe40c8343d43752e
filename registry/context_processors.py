"""What the page header may offer the signed-in user (INTERFACES.md section 5)."""

from __future__ import annotations

from registry.permissions import Action, can, user_sites


def permissions(request) -> dict[str, bool]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "can_see_analytics": can(user, Action.ANALYTICS),
        "can_use_admin": can(user, Action.ADMIN_SITE),
        "user_sites": user_sites(user),
    }
