"""Long work started from a page (trace, prepare, send) in a thread, with polled progress."""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..errors import CanarinoError, NotFound
from ..models import utcnow

log = logging.getLogger("canarino.web")
Progress = Callable[[int, int], None]


@dataclass
class Job:
    """One piece of background work and how far it got."""

    id: str
    kind: str
    owner: str
    target: str = ""
    done: int = 0
    total: int = 0
    state: Literal["running", "done", "failed"] = "running"
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: datetime = field(default_factory=utcnow)

    @property
    def percent(self) -> int | None:
        """Progress in percent; ``None`` while the total is unknown."""
        if self.state != "running":
            return 100
        if self.total <= 0:
            return None
        return min(99, int(100 * self.done / self.total))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "result": self.result,
            "error": self.error,
            "started_at": self.started_at.isoformat(timespec="seconds"),
        }


class Jobs:
    """The jobs of one app; the oldest finished ones are forgotten past ``keep``."""

    def __init__(self, keep: int = 200) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def start(
        self,
        kind: str,
        owner: str,
        work: Callable[[Progress], dict[str, Any]],
        *,
        target: str = "",
    ) -> Job:
        """Run ``work(progress)`` in a thread; its dict return value becomes the result."""
        job = Job(secrets.token_urlsafe(12), kind, owner, target)

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        def run() -> None:
            try:
                job.result = work(progress)
                job.state = "done"
            except CanarinoError as exc:
                job.error, job.state = str(exc), "failed"
            except Exception:
                log.exception("%s job failed", kind)
                job.error, job.state = "an unexpected error occurred; it has been logged", "failed"

        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs.values()))
                if oldest.state == "running":
                    break
                self._jobs.popitem(last=False)
        threading.Thread(target=run, name=f"canarino-{kind}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job:
        """The job ``job_id``."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound("no such job; it may have finished long ago", hint="start it again")
        return job

    def list(self, kind: str | None = None) -> list[Job]:
        """Known jobs, newest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in reversed(jobs) if kind is None or j.kind == kind]
