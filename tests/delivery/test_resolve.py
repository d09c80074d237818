from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from canarino import models as m
from canarino.delivery import in_doubt_notices, prepare_notices, resolve_in_doubt, send_notices
from canarino.errors import InvalidInput

from .support import Case, RecordingSink, address_of, notices_of, parse


def test_connection_dropped_mid_data_is_in_doubt_listed_and_resolved_explicitly(
    case: Case, smtp: RecordingSink
) -> None:
    prepare_notices(case.ws, case.incident_id)
    victim = notices_of(case.ws, case.incident_id, "email")[2]
    smtp.drop_during_data.add(address_of(case.ws, victim).lower())
    report = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port, workers=2)
    assert report.in_doubt == 1 and report.sent == case.emails - 1
    assert report.problems == {"connection lost during DATA: delivery uncertain": 1}
    doubt = in_doubt_notices(case.ws, case.incident_id)
    assert [d.notice_id for d in doubt] == [victim.id]
    assert doubt[0].last_error is not None and "during DATA" in doubt[0].last_error
    # A later run neither resends it nor forgets it.
    again = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert again.sent == 0 and again.in_doubt == 1
    assert again.problems == {"left in doubt by an earlier run": 1}
    assert resolve_in_doubt(case.ws, case.incident_id, "resend") == 1
    final = send_notices(case.ws, case.incident_id, host=smtp.host, port=smtp.port)
    assert final.sent == 1 and in_doubt_notices(case.ws, case.incident_id) == []
    ids = Counter(parse(msg.data)["Message-ID"] for msg in smtp.messages)
    assert ids[victim.message_id] == 2  # the relay had it: a duplicate, same Message-ID
    assert sum(ids.values()) == case.emails + 1
    row = next(r for r in notices_of(case.ws, case.incident_id) if r.id == victim.id)
    assert row.state == "sent" and row.events is not None
    assert row.events[0]["event"] == "in_doubt_resolved"
    assert row.events[0]["resolution"] == "resend"


def test_in_doubt_needs_an_expired_lease_and_mark_sent_settles_it(case: Case) -> None:
    prepare_notices(case.ws, case.incident_id)
    stuck, live = notices_of(case.ws, case.incident_id, "email")[:2]
    now = datetime.now(UTC)
    with case.ws.db.session() as s:
        s.execute(
            update(m.Notice)
            .where(m.Notice.id == stuck.id)
            .values(state="sending", attempts=1, lease_until=now - timedelta(seconds=1))
        )
        s.execute(
            update(m.Notice)
            .where(m.Notice.id == live.id)
            .values(state="sending", attempts=1, lease_until=now + timedelta(minutes=5))
        )
    assert [d.notice_id for d in in_doubt_notices(case.ws, case.incident_id)] == [stuck.id]
    later = now + timedelta(minutes=6)
    assert len(in_doubt_notices(case.ws, case.incident_id, now=later)) == 2
    with pytest.raises(InvalidInput, match="not in doubt"):
        resolve_in_doubt(case.ws, case.incident_id, "mark_sent", notice_ids=[live.id])
    with pytest.raises(InvalidInput, match="unknown resolution"):
        resolve_in_doubt(case.ws, case.incident_id, "ignore")  # type: ignore[arg-type]
    assert resolve_in_doubt(case.ws, case.incident_id, "mark_sent", notice_ids=[stuck.id]) == 1
    row = next(r for r in notices_of(case.ws, case.incident_id) if r.id == stuck.id)
    assert row.state == "sent" and row.sent_at is not None
