"""canarino: find out fast that shared customer data leaked, who leaked it, and respond.

The library is the product; the ``canarino`` command and the web app call these functions.
"""

from .alerts import list_alerts, raise_alerts
from .callers import check_code, list_contacts, register_contact, report_contact
from .campaigns import attach_campaign, build_campaigns, list_campaigns
from .customers import ImportReport, import_customers
from .delivery import (
    in_doubt_notices,
    prepare_notices,
    print_letters,
    record_bounces,
    resolve_in_doubt,
    send_notices,
)
from .demo import run_demo
from .errors import (
    CanarinoError,
    DeliveryError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    WorkspaceError,
)
from .incidents import IncidentView, list_incidents, open_incident, show_incident
from .recipients import add_recipient, list_recipients
from .selfcheck import lookup_contact, situation
from .settings import Settings, load_settings
from .shares import ShareResult, create_honey_share, create_share
from .trace import TraceReport, get_trace_report, list_traces, run_trace
from .workspace import Workspace, init_workspace, open_workspace

__version__ = "0.1.0"

__all__ = [
    "CanarinoError",
    "DeliveryError",
    "ImportReport",
    "IncidentView",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "Settings",
    "ShareResult",
    "TraceReport",
    "Workspace",
    "WorkspaceError",
    "add_recipient",
    "attach_campaign",
    "build_campaigns",
    "check_code",
    "create_honey_share",
    "create_share",
    "get_trace_report",
    "import_customers",
    "in_doubt_notices",
    "init_workspace",
    "list_alerts",
    "list_campaigns",
    "list_contacts",
    "list_incidents",
    "list_recipients",
    "list_traces",
    "load_settings",
    "lookup_contact",
    "open_incident",
    "open_workspace",
    "prepare_notices",
    "print_letters",
    "raise_alerts",
    "record_bounces",
    "register_contact",
    "report_contact",
    "resolve_in_doubt",
    "run_demo",
    "run_trace",
    "send_notices",
    "show_incident",
    "situation",
]
