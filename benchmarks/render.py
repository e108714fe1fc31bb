"""Letters built into message bytes per second: campaign's renderer against a bare baseline.

10,000 generated institution/contact pairs (English, Russian and Tajik, like the shipped
letter). Ours: sandboxed Jinja2 with escaping, Markdown, NFC, header checks, deterministic
MIME (``campaign.outbox.render_one``). Baseline, written inline here: bare Jinja2 +
markdown-it rendering the same templates and building the same multipart/alternative
message with the stdlib. Prints both rates and the ratio (aim: ours/baseline >= 0.8).

    .venv/bin/python benchmarks/render.py [--pairs 10000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import date
from email import policy
from email.message import EmailMessage
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaign.models import Contact, Recipient, Sender, split_front_matter  # noqa: E402
from campaign.outbox import Target, render_one  # noqa: E402
from campaign.registry import load_letters  # noqa: E402
from campaign.render import Renderer, format_date  # noqa: E402

SENDER = Sender(name="Civic Platform for Tajikistan", email="letters@campaign.example", signatory="The Board")
LANGS = ["en", "ru", "tg"]


def pairs(n: int) -> list[Target]:
    out = []
    for i in range(n):
        lang = LANGS[i % 3]
        recipient = Recipient(
            id=f"inst-{i}",
            name=f"Institution number {i} for human rights",
            languages=[lang, "en"],
            contacts=[Contact(email=f"office{i}@inst{i % 2000}.example", name=f"Office {i}")],
        )
        out.append(Target(recipient, recipient.contacts[0]))
    return out


def ours(targets: list[Target]) -> float:
    letters = load_letters(ROOT / "letters")
    renderer = Renderer(ROOT / "letters")
    letter = letters["peace-agreement"]
    today = date(2026, 11, 28)
    start = time.perf_counter()
    for i, target in enumerate(targets):
        render_one(renderer, letter, target, SENDER, message_id=f"<{i:032x}@campaign.example>", lang=None, today=today)
    return len(targets) / (time.perf_counter() - start)


class _Loader(jinja2.BaseLoader):
    """Bare loader: the same files, front matter stripped."""

    def get_source(self, environment: jinja2.Environment, template: str):  # type: ignore[no-untyped-def]
        text = (ROOT / "letters" / template).read_text(encoding="utf-8")
        _, body, _ = split_front_matter(text)
        return body, template, lambda: True


def baseline(targets: list[Target]) -> float:
    env = jinja2.Environment(loader=_Loader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    md = MarkdownIt("commonmark", {"html": False})
    letters = load_letters(ROOT / "letters")
    letter = letters["peace-agreement"]
    subjects = {lang: env.from_string(t.subject) for lang, t in letter.templates.items()}
    bodies = {lang: env.get_template(t.path) for lang, t in letter.templates.items()}
    smtp = policy.SMTP.clone(cte_type="7bit")
    today = {lang: format_date(date(2026, 11, 28), lang) for lang in LANGS}
    start = time.perf_counter()
    for i, target in enumerate(targets):
        lang = target.recipient.languages[0]
        ctx = {
            "recipient": target.recipient,
            "contact": target.contact,
            "salutation": "Dear Sir or Madam,",
            "sender": SENDER,
            "lang": lang,
            "today": today[lang],
            "letter": letter.id,
            "medium": "email",
            "voice": "we",
            "original": None,
        }
        subject = subjects[lang].render(ctx)
        text = bodies[lang].render(ctx)
        html = "<!DOCTYPE html><html><body>" + md.render(text) + "</body></html>"
        msg = EmailMessage(policy=smtp)
        msg["From"] = f"{SENDER.name} <{SENDER.email}>"
        msg["To"] = f"{target.contact.name} <{target.contact.email}>"
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{i:032x}@campaign.example>"
        msg.set_content(text, cte="quoted-printable")
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
        msg["Content-Language"] = lang
        msg.as_bytes()
    return len(targets) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate ours/baseline this many times; best of each")
    args = parser.parse_args()
    targets = pairs(args.pairs)
    ours_rates, base_rates = [], []
    for _ in range(args.rounds):
        gc.collect()
        base_rates.append(baseline(targets))
        gc.collect()
        ours_rates.append(ours(targets))
    o, b = max(ours_rates), max(base_rates)
    print(f"render: {args.pairs} institution/contact pairs, best of {args.rounds} alternating rounds")
    print(f"  campaign (sandbox, escaping, checks):  {o:8.0f} messages/s")
    print(f"  baseline (bare Jinja2 + markdown-it):  {b:8.0f} messages/s")
    print(f"  ratio ours/baseline: {o / b:.2f}  (aim >= 0.8)")


if __name__ == "__main__":
    main()
