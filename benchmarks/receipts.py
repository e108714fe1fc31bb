"""Delivery reports imported and matched per second: a Maildir of 10,000 reports against
10,000 sent letters (aim >= 2,000/s; matching uses the unique indexes on envid and
Message-ID, never a scan).

Reports are a mix of Postfix success, failure and delay reports and Exchange/Gmail-style
reports without ENVID (matched by Message-ID), generated from tests/data/receipts.

    .venv/bin/python benchmarks/receipts.py [--reports 10000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "tests" / "data" / "receipts"
TEMPLATES = [  # (file, letter number it refers to)
    ("postfix-success.eml", 1),
    ("postfix-failed-ret-hdrs.eml", 5),
    ("postfix-delayed.eml", 6),
    ("gmail-failure.eml", 14),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=10_000)
    args = parser.parse_args()
    n = args.reports

    from campaign import api
    from campaign.models import address_domain, address_key
    from campaign.store import NewMessage

    base = Path(tempfile.mkdtemp(prefix="campaign-bench-receipts-"))
    try:
        ws_dir = base / "ws"
        ws_dir.mkdir()
        (ws_dir / "campaign.toml").write_text(
            '[sender]\nname = "Bench"\nemail = "letters@campaign.example"\n[receipts]\nreturn_path = '
            '"receipts@campaign.example"\n'
        )
        (ws_dir / "recipients.yaml").write_text("recipients:\n  - id: x\n    name: X\n    languages: [en]\n")
        (ws_dir / "letters").mkdir()
        ws = api.open_workspace(ws_dir)
        store = api.open_store(ws)
        import json

        letters = json.loads((CORPUS / "manifest.json").read_text())["letters"]
        templates = [((CORPUS / name).read_bytes(), letters[str(number)]) for name, number in TEMPLATES]
        maildir = base / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        with store.enqueue(api.now_ms()) as session:
            for i in range(n):
                raw, letter = templates[i % len(templates)]
                envid = f"{i + 1000:032x}"
                message_id = f"<bench-{i}.t0k3n@campaign.example>"
                email = letter["to"].replace("@", f"+{i}@")
                session.add(
                    NewMessage(
                        campaign="bench",
                        letter="l",
                        recipient=f"r{i}",
                        email=email,
                        email_key=address_key(email),
                        domain=address_domain(email),
                        contact_name=None,
                        lang="en",
                        subject="s",
                        message_id=message_id,
                        envid=envid,
                        body=b"x",
                        content_sha256="0" * 64,
                    )
                )
                report = (
                    raw.replace(letter["envid"].encode(), envid.encode())
                    .replace(letter["message_id"].encode(), message_id.encode())
                    .replace(letter["to"].encode(), email.encode())
                )
                (maildir / "new" / f"{1732790000 + i}.M{i}P1.bench").write_bytes(report)
        with store.transaction() as tx:
            tx.execute("UPDATE messages SET status = 'sent'")
        store.close()

        start = time.perf_counter()
        result = api.import_receipts(ws, [maildir])
        elapsed = time.perf_counter() - start
        store = api.open_store(ws)
        matched = n - len(store.unmatched())
        store.close()
        print(f"receipts: {n} reports in a Maildir against {n} sent letters")
        print(
            f"  imported {result.recorded} entries ({matched} matched) in {elapsed:.2f} s: {n / elapsed:.0f} "
            "reports/s (aim >= 2000)"
        )
        start = time.perf_counter()
        again = api.import_receipts(ws, [maildir])
        print(
            f"  importing the same Maildir again: {again.already} already known, {again.recorded} new, "
            f"{time.perf_counter() - start:.2f} s"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
