"""Campaigns: evidence sightings grouped by who sent them, where they link to and their text.

Two evidence sightings belong to one campaign when they share sender infrastructure (a
DKIM domain, a sending IP's /24, a Return-Path domain, a caller number), a linked domain,
or a message template (SimHashes at most :data:`MAX_DISTANCE` bits apart). Campaigns are
the connected groups. Each keeps a stable key, that of its earliest sighting, so a
rebuild changes neither its key nor the incident it was attached to; when a new sighting
joins two campaigns, the older key survives and keeps the incident.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select

from . import models as m
from . import store
from .errors import NotFound
from .workspace import Workspace

# 20 templates x 250 copies with other names and numbers: at 11 bits no two templates
# merged and 19 of 5,000 copies stayed alone; at 12 two unrelated templates merged.
MAX_DISTANCE = 11
MAX_LINKS = 256
# Shared by unrelated senders: linking on them would merge every campaign into one.
COMMON_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "yahoo.com",
        "icloud.com",
        "libero.it",
        "bit.ly",
        "tinyurl.com",
        "t.co",
        "goo.gl",
        "is.gd",
        "cutt.ly",
        "wa.me",
    }
)


@dataclass
class CampaignView:
    """One campaign: what its sightings share and how many there are."""

    campaign_id: int
    key: str
    label: str
    incident_id: int | None
    sightings: int
    channels: list[str]
    first_seen: str
    last_seen: str
    features: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class BuildReport:
    """What a rebuild did."""

    campaigns: int = 0
    sightings: int = 0
    created: int = 0
    merged: int = 0
    removed: int = 0


def _net24(ip: str) -> str | None:
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _domain(value: Any) -> str | None:
    if not isinstance(value, str) or "." not in value:
        return None
    d = value.strip().strip(".").lower()
    return None if not d or d in COMMON_DOMAINS else d


def links(evidence: Mapping[str, Any]) -> set[str]:
    """The infrastructure and link features a sighting's evidence carries, as ``kind:value``."""
    out: set[str] = set()
    for kind, key in (("dkim", "dkim_domain"), ("return_path", "return_path_domain")):
        if d := _domain(evidence.get(key)):
            out.add(f"{kind}:{d}")
    ip = evidence.get("sender_ip")
    if isinstance(ip, str) and (net := _net24(ip)):
        out.add(f"net:{net}")
    caller = evidence.get("caller") or evidence.get("caller_id")
    if isinstance(caller, str) and caller.strip():
        out.add(f"caller:{''.join(caller.split())}")
    domains = evidence.get("url_domains")
    if isinstance(domains, list):
        out.update(f"url:{d}" for raw in domains[:50] if (d := _domain(raw)))
    return out


def _simhash(evidence: Mapping[str, Any]) -> str | None:
    value = evidence.get("simhash")
    if isinstance(value, str) and len(value) == 16:
        try:
            int(value, 16)
        except ValueError:
            return None
        return value.lower()
    return None


def group(items: Mapping[int, Mapping[str, Any]]) -> dict[int, list[int]]:
    """Group sighting ids by shared features and similar templates; root id → members.

    The root of a group is its earliest (smallest) sighting id.
    """
    ids = sorted(items)
    n = len(ids)
    heads: list[int] = []
    tails: list[int] = []
    first: dict[str, int] = {}
    hashed: list[tuple[int, int]] = []
    for k, sid in enumerate(ids):
        for feature in links(items[sid]):
            if feature in first:
                heads.append(first[feature])
                tails.append(k)
            else:
                first[feature] = k
        if digest := _simhash(items[sid]):
            hashed.append((k, int(digest, 16)))
    edges = [np.array(heads, dtype=np.int64)], [np.array(tails, dtype=np.int64)]
    if hashed:
        where = np.array([k for k, _ in hashed], dtype=np.int64)
        values = np.array([v for _, v in hashed], dtype=np.uint64)
        for i in range(len(values) - 1):
            near = np.flatnonzero(np.bitwise_count(values[i + 1 :] ^ values[i]) <= MAX_DISTANCE)
            # A few hundred links per sighting keep a wave of one template whole and the
            # edge list bounded, however many copies of it arrive.
            near = near[:MAX_LINKS]
            edges[0].append(np.full(near.size, where[i]))
            edges[1].append(where[i + 1 + near])
    # scipy.sparse takes a while to import; only a build needs it.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    head, tail = np.concatenate(edges[0]), np.concatenate(edges[1])
    graph = coo_matrix((np.ones(head.size, dtype=np.int8), (head, tail)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    out: dict[int, list[int]] = {}
    roots: dict[int, int] = {}
    for k, label in enumerate(labels.tolist()):
        # ids are sorted, so the first member met is the group's earliest sighting.
        root = roots.setdefault(label, ids[k])
        out.setdefault(root, []).append(ids[k])
    return out


def _key(dedup_key: str) -> str:
    return hashlib.sha256(f"campaign|{dedup_key}".encode()).hexdigest()[:32]


def _features(
    members: list[int], evidence: Mapping[int, Mapping[str, Any]], rows: Mapping[int, Any]
) -> dict[str, Any]:
    found: dict[str, set[str]] = defaultdict(set)
    for sid in members:
        for feature in links(evidence[sid]):
            kind, _, value = feature.partition(":")
            found[kind].add(value)
    seen = sorted(rows[sid].seen_at for sid in members)
    return {
        "dkim_domains": sorted(found["dkim"]),
        "return_path_domains": sorted(found["return_path"]),
        "sender_networks": sorted(found["net"]),
        "callers": sorted(found["caller"]),
        "url_domains": sorted(found["url"]),
        "templates": len({h for sid in members if (h := _simhash(evidence[sid]))}),
        "channels": sorted({rows[sid].channel for sid in members}),
        "sightings": len(members),
        "canaries": len({rows[sid].canary_id for sid in members}),
        "first_seen": seen[0].isoformat(timespec="seconds"),
        "last_seen": seen[-1].isoformat(timespec="seconds"),
    }


def _label(features: Mapping[str, Any]) -> str:
    parts = []
    for name, title in (
        ("dkim_domains", "signed by"),
        ("callers", "from"),
        ("url_domains", "linking to"),
        ("sender_networks", "sent from"),
        ("return_path_domains", "bounces to"),
    ):
        values = features.get(name) or []
        if values:
            more = f" +{len(values) - 2}" if len(values) > 2 else ""
            parts.append(f"{title} {', '.join(values[:2])}{more}")
    what = "/".join(features.get("channels") or []) or "contacts"
    body = "; ".join(parts) if parts else "same message template"
    return f"{what}: {body}"[:300]


def build_campaigns(ws: Workspace) -> BuildReport:
    """Regroup every evidence sighting into campaigns; keys and attached incidents survive."""
    report = BuildReport()
    with ws.db.session() as s:
        rows = {
            r.id: r
            for r in s.execute(
                select(
                    m.Sighting.id,
                    m.Sighting.dedup_key,
                    m.Sighting.channel,
                    m.Sighting.seen_at,
                    m.Sighting.canary_id,
                    m.Sighting.evidence,
                )
                .join(m.Canary, m.Canary.id == m.Sighting.canary_id)
                .where(m.Sighting.expected_use.is_(False), m.Canary.layer != "control")
            )
        }
        evidence = {
            sid: (r.evidence if isinstance(r.evidence, dict) else {}) for sid, r in rows.items()
        }
        groups = group(evidence)
        old = {c.key: c for c in s.scalars(select(m.Campaign))}
        old_members: dict[int, set[int]] = defaultdict(set)
        for cid, sid in s.execute(
            select(m.CampaignSighting.campaign_id, m.CampaignSighting.sighting_id)
        ):
            old_members[cid].add(sid)
        s.execute(delete(m.CampaignSighting))
        keep: set[str] = set()
        for root, members in groups.items():
            key = _key(rows[root].dedup_key)
            keep.add(key)
            features = _features(members, evidence, rows)
            campaign = old.get(key)
            if campaign is None:
                campaign = m.Campaign(key=key, label="", features={})
                s.add(campaign)
                report.created += 1
            campaign.label = _label(features)
            campaign.features = features
            s.flush()
            if campaign.incident_id is None:
                # A campaign this one swallowed hands over the incident it was attached to.
                for other in old.values():
                    if (
                        other.key not in keep
                        and other.incident_id
                        and old_members[other.id] & set(members)
                    ):
                        campaign.incident_id = other.incident_id
                        break
            s.execute(
                insert(m.CampaignSighting),
                [{"campaign_id": campaign.id, "sighting_id": sid} for sid in members],
            )
            report.sightings += len(members)
        for key, campaign in old.items():
            if key not in keep:
                if old_members[campaign.id]:
                    report.merged += 1
                else:
                    report.removed += 1
                s.delete(campaign)
        report.campaigns = len(groups)
    return report


def _view(c: m.Campaign, count: int) -> CampaignView:
    f = c.features or {}
    return CampaignView(
        campaign_id=c.id,
        key=c.key,
        label=c.label,
        incident_id=c.incident_id,
        sightings=count,
        channels=list(f.get("channels", [])),
        first_seen=str(f.get("first_seen", "")),
        last_seen=str(f.get("last_seen", "")),
        features=dict(f),
    )


def list_campaigns(ws: Workspace) -> list[CampaignView]:
    """Every campaign, largest first."""
    with ws.db.session() as s:
        counts: dict[int, int] = defaultdict(int)
        for (cid,) in s.execute(select(m.CampaignSighting.campaign_id)):
            counts[cid] += 1
        views = [_view(c, counts[c.id]) for c in s.scalars(select(m.Campaign))]
    return sorted(views, key=lambda v: (-v.sightings, v.first_seen, v.campaign_id))


def attach_campaign(ws: Workspace, campaign_id: int, incident_id: int) -> CampaignView:
    """Attach campaign ``campaign_id`` to incident ``incident_id``."""
    with ws.db.session() as s:
        campaign = s.get(m.Campaign, campaign_id)
        if campaign is None:
            raise NotFound(
                f"no campaign {campaign_id}", hint="list them with 'canarino campaigns list'"
            )
        store.get_incident(s, incident_id)
        campaign.incident_id = incident_id
        count = len(
            s.scalars(
                select(m.CampaignSighting.sighting_id).where(
                    m.CampaignSighting.campaign_id == campaign_id
                )
            ).all()
        )
        return _view(campaign, count)
