"""The admin under its strict Content-Security-Policy (issue 21, defect 8): its pages, scripts and
styles all work in a real browser with no inline script or style allowed, and nothing is blocked."""

import pytest

from ..factories import PASSWORD, make_user
from .conftest import csp_violations, screenshot
from .seeding import server_password_hash

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_pages_work_under_the_strict_policy(new_context, browser_server):
    admin = make_user("admin", role="admin", is_staff=True, is_superuser=True)
    admin.password = server_password_hash()
    admin.save(update_fields=["password"])
    page = new_context().new_page()
    page.goto("/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    policy = page.evaluate("() => fetch('/admin/').then(r => r.headers.get('content-security-policy'))")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy

    # The change list's action bar (actions.js) and the change form's group chooser, which
    # SelectFilter2.js builds in the page: both only exist if the admin's scripts ran.
    violations = csp_violations(page)  # the recorder starts afresh with every page
    page.goto("/admin/auth/user/")
    page.locator("#action-toggle").check()
    assert page.locator("tr.selected").count() >= 1
    violations += csp_violations(page)
    page.goto(f"/admin/auth/user/{admin.pk}/change/")
    assert page.locator(".selector-available").count() >= 1
    # The stylesheets applied (a style-src block would leave the header unstyled).
    assert page.evaluate("() => getComputedStyle(document.querySelector('#header')).display") == "flex"
    violations += csp_violations(page)
    page.goto("/admin/auth/group/add/")
    assert page.locator(".selector-available").count() == 1
    screenshot(page, "admin-under-csp")
    violations += csp_violations(page)
    assert violations == []
