from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from canarino import audit, users
from canarino.testing import SmtpSink
from canarino.web.app import create_app
from canarino.web.testing import WebFixture

from .conftest import new_client

PROBLEM = "application/problem+json"


@pytest.fixture
def api(app: FastAPI, web: WebFixture) -> Callable[[str], Any]:
    """An API client with a bearer token for ``role``."""

    def make(role: str) -> Any:
        secret, _ = users.add_token(web.ws, f"test {role}", role)
        return new_client(app, headers={"Authorization": f"Bearer {secret}"})

    return make


def _wait(client: Any, location: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(location).json()
        if job["state"] != "running":
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job still running after {seconds} s")


def test_lists_are_pages_with_a_total(api: Callable[[str], Any]) -> None:
    client = api("viewer")
    whole = client.get("/api/recipients").json()
    assert whole["total"] >= 3 and whole["limit"] == 50 and whole["offset"] == 0
    page = client.get("/api/recipients", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == whole["total"]
    assert page["items"] == whole["items"][1:2]
    beyond = client.get("/api/recipients", params={"offset": 1000}).json()
    assert beyond["items"] == [] and beyond["total"] == whole["total"]
    shares = client.get("/api/shares", params={"limit": 2}).json()
    assert len(shares["items"]) == 2 and shares["total"] == 3


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "many"}]
)
def test_bad_paging_is_a_422_problem(api: Callable[[str], Any], params: dict[str, Any]) -> None:
    response = api("viewer").get("/api/shares", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 422 and body["title"] and body["errors"]


def test_missing_things_are_404_problems(api: Callable[[str], Any]) -> None:
    client = api("viewer")
    for url in ("/api/incidents/99999", "/api/traces/99999", "/api/shares/99999", "/api/nope"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["status"] == 404
    assert "no incident 99999" in client.get("/api/incidents/99999").json()["detail"]


def test_wrong_method_is_a_405_problem(api: Callable[[str], Any]) -> None:
    response = api("viewer").delete("/api/me")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith(PROBLEM)
    both = api("viewer").delete("/api/recipients")
    assert both.status_code == 405 and both.headers["allow"] == "GET, POST"


def test_library_refusals_map_to_problem_statuses(api: Callable[[str], Any]) -> None:
    client = api("analyst")
    duplicate = client.post("/api/recipients", json={"name": "Vendor A", "kind": "vendor"})
    assert duplicate.status_code == 422 and "already exists" in duplicate.json()["detail"]
    orphan = client.post(
        "/api/recipients", json={"name": "Agent X", "kind": "employee", "parent": "Nobody"}
    )
    assert orphan.status_code == 404
    bad_kind = client.post("/api/recipients", json={"name": "Q", "kind": "alien"})
    assert bad_kind.status_code == 422 and bad_kind.json()["errors"][0]["loc"][-1] == "kind"


def test_hostile_bodies_are_refused_without_echo(api: Callable[[str], Any]) -> None:
    client = api("analyst")
    secretish = "<script>alert(1)</script>@evil.example"
    not_json = client.post(
        "/api/recipients",
        content=b"\xff\xfe{not json",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code in (400, 422)
    assert not_json.headers["content-type"].startswith(PROBLEM)
    wrong_type = client.post("/api/incidents", json={"trace_id": secretish})
    assert wrong_type.status_code == 422 and secretish not in wrong_type.text
    too_long = client.post("/api/recipients", json={"name": "x" * 5000})
    assert too_long.status_code == 422


def test_unexpected_errors_are_500_problems_without_internals(web: WebFixture) -> None:
    app = create_app(web.ws)

    def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    app.add_api_route("/api/boom", boom, dependencies=[])
    client = new_client(app, raise_server_exceptions=False)
    response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "internal detail" not in response.text


def test_openapi_describes_only_the_api_and_its_bearer_auth(api: Callable[[str], Any]) -> None:
    schema = api("viewer").get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert schema["paths"] and all(p.startswith("/api/") for p in schema["paths"])
    assert "/api/incidents/{incident_id}/people" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    listed = schema["paths"]["/api/recipients"]["get"]["responses"]["200"]
    assert "total" in str(schema["components"]["schemas"]) and listed


def test_people_are_masked_and_each_view_is_audited(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    client = api("viewer")
    before, _ = audit.list_events(web.ws, action="view")
    page = client.get(f"/api/incidents/{web.incident_id}/people", params={"limit": 5}).json()
    assert page["total"] > 5 and len(page["items"]) == 5
    for person in page["items"]:
        assert not person["revealed"]
        assert "•••@" in person["email"] and person["email"].count("•••") == 2
        assert person["phone"] == "" or "•••" in person["phone"]
    after, rows = audit.list_events(web.ws, action="view", limit=1)
    assert after == before + 1
    assert rows[0].actor == "viewer (token)"
    assert rows[0].detail["customers"] == [p["customer_id"] for p in page["items"]]


def test_reveal_is_for_analysts_and_is_logged_without_the_data(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    url = f"/api/incidents/{web.incident_id}/people"
    response = api("analyst").get(url, params={"limit": 3, "reveal": "true"})
    people = response.json()["items"]
    assert all(p["revealed"] and "@" in p["email"] and "•" not in p["email"] for p in people)
    _, rows = audit.list_events(web.ws, action="reveal", limit=1)
    entry = rows[0]
    assert entry.actor == "analyst (token)" and entry.target.startswith("incident ")
    assert entry.detail["customers"] == [p["customer_id"] for p in people]
    assert all(p["email"] not in str(entry.as_dict()) for p in people)


def test_export_is_logged_and_cells_cannot_run_as_formulas(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    response = api("analyst").get(f"/api/incidents/{web.incident_id}/people.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    total = api("viewer").get(f"/api/incidents/{web.incident_id}").json()["people"]
    assert len(rows) == total
    assert all(not r["name"].startswith(("=", "+", "-", "@")) for r in rows)
    _, entries = audit.list_events(web.ws, action="export", limit=1)
    assert entries[0].detail == {"rows": total, "format": "csv"}


def test_audit_log_is_paged_and_admin_only(api: Callable[[str], Any]) -> None:
    client = api("admin")
    page = client.get("/api/audit", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["total"] >= 2
    assert {"at", "actor", "action", "target", "address"} <= set(page["items"][0])
    assert api("analyst").get("/api/audit").status_code == 403


def test_upload_is_traced_in_the_background(api: Callable[[str], Any], web: WebFixture) -> None:
    client = api("analyst")
    assert web.dump is not None
    with web.dump.open("rb") as fp:
        response = client.post("/api/traces", files={"file": ("leak.csv", fp, "text/csv")})
    assert response.status_code == 202
    job = _wait(client, response.headers["location"])
    assert job["state"] == "done" and job["percent"] == 100
    report = client.get(f"/api/traces/{job['result']['trace_id']}").json()
    assert report["source"] == "leak.csv"
    assert report["suspects"][0]["recipient"] == "Vendor A"
    assert not list((web.ws.settings.workspace / "uploads").rglob("*.csv"))


def test_a_broken_upload_fails_its_job_with_a_clear_message(
    api: Callable[[str], Any],
) -> None:
    client = api("analyst")
    response = client.post("/api/traces", files={"file": ("empty.csv", b"", "text/csv")})
    job = _wait(client, response.headers["location"])
    assert job["state"] == "failed" and job["percent"] == 100
    assert "empty.csv" in job["error"]


def test_incident_lifecycle_and_notices_reach_an_smtp_sink(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    client = api("analyst")
    opened = client.post(
        "/api/incidents",
        json={
            "trace_id": web.trace_id,
            "title": "API incident",
            "aware_at": "2026-11-20T10:00:00+01:00",
        },
    )
    assert opened.status_code == 201
    incident = opened.json()
    assert incident["people"] > 0 and incident["obligations"]
    risk = client.post(
        f"/api/incidents/{incident['id']}/risk", json={"level": "high_risk", "reason": "test"}
    )
    assert risk.json()["risk"] == "high_risk"
    prepared = client.post(f"/api/incidents/{incident['id']}/notices/prepare").json()
    assert prepared["prepared"] > 0
    with SmtpSink() as sink:
        response = client.post(
            f"/api/incidents/{incident['id']}/notices/send",
            json={"smtp": f"{sink.host}:{sink.port}"},
        )
        assert response.status_code == 202
        job = _wait(client, response.headers["location"])
    assert job["state"] == "done" and job["percent"] == 100, job
    assert job["result"]["sent"] == prepared["prepared"] == len(sink.messages)
    states = client.get(f"/api/incidents/{incident['id']}/notices").json()
    assert states.get("sent") == prepared["prepared"]


def test_unreachable_relay_fails_the_job_and_keeps_notices_queued(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    client = api("analyst")
    incident = client.post("/api/incidents", json={"trace_id": web.trace_id}).json()
    client.post(f"/api/incidents/{incident['id']}/notices/prepare")
    response = client.post(
        f"/api/incidents/{incident['id']}/notices/send", json={"smtp": "127.0.0.1:9"}
    )
    job = _wait(client, response.headers["location"])
    assert job["state"] == "failed" and job["error"]
    states = client.get(f"/api/incidents/{incident['id']}/notices").json()
    assert "sent" not in states and states.get("queued", 0) > 0


def test_share_made_through_the_api_can_be_downloaded_and_is_logged(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    client = api("analyst")
    made = client.post(
        "/api/shares", json={"recipient": "Vendor B", "fields": ["first_name", "email"]}
    )
    assert made.status_code == 201
    body = made.json()
    download = client.get(body["download"])
    assert download.status_code == 200
    assert download.text.splitlines()[0] == "first_name,email"
    assert len(download.text.splitlines()) == body["rows"] + 1
    _, entries = audit.list_events(web.ws, action="export", limit=1)
    assert entries[0].target == f"share {body['share_id']}"
    bad = client.post("/api/shares", json={"recipient": "Vendor B", "fields": ["shoe_size"]})
    assert bad.status_code == 422 and "shoe_size" in bad.json()["detail"]


def test_sightings_are_recorded_and_never_return_the_contact(api: Callable[[str], Any]) -> None:
    client = api("analyst")
    contact = "someone.unknown@canary-mail.it"
    recorded = client.post(
        "/api/sightings",
        json=[{"channel": "email", "contact": contact, "seen_at": "2026-11-20T10:00:00+00:00"}],
    )
    assert recorded.status_code == 200 and recorded.json()["recorded"] == 1
    listed = client.get("/api/sightings")
    assert listed.json()["total"] >= 1 and contact not in listed.text
    assert client.get("/api/sightings/attribution").status_code == 200


def test_counts_answer_like_the_cli(api: Callable[[str], Any]) -> None:
    client = api("viewer")
    assert client.get("/api/customers/count").json()["count"] == 300
    # Sizing a design can take minutes of CPU: it stays a command, not a web request.
    assert client.get("/api/design", params={"recipients": 100}).status_code == 404


def test_admin_manages_users_through_the_api(api: Callable[[str], Any]) -> None:
    client = api("admin")
    made = client.post(
        "/api/users",
        json={"username": "newcomer", "password": "long-enough-pass", "role": "viewer"},
    )
    assert made.status_code == 201 and "password" not in made.text
    short = client.post(
        "/api/users", json={"username": "shorty", "password": "short", "role": "viewer"}
    )
    assert short.status_code == 422 and "short" not in short.json()["detail"].split("password")[0]
    disabled = client.post("/api/users/newcomer/disable")
    assert disabled.json()["disabled"] is True
    assert any(u["username"] == "newcomer" for u in client.get("/api/users").json())


def test_unknown_query_parameters_and_loose_types_are_refused(
    api: Callable[[str], Any], web: WebFixture
) -> None:
    client = api("analyst")
    typo = client.get("/api/shares", params={"limti": 5})
    assert typo.status_code == 422 and "limti" in typo.json()["detail"]
    for body in (
        {"trace_id": web.trace_id, "occurred_at": 0},
        {"trace_id": str(web.trace_id)},
        {"trace_id": web.trace_id, "surprise": True},
    ):
        assert client.post("/api/incidents", json=body).status_code == 422, body
    sighting = {"channel": "email", "contact": "x@y.it", "seen_at": "2026-11-20T10:00:00Z"}
    assert client.post("/api/sightings", json=[{**sighting, "uses_name": 0}]).status_code == 422
