"""Reviewing campaigns: the organisers' area of `campaign serve` and `campaign report`.

Contract:
- :class:`ReviewService` is the organisers' pages' only door into the core. It holds one
  store connection (used under a lock; every read is one snapshot that takes no lock, so
  a running `campaign send` is never held up) and the registry (read again when the file
  changes). Its methods only read, except :meth:`ReviewService.release` and
  :meth:`ReviewService.cancel`, which call the same functions as `campaign release` and
  `campaign cancel` (an event in the chain each).
- Waiting reasons use `campaign status`'s words (the store's reasons, and for letters no
  send has looked at yet the same explanation `status` gives).
- `log verify`'s result is kept and recomputed only when the chain head moves.
- :func:`write_report` writes the self-contained HTML report (``--pdf``: printed by the
  PDF stack), refusing to overwrite an existing file unless ``force``; supporters are
  named only with ``with_signatories``.

Raises ``SelectionError`` (unknown campaign, letter or drive), ``WorkspaceError``
(the file exists or cannot be written), ``PdfError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.api import _explain_ready, _write_private_file, load_registry, now_ms, open_store
from campaign.config import Workspace
from campaign.errors import CampaignError, SelectionError, UsageError, WorkspaceError
from campaign.models import Recipient, to_rfc3339, utcnow
from campaign.report import (
    CampaignOverview,
    Day,
    DriveSummary,
    LetterRow,
    Review,
    Unanswered,
    Waiting,
    weekly_buckets,
)
from campaign.store import review as sreview
from campaign.store.review import SORTS, PageQuery
from campaign.wording import plural

if TYPE_CHECKING:
    from campaign.ledger import Verification
    from campaign.store.sql import SqlStore

PAGE_SIZES = (25, 50, 100, 200)
STATUSES = (
    "queued", "sending", "deferred", "held", "sent", "relayed", "delivered", "bounced", "failed", "cancelled",
)  # fmt: skip
RELEASABLE = ("held", "failed")
CANCELLABLE = ("queued", "deferred", "held")


@dataclass(frozen=True)
class CampaignSummary:
    name: str
    counts: dict[str, int]
    paused: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class TableRequest:
    """What the per-institution table was asked for (from the page's query string)."""

    campaign: str
    status: str | None = None
    tag: str | None = None
    sort: str = "institution"
    descending: bool = False
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class LetterPage:
    request: TableRequest
    rows: list[LetterRow]
    matching: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.matching // self.request.per_page))


@dataclass(frozen=True)
class EventView:
    seq: int
    time: str
    kind: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ReceiptView:
    kind: str  # dsn | mdn | reply | auto-reply
    outcome: str | None
    status: str | None
    diagnostic: str | None
    reporting_mta: str | None
    remote_mta: str | None
    arrival: str | None
    note: str | None
    matched_by: str | None
    sha256: str
    sender: str = ""
    subject: str = ""


@dataclass(frozen=True)
class LetterHistory:
    row: LetterRow
    detail: dict[str, Any]  # subject, message_id, envid, hashes, times, the server's last reply, …
    events: list[EventView]
    receipts: list[ReceiptView]
    size: int  # bytes of the .eml
    sent_bytes: bool  # the .eml is exactly what was sent (a Date line was fixed at the first attempt)
    sending_sha256: str | None  # the SHA-256 the log's last `sending` event recorded
    chain_length: int

    @property
    def can_release(self) -> bool:
        return self.row.status in RELEASABLE and self.row.hold_reason != "registry"

    @property
    def can_cancel(self) -> bool:
        return self.row.status in CANCELLABLE


@dataclass(frozen=True)
class ReplyView:
    kind: str  # reply | auto-reply
    campaign: str
    recipient: str
    name: str
    email: str
    message_row: int
    received: str
    sender: str
    subject: str
    automatic: str | None


@dataclass(frozen=True)
class Download:
    filename: str
    data: bytes
    note: str | None = None


@dataclass
class _Checked:
    head: tuple[int, str]
    result: Verification
    at: str
    seconds: float


@dataclass(frozen=True)
class ReportRequest:
    out: Path
    campaign: str | None = None
    pdf: bool = False
    force: bool = False
    with_signatories: bool = False
    lang: str = "en"


@dataclass(frozen=True)
class ReportResult:
    path: Path
    campaigns: list[str]
    letters: int
    drives: int
    named: int  # supporters named (only with --with-signatories)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


class ReviewService:
    """Read a workspace's campaigns for review (see the module's contract)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.organisation = ws.settings.sender.name
        self._store: SqlStore = open_store(ws, create=False)
        self._lock = threading.Lock()
        self._registry_key: tuple[int, int] | None = None
        self._recipients: dict[str, Recipient] = {}
        self._tags: list[str] = []
        self._checked: _Checked | None = None
        self._verify_lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._store.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[SqlStore]:
        with self._lock:
            yield self._store

    # -- the registry (names and tags) ---------------------------------------------

    def _registry(self) -> dict[str, Recipient]:
        try:
            stat = self.ws.registry_path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return self._recipients
        if key != self._registry_key:
            try:
                registry = load_registry(self.ws)
            except CampaignError:
                return self._recipients  # a broken registry: names fall back to ids; `recipients check` explains
            self._recipients = {r.id: r for r in registry.recipients}
            self._tags = sorted({t for r in registry.recipients for t in r.tags})
            self._registry_key = key
        return self._recipients

    def tags(self) -> list[str]:
        self._registry()
        return list(self._tags)

    def name_of(self, recipient: str, lang: str = "en") -> str:
        found = self._registry().get(recipient)
        return found.name_in(lang) if found is not None else recipient

    # -- campaigns -------------------------------------------------------------------

    def campaigns(self) -> list[CampaignSummary]:
        with self._locked() as store:
            counts = store.counts()
            paused = store.paused()
        return [CampaignSummary(name, per, name in paused or "*" in paused) for name, per in counts.items()]

    def _require(self, store: SqlStore, campaign: str) -> dict[str, int]:
        counts = store.counts(campaign).get(campaign)
        if not counts:
            raise SelectionError(f"no campaign named {campaign!r} in the queue", hint="see `campaign status`")
        return counts

    def overview(self, campaign: str) -> CampaignOverview:
        """Counts per state, rates, the per-day timeline, what waits and why."""
        with self._locked() as store:
            counts = self._require(store, campaign)
            facts = sreview.facts(store, campaign)
            waiting = store.waiting(campaign)
            ready = store.ready_by_recipient(campaign) if any(r == "ready" for r, _, _ in waiting) else []
            if ready:
                waiting = _explain_ready(self.ws, store, waiting, ready)
            paused = store.paused()
        return CampaignOverview(
            name=campaign,
            counts=counts,
            totals=facts.totals,
            receipts=facts.receipts,
            days=_days(facts.timeline),
            waiting=[Waiting(reason, n, _utc(first)) for reason, n, first in waiting],
            paused=campaign in paused or "*" in paused,
        )

    # -- the per-institution table ------------------------------------------------------

    def check_table(self, request: TableRequest) -> None:
        """Refuse a request no page could have made. Raises UsageError."""
        if request.status is not None and request.status not in STATUSES:
            raise UsageError(f"status {request.status!r}: choose one of {', '.join(STATUSES)}")
        if request.sort not in SORTS:
            raise UsageError(f"sort {request.sort!r}: choose one of {', '.join(SORTS)}")
        if request.per_page not in PAGE_SIZES:
            raise UsageError(f"per page {request.per_page}: choose one of {', '.join(map(str, PAGE_SIZES))}")
        if request.page < 1 or request.page > 1_000_000:
            raise UsageError(f"page {request.page}: pages start at 1")
        if request.tag is not None and request.tag not in self.tags():
            raise UsageError(f"tag {request.tag!r} is not used in recipients.yaml")

    def letters(self, request: TableRequest, lang: str = "en") -> LetterPage:
        """One page of a campaign's letters, filtered by state and tag, sorted."""
        self.check_table(request)
        recipients: tuple[str, ...] | None = None
        if request.tag is not None:
            recipients = tuple(sorted(rid for rid, r in self._registry().items() if request.tag in r.tags))
        query = PageQuery(
            campaign=request.campaign,
            statuses=(request.status,) if request.status else (),
            recipients=recipients,
            sort=request.sort,
            descending=request.descending,
            offset=(request.page - 1) * request.per_page,
            limit=request.per_page,
        )
        with self._locked() as store:
            self._require(store, request.campaign)
            rows, matching = sreview.letter_page(store, query)
        return LetterPage(request, [self._row(r, lang) for r in rows], matching)

    def all_letters(self, campaign: str, lang: str = "en") -> list[LetterRow]:
        """Every letter of a campaign, by institution (for the report)."""
        query = PageQuery(campaign=campaign, limit=10_000_000)
        with self._locked() as store:
            rows, _ = sreview.letter_page(store, query)
        return [self._row(r, lang) for r in rows]

    def _row(self, r: Any, lang: str) -> LetterRow:
        return LetterRow(
            id=int(r["id"]),
            campaign=r["campaign"],
            letter=r["letter"],
            recipient=r["recipient"],
            name=self.name_of(r["recipient"], lang),
            email=r["email"],
            lang=r["lang"],
            status=r["status"],
            attempts=int(r["attempts"]),
            sent_at=r["sent_at"],
            updated_at=r["updated_at"],
            delivered_at=r["receipt_at"] if r["status"] == "delivered" else None,
            read_at=r["displayed_at"],
            replied_at=r["replied_at"],
            auto_replied_at=r["auto_replied_at"],
            wait_reason=r["wait_reason"],
            hold_reason=r["hold_reason"],
            possible_duplicate=bool(r["possible_duplicate"]),
            about_case=bool(r["cases"]),
        )

    # -- one letter ----------------------------------------------------------------------

    def letter(self, row_id: int, lang: str = "en") -> LetterHistory:
        """Everything about one letter: every event of the chain with its position, the
        server's replies, the reports and replies received."""
        from campaign.receipts import describe

        with self._locked() as store:
            row = sreview.letter_row(store, row_id)
            if row is None:
                raise SelectionError(f"no letter with id {row_id}", hint="see the ids with `campaign log`")
            events = store.events(message=row["message_id"])
            receipts = store.receipts_for(row_id)
            prefix, body = store.wire_bytes(row_id)
            blobs = {r["report_sha256"]: store.blob(r["report_sha256"]) for r in receipts if r["kind"] == "reply"}
            blobs.update(
                {r["report_sha256"]: store.blob(r["report_sha256"]) for r in receipts if r["kind"] == "auto-reply"}
            )
            length, _ = store.chain_head()
        views = []
        for r in receipts:
            sender = subject = ""
            raw = blobs.get(r["report_sha256"])
            if raw is not None:
                sender, subject = describe(raw)
                if row.get("cases"):
                    subject = "(a reply to a letter about a case: subject not shown)"
            views.append(
                ReceiptView(
                    kind=r["kind"],
                    outcome=r["outcome"],
                    status=r["status"],
                    diagnostic=r["diagnostic"],
                    reporting_mta=r["reporting_mta"],
                    remote_mta=r["remote_mta"],
                    arrival=r["arrival"] or r["received_at"],
                    note=r["note"],
                    matched_by=r["matched_by"],
                    sha256=r["report_sha256"],
                    sender=sender,
                    subject=subject,
                )
            )
        sending = [e for e in events if e.kind == "sending"]
        detail = {
            key: row.get(key)
            for key in (
                "subject", "message_id", "envid", "content_sha256", "wire_sha256", "created_at", "first_attempt_at",
                "last_code", "last_status", "last_reply", "remote_id", "delivery_detail", "reporting_mta",
                "deleted_at", "delayed_at", "contact_name", "in_reply_to", "next_attempt_at", "dsn_requested",
            )
        }  # fmt: skip
        if detail["next_attempt_at"] is not None:
            detail["next_attempt_at"] = _utc(int(detail["next_attempt_at"]))
        return LetterHistory(
            row=self._row(row, lang),
            detail=detail,
            events=[EventView(e.seq, _ms(e.time), e.kind, dict(e.data), e.prev_hash, e.hash) for e in events],
            receipts=views,
            size=len((prefix or b"") + body),
            sent_bytes=prefix is not None,
            sending_sha256=str(sending[-1].data.get("sha256")) if sending else None,
            chain_length=length,
        )

    def eml(self, row_id: int) -> Download:
        """The letter's exact bytes: as sent (with the Date line fixed at the first attempt)
        or, before any attempt, as queued."""
        with self._locked() as store:
            row = sreview.letter_row(store, row_id)
            if row is None:
                raise SelectionError(f"no letter with id {row_id}", hint="see the ids with `campaign log`")
            prefix, body = store.wire_bytes(row_id)
        data = (prefix or b"") + body
        name = f"{row['campaign']}-{row['recipient']}-{row_id}.eml"
        note = None if prefix is not None else "not sent yet: the bytes as queued, without the Date line"
        return Download(_safe_filename(name), data, note)

    # -- replies and silence ----------------------------------------------------------------

    def replies(self, campaign: str, lang: str = "en") -> list[ReplyView]:
        """Replies and automatic replies to a campaign's letters, oldest first."""
        from campaign.receipts import describe

        with self._locked() as store:
            self._require(store, campaign)
            rows = store.replies(campaign)
            blobs = {r["report_sha256"]: store.blob(r["report_sha256"]) for r in rows}
        views = []
        for r in rows:
            sender, subject = describe(blobs.get(r["report_sha256"]) or b"")
            if r.get("cases"):
                subject = "(a reply to a letter about a case: subject not shown)"
            views.append(
                ReplyView(
                    kind=r["kind"],
                    campaign=r["campaign"],
                    recipient=r["recipient"],
                    name=self.name_of(r["recipient"], lang),
                    email=r["email"],
                    message_row=int(r["message_row"]),
                    received=r["arrival"] or r["received_at"],
                    sender=sender,
                    subject=subject,
                    automatic=r["note"] if r["kind"] == "auto-reply" else None,
                )
            )
        return views

    def unanswered(self, campaign: str, lang: str = "en", today: date | None = None) -> list[Unanswered]:
        """Institutions whose letters were accepted and got no reply from a person, with the
        days since delivery (or since sending, when no delivery report came)."""
        today = today or utcnow().date()
        with self._locked() as store:
            self._require(store, campaign)
            rows = sreview.unanswered(store, campaign)
        found = []
        for r in rows:
            since = r["delivered_at"] or r["sent_at"] or ""
            days = max(0, (today - date.fromisoformat(since[:10])).days) if since else 0
            found.append(
                Unanswered(
                    recipient=r["recipient"],
                    name=self.name_of(r["recipient"], lang),
                    letters=int(r["letters"]),
                    since=since,
                    days=days,
                    delivered=r["delivered_at"] is not None,
                    auto_replied=bool(r["auto_replied"]),
                )
            )
        return found

    # -- signing drives ----------------------------------------------------------------------

    def drives(self, *, with_names: bool = False) -> list[DriveSummary]:
        """Every drive: count, Merkle root, open or closed, signatures per week (buckets
        of at least 10, so no small meeting shows); names only when asked."""
        from campaign.store import signing as sstore

        with self._locked() as store:
            drives = sstore.list_drives(store)
            days = {d["id"]: sreview.signature_days(store, d["id"]) for d in drives}
            names = {d["id"]: sreview.signatory_names(store, d["id"]) for d in drives} if with_names else {}
        return [
            DriveSummary(
                name=d["name"],
                letter=d["letter"],
                status=d["status"],
                signed=int(d.get("signed") or 0),
                count=d["signature_count"],
                root=d["root"],
                closes_at=d["closes_at"],
                closed_at=d["closed_at"],
                buckets=weekly_buckets(days[d["id"]]),
                names=names.get(d["id"]) if with_names else None,
            )
            for d in drives
        ]

    # -- the log -------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        with self._locked() as store:
            return store.chain_head()

    def verification(self, *, compute: bool = True) -> _Checked | None:
        """`log verify`'s result for the current chain head: kept, and recomputed only when
        the head has moved (None when ``compute`` is False and it has)."""
        head = self.head()
        checked = self._checked
        if checked is not None and checked.head == head:
            return checked
        if not compute:
            return None
        from campaign.ledger import verify

        with self._verify_lock:
            checked = self._checked
            if checked is not None and checked.head == head:
                return checked
            start = time.perf_counter()
            # A connection of its own: a long check must not hold up the pages.
            with open_store(self.ws, create=False) as store:
                head = store.chain_head()
                result = verify(store)
            self._checked = _Checked(head, result, to_rfc3339(utcnow()), time.perf_counter() - start)
            return self._checked

    def evidence(self, campaign: str) -> Download:
        """The campaign's evidence bundle (letters about a case left out, as `log export` does)."""
        from campaign.api.evidence import export_evidence

        self.ws.ensure_state_dir()
        with tempfile.TemporaryDirectory(dir=self.ws.state_dir, prefix="evidence-") as tmp:
            path = Path(tmp) / "evidence.zip"
            result = export_evidence(self.ws, path, campaign=campaign)
            data = path.read_bytes()
        note = (
            f"left out {plural(result.left_out, 'letter')} about a case: their bytes carry the case's personal data"
            if result.left_out
            else None
        )
        return Download(_safe_filename(f"evidence-{campaign}.zip"), data, note)

    # -- the two actions ---------------------------------------------------------------------

    def release(self, row_id: int) -> list[str]:
        """`campaign release ID`: a held (or failed) letter back to the queue."""
        from campaign.api import release

        history = self.letter(row_id)
        if history.row.status not in RELEASABLE:
            raise SelectionError(f"letter {row_id} is {history.row.status}: only held or failed letters are released")
        return release(self.ws, [row_id], note="released in the organisers' area")

    def cancel(self, row_id: int) -> int:
        """`campaign cancel ID`: a queued, deferred or held letter will not be sent."""
        from campaign.api.controls import CancelRequest, cancel

        history = self.letter(row_id)
        if history.row.status not in CANCELLABLE:
            raise SelectionError(f"letter {row_id} is {history.row.status}: only unsent letters can be cancelled")
        result = cancel(self.ws, CancelRequest(ids=(row_id,), reason="cancelled in the organisers' area"))
        return len(result.cancelled)


# ---------------------------------------------------------------------------
# The report


def build_review(ws: Workspace, request: ReportRequest) -> Review:
    """What `campaign report` shows, read from the store."""
    service = ReviewService(ws)
    try:
        names = [c.name for c in service.campaigns()]
        if not names:
            raise SelectionError("the queue is empty: there is nothing to report", hint="queue a letter first")
        if request.campaign is not None:
            if request.campaign not in names:
                raise SelectionError(
                    f"no campaign named {request.campaign!r} in the queue", hint="see `campaign status`"
                )
            names = [request.campaign]
        campaigns = [
            (
                service.overview(name),
                service.all_letters(name, request.lang),
                service.unanswered(name, request.lang),
            )
            for name in names
        ]
        drives = service.drives(with_names=request.with_signatories)
        _, head = service.head()
    finally:
        service.close()
    return Review(
        organisation=ws.settings.sender.name,
        created_at=to_rfc3339(utcnow()),
        campaigns=campaigns,
        drives=drives,
        head=head,
        lang=request.lang,
    )


def write_report(ws: Workspace, request: ReportRequest) -> ReportResult:
    """Write the report (HTML, or PDF with ``request.pdf``). Refuses to overwrite without
    ``force``; nothing is written when anything fails."""
    from campaign.report import render_report
    from campaign.report.words import LANGS

    if request.lang not in LANGS:
        raise UsageError(f"--lang {request.lang!r}: choose one of {', '.join(LANGS)}")
    out = request.out
    if out.exists() and not request.force:
        raise WorkspaceError(f"{out}: already exists; nothing was written", hint="add --force to overwrite")
    if out.exists() and out.is_dir():
        raise WorkspaceError(f"{out}: is a folder", hint="give a file name, e.g. -o report.html")
    if not out.parent.is_dir():
        raise WorkspaceError(f"{out.parent}: no such folder", hint="create it first, or choose another -o")
    review = build_review(ws, request)
    html = render_report(review)
    if request.pdf:
        from campaign import pdf

        data = pdf.print_html(html, lang=request.lang)
    else:
        data = html.encode("utf-8")
    _write_private_file(out, data, replace=True)
    return ReportResult(
        path=out,
        campaigns=[o.name for o, _, _ in review.campaigns],
        letters=sum(len(rows) for _, rows, _ in review.campaigns),
        drives=len(review.drives),
        named=sum(len(d.names or []) for d in review.drives),
        counts={o.name: dict(o.counts) for o, _, _ in review.campaigns},
    )


# ---------------------------------------------------------------------------
# Helpers


def _days(rows: list[tuple[str, str, int]]) -> list[Day]:
    """Per-day counts with every day between the first and the last (zeros included)."""
    per: dict[date, dict[str, int]] = {}
    for kind, text, n in rows:
        try:
            day = date.fromisoformat(text)
        except (TypeError, ValueError):
            continue
        per.setdefault(day, {})[kind] = n
    if not per:
        return []
    first, last = min(per), max(per)
    return [
        Day(date.fromordinal(o), per.get(date.fromordinal(o), {}))
        for o in range(first.toordinal(), last.toordinal() + 1)
    ]


def _ms(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _safe_filename(name: str) -> str:
    """A download's name: letters, digits and ``.-_`` only (ids may hold anything)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "_" for c in name)
    return cleaned[:120] or "download"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "PAGE_SIZES",
    "STATUSES",
    "CampaignSummary",
    "Download",
    "LetterHistory",
    "LetterPage",
    "ReplyView",
    "ReportRequest",
    "ReportResult",
    "ReviewService",
    "TableRequest",
    "build_review",
    "now_ms",
    "write_report",
]
