from __future__ import annotations

import pytest

from canarino.delivery import (
    in_doubt_notices,
    notice_states,
    prepare_notices,
    send_notices,
)
from canarino.errors import NotFound

from .support import (
    Case,
    free_port,
)


def test_prepare_and_send_refuse_an_unknown_incident(case: Case) -> None:
    with pytest.raises(NotFound):
        prepare_notices(case.ws, 999)
    with pytest.raises(NotFound):
        send_notices(case.ws, 999, host="127.0.0.1", port=free_port())
    with pytest.raises(NotFound):
        notice_states(case.ws, 999)
    with pytest.raises(NotFound):
        in_doubt_notices(case.ws, 999)
