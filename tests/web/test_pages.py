from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from canarino import audit
from canarino.testing import SmtpSink
from canarino.web.app import create_app
from canarino.web.auth import CSRF_HEADER
from canarino.web.testing import MAIL_DOMAINS, PASSWORDS, WebFixture

from .conftest import csrf_of, new_client, sign_in

Client = Callable[[str], Any]


def _poll_job(client: Any, job_url: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        html = client.get(job_url + "/progress").text
        if 'data-state="running"' not in html:
            return str(html)
        assert 'hx-get="' in html and 'hx-trigger="every 1s"' in html
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def test_overview_lists_recipients_shares_and_open_incidents_with_clocks(
    client_for: Client, web: WebFixture
) -> None:
    html = client_for("viewer").get("/").text
    for name in ("Vendor A", "Vendor B", "Agent A1"):
        assert name in html
    assert html.count('data-testid="share-link"') >= 3  # other tests may add shares
    assert 'data-testid="open-incidents"' in html and "Vendor A leak" in html
    assert re.search(r'<time class="countdown" datetime="[^"]+" data-due=', html)


def test_recipient_and_share_pages_show_the_ledger(client_for: Client, web: WebFixture) -> None:
    client = client_for("viewer")
    share = client.get(f"/shares/{web.share_ids['Agent A1']}").text
    assert "country=IT" in share and "Agent A1" in share
    vendor = client.get("/recipients/1").text
    assert "Vendor A" in vendor and "Agent A1" in vendor
    assert client.get("/shares/9999").status_code == 404


def test_trace_page_draws_the_evidence_and_exposure(client_for: Client, web: WebFixture) -> None:
    html = client_for("viewer").get(f"/traces/{web.trace_id}").text
    assert 'data-testid="attribution-picture"' in html
    assert 'class="window"' in html  # the time window band of the accused recipient
    assert 'data-testid="accused"' in html and "Vendor A" in html
    assert 'data-testid="chart-fields"' in html and 'data-testid="chart-countries"' in html


def test_incident_page_has_timeline_charts_obligations_and_masked_people(
    client_for: Client, web: WebFixture
) -> None:
    html = client_for("viewer").get(f"/incidents/{web.incident_id}").text
    assert 'id="timeline"' in html
    assert 'data-testid="chart-countries"' in html and 'data-testid="chart-categories"' in html
    assert "Art. 33" in html and 'data-due="' in html
    people = re.findall(r"<td>([^<]*•••@[^<]*)</td>", html)
    assert people and not re.search(r"[\w.+-]+@[\w-]+\.[a-z]{2,}", html.split('id="people"')[1])


def test_pages_never_name_canary_addresses(client_for: Client, web: WebFixture) -> None:
    client = client_for("analyst")
    for url in ("/", f"/traces/{web.trace_id}", f"/incidents/{web.incident_id}", "/traces"):
        html = client.get(url).text
        assert not any(f"@{domain}" in html for domain in MAIL_DOMAINS), url
    export = client.get(f"/incidents/{web.incident_id}/people.csv").text
    assert not any(f"@{domain}" in export for domain in MAIL_DOMAINS)


def test_reveal_button_shows_one_person_and_logs_the_request(
    client_for: Client, web: WebFixture
) -> None:
    client = client_for("analyst")
    page = client.get(f"/incidents/{web.incident_id}").text
    first = re.search(r'data-testid="reveal-(\d+)"', page)
    assert first
    response = client.post(
        f"/incidents/{web.incident_id}/people/{first.group(1)}/reveal",
        data={"csrf_token": csrf_of(client)},
    )
    assert response.status_code == 200
    assert response.text.count('data-testid="revealed-row"') == 1
    _, entries = audit.list_events(web.ws, action="reveal", limit=1)
    assert entries[0].actor == "analyst" and entries[0].detail == {
        "customers": [int(first.group(1))]
    }
    assert entries[0].address


def test_viewer_gets_an_html_refusal_for_exports(client_for: Client, web: WebFixture) -> None:
    response = client_for("viewer").get(f"/incidents/{web.incident_id}/people.csv")
    assert response.status_code == 403 and "text/html" in response.headers["content-type"]
    assert "analyst" in response.text


def test_trace_upload_page_shows_progress_then_the_result(
    client_for: Client, web: WebFixture
) -> None:
    client = client_for("analyst")
    assert web.dump is not None
    with web.dump.open("rb") as fp:
        response = client.post(
            "/traces",
            data={"csrf_token": csrf_of(client)},
            files={"file": ("found-online.csv", fp, "text/csv")},
            follow_redirects=False,
        )
    assert response.status_code == 303
    job_url = response.headers["location"]
    assert "job-progress" in client.get(job_url).text
    final = _poll_job(client, job_url)
    assert 'data-state="done"' in final and "100%" in final
    follow = re.search(r'href="(/traces/\d+)" data-testid="job-follow"', final)
    assert follow and "found-online.csv" in client.get(follow.group(1)).text


def test_notices_sent_from_the_incident_page_reach_100_percent(
    client_for: Client, web: WebFixture
) -> None:
    client = client_for("analyst")
    token = csrf_of(client)
    opened = client.post(
        f"/traces/{web.trace_id}/incident",
        data={"csrf_token": token, "title": "Page incident"},
        follow_redirects=False,
    )
    incident_url = opened.headers["location"]
    client.post(incident_url + "/notices/prepare", data={"csrf_token": token})
    with SmtpSink() as sink:
        sent = client.post(
            incident_url + "/notices/send",
            data={"csrf_token": token, "smtp": f"{sink.host}:{sink.port}"},
            follow_redirects=False,
        )
        final = _poll_job(client, sent.headers["location"])
    assert 'data-state="done"' in final and 'data-testid="job-percent">100%' in final
    page = client.get(incident_url).text
    assert 'data-testid="notices-percent">100%' in page
    assert len(sink.messages) > 0


def test_send_form_with_a_bad_relay_says_how_to_write_it(
    client_for: Client, web: WebFixture
) -> None:
    client = client_for("analyst")
    response = client.post(
        f"/incidents/{web.incident_id}/notices/send",
        data={"csrf_token": csrf_of(client), "smtp": "no port here"},
    )
    assert response.status_code == 422 and "HOST:PORT" in response.text


def test_language_follows_the_browser_then_the_switch(app: FastAPI) -> None:
    client = new_client(app)
    sign_in(client, "viewer", PASSWORDS["viewer"])
    italian = client.get("/", headers={"Accept-Language": "it-IT,it;q=0.9,en;q=0.5"})
    assert "Panoramica" in italian.text and '<html lang="it">' in italian.text
    switched = client.get("/?lang=en", headers={"Accept-Language": "it"})
    assert "Overview" in switched.text and "canarino_lang=en" in switched.headers["set-cookie"]
    assert "Overview" in client.get("/", headers={"Accept-Language": "it"}).text
    assert "Panoramica" in client.get("/?lang=it").text


def test_sign_in_page_is_translated_too(anon: Any) -> None:
    assert "Accedi" in anon.get("/signin", headers={"Accept-Language": "it"}).text


def test_admin_changes_monitored_ranges_and_the_file_keeps_its_comments(
    fresh: WebFixture,
) -> None:
    client = new_client(create_app(fresh.ws))
    sign_in(client, "admin", PASSWORDS["admin"])
    token = csrf_of(client)
    config = fresh.ws.settings.workspace / "canarino.toml"
    response = client.post(
        "/settings",
        data={
            "csrf_token": token,
            "mail_domains": "canary-mail.it\nNuovo-Dominio.it\n",
            "phone_ranges": "+39 347 555\n",
            "security_contacts": "soc@example.it",
            "alert_webhooks": "https://hooks.example.it/canarino",
        },
    )
    assert response.status_code == 200 and 'data-testid="settings-saved"' in response.text
    text = config.read_text()
    assert text.startswith("# canarino workspace settings")
    assert '"nuovo-dominio.it"' in text and '"+39347555"' in text
    assert fresh.ws.settings.security_contacts == ["soc@example.it"]
    before = config.read_text()
    refused = client.post("/settings", data={"csrf_token": token, "mail_domains": "not a domain"})
    assert refused.status_code == 422 and "not a mail domain" in refused.text
    assert config.read_text() == before


def test_settings_api_refuses_an_empty_domain_list(fresh: WebFixture) -> None:
    client = new_client(create_app(fresh.ws))
    sign_in(client, "admin", PASSWORDS["admin"])
    response = client.put(
        "/api/settings", json={"mail_domains": []}, headers={CSRF_HEADER: csrf_of(client)}
    )
    assert response.status_code == 422 and "at least 1" in response.json()["detail"]


def test_admin_pages_list_users_tokens_and_audit(client_for: Client) -> None:
    client = client_for("admin")
    users_page = client.get("/users").text
    assert "analyst" in users_page and 'data-testid="tokens"' in users_page
    audit_page = client.get("/audit").text
    assert 'data-action="sign_in"' in audit_page


def test_unknown_page_is_an_html_404(client_for: Client) -> None:
    response = client_for("viewer").get("/no/such/page")
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]


def test_admin_adds_and_disables_users_and_tokens_from_the_page(fresh: WebFixture) -> None:
    client = new_client(create_app(fresh.ws))
    sign_in(client, "admin", PASSWORDS["admin"])
    token = csrf_of(client)
    added = client.post(
        "/users",
        data={"csrf_token": token, "username": "nuovo", "role": "viewer", "password": "x" * 14},
    )
    assert added.status_code == 200 and 'data-testid="disable-nuovo"' in added.text
    made = client.post("/tokens", data={"csrf_token": token, "name": "siem", "username": "nuovo"})
    secret = re.search(r'data-testid="new-token">([^<]+)<', made.text)
    assert secret and secret.group(1).startswith("cnr_")
    assert secret.group(1) not in client.get("/users").text  # shown once only
    client.post("/tokens/1/revoke", data={"csrf_token": token})
    client.post("/users/nuovo/disable", data={"csrf_token": token})
    page = client.get("/users").text
    assert 'data-testid="disable-nuovo"' not in page and 'data-testid="revoke-1"' not in page
    short = client.post(
        "/users", data={"csrf_token": token, "username": "y", "role": "viewer", "password": "short"}
    )
    assert short.status_code == 422 and "too short" in short.text


def test_hostile_paging_and_ids_are_refused_not_crashed(
    client_for: Client, web: WebFixture
) -> None:
    client = client_for("viewer")
    for url in (
        f"/incidents/{web.incident_id}?offset=abc",
        f"/incidents/{web.incident_id}?offset=-5",
        "/incidents/99999999999999999999",
        "/traces/0",
        "/audit?offset=1e9",
    ):
        response = client.get(url)
        assert response.status_code in (403, 404, 422), url
        assert "text/html" in response.headers["content-type"]
    page = client.get(f"/incidents/{web.incident_id}?offset=25").text
    assert 'data-testid="page-prev"' in page
