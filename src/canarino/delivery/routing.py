"""Which mailbox provider a recipient belongs to, and the per-provider pace of sending."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping

from ..workspace import Workspace

# Mailbox providers that share one reputation and one rate limit across their domains.
_PROVIDERS: Mapping[str, str] = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "outlook.com": "microsoft",
    "msn.com": "microsoft",
    "yahoo.com": "yahoo",
    "ymail.com": "yahoo",
    "aol.com": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
    "libero.it": "italiaonline",
    "virgilio.it": "italiaonline",
    "inwind.it": "italiaonline",
    "gmx.de": "united-internet",
    "gmx.net": "united-internet",
    "web.de": "united-internet",
    "orange.fr": "orange",
    "wanadoo.fr": "orange",
}
_PROVIDER_PREFIXES = (
    ("hotmail.", "microsoft"),
    ("live.", "microsoft"),
    ("outlook.", "microsoft"),
    ("yahoo.", "yahoo"),
)


def provider_of(domain: str) -> str | None:
    """The mailbox provider a recipient domain belongs to, if it is a known big one."""
    d = domain.strip().lower()
    if d in _PROVIDERS:
        return _PROVIDERS[d]
    return next((name for prefix, name in _PROVIDER_PREFIXES if d.startswith(prefix)), None)


def _route(ws: Workspace, address: str) -> str:
    domain = address.rpartition("@")[2].lower()
    known = provider_of(domain)
    if known:
        return known
    # A small domain can identify a person, so only its keyed pseudonym is stored.
    return "d:" + ws.vault.pseudonyms.digest("mail-domain", domain).hex()[:16]


class _Bucket:
    """A token bucket: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.floor, self.burst = rate, rate / 16, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def ready_at(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1

    def slow_down(self) -> None:
        # Providers answer a sender that goes too fast with 4xx: halve the pace.
        self.rate = max(self.floor, self.rate / 2)


class _Scheduler:
    """Hands notices to workers: ready ones first, per provider at the bucket's pace."""

    def __init__(self, jobs: Iterable[tuple[int, str]], rate: float | None, burst: float) -> None:
        self._cv = threading.Condition()
        self._ready: dict[str, deque[int]] = {}
        for notice_id, route in jobs:
            self._ready.setdefault(route, deque()).append(notice_id)
        self._routes = deque(self._ready)
        self._delayed: list[tuple[float, int, int, str]] = []
        self._outstanding = sum(len(q) for q in self._ready.values())
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, _Bucket] = {}
        self._closed = False
        self._seq = 0

    def _bucket(self, route: str) -> _Bucket | None:
        if self._rate is None:
            return None
        if route not in self._buckets:
            self._buckets[route] = _Bucket(self._rate, self._burst)
        return self._buckets[route]

    def take(self) -> tuple[int, str] | None:
        """The next ``(notice_id, route)``, waiting for its turn; ``None`` when none is left."""
        with self._cv:
            while True:
                if self._closed or self._outstanding <= 0:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, nid, route = heapq.heappop(self._delayed)
                    if route not in self._ready or not self._ready[route]:
                        self._ready.setdefault(route, deque())
                        self._routes.append(route)
                    self._ready[route].appendleft(nid)
                wake = self._delayed[0][0] if self._delayed else None
                for _ in range(len(self._routes)):
                    route = self._routes[0]
                    queue = self._ready.get(route)
                    if not queue:
                        self._routes.popleft()
                        self._ready.pop(route, None)
                        continue
                    bucket = self._bucket(route)
                    at = bucket.ready_at(now) if bucket else now
                    if at <= now:
                        if bucket:
                            bucket.take()
                        self._routes.rotate(-1)
                        return queue.popleft(), route
                    wake = at if wake is None else min(wake, at)
                    self._routes.rotate(-1)
                self._cv.wait(None if wake is None else max(0.0, wake - now))

    def retry(self, notice_id: int, route: str, delay: float, *, slow_down: bool) -> None:
        """Take ``notice_id`` back, to be handed out again after ``delay`` seconds."""
        with self._cv:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, notice_id, route))
            bucket = self._bucket(route)
            if slow_down and bucket:
                bucket.slow_down()
            self._cv.notify_all()

    def finish(self) -> None:
        """One notice is settled for this run."""
        with self._cv:
            self._outstanding -= 1
            self._cv.notify_all()

    def close(self) -> None:
        """Stop handing out work."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def outstanding(self) -> int:
        """Notices not yet settled in this run."""
        with self._cv:
            return self._outstanding
