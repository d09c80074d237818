"""The incident room and the public pages in Chromium, against the real app on loopback.

Each step saves a screenshot to docs/screenshots/ (linked from docs/web-tour.md).
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from canarino import incidents
from canarino import models as m
from canarino.callers import register_contact
from canarino.settings import load_settings
from canarino.testing import SmtpSink, make_customers, make_dump
from canarino.web.testing import PASSWORDS, make_web_workspace
from canarino.workspace import Workspace

from .browser_support import browser, chromium_path, serve, shot

pytestmark = pytest.mark.slow


@dataclass
class Site:
    """One running app with its workspace, mail sink and browser."""

    ws: Workspace
    base: str
    app: FastAPI
    sink: SmtpSink
    chromium: Any
    dump: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, cheap_hashes: None) -> Iterator[Site]:
    """Users, 200 customers, three shares; no trace yet: the browser makes it."""
    chromium_path()
    folder = tmp_path_factory.mktemp("browser")
    fx = make_web_workspace(folder, customers=200, trace=False, incident=False)
    fx.ws.close()
    # A found copy of Vendor B's export, thinned to half of its rows: the canaries are
    # drawn at random per share, and half keeps the chance that none leaks below 1e-6.
    dump = folder / "found-online.csv"
    make_dump(folder / "exports" / "Vendor_B.csv", dump, fraction=0.5, seed=5)
    with SmtpSink() as sink:
        ws = Workspace.open(load_settings(folder / "ws", smtp_relay=f"127.0.0.1:{sink.port}"))
        try:
            with serve(ws) as (base, app), browser() as chromium:
                yield Site(ws, base, app, sink, chromium, dump)
        finally:
            ws.close()


def new_page(site: Site, lang: str = "en-GB") -> Any:
    context = site.chromium.new_context(locale=lang, viewport={"width": 1200, "height": 900})
    return context.new_page()


def sign_in(site: Site, page: Any, role: str, *, screenshot: str | None = None) -> None:
    page.goto(site.base + "/signin")
    page.fill("#username", role)
    page.fill("#password", PASSWORDS[role])
    if screenshot:
        shot(page, screenshot)
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector("[data-testid=current-user]")
    assert page.inner_text("[data-testid=current-user]") == role


def wait_done(page: Any, seconds: float = 60) -> None:
    """Wait until the job page's progress partial says the job stopped running."""
    page.wait_for_selector(
        "[data-testid=job-progress]:not([data-state=running])", timeout=seconds * 1000
    )


def mail_text(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=email.policy.default)
    return str(message.get_content())  # type: ignore[attr-defined]


def incident_id_of(site: Site) -> int:
    with site.ws.db.session() as s:
        found = s.scalars(select(m.Incident.id).order_by(m.Incident.id.desc())).first()
    assert found is not None, "the incident flow did not run first"
    return int(found)


# --- the incident room -----------------------------------------------------------------


def test_analyst_traces_a_dump_opens_an_incident_and_sends_notices_to_100_percent(
    site: Site,
) -> None:
    page = new_page(site)
    sign_in(site, page, "analyst", screenshot="01-signin")
    assert "Vendor B" in page.inner_text("main")
    shot(page, "02-overview")

    page.goto(site.base + "/traces")
    page.set_input_files("[data-testid=trace-file]", str(site.dump))
    shot(page, "03-trace-upload")
    page.click("[data-testid=trace-submit]")
    wait_done(page)
    assert page.get_attribute("[data-testid=job-progress]", "data-state") == "done"
    assert page.inner_text("[data-testid=job-percent]") == "100%"
    shot(page, "04-trace-progress")

    page.click("[data-testid=job-follow]")
    page.wait_for_selector("[data-testid=suspects]")
    accused = page.locator("[data-testid=suspects] tr", has=page.locator("[data-testid=accused]"))
    assert accused.count() == 1 and "Vendor B" in accused.inner_text()
    assert "Vendor A" not in accused.inner_text()
    assert page.locator("[data-testid=attribution-picture]").is_visible()
    shot(page, "05-trace-attribution")

    page.click("[data-testid=open-incident]")
    page.wait_for_selector("[data-testid=obligations]")
    clocks = page.locator("[data-testid=obligations] time.countdown")
    assert clocks.count() > 0 and clocks.first.is_visible()
    first = clocks.first.inner_text()
    assert re.search(r"\d", first), first
    # The clocks tick in the browser (app.js, every second).
    page.wait_for_function(
        "t => document.querySelector('[data-testid=obligations] time.countdown').textContent !== t",
        arg=first,
        timeout=5000,
    )
    assert "Art. 33" in page.inner_text("[data-testid=obligations]")
    shot(page, "06-incident")

    page.click("[data-testid=prepare-notices]")
    page.wait_for_selector("[data-testid=notices-percent]")
    assert page.inner_text("[data-testid=notices-percent]") == "0%"
    people = int(page.inner_text("[data-testid=people-count]").replace(",", "").replace(".", ""))
    shot(page, "07-notices-prepared")

    page.fill("#smtp", f"{site.sink.host}:{site.sink.port}")
    page.click("[data-testid=send-notices]")
    wait_done(page)
    assert page.inner_text("[data-testid=job-percent]") == "100%"
    shot(page, "08-notices-sending")
    page.click("[data-testid=job-follow]")
    assert page.inner_text("[data-testid=notices-percent]") == "100%"
    shot(page, "09-notices-sent")

    sent_to = {r for msg in site.sink.messages for r in msg.recipients}
    assert people > 0 and len(sent_to) >= people
    page.context.close()


def test_viewer_sees_no_send_button_and_a_forged_post_is_refused(site: Site) -> None:
    incident = incident_id_of(site)
    page = new_page(site)
    sign_in(site, page, "viewer")
    page.goto(f"{site.base}/incidents/{incident}")
    assert page.locator("[data-testid=obligations]").is_visible()
    assert page.locator("[data-testid=send-notices]").count() == 0
    assert page.locator("[data-testid=prepare-notices]").count() == 0
    assert page.locator("[data-testid^=reveal-]").count() == 0
    shot(page, "10-incident-viewer")
    before = len(site.sink.messages)
    # The viewer's own session and CSRF token, posting to the analyst's form by hand.
    status = page.evaluate(
        """async ([url, relay]) => {
            const token = document.querySelector('input[name=csrf_token]').value;
            const body = new URLSearchParams({csrf_token: token, smtp: relay});
            const r = await fetch(url, {method: 'POST', body, redirect: 'manual'});
            return r.status;
        }""",
        [f"/incidents/{incident}/notices/send", f"{site.sink.host}:{site.sink.port}"],
    )
    assert status == 403
    time.sleep(0.3)
    assert len(site.sink.messages) == before
    page.context.close()


# --- the public pages ------------------------------------------------------------------


def test_self_check_answers_neutrally_and_mails_only_a_listed_address(site: Site) -> None:
    incident = incident_id_of(site)
    affected = incidents.affected_people(site.ws, incident, limit=1, reveal=True).items[0]
    stranger = make_customers(1, seed=999)[0]["email"]
    site.sink.messages.clear()
    page = new_page(site)
    answers = []
    for n, contact in enumerate([affected.email, stranger]):
        page.goto(site.base + "/public/check?lang=en")
        if n == 0:
            shot(page, "11-public-check")
        page.fill("#contact", contact)
        page.click("button[type=submit]")
        answers.append(page.inner_text("main"))
    assert answers[0] == answers[1]
    shot(page, "12-public-check-sent")
    public = site.app.state.public
    assert public.mailer.wait_idle(20)
    assert [msg.recipients for msg in site.sink.messages] == [[affected.email]]
    link = re.search(r"(/public/check/open/\S+)", mail_text(site.sink.messages[0].data))
    assert link is not None
    page.goto(site.base + link.group(1))
    page.click("button[type=submit]")
    situation = page.inner_text("main")
    assert "involved" in situation.lower() or "affected" in situation.lower(), situation
    shot(page, "13-public-situation")
    page.context.close()


def test_caller_verification_says_yes_to_a_code_and_no_with_a_report_form(site: Site) -> None:
    reg = register_contact(site.ws, 3, "phone", "your notice about the leak", "Alex (Support)")
    page = new_page(site)
    page.goto(site.base + "/public/verify?lang=en")
    shot(page, "14-public-verify")
    page.fill("#code", reg.code)
    page.click("form[action='/public/verify/code'] button")
    assert "Alex (Support) is contacting you" in page.inner_text("main")
    shot(page, "15-public-verify-yes")

    page.goto(site.base + "/public/verify?lang=en")
    page.fill("#code", "ZZZZ-ZZZZ-ZZZZ")
    page.click("form[action='/public/verify/code'] button")
    assert "not from us" in page.inner_text("h1")
    page.fill("#r-contact", make_customers(1, seed=998)[0]["phone"])
    page.check("input[value=sms]")
    page.fill("#r-caller", "+39 02 0000 0000")
    page.fill("#r-text", "They asked for the code I received.")
    shot(page, "16-public-verify-no")
    with site.ws.db.session() as s:
        before = len(s.scalars(select(m.Sighting)).all())
    page.click("form[action='/public/verify/report'] button")
    assert "Thank you for your report" in page.inner_text("h1")
    with site.ws.db.session() as s:
        rows = s.scalars(select(m.Sighting).order_by(m.Sighting.id)).all()
    assert len(rows) == before + 1
    assert rows[-1].channel == "sms" and rows[-1].evidence["caller"] == "+39 02 0000 0000"
    page.context.close()


def test_chromium_missing_is_a_skip_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        chromium_path()
