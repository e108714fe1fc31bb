# ruff: noqa: E501  (sentences in two languages: one per line reads and diffs better)
"""The words of a review, in English and Russian: states, rates, charts, table headings.

Contract: :func:`words` returns the dictionary for a language (English when unknown);
every language has every key (tests/test_review.py checks). The organisers' pages
(``campaign.web.admin_i18n``) build on these, so a state or a rate is called the same in
the browser and in a report. :func:`reason_in` says why a letter waits in the page's
language: the store keeps `campaign status`'s English words, and each form they take is
translated here (a server's own reply stays as it came).
"""

from __future__ import annotations

import re
from collections.abc import Callable

LANGS = ("en", "ru")
LANG_NAMES = {"en": "English", "ru": "Русский"}

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "report_title": "Campaign report",
        "made_on": "Made on {date} by {org} with campaign.",
        "campaign": "Campaign",
        "campaigns": "Campaigns",
        "overview": "Overview",
        "letters": "Letters",
        "institutions": "Institutions",
        "total": "Total",
        "state": "State",
        "count": "Letters",
        "states_heading": "Letters by state",
        "states_chart": "Letters of {campaign} by state",
        "rates_heading": "What happened to the letters",
        "rate_accepted": "Accepted by a server",
        "rate_delivered": "Delivered (delivery report)",
        "rate_bounced": "Bounced",
        "rate_read": "Read (read receipt)",
        "rate_replied": "Answered by a person",
        "rate_auto": "Automatic replies",
        "rate_of": "{n} of {d} ({p})",
        "rates_note": "Delivery, bounces, reads and answers are counted among the letters a receiving server accepted. Read receipts and delivery reports are sent only by servers and people that choose to, so these are lower bounds.",
        "awaiting": "Awaiting a delivery report",
        "delayed": "Delivery delayed",
        "not_requested": "Server offered no delivery reports",
        "timeline_heading": "Per day (UTC)",
        "timeline_chart": "Letters of {campaign} sent, delivered, bounced, read and answered per day",
        "timeline_empty": "Nothing has been sent yet.",
        "day": "Day",
        "k_sent": "Sent",
        "k_delivered": "Delivered",
        "k_bounced": "Bounced",
        "k_read": "Read",
        "k_replied": "Answered",
        "waiting_heading": "What waits, and why",
        "waiting_none": "Nothing waits.",
        "reason": "Why",
        "next_attempt": "Next attempt (UTC)",
        "table_heading": "Every letter",
        "col_id": "No.",
        "col_institution": "Institution",
        "col_address": "Address",
        "col_lang": "Lang.",
        "col_state": "State",
        "col_sent": "Sent (UTC)",
        "col_delivered": "Delivery report",
        "col_read": "Read",
        "col_replied": "Answered",
        "col_attempts": "Attempts",
        "col_letter": "Letter",
        "unanswered_heading": "Institutions that have not answered",
        "unanswered_none": "Every institution that received a letter has answered.",
        "col_since": "Days since delivery",
        "since_sent": "{days} (since sent; no delivery report)",
        "auto_only": "automatic reply only",
        "drives_heading": "Signing drives",
        "drives_none": "No signing drive.",
        "drive": "Drive",
        "drive_open": "open",
        "drive_closed": "closed",
        "signatures": "Signatures",
        "merkle_root": "Merkle root",
        "weeks_chart": "Signatures of drive {drive} per week",
        "weeks_note": "Signatures are shown per week, and a week with fewer than 10 is joined to the next, so that no one can tell who signed at a small meeting.",
        "weeks_hidden": "Fewer than 10 signatures: not shown over time.",
        "week": "Weeks",
        "signatories": "Signatories (names as printed under the letter)",
        "no_names": "This report names no supporter.",
        "possible_duplicates": "Letters that may have arrived twice (a crash or a lost reply after sending): {n}",
        "about_case": "about a case",
        "paused": "Paused: `campaign resume` to send.",
        "s_queued": "queued",
        "s_sending": "sending",
        "s_deferred": "deferred",
        "s_sent": "sent",
        "s_failed": "failed",
        "s_held": "held",
        "s_delivered": "delivered",
        "s_relayed": "relayed",
        "s_bounced": "bounced",
        "s_cancelled": "cancelled",
        "yes": "yes",
        "head": "Log head (SHA-256 of the last event)",
    },
    "ru": {
        "report_title": "Отчёт о кампании",
        "made_on": "Составлен {date}, {org}, программой campaign.",
        "campaign": "Кампания",
        "campaigns": "Кампании",
        "overview": "Обзор",
        "letters": "Письма",
        "institutions": "Учреждения",
        "total": "Всего",
        "state": "Состояние",
        "count": "Писем",
        "states_heading": "Письма по состояниям",
        "states_chart": "Письма кампании {campaign} по состояниям",
        "rates_heading": "Что стало с письмами",
        "rate_accepted": "Приняты сервером",
        "rate_delivered": "Доставлены (отчёт о доставке)",
        "rate_bounced": "Возвращены",
        "rate_read": "Прочитаны (уведомление о прочтении)",
        "rate_replied": "Получен ответ от человека",
        "rate_auto": "Автоответы",
        "rate_of": "{n} из {d} ({p})",
        "rates_note": "Доставка, возвраты, прочтения и ответы считаются среди писем, которые принял сервер получателя. Отчёты о доставке и прочтении присылают лишь те серверы и люди, которые этого хотят, поэтому это нижние оценки.",
        "awaiting": "Ждут отчёта о доставке",
        "delayed": "Доставка задерживается",
        "not_requested": "Сервер не предлагал отчётов о доставке",
        "timeline_heading": "По дням (UTC)",
        "timeline_chart": "Письма кампании {campaign}: отправлено, доставлено, возвращено, прочитано и получено ответов по дням",
        "timeline_empty": "Пока ничего не отправлено.",
        "day": "День",
        "k_sent": "Отправлено",
        "k_delivered": "Доставлено",
        "k_bounced": "Возвращено",
        "k_read": "Прочитано",
        "k_replied": "Ответы",
        "waiting_heading": "Что ждёт и почему",
        "waiting_none": "Ничего не ждёт.",
        "reason": "Почему",
        "next_attempt": "Следующая попытка (UTC)",
        "table_heading": "Все письма",
        "col_id": "№",
        "col_institution": "Учреждение",
        "col_address": "Адрес",
        "col_lang": "Язык",
        "col_state": "Состояние",
        "col_sent": "Отправлено (UTC)",
        "col_delivered": "Отчёт о доставке",
        "col_read": "Прочитано",
        "col_replied": "Ответ",
        "col_attempts": "Попытки",
        "col_letter": "Письмо",
        "unanswered_heading": "Учреждения, которые не ответили",
        "unanswered_none": "Ответили все учреждения, получившие письмо.",
        "col_since": "Дней с доставки",
        "since_sent": "{days} (с отправки; отчёта о доставке нет)",
        "auto_only": "только автоответ",
        "drives_heading": "Сбор подписей",
        "drives_none": "Сборов подписей нет.",
        "drive": "Сбор",
        "drive_open": "открыт",
        "drive_closed": "закрыт",
        "signatures": "Подписи",
        "merkle_root": "Корень дерева Меркла",
        "weeks_chart": "Подписи сбора {drive} по неделям",
        "weeks_note": "Подписи показаны по неделям, а неделя, где их меньше 10, присоединяется к следующей, чтобы нельзя было понять, кто подписал на маленькой встрече.",
        "weeks_hidden": "Меньше 10 подписей: по времени не показываются.",
        "week": "Недели",
        "signatories": "Подписавшие (имена, как они напечатаны под письмом)",
        "no_names": "В этом отчёте не названо ни одного сторонника.",
        "possible_duplicates": "Письма, которые могли прийти дважды (сбой или потерянный ответ после отправки): {n}",
        "about_case": "о деле",
        "paused": "Приостановлена: `campaign resume`, чтобы отправлять.",
        "s_queued": "в очереди",
        "s_sending": "отправляется",
        "s_deferred": "отложено",
        "s_sent": "отправлено",
        "s_failed": "не доставлено",
        "s_held": "задержано",
        "s_delivered": "доставлено",
        "s_relayed": "передано дальше",
        "s_bounced": "возвращено",
        "s_cancelled": "отменено",
        "yes": "да",
        "head": "Голова журнала (SHA-256 последнего события)",
    },
}


def words(lang: str | None) -> dict[str, str]:
    """Every word for ``lang`` (English when it is not one of :data:`LANGS`)."""
    return WORDS.get((lang or "en").split("-")[0].lower(), WORDS["en"])


def state_name(lang: str | None, status: str) -> str:
    return words(lang).get(f"s_{status}", status)


def percent(n: int, d: int) -> str:
    """``n`` of ``d`` as a percentage with one decimal ("–" when nothing to divide by)."""
    if d <= 0:
        return "–"
    return f"{100 * n / d:.1f}\u00a0%"


_RU_DAYS = {"Mon": "пн", "Tue": "вт", "Wed": "ср", "Thu": "чт", "Fri": "пт", "Sat": "сб", "Sun": "вс"}
_REASONS: dict[str, list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]] = {
    "ru": [
        (
            re.compile(r"^ready( \(see `campaign plan` for expected times\))?$"),
            lambda m: "в очереди на отправку" + (" (время покажет `campaign plan`)" if m[1] else ""),
        ),
        (re.compile(r"^scheduled$"), lambda m: "по расписанию"),
        (re.compile(r"^scheduled: (.+)$"), lambda m: f"по расписанию: {m[1]}"),
        (
            re.compile(r"^office hours: opens (Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d\d:\d\d) (\S+)$"),
            lambda m: f"вне часов работы: откроется {_RU_DAYS[m[1]]} в {m[2]} ({m[3]})",
        ),
        (re.compile(r"^daily cap (\d+) reached for (\S+)$"), lambda m: f"исчерпан дневной лимит ({m[1]}) для {m[2]}"),
        (re.compile(r"^rate: (\S+)/s overall$"), lambda m: f"ограничение скорости: {m[1]} в секунду"),
        (re.compile(r"^rate: (\S+)/s to (\S+)$"), lambda m: f"ограничение скорости: {m[1]} в секунду для {m[2]}"),
        (re.compile(r"^retry after a temporary failure$"), lambda m: "повтор после временной ошибки"),
        (
            re.compile(r"^resending after a crash: possible duplicate$"),
            lambda m: "повторная отправка после сбоя: возможен дубликат",
        ),
        (
            re.compile(r"^paused: `campaign resume` to send$"),
            lambda m: "приостановлено: отправку возобновит `campaign resume`",
        ),
    ],
}


def reason_in(lang: str | None, reason: str | None) -> str:
    """Why a letter waits, in ``lang`` where the words are ours; anything else as it is."""
    if not reason:
        return ""
    for pattern, say in _REASONS.get((lang or "en").split("-")[0].lower(), []):
        match = pattern.match(reason)
        if match:
            return say(match)
    return reason
