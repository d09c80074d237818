"""Pages kept until the data changes: fresh after every write, tokens per session, quiet audit."""

from __future__ import annotations

import re
from typing import Any

from canarino import audit, incidents, recipients
from canarino.settings import load_settings
from canarino.web.app import create_app
from canarino.web.testing import PASSWORDS, WebFixture
from canarino.workspace import Workspace

from .conftest import csrf_of, new_client, sign_in


def _signed_in(app: Any, role: str) -> Any:
    client = new_client(app)
    assert sign_in(client, role, PASSWORDS[role]).status_code == 303  # type: ignore[attr-defined]
    return client


def test_overview_shows_a_change_made_by_another_process_at_once(fresh: WebFixture) -> None:
    client = _signed_in(create_app(fresh.ws), "viewer")
    assert "Vendor Z" not in client.get("/").text
    assert "Vendor Z" not in client.get("/").text  # now kept
    # Another workspace object stands for another process (the CLI, another worker).
    other = Workspace.open(load_settings(fresh.ws.settings.workspace))
    try:
        recipients.add_recipient(other, "Vendor Z", "vendor")
    finally:
        other.close()
    assert "Vendor Z" in client.get("/").text


def test_each_session_gets_its_own_csrf_token_in_a_kept_page(web: WebFixture) -> None:
    app = create_app(web.ws)
    first, second = _signed_in(app, "analyst"), _signed_in(app, "analyst")
    page = f"/incidents/{web.incident_id}"
    tokens = []
    for client in (first, second):
        html = client.get(page).text
        found = set(re.findall(r'name="csrf_token" value="([^"]+)"', html))
        assert len(found) == 1 and "csrf-" not in html
        tokens.append(found.pop())
        assert tokens[-1] == csrf_of(client)
    assert tokens[0] != tokens[1]
    # The token served in the kept page works for its own session only.
    risk = {"level": "risk", "reason": "checked by hand"}
    assert first.post(f"{page}/risk", data={**risk, "csrf_token": tokens[1]}).status_code == 403
    answer = first.post(f"{page}/risk", data={**risk, "csrf_token": tokens[0]})
    assert answer.status_code == 200 and "checked by hand" in answer.text


def test_kept_page_follows_a_risk_change_and_a_language_switch(web: WebFixture) -> None:
    client = _signed_in(create_app(web.ws), "viewer")
    page = f"/incidents/{web.incident_id}"
    client.get(page)
    incidents.assess_risk(web.ws, web.incident_id, "high_risk", "identity documents seen")
    assert "identity documents seen" in client.get(page).text
    assert 'lang="it"' in client.get(page + "?lang=it").text
    assert 'lang="en"' in client.get(page + "?lang=en").text


def test_masked_views_are_logged_once_per_page_reveals_every_time(web: WebFixture) -> None:
    client = _signed_in(create_app(web.ws), "analyst")
    page = f"/incidents/{web.incident_id}"
    views_before, _ = audit.list_events(web.ws, action="view")
    for _ in range(3):
        assert client.get(page).status_code == 200
    views_after, rows = audit.list_events(web.ws, action="view", limit=1)
    assert views_after == views_before + 1
    assert rows[0].actor == "analyst" and len(rows[0].detail["customers"]) > 0
    client.get(page + "?offset=25")  # another page of people is another view
    assert audit.list_events(web.ws, action="view")[0] == views_after + 1
    reveals_before, _ = audit.list_events(web.ws, action="reveal")
    person = rows[0].detail["customers"][0]
    for _ in range(2):
        client.post(f"{page}/people/{person}/reveal", data={"csrf_token": csrf_of(client)})
    assert audit.list_events(web.ws, action="reveal")[0] == reveals_before + 2


def test_viewer_and_analyst_pages_are_kept_apart(web: WebFixture) -> None:
    app = create_app(web.ws)
    page = f"/incidents/{web.incident_id}"
    assert 'data-testid="send-notices"' in _signed_in(app, "analyst").get(page).text
    viewer = _signed_in(app, "viewer").get(page).text
    assert 'data-testid="send-notices"' not in viewer
    assert 'data-testid="current-user">viewer<' in viewer
