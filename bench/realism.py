"""Benchmark canary realism (issue #5): can a classifier tell canaries from customers?

Usage::

    .venv/bin/python bench/realism.py                  # 3,000 customers per base, 6 shares
    .venv/bin/python bench/realism.py --shares 12      # tighter figures, twice as long

For each realistic customer base of :mod:`canarino.testing` (Italian, mixed EU, US) it
creates a workspace, imports the customers, and writes real shares with
:func:`canarino.shares.create_share` (all fields, each share with fresh canaries) under
these monitoring set-ups:

* ``lookalike``: 120 look-alike mail domains the company owns; 200 phone ranges, first
  one on each operator or area code the customers use, then more in proportion to them;
  a gazetteer (``places_file``) of the base's world;
* ``few-ranges``: the same, with only 12 phone ranges (what not to do);
* ``providers``: as ``lookalike``, and the company receives mail for the whole consumer
  providers' domains (hypothetical: what an ISP that owns its customers' domain has);
* ``pool-no-places``: as ``pool`` without the gazetteer;
* ``pool``: as ``lookalike``, plus a pool of mailboxes provisioned at the consumer
  providers (:mod:`canarino.mailboxes`), proposed with ``propose`` and sized as one per
  expected consumer-provider canary of the shares plus a quarter (``POOL_MARGIN``).

An attacker holding one share then trains scikit-learn's HistGradientBoostingClassifier
on features engineered from every field (name frequencies, name-age consistency, birth
dates, e-mail recipe, domain and phone-prefix frequencies in the file, address and place
consistency, customer-number gaps). Three attackers:

* ``identity``: every field except the e-mail domain and the phone number;
* ``blind``: every field; the domain only as its frequency in the file;
* ``informed``: ``blind`` plus knowing which domains are consumer providers.

Each share's AUC is cross-validated (5 stratified folds); a set-up's AUC is the mean over
its shares, with the standard error of that mean. The control is the same classifier,
same features, on the real rows alone with random labels (as many as there are
canaries): the AUC a classifier reaches on nothing. The gazetteer is the places of a
base five times larger from the same generator (its first customers are the base).
Writes ``bench/results/realism.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

# One thread: on a shared machine OpenMP threads fight each other for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import sklearn
from faker import Faker
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sqlalchemy import select

from canarino import models as m
from canarino.canaries import CONSUMER_PROVIDERS, email_pattern
from canarino.customers import import_customers
from canarino.mailboxes import add_mailboxes, pool_summary, propose
from canarino.recipients import add_recipient
from canarino.shares import CANARY_CONTEXT, create_share
from canarino.testing import (
    BASES,
    PROVIDERS,
    make_customer_base,
    write_customers_csv,
)
from canarino.workspace import init_workspace

HERE = Path(__file__).resolve().parent
SEED = 20261125
FIELDS = [
    "customer_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "address",
    "city",
    "postcode",
    "region",
    "country",
    "language",
    "birth_date",
]
KNOWN_PROVIDERS = {d for mix in PROVIDERS.values() for d in mix}
TARGET = 0.55
SHARES = 6  # shares (fresh canaries each) per key set-up; --shares
POOL_MARGIN = 1.25  # pool mailboxes per expected consumer-provider canary
# Set-up: (attackers, shares as a fraction of SHARES); "pool" is the one that matters.
PLAN: dict[str, tuple[tuple[str, ...], float]] = {
    "lookalike": (("identity", "informed"), 0.34),
    "few-ranges": (("blind",), 0.0),
    "providers": (("informed",), 0.34),
    "pool-no-places": (("informed",), 0.34),
    "pool": (("identity", "blind", "informed"), 1.0),
}
GAZETTEER_FACTOR = 5  # the gazetteer: places of a base this many times larger


# --- monitored contact points --------------------------------------------------------------


def lookalike_domains(
    kind: str, count: int, taken: set[str], rng: np.random.Generator
) -> list[str]:
    """Small-business and personal-looking domains in the base's countries."""
    mix = BASES[kind].countries
    countries = list(mix)
    weights = np.array([mix[c] for c in countries])
    fakers = {c: Faker(_locale(c)) for c in countries}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(int(rng.integers(2**31)) + i)
    out: list[str] = []
    while len(out) < count:
        country = countries[rng.choice(len(countries), p=weights / weights.sum())]
        domain = fakers[country].domain_name().lower()
        if domain not in taken and domain not in out and re.fullmatch(r"[a-z0-9.-]+", domain):
            out.append(domain)
    return out


def phone_ranges(people: list[dict[str, str]], count: int, rng: np.random.Generator) -> list[str]:
    """Blocks of 10,000 numbers (100,000 in Germany) on the operators and area codes the
    customers use: first one on each of as many prefixes as possible, then more in
    proportion to the customers. What a company buying number blocks should do."""
    prefixes = Counter()
    for p in people:
        if p["phone"]:
            code, nsn = _nsn(p["phone"])
            prefixes[(code, nsn[:3], len(nsn))] += 1
    keys = list(prefixes)
    weights = np.array([prefixes[k] for k in keys], dtype=float)
    first = rng.choice(len(keys), min(count, len(keys)), replace=False, p=weights / weights.sum())
    picks = [keys[i] for i in first]
    out: set[str] = set()
    while len(out) < count:
        if picks:
            code, op, length = picks.pop()
        else:
            code, op, length = keys[rng.choice(len(keys), p=weights / weights.sum())]
        block = length - 4 - (1 if length >= 11 else 0)
        national = op + "".join(str(d) for d in rng.integers(0, 10, block - len(op)))
        if code == "1":  # the exchange cannot start with 0 or 1
            national = op + str(rng.integers(2, 10)) + national[4:]
        out.add(f"+{code}{national}")
    return sorted(out)


def write_places(path: Path, world: list[dict[str, str]]) -> None:
    """The gazetteer file (``places_file``) of a generated world."""
    counts = Counter((p["country"], p["city"], p["postcode"], p["region"]) for p in world)
    with path.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["country", "city", "postcode", "region", "population"])
        writer.writerows([*key, count] for key, count in counts.items())


def _locale(country: str) -> str:
    from canarino.canaries import locale_for

    return locale_for(
        country,
        {
            "IT": "it",
            "FR": "fr",
            "DE": "de",
            "ES": "es",
            "US": "en",
            "NL": "nl",
            "PL": "pl",
            "PT": "pt",
        }[country],
    )


# --- features ---------------------------------------------------------------------------


def _freq(values: list[str]) -> np.ndarray:
    counts = Counter(values)
    return np.array([counts[v] if v else 0 for v in values], dtype=float)


def _year(text: str) -> float:
    return float(text[:4]) if re.match(r"^\d{4}-\d{2}-\d{2}$", text) else np.nan


def _nsn(phone: str) -> tuple[str, str]:
    for code in ("351", "39", "33", "49", "34", "31", "48", "1"):
        if phone.startswith("+" + code):
            return code, phone[1 + len(code) :]
    return "", phone.lstrip("+")


def features(rows: list[dict[str, str]], attacker: str) -> tuple[np.ndarray, list[str]]:
    """What an attacker computes from one share, one row per record."""
    col = {f: [r.get(f, "") for r in rows] for f in FIELDS}
    n = len(rows)
    feats: dict[str, np.ndarray] = {}
    first, last = col["first_name"], col["last_name"]
    years = np.array([_year(v) for v in col["birth_date"]])
    feats["birth_year"] = years
    feats["birth_month"] = np.array([float(v[5:7]) if v else np.nan for v in col["birth_date"]])
    feats["birth_day"] = np.array([float(v[8:10]) if v else np.nan for v in col["birth_date"]])
    feats["first_len"] = np.array([len(v) for v in first], dtype=float)
    feats["last_len"] = np.array([len(v) for v in last], dtype=float)
    feats["first_freq"] = _freq([v.lower() for v in first])
    feats["last_freq"] = _freq([v.lower() for v in last])
    feats["pair_freq"] = _freq([f"{a}|{b}".lower() for a, b in zip(first, last, strict=True)])
    feats["name_nonascii"] = np.array(
        [sum(not c.isascii() for c in a + b) for a, b in zip(first, last, strict=True)], dtype=float
    )
    feats["name_casing"] = np.array(
        [
            2.0 if (a + b).isupper() else 1.0 if (a + b).islower() else 0.0
            for a, b in zip(first, last, strict=True)
        ]
    )
    feats["name_multiword"] = np.array(
        [
            float(" " in a or "-" in a) + 2 * float(" " in b or "'" in b)
            for a, b in zip(first, last, strict=True)
        ]
    )
    # Name-age consistency: how far a person's birth year is from others with the name.
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, y in zip(first, years, strict=True):
        if not np.isnan(y):
            by_name[name.lower()].append(y)
    sums = {k: (sum(v), len(v)) for k, v in by_name.items()}
    gap = []
    for name, y in zip(first, years, strict=True):
        s, c = sums.get(name.lower(), (0.0, 0))
        if np.isnan(y):
            gap.append(np.nan)
        elif c > 1:
            gap.append(y - (s - y) / (c - 1))
        else:
            gap.append(np.nan)
    feats["name_age_gap"] = np.array(gap)
    # Surname in its region.
    feats["last_region_freq"] = _freq(
        [f"{b}|{r}".lower() for b, r in zip(last, col["region"], strict=True)]
    )
    # E-mail local part.
    locals_, domains = [], []
    for e in col["email"]:
        local, _, domain = e.lower().rpartition("@")
        locals_.append(local)
        domains.append(domain)
    recipes = []
    for local, a, b, y in zip(locals_, first, last, years, strict=True):
        recipes.append(
            "".join(email_pattern(local, a, b, None if np.isnan(y) else int(y))) if local else ""
        )
    feats["email_missing"] = np.array([float(not e) for e in col["email"]])
    feats["local_len"] = np.array([len(v) for v in locals_], dtype=float)
    feats["local_digits"] = np.array([sum(c.isdigit() for c in v) for v in locals_], dtype=float)
    feats["recipe_freq"] = _freq(recipes)
    feats["recipe_has_name"] = np.array([float("f" in r or "l" in r) for r in recipes])
    feats["recipe_has_year"] = np.array([float("yy" in r) for r in recipes])
    # Address and place.
    addr = col["address"]
    feats["address_len"] = np.array([len(v) for v in addr], dtype=float)
    feats["street_type_freq"] = _freq([v.split(" ")[0].lower() if v else "" for v in addr])
    feats["house_number"] = np.array(
        [float(m.group()) if (m := re.search(r"\d+", v)) else np.nan for v in addr]
    )
    feats["address_tokens"] = np.array([len(v.split()) for v in addr], dtype=float)
    feats["city_freq"] = _freq(col["city"])
    feats["postcode_freq"] = _freq(col["postcode"])
    feats["region_freq"] = _freq(col["region"])
    city_post = _freq([f"{a}|{b}" for a, b in zip(col["city"], col["postcode"], strict=True)])
    city_region = _freq([f"{a}|{b}" for a, b in zip(col["city"], col["region"], strict=True)])
    feats["city_postcode_consistency"] = city_post / np.maximum(feats["city_freq"], 1)
    feats["city_region_consistency"] = city_region / np.maximum(feats["city_freq"], 1)
    feats["postcode_value"] = np.array(
        [float(v) if v.isdigit() else np.nan for v in col["postcode"]]
    )
    feats["country_freq"] = _freq(col["country"])
    feats["language_freq"] = _freq(col["language"])
    # Customer numbers: value and the gaps to the neighbours.
    ids = np.array([float(re.sub(r"\D", "", v) or "nan") for v in col["customer_id"]])
    order = np.argsort(ids)
    sorted_ids = ids[order]
    prev_gap = np.empty(n)
    next_gap = np.empty(n)
    prev_gap[order] = np.concatenate([[np.nan], np.diff(sorted_ids)])
    next_gap[order] = np.concatenate([np.diff(sorted_ids), [np.nan]])
    feats["id_value"] = ids
    feats["id_prev_gap"] = prev_gap
    feats["id_next_gap"] = next_gap
    feats["phone_missing"] = np.array([float(not p) for p in col["phone"]])
    if attacker in ("blind", "informed"):
        feats["domain_freq"] = _freq(domains)
        feats["tld_freq"] = _freq([d.rsplit(".", 1)[-1] for d in domains])
        feats["domain_len"] = np.array([len(d) for d in domains], dtype=float)
        feats["domain_hyphen"] = np.array([float("-" in d) for d in domains])
        feats["domain_labels"] = np.array([d.count(".") for d in domains], dtype=float)
        nsn = [_nsn(p) for p in col["phone"]]
        feats["phone_cc_freq"] = _freq([c for c, _ in nsn])
        for k in (2, 3, 4, 5, 6, 7):
            feats[f"phone_prefix{k}_freq"] = _freq([f"{c}{s[:k]}" if s else "" for c, s in nsn])
        feats["phone_len"] = np.array([len(s) for _, s in nsn], dtype=float)
    if attacker == "informed":
        feats["known_provider"] = np.array([float(d in KNOWN_PROVIDERS) for d in domains])
        feats["provider_id"] = np.array(
            [
                float(sorted(KNOWN_PROVIDERS).index(d)) if d in KNOWN_PROVIDERS else -1.0
                for d in domains
            ]
        )
    names = list(feats)
    return np.column_stack([feats[k] for k in names]), names


def cv_auc(x: np.ndarray, y: np.ndarray, seed: int) -> list[float]:
    """Cross-validated AUC of the gradient-boosting attacker, one value per fold."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    out = []
    for train, test in folds.split(x, y):
        model = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            class_weight="balanced",
            random_state=seed,
        )
        model.fit(x[train], y[train])
        out.append(float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])))
    return out


def univariate(
    x: np.ndarray, y: np.ndarray, names: list[str], top: int = 3
) -> list[tuple[str, float]]:
    """The features that separate best on their own (AUC folded to ≥ 0.5)."""
    scores = []
    for i, name in enumerate(names):
        v = np.nan_to_num(x[:, i], nan=-1e9)
        if len(set(v)) < 2:
            continue
        auc = roc_auc_score(y, v)
        scores.append((name, round(max(auc, 1 - auc), 3)))
    return sorted(scores, key=lambda t: -t[1])[:top]


# --- the run ----------------------------------------------------------------------------


def share_rows(
    ws: Any, recipient: str, path: Path, seed: int
) -> tuple[list[dict[str, str]], np.ndarray]:
    """Write one share with every field; return its rows and which are canaries."""
    add_recipient(ws, recipient, "vendor")
    result = create_share(ws, recipient, FIELDS, path)
    with ws.db.session() as s:
        sealed = s.scalars(
            select(m.Canary.sealed)
            .join(m.ShareCanary)
            .where(m.ShareCanary.share_id == result.share_id)
        ).all()
    points = set()
    for blob in sealed:
        rec = ws.vault.open(blob, context=CANARY_CONTEXT)
        points.update(v for v in (rec.get("email"), rec.get("phone")) if v)
    with path.open(encoding="utf-8", newline="") as fp:
        rows = list(csv.DictReader(fp))
    labels = np.array([int(bool({r["email"], r["phone"]} & points)) for r in rows])
    assert labels.sum() == result.canaries, (labels.sum(), result.canaries)
    return rows, labels


def _summary(aucs: list[float]) -> dict[str, Any]:
    sd = statistics.stdev(aucs) if len(aucs) > 1 else 0.0
    return {
        "auc_mean": round(statistics.mean(aucs), 3),
        "auc_sd": round(sd, 3),
        "auc_se": round(sd / len(aucs) ** 0.5, 3),
        "shares": len(aucs),
        "per_share": [round(a, 4) for a in aucs],
    }


def _consumer(email: str) -> bool:
    return email.rsplit("@", 1)[-1] in CONSUMER_PROVIDERS


def run_base(kind: str, n: int, seed: int, shares: int, tmp: Path) -> dict[str, Any]:
    rng = np.random.default_rng([seed, len(kind)])
    t0 = time.perf_counter()
    # The same world, larger: its first n customers are the base, and all its places
    # are the gazetteer (real places, weighted by how many live there).
    world = make_customer_base(kind, n * GAZETTEER_FACTOR, seed=seed)
    people = world[:n]
    places_file = tmp / f"{kind}-places.csv"
    write_places(places_file, world)
    base_domains = {p["email"].rsplit("@", 1)[1] for p in people}
    lookalike = lookalike_domains(kind, 120, base_domains, rng)
    many = phone_ranges(people, 200, rng)
    few = phone_ranges(people, 12, rng)
    providers = sorted(KNOWN_PROVIDERS & base_domains)
    consumer_share = sum(_consumer(p["email"]) for p in people) / len(people)
    print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
    ws = init_workspace(tmp / kind, mail_domains=lookalike, phone_ranges=many)
    report = import_customers(ws, write_customers_csv(tmp / f"{kind}.csv", people))
    setup_s = time.perf_counter() - t0
    print(f"  imported in {setup_s:.0f} s", flush=True)
    out: dict[str, Any] = {
        "customers": report.imported,
        "real_on_consumer_providers": round(consumer_share, 3),
        "lookalike_domains": len(lookalike),
        "phone_ranges": {"many": len(many), "few": len(few)},
        "provider_domains_monitored_in_providers_setup": len(providers),
        "gazetteer_places": len({(p["country"], p["city"], p["postcode"]) for p in world}),
        "setup_s": round(setup_s, 1),
        "setups": {},
    }
    control_rows: list[list[dict[str, str]]] = []
    per_share = 0
    for setup, (attackers, fraction) in PLAN.items():
        ws.settings.mail_domains = lookalike + (providers if setup == "providers" else [])
        ws.settings.phone_ranges = few if setup == "few-ranges" else many
        ws.settings.places_file = None if setup == "pool-no-places" else places_file
        count = max(1, round(shares * fraction))
        cell: dict[str, Any] = {"attackers": {}}
        if setup.startswith("pool"):
            # One mailbox per expected consumer-provider canary of these shares, plus a
            # margin so that no provider runs out: what a company would provision.
            size = int(np.ceil(count * per_share * consumer_share * POOL_MARGIN))
            t1 = time.perf_counter()
            add_mailboxes(ws, propose(ws, size, rng=random.Random(seed)))
            cell["pool_mailboxes"] = size
            cell["pool_per_share"] = round(size / count, 1)
            print(f"  pool of {size} mailboxes in {time.perf_counter() - t1:.0f} s", flush=True)
        xs: dict[str, list[np.ndarray]] = defaultdict(list)
        ys: list[np.ndarray] = []
        aucs: dict[str, list[float]] = defaultdict(list)
        on_consumer: list[float] = []
        per_domain_max = 0
        for k in range(count):
            t1 = time.perf_counter()
            rows, y = share_rows(ws, f"Vendor {setup} {k}", tmp / f"{kind}-{setup}-{k}.csv", seed)
            per_share = int(y.sum())
            if len(control_rows) < max(2, shares // 2):
                control_rows.append([r for r, lab in zip(rows, y, strict=True) if not lab])
            canary_emails = [
                r["email"] for r, lab in zip(rows, y, strict=True) if lab and r["email"]
            ]
            on_consumer.append(sum(map(_consumer, canary_emails)) / max(1, len(canary_emails)))
            lookalike_use = Counter(e.rsplit("@", 1)[1] for e in canary_emails if not _consumer(e))
            per_domain_max = max(per_domain_max, max(lookalike_use.values(), default=0))
            ys.append(y)
            for attacker in attackers:
                x, names = features(rows, attacker)
                xs[attacker].append(x)
                aucs[attacker].append(statistics.mean(cv_auc(x, y, seed + k)))
            print(
                f"    {setup} share {k + 1}/{count} ({per_share} canaries, "
                f"{time.perf_counter() - t1:.0f} s): "
                + ", ".join(f"{a} {v[-1]:.3f}" for a, v in aucs.items()),
                flush=True,
            )
        cell["rows"] = len(ys[0])
        cell["canaries"] = per_share
        cell["canaries_on_consumer_providers"] = round(statistics.mean(on_consumer), 3)
        cell["canaries_per_lookalike_domain_max"] = per_domain_max
        y_all = np.concatenate(ys)
        for attacker in attackers:
            _, names = features(rows[:2], attacker)
            cell["attackers"][attacker] = {
                **_summary(aucs[attacker]),
                "features": len(names),
                "best_single_features": univariate(np.vstack(xs[attacker]), y_all, names),
            }
        if setup.startswith("pool"):
            summary = pool_summary(ws)
            cell["pool_unused_after"] = sum(p.free for p in summary)
        out["setups"][setup] = cell
        print(
            f"  {kind} {setup}: "
            + ", ".join(
                f"{a} {c['auc_mean']:.3f}±{c['auc_se']:.3f}" for a, c in cell["attackers"].items()
            ),
            flush=True,
        )
    # Control: real rows only, as many random "canaries" as a share has.
    control = []
    for k, real_rows in enumerate(control_rows):
        fake_y = np.zeros(len(real_rows), dtype=int)
        fake_y[rng.choice(len(real_rows), per_share, replace=False)] = 1
        x, _ = features(real_rows, "informed")
        control.append(statistics.mean(cv_auc(x, fake_y, seed + k)))
    out["control"] = _summary(control)
    print(f"  {kind} control: {out['control']['auc_mean']:.3f}", flush=True)
    ws.close()
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Canary realism (issue #5): can a classifier tell canaries from customers?",
        "",
        f"Run of {results['date']} on {results['machine']}; {results['customers']:,} customers "
        f"per base, seed {results['seed']}, scikit-learn {results['sklearn']}, "
        f"{results['seconds']:.0f} s in all, load average {results['load_average_start']} at "
        f"the start, {results['load_average']} at the end.",
        "",
        "HistGradientBoostingClassifier, 5-fold stratified CV on each share of all fields "
        "(canaries 2 % of rows); AUC is the mean over independent shares (fresh canaries "
        "each) ± its standard error, sd the spread between shares. Control: the same "
        "classifier on real rows alone with random labels. Ratio = AUC / control AUC. "
        f"Target: AUC ≤ {TARGET}.",
        "",
        "| base | set-up | shares | canaries/share | on providers | attacker | AUC ± se | sd | "
        "control | ratio | ≤ 0.55 | strongest single features |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | :---: | --- |",
    ]
    for kind, res in results["bases"].items():
        control = res["control"]["auc_mean"]
        for setup, cell in res["setups"].items():
            for attacker, a in cell["attackers"].items():
                best = ", ".join(f"{n} {v:.2f}" for n, v in a["best_single_features"])
                lines.append(
                    f"| {kind} | {setup} | {a['shares']} | {cell['canaries']} | "
                    f"{cell['canaries_on_consumer_providers']:.0%} | {attacker} | "
                    f"{a['auc_mean']:.3f} ± {a['auc_se']:.3f} | {a['auc_sd']:.3f} | "
                    f"{control:.3f} | {a['auc_mean'] / control:.2f} | "
                    f"{'yes' if a['auc_mean'] <= TARGET else 'no'} | {best} |"
                )
        lines.append(
            f"| {kind} | pool size | | | real: {res['real_on_consumer_providers']:.0%} | | "
            f"{res['setups']['pool'].get('pool_per_share', 0)} mailboxes per share | | | | | |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--bases", default="it,eu,us")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--shares", type=int, default=SHARES, help="shares (fresh canaries) per key set-up"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    n = args.customers or 3_000
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "sklearn": sklearn.__version__,
        "customers": n,
        "seed": args.seed,
        "target": TARGET,
        "shares": args.shares,
        "load_average_start": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "bases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.bases.split(","):
            print(f"{kind}: {n:,} customers", flush=True)
            results["bases"][kind] = run_base(kind, n, args.seed, args.shares, Path(tmp))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["load_average"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "realism.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    text = markdown(results)
    (args.out / "realism.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
