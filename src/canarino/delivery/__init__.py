"""Notice delivery: the outbox, SMTP sending, bounces and printed letters.

The outbox holds one row per (incident, person, channel) under a stable idempotency key,
so preparing again adds nothing. A row moves ``queued → sending → sent | failed |
bounced``; ``sending`` carries a lease (``lease_until``) and is committed before the
message is handed to the relay, ``sent`` right after the relay's 250 reply, one row at a
time. Exactly-once is impossible over SMTP: a run that stops between those two commits
leaves the row in ``sending``. Once its lease has expired, :func:`in_doubt_notices` lists
it and :func:`resolve_in_doubt` settles it by a person's decision (``resend`` under the
same Message-ID, or ``mark_sent``); nothing is resent silently.

People without a usable e-mail address, and people whose e-mail bounced for good, get a
letter; people with neither an e-mail nor a postal address get a ``none`` row in state
``failed`` that says so. Text messages (``sms``) come next to those, as configured
(``sms_when``): to people no e-mail reaches, or to everyone with a mobile number. Every stored reason is free of addresses and other personal data.

The package splits the work by meaning: :mod:`.outbox` (states, rows, problems),
:mod:`.prepare` (render and seal), :mod:`.send` (workers and journal) over
:mod:`.smtp` (one relay session), :mod:`.routing` (providers and their pace) and
:mod:`.dkim`, :mod:`.resolve` (notices in doubt), :mod:`.bounces`, :mod:`.letters`, and
:mod:`.authority` (authority reports exported or e-mailed the same way, recorded), and
:mod:`.sms` (text messages through an HTTP provider, the same outbox and states).
Every public name is importable from ``canarino.delivery``.
"""

from .authority import (
    ReportDelivery,
    export_report,
    report_deliveries,
    report_message_id,
    send_report,
)
from .bounces import BounceReport, fetch_bounces, record_bounces
from .dkim import DkimKey
from .letters import LetterReport, print_letters
from .outbox import (
    BOUNCED,
    EMAIL,
    FAILED,
    INVALID_EMAIL,
    LETTER,
    MAX_ATTEMPTS,
    NO_CHANNEL,
    NO_EMAIL,
    NONE,
    NOTICE_CONTEXT,
    QUEUED,
    SENDING,
    SENT,
    STATES,
    NoticeProblem,
    Progress,
    notice_problems,
    notice_states,
)
from .prepare import PrepareReport, prepare_notices
from .resolve import InDoubtNotice, in_doubt_notices, resolve_in_doubt
from .routing import provider_of
from .send import SendReport, send_notices
from .sms import SMS, SMS_POLICIES, SmsProvider, send_sms, usable_phone

__all__ = [
    "BOUNCED",
    "EMAIL",
    "FAILED",
    "INVALID_EMAIL",
    "LETTER",
    "MAX_ATTEMPTS",
    "NONE",
    "NOTICE_CONTEXT",
    "NO_CHANNEL",
    "NO_EMAIL",
    "QUEUED",
    "SENDING",
    "SENT",
    "SMS",
    "SMS_POLICIES",
    "STATES",
    "BounceReport",
    "DkimKey",
    "InDoubtNotice",
    "LetterReport",
    "NoticeProblem",
    "PrepareReport",
    "Progress",
    "ReportDelivery",
    "SendReport",
    "SmsProvider",
    "export_report",
    "fetch_bounces",
    "in_doubt_notices",
    "notice_problems",
    "notice_states",
    "prepare_notices",
    "print_letters",
    "provider_of",
    "record_bounces",
    "report_deliveries",
    "report_message_id",
    "resolve_in_doubt",
    "send_notices",
    "send_report",
    "send_sms",
    "usable_phone",
]
