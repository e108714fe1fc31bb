"""A campaign under review: what the organisers' area shows and `campaign report` writes.

Contract:
- The dataclasses here (:class:`CampaignOverview`, :class:`LetterRow`, :class:`Unanswered`,
  :class:`DriveSummary`, :class:`Review`) are what ``campaign.api.review`` reads from the
  store and what both the organisers' pages and the report are drawn from, so the
  browser and the file always show the same numbers.
- :func:`weekly_buckets` turns signatures per day into per-week counts in which no
  bucket holds fewer than :data:`MIN_BUCKET` signatures (a short week is joined to the
  next one; a short tail to the one before), and the buckets add up to the total: no
  small bucket can be recovered by subtraction.
- :func:`render_report` returns one self-contained HTML document: its CSS inline, its
  charts inline SVG (``campaign.report.charts``), no script, no font, image or link
  fetched from anywhere (a Content-Security-Policy in the document forbids it), names of
  supporters only when the review carries them (``--with-signatories``).

Level: beside the ledger (it uses ``render``'s page templates; nothing below imports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from campaign.render import render_page
from campaign.report import charts
from campaign.report.words import LANG_NAMES, percent, reason_in, state_name, words

__all__ = [
    "MIN_BUCKET",
    "Bucket",
    "CampaignOverview",
    "Day",
    "DriveSummary",
    "LetterRow",
    "Review",
    "Unanswered",
    "Waiting",
    "render_report",
    "state_chart",
    "timeline_chart",
    "weekly_buckets",
    "weeks_chart",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
MIN_BUCKET = 10
KINDS = ("sent", "delivered", "bounced", "read", "replied")
STATE_ORDER = (
    "queued", "sending", "deferred", "held", "sent", "relayed", "delivered", "bounced", "failed", "cancelled",
)  # fmt: skip


@dataclass(frozen=True)
class Day:
    day: date
    counts: dict[str, int]


@dataclass(frozen=True)
class Waiting:
    """Why pending letters wait, worded as `campaign status` words it."""

    reason: str
    count: int
    first: str  # UTC, "YYYY-MM-DD HH:MM:SS"


@dataclass(frozen=True)
class CampaignOverview:
    name: str
    counts: dict[str, int]  # per status, exactly as `campaign status --json`
    totals: dict[str, int]  # total, accepted, delivered, bounced, read, replied, auto_replied, …
    receipts: dict[str, int]  # awaiting, delayed, not_requested
    days: list[Day]
    waiting: list[Waiting]
    paused: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def states(self) -> list[tuple[str, int]]:
        """(status, letters) in the order a letter moves, only those present."""
        known = [(s, self.counts[s]) for s in STATE_ORDER if self.counts.get(s)]
        return known + [(s, n) for s, n in sorted(self.counts.items()) if s not in STATE_ORDER and n]

    def rates(self) -> list[tuple[str, int, int, str]]:
        """(word key, letters, out of, percentage) for the rates a report shows."""
        t = self.totals
        accepted = t.get("accepted", 0)
        return [
            ("rate_accepted", accepted, self.total, percent(accepted, self.total)),
            ("rate_delivered", t.get("delivered", 0), accepted, percent(t.get("delivered", 0), accepted)),
            ("rate_bounced", t.get("bounced", 0), accepted, percent(t.get("bounced", 0), accepted)),
            ("rate_read", t.get("read", 0), accepted, percent(t.get("read", 0), accepted)),
            ("rate_replied", t.get("replied", 0), accepted, percent(t.get("replied", 0), accepted)),
            ("rate_auto", t.get("auto_replied", 0), accepted, percent(t.get("auto_replied", 0), accepted)),
        ]


@dataclass(frozen=True)
class LetterRow:
    id: int
    campaign: str
    letter: str
    recipient: str
    name: str  # the institution's name from recipients.yaml (its id when it left the registry)
    email: str
    lang: str
    status: str
    attempts: int
    sent_at: str | None
    updated_at: str
    delivered_at: str | None
    read_at: str | None
    replied_at: str | None
    auto_replied_at: str | None
    wait_reason: str | None
    hold_reason: str | None
    possible_duplicate: bool
    about_case: bool

    @property
    def day_sent(self) -> str:
        return (self.sent_at or "")[:10]


@dataclass(frozen=True)
class Unanswered:
    recipient: str
    name: str
    letters: int
    since: str  # UTC RFC 3339: the delivery report, or the send when no report came
    days: int
    delivered: bool
    auto_replied: bool


@dataclass(frozen=True)
class Bucket:
    start: date
    end: date  # the last day of the last week in the bucket
    count: int

    @property
    def label(self) -> str:
        first = self.start.isocalendar()
        last = self.end.isocalendar()
        one = f"{first.year}-W{first.week:02d}"
        return one if (first.year, first.week) == (last.year, last.week) else f"{one}…W{last.week:02d}"


@dataclass(frozen=True)
class DriveSummary:
    name: str
    letter: str
    status: str
    signed: int  # signatures held now
    count: int | None  # at closing
    root: str | None
    closes_at: str | None
    closed_at: str | None
    buckets: list[Bucket]
    names: list[str] | None = None  # only with --with-signatories


@dataclass
class Review:
    """Everything a report shows."""

    organisation: str
    created_at: str
    campaigns: list[tuple[CampaignOverview, list[LetterRow], list[Unanswered]]]
    drives: list[DriveSummary] = field(default_factory=list)
    head: str | None = None
    lang: str = "en"


def weekly_buckets(days: list[tuple[str, int]], minimum: int = MIN_BUCKET) -> list[Bucket]:
    """Signatures per ISO week, joined so that every bucket holds at least ``minimum``
    (empty when the total is below it)."""
    weeks: dict[date, int] = {}
    for text, n in days:
        day = date.fromisoformat(text[:10])
        monday = day - timedelta(days=day.weekday())
        weeks[monday] = weeks.get(monday, 0) + n
    buckets: list[Bucket] = []
    start: date | None = None
    count = 0
    for monday in sorted(weeks):
        start = start or monday
        count += weeks[monday]
        if count >= minimum:
            buckets.append(Bucket(start, monday + timedelta(days=6), count))
            start, count = None, 0
    if count and start is not None:
        if not buckets:
            return []
        last = buckets.pop()
        buckets.append(Bucket(last.start, max(weeks) + timedelta(days=6), last.count + count))
    return buckets


def timeline_chart(overview: CampaignOverview, lang: str, ident: str = "timeline") -> str | None:
    w = words(lang)
    return charts.timeline(
        [(d.day, d.counts) for d in overview.days],
        {kind: w[f"k_{kind}"] for kind in KINDS},
        title=w["timeline_chart"].format(campaign=overview.name),
        ident=ident,
    )


def state_chart(overview: CampaignOverview, lang: str, ident: str = "states") -> str | None:
    w = words(lang)
    return charts.bars(
        [(state_name(lang, s), n) for s, n in overview.states()],
        title=w["states_chart"].format(campaign=overview.name),
        ident=ident,
    )


def weeks_chart(drive: DriveSummary, lang: str, ident: str = "weeks") -> str | None:
    return charts.columns(
        [(b.label, b.count) for b in drive.buckets],
        title=words(lang)["weeks_chart"].format(drive=drive.name),
        ident=ident,
    )


def render_report(review: Review) -> str:
    """The report as one HTML document that loads nothing (see the module's contract)."""
    lang = review.lang
    sections: list[dict[str, Any]] = []
    for index, (overview, rows, unanswered) in enumerate(review.campaigns):
        sections.append(
            {
                "overview": overview,
                "rows": rows,
                "unanswered": unanswered,
                "timeline": timeline_chart(overview, lang, f"timeline-{index}"),
                "states": state_chart(overview, lang, f"states-{index}"),
            }
        )
    drives = [(d, weeks_chart(d, lang, f"weeks-{i}")) for i, d in enumerate(review.drives)]
    made = datetime.fromisoformat(review.created_at.replace("Z", "+00:00"))
    return render_page(
        TEMPLATES,
        "report.html.j2",
        {
            "review": review,
            "lang": lang,
            "w": words(lang),
            "lang_name": LANG_NAMES.get(lang, lang),
            "sections": sections,
            "drives": drives,
            "kinds": KINDS,
            "state_name": lambda s: state_name(lang, s),
            "reason": lambda r: reason_in(lang, r),
            "made": made.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )
