"""The audit store: every hook call, its cards and the feedback on them, in the audit database.

Da Vinci CRD ("Auditing") asks both sides to keep the call and the response; CDS Hooks 2.0
"Feedback" ties the user's action to the card. A call's rows are written in one transaction that
commits before the response is sent. Patient data is sealed (`audit/sealing.py`); reading it back goes
through this store, which first writes who read what into `access_log`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cds_hooks.audit import database
from cds_hooks.audit.schema import (
    access_log,
    audit_call,
    audit_card,
    audit_criterion,
    audit_suggestion,
    feedback,
    feedback_suggestion,
    replay_jti,
)
from cds_hooks.audit.call_record import CallRecord, call_rows, utcnow
from cds_hooks.audit.sealing import Sealer
from cds_hooks.hooks.feedback_request import FeedbackEntry

log = logging.getLogger("cds_hooks.audit")

_CALL_TABLES = (audit_call, audit_card, audit_suggestion, audit_criterion)
_REKEY_BATCH = 500


@dataclass
class FeedbackResult:
    stored: list[FeedbackEntry] = field(default_factory=list)
    duplicates: int = 0
    unmatched_cards: list[str] = field(default_factory=list)
    unmatched_suggestions: list[str] = field(default_factory=list)


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


class AuditStore:
    def __init__(self, engine: Engine, sealer: Sealer, clock=utcnow):
        self.engine = engine
        self.sealer = sealer
        self.clock = clock

    def reading(self):
        """A connection for reads only (on SQLite a deferred transaction, not the write lock)."""
        return self.engine.connect().execution_options(**{database.READ_ONLY: True})

    def ping(self) -> bool:
        return database.ping(self.engine)

    # ------------------------------------------------------------------ writing

    def record_call(self, rec: CallRecord, durable: bool = True) -> None:
        """Write the call and its cards, suggestions and criterion results; committed on return.

        `durable`: the commit is also flushed to disk before it returns. Without it the row is committed
        (visible, and kept when the service process dies) but the flush is left to the database, so a
        power loss or an operating-system crash of the database host may still lose it
        (database.commit_durability)."""
        rows = call_rows(rec, self.sealer)
        with database.commit_durability(self.engine, durable) as conn, conn.begin():
            if not durable:
                database.relax_transaction(conn)
            for table in _CALL_TABLES:
                if rows[table.name]:
                    conn.execute(insert(table), rows[table.name])

    def record_feedback(
        self, service_id: str, entries: list[FeedbackEntry], reason_displays: dict[str, str] | None = None
    ) -> FeedbackResult:
        """Store feedback entries joined to their card and call; a repeated entry is stored once."""
        reason_displays = reason_displays or {}
        unique: dict[str, FeedbackEntry] = {}
        for e in entries:
            unique.setdefault(e.digest(service_id), e)
        for attempt in (1, 2):
            try:
                return self._insert_feedback(service_id, unique, reason_displays, len(entries))
            except IntegrityError:
                # A concurrent request stored one of these entries first; the retry sees it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert_feedback(self, service_id, unique: dict[str, FeedbackEntry], reason_displays, received: int):
        result = FeedbackResult()
        now = self.clock()
        with self.engine.begin() as conn:
            existing = set(conn.scalars(select(feedback.c.digest).where(feedback.c.digest.in_(list(unique)))))
            card_ids = sorted({e.card for e in unique.values()})
            calls = dict(
                conn.execute(
                    select(audit_card.c.uuid, audit_card.c.call_id)
                    .join(audit_call, audit_call.c.id == audit_card.c.call_id)
                    .where(audit_card.c.uuid.in_(card_ids), audit_call.c.service_id == service_id)
                ).all()
            )
            offered: dict[str, set[str]] = defaultdict(set)
            for s_uuid, c_uuid in conn.execute(
                select(audit_suggestion.c.uuid, audit_suggestion.c.card_uuid).where(
                    audit_suggestion.c.card_uuid.in_(list(calls))
                )
            ):
                offered[c_uuid].add(s_uuid)
            fb_rows, s_rows = [], []
            for digest, e in unique.items():
                if digest in existing:
                    continue
                fid = str(uuid.uuid4())
                key_id, sealed = self.sealer.seal({"entry": e.raw}, fid)
                reason = e.reason or {}
                matched = e.card in calls
                if not matched and e.card not in result.unmatched_cards:
                    result.unmatched_cards.append(e.card)
                fb_rows.append(
                    {
                        "id": fid,
                        "received_at": now,
                        "service_id": service_id[:100],
                        "card_uuid": e.card,
                        "call_id": calls.get(e.card),
                        "matched": matched,
                        "outcome": e.outcome,
                        "outcome_at": e.outcome_at,
                        "reason_system": reason.get("system"),
                        "reason_code": reason.get("code"),
                        "reason_display": reason.get("display") or reason_displays.get(reason.get("code") or ""),
                        "digest": digest,
                        "key_id": key_id,
                        "sealed": sealed,
                    }
                )
                for s in e.accepted_suggestions:
                    known = s in offered.get(e.card, ())
                    if not known:
                        result.unmatched_suggestions.append(s)
                    s_rows.append({"feedback_id": fid, "suggestion_uuid": s, "matched": known})
                result.stored.append(e)
            if fb_rows:
                conn.execute(insert(feedback), fb_rows)
            if s_rows:
                conn.execute(insert(feedback_suggestion), s_rows)
        result.duplicates = received - len(result.stored)
        return result

    # ------------------------------------------------------------------ the access log

    def log_access(self, actor: str, command: str, detail: str, records: int) -> None:
        """Record a read of audit content (committed before the content is returned)."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(access_log).values(
                    at=self.clock(), actor=actor[:200], command=command[:50], detail=detail[:500], records=records
                )
            )

    def access_entries(self, limit: int = 100) -> list[dict]:
        with self.reading() as conn:
            rows = conn.execute(select(access_log).order_by(access_log.c.id.desc()).limit(limit)).mappings().all()
        return [{**dict(r), "at": iso(r["at"])} for r in rows]

    # ------------------------------------------------------------------ reading

    def find_calls(self, ident: str) -> list[str]:
        """Call ids for a call id, a card uuid, a suggestion uuid or a hookInstance."""
        ident = ident.strip()
        with self.reading() as conn:
            if conn.scalar(select(audit_call.c.id).where(audit_call.c.id == ident)):
                return [ident]
            via_card = conn.scalar(select(audit_card.c.call_id).where(audit_card.c.uuid == ident))
            if via_card is None:
                via_card = conn.scalar(
                    select(audit_card.c.call_id)
                    .join(audit_suggestion, audit_suggestion.c.card_uuid == audit_card.c.uuid)
                    .where(audit_suggestion.c.uuid == ident)
                )
            if via_card:
                return [via_card]
            return list(
                conn.scalars(
                    select(audit_call.c.id)
                    .where(audit_call.c.hook_instance == ident)
                    .order_by(audit_call.c.received_at)
                )
            )

    def _document(self, conn, call_id: str) -> dict:
        call = conn.execute(select(audit_call).where(audit_call.c.id == call_id)).mappings().one()
        content = self.sealer.open(call["key_id"], call["sealed"], call_id) or {}
        cards = []
        for card in conn.execute(
            select(audit_card).where(audit_card.c.call_id == call_id).order_by(audit_card.c.position)
        ).mappings():
            crit = (
                conn.execute(
                    select(
                        audit_criterion.c.criterion,
                        audit_criterion.c.level,
                        audit_criterion.c.status,
                        audit_criterion.c.required,
                    )
                    .where(audit_criterion.c.card_uuid == card["uuid"])
                    .order_by(audit_criterion.c.id)
                )
                .mappings()
                .all()
            )
            sugg = (
                conn.execute(
                    select(audit_suggestion.c.uuid, audit_suggestion.c.label)
                    .where(audit_suggestion.c.card_uuid == card["uuid"])
                    .order_by(audit_suggestion.c.position)
                )
                .mappings()
                .all()
            )
            cards.append(
                {
                    **{k: v for k, v in card.items() if k != "call_id"},
                    "criteria": [dict(c) for c in crit],
                    "suggestions": [dict(s) for s in sugg],
                }
            )
        card_ids = [c["uuid"] for c in cards]
        fb = []
        fb_query = select(feedback).where(or_(feedback.c.call_id == call_id, feedback.c.card_uuid.in_(card_ids)))
        for row in conn.execute(fb_query.order_by(feedback.c.received_at)).mappings():
            accepted = list(
                conn.scalars(
                    select(feedback_suggestion.c.suggestion_uuid).where(feedback_suggestion.c.feedback_id == row["id"])
                )
            )
            opened = self.sealer.open(row["key_id"], row["sealed"], row["id"]) or {}
            fb.append(
                {
                    "id": row["id"],
                    "receivedAt": iso(row["received_at"]),
                    "card": row["card_uuid"],
                    "outcome": row["outcome"],
                    "outcomeTimestamp": iso(row["outcome_at"]),
                    "acceptedSuggestions": accepted,
                    "overrideReason": {
                        "system": row["reason_system"],
                        "code": row["reason_code"],
                        "display": row["reason_display"],
                    }
                    if row["reason_code"]
                    else None,
                    "entry": opened.get("entry"),
                }
            )
        plain = {k: v for k, v in call.items() if k not in ("sealed",)}
        plain["received_at"] = iso(plain["received_at"])
        return {"call": plain, **content, "cards": cards, "feedback": fb}

    def show(self, ident: str, actor: str, purpose: str | None = None) -> list[dict]:
        """Every stored detail of the calls `ident` names (see find_calls), decrypted; the read is logged."""
        ids = self.find_calls(ident)
        self.log_access(actor, "show", _detail(f"lookup {ident}", purpose), len(ids))
        with self.reading() as conn:
            return [self._document(conn, cid) for cid in ids]

    def case_document(
        self, call_id: str, card_uuid: str, command: str, via: str, purpose: str | None = None
    ) -> dict | None:
        """The document of call `call_id` if card `card_uuid` is one of its cards, else None. The read is
        logged first, as `via` on behalf of the user the card was shown to (the call's userId)."""
        with self.reading() as conn:
            row = conn.execute(
                select(audit_call.c.user_ref)
                .join(audit_card, audit_card.c.call_id == audit_call.c.id)
                .where(audit_call.c.id == call_id, audit_card.c.uuid == card_uuid)
            ).first()
        if row is None:
            return None
        self.log_access(
            f"{via} for {row.user_ref or 'an unnamed user'}",
            command,
            _detail(f"call {call_id} card {card_uuid}", purpose),
            1,
        )
        with self.reading() as conn:
            return self._document(conn, call_id)

    def _period(self, query, since: datetime | None, until: datetime | None, service: str | None):
        if since is not None:
            query = query.where(audit_call.c.received_at >= since)
        if until is not None:
            query = query.where(audit_call.c.received_at < until)
        if service:
            query = query.where(audit_call.c.service_id == service)
        return query

    def export(
        self,
        since: datetime | None,
        until: datetime | None,
        service: str | None,
        actor: str,
        purpose: str | None = None,
    ) -> Iterator[dict]:
        """The documents of every call in the period, oldest first; the read is logged before any is returned."""
        with self.reading() as conn:
            ids = list(
                conn.scalars(
                    self._period(select(audit_call.c.id), since, until, service).order_by(
                        audit_call.c.received_at, audit_call.c.id
                    )
                )
            )
        self.log_access(actor, "export", _detail(period_text(since, until, service), purpose), len(ids))

        def documents() -> Iterator[dict]:
            for start in range(0, len(ids), 200):
                with self.reading() as conn:
                    for cid in ids[start : start + 200]:
                        yield self._document(conn, cid)

        return documents()

    # ------------------------------------------------------------------ retention and keys

    def purge(self, before: datetime, actor: str, dry_run: bool = False) -> dict[str, int]:
        """Delete calls (with their cards), feedback and access-log entries older than `before`,
        and expired replay ids. Logged in the access log (which keeps its own newer entries)."""
        old_calls = audit_call.c.received_at < before
        with self.engine.begin() as conn:
            counts = {
                "calls": conn.scalar(select(func.count()).select_from(audit_call).where(old_calls)),
                "cards": conn.scalar(
                    select(func.count())
                    .select_from(audit_card)
                    .join(audit_call, audit_call.c.id == audit_card.c.call_id)
                    .where(old_calls)
                ),
                "feedback": conn.scalar(
                    select(func.count()).select_from(feedback).where(feedback.c.received_at < before)
                ),
                "access_log": conn.scalar(select(func.count()).select_from(access_log).where(access_log.c.at < before)),
                "replay_ids": conn.scalar(
                    select(func.count()).select_from(replay_jti).where(replay_jti.c.expires_at <= time.time())
                ),
            }
            if not dry_run:
                # Children first: the result does not depend on the database enforcing ON DELETE CASCADE.
                old_cards = (
                    select(audit_card.c.uuid)
                    .join(audit_call, audit_call.c.id == audit_card.c.call_id)
                    .where(old_calls)
                    .scalar_subquery()
                )
                conn.execute(delete(audit_criterion).where(audit_criterion.c.card_uuid.in_(old_cards)))
                conn.execute(delete(audit_suggestion).where(audit_suggestion.c.card_uuid.in_(old_cards)))
                conn.execute(delete(audit_card).where(audit_card.c.uuid.in_(old_cards)))
                old_fb = select(feedback.c.id).where(feedback.c.received_at < before).scalar_subquery()
                conn.execute(delete(feedback_suggestion).where(feedback_suggestion.c.feedback_id.in_(old_fb)))
                conn.execute(delete(feedback).where(feedback.c.received_at < before))
                old_ids = select(audit_call.c.id).where(old_calls).scalar_subquery()
                conn.execute(update(feedback).where(feedback.c.call_id.in_(old_ids)).values(call_id=None))
                conn.execute(delete(audit_call).where(old_calls))
                conn.execute(delete(access_log).where(access_log.c.at < before))
                conn.execute(delete(replay_jti).where(replay_jti.c.expires_at <= time.time()))
            summary = ", ".join(f"{k}={v}" for k, v in counts.items())
            conn.execute(
                insert(access_log).values(
                    at=self.clock(),
                    actor=actor[:200],
                    command="purge" + (" (dry run)" if dry_run else ""),
                    detail=f"before {iso(before)}: {summary}"[:500],
                    records=counts["calls"],
                )
            )
        return counts

    def rekey(self, actor: str) -> dict[str, int]:
        """Re-encrypt every row sealed under another key with the current key (after a rotation)."""
        current = self.sealer.current
        done = {"calls": 0, "feedback": 0}
        self.log_access(actor, "rekey", f"re-encrypt under {current}", 0)
        for name, table in (("calls", audit_call), ("feedback", feedback)):
            while True:
                with self.engine.begin() as conn:
                    rows = conn.execute(
                        select(table.c.id, table.c.key_id, table.c.sealed)
                        .where(table.c.sealed.is_not(None), table.c.key_id != current)
                        .limit(_REKEY_BATCH)
                    ).all()
                    for row_id, key_id, sealed in rows:
                        new_kid, new_sealed = self.sealer.seal(self.sealer.open(key_id, sealed, row_id), row_id)
                        conn.execute(
                            update(table).where(table.c.id == row_id).values(key_id=new_kid, sealed=new_sealed)
                        )
                done[name] += len(rows)
                if len(rows) < _REKEY_BATCH:
                    break
        self.log_access(
            actor,
            "rekey",
            f"re-encrypted under {current}: calls={done['calls']}, feedback={done['feedback']}",
            done["calls"] + done["feedback"],
        )
        return done

    def key_usage(self) -> dict[str, int]:
        """How many rows each key id seals (to know when an old key can be dropped)."""
        usage: dict[str, int] = defaultdict(int)
        with self.reading() as conn:
            for table in (audit_call, feedback):
                for kid, n in conn.execute(
                    select(table.c.key_id, func.count()).where(table.c.sealed.is_not(None)).group_by(table.c.key_id)
                ):
                    usage[kid] += n
        return dict(usage)


def _detail(what: str, purpose: str | None) -> str:
    return f"{what}; purpose: {purpose}" if purpose else what


def period_text(since: datetime | None, until: datetime | None, service: str | None) -> str:
    text = f"period {iso(since) or 'start'} .. {iso(until) or 'now'}"
    return f"{text}, service {service}" if service else text
