"""The signing page under load (200 supporters signing at once, against `pdf batch`), and
the organisers' area on a campaign of 100,000 letters (against `campaign status --json`).

    .venv/bin/python benchmarks/serve.py            # both parts
    .venv/bin/python benchmarks/serve.py -n 100 --processes 2 --only signing
    .venv/bin/python benchmarks/serve.py --only admin --letters 100000

The organisers' part builds a campaign of N letters with real parts
(tests/support/review.py: queued, some held by a refusing server, cancelled and
rescheduled, the rest sent to the recording sink, delivery reports, read receipts and
replies imported), starts `campaign serve --admin-only` as a subprocess, signs in with
the printed token, and times the overview and one page of the per-institution table
(several sorts and filters) from the request to the last byte; then
`campaign status --json` on the same store, as a process (what an organiser runs) and
as the in-process `api.status` call, beside the overview's own in-process call
(`ReviewService.overview`: the same kind of store work, without HTTP and the page).
p50/p95 side by side (aim: p95 under 300 ms and no slower than `status --json`).

Starts the real `campaign serve` (a subprocess on a free loopback port, worker processes
sealing the PDFs) for a drive of the shipped peace-agreement letter to the Tajik embassy
(Tajik, two pages), then N supporters at once with an httpx async client, each: open the
page, sign (typed signature), download the sealed PDF. Measures page latency, "submit to
PDF" latency (the POST until the PDF's last byte), errors, and signed PDFs per second;
then `campaign pdf batch` for N supporters on the same letter, institution and number of
processes. Prints the figures side by side; asserts nothing. Traffic stays on 127.0.0.1.

"Per core" compares the CPU seconds each signed PDF costs, whole process trees included
(the server with its workers; the batch with its workers), measured with getrusage over
the subprocesses so that other programs sharing the machine do not skew it. Start-up
(imports, unlocking the seal in every worker) is a fixed cost that differs between the
two (the server spawns its workers, the batch forks them), so the figure is the
marginal cost: (CPU for N − CPU for 10) / (N − 10). PDFs per wall-clock second are
printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.signing import KEY, ServeProcess, signing_workspace  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def supporter(client: httpx.AsyncClient, path: str, n: int, pages: list[float], submits: list[float]) -> bool:
    try:
        t0 = time.perf_counter()
        page = await client.get(path)
        pages.append(time.perf_counter() - t0)
        token = re.search(r'name="form_token" value="([^"]+)"', page.text)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if page.status_code != 200 or not token or not csrf:
            return False
        data = {"lang": "tg", "name": f"Тарафдор {n:04d}", "signature_kind": "typed", "consent": "yes",
                "form_token": token.group(1), "csrf": csrf.group(1)}  # fmt: skip
        t1 = time.perf_counter()
        done = await client.post(path + "/sign?lang=tg", data=data, files={"_": ("", b"", "x/y")})
        link = re.search(r'href="(/s/[^"]+/download/[^"]+)"', done.text)
        if done.status_code != 200 or not link:
            return False
        pdf = await client.get(link.group(1))
        submits.append(time.perf_counter() - t1)
        return pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    except httpx.HTTPError:
        return False


async def load(base: str, path: str, n: int) -> tuple[list[float], list[float], int, float]:
    pages: list[float] = []
    submits: list[float] = []
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    start = time.perf_counter()
    clients = [httpx.AsyncClient(base_url=base, timeout=300, limits=limits) for _ in range(n)]
    try:
        results = await asyncio.gather(*(supporter(c, path, i, pages, submits) for i, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return pages, submits, sum(1 for ok in results if not ok), time.perf_counter() - start


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batch(ws: Path, n: int, processes: int, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `campaign pdf batch` for n supporters, as a subprocess."""
    csv = out / "supporters.csv"
    csv.write_text("name\n" + "".join(f"Тарафдор {i:04d}\n" for i in range(n)), encoding="utf-8")
    cpu0, start = children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "campaign", "pdf", "batch", "peace-agreement", "--to", "tj-embassy",
         "--supporters", str(csv), "--out-dir", str(out / "signed"), "--processes", str(processes)],
        cwd=ROOT, env={**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "CAMPAIGN_KEY_PASSPHRASE": KEY},
        check=True, capture_output=True,
    )  # fmt: skip
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu0
    assert len(list((out / "signed").glob("*.pdf"))) == n
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="supporters signing at once")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="PDF worker processes")
    parser.add_argument("--letters", type=int, default=100_000, help="letters in the organisers' campaign")
    parser.add_argument("--rounds", type=int, default=40, help="requests per page kind (organisers' area)")
    parser.add_argument("--only", choices=("signing", "admin"), help="run one part only")
    parser.add_argument(
        "--workspace", type=Path, help="organisers' part: measure this workspace's campaign instead of building one"
    )
    args = parser.parse_args()
    if args.only != "admin":
        signing(args)
    if args.only != "signing":
        admin(args.letters, args.rounds, args.workspace)


def signing(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        base = Path(tmp)
        ws, drive = signing_workspace(base / "ws", ids=("tj-embassy",), rate=100_000)

        alone: list[float] = []

        def served_run(n: int, one_by_one: int = 0) -> tuple[list[float], list[float], int, float, float]:
            cpu0 = children_cpu()
            with ServeProcess(ws, processes=args.processes) as server:
                time.sleep(2)  # let the workers finish loading the seal
                pages, submits, errors, wall = asyncio.run(load(server.url, drive.path, n))
                for _ in range(one_by_one):  # supporters arriving one at a time, as at most meetings
                    _, one, more, _ = asyncio.run(load(server.url, drive.path, 1))
                    alone.extend(one)
                    errors += more
            return pages, submits, errors, wall, children_cpu() - cpu0

        small = 10
        _, small_submits, _, _, small_cpu = served_run(small)
        pages, submits, errors, wall, served_cpu = served_run(args.n)
        served_run(0, one_by_one=20)
        for folder in ("batch-small", "batch"):
            (base / folder).mkdir()
        _, batch_small_cpu = batch(ws, small, args.processes, base / "batch-small")
        batch_seconds, batch_cpu = batch(ws, args.n, args.processes, base / "batch")
    served = len(submits) / wall
    batched = args.n / batch_seconds
    served_marginal = (served_cpu - small_cpu) / max(1, len(submits) - len(small_submits))
    batch_marginal = (batch_cpu - batch_small_cpu) / (args.n - small)
    print(
        f"campaign serve: {args.n} supporters at once, {args.processes} PDF worker process(es), {os.cpu_count()} CPU(s)"
    )
    print(f"  page          p50 {statistics.median(pages) * 1000:8.0f} ms   p95 {pct(pages, 95) * 1000:8.0f} ms")
    print(f"  submit → PDF  p50 {statistics.median(submits) * 1000:8.0f} ms   p95 {pct(submits, 95) * 1000:8.0f} ms")
    print(
        f"  one at a time p50 {statistics.median(alone) * 1000:8.0f} ms   p95 {pct(alone, 95) * 1000:8.0f} ms"
        f"   (submit → PDF, {len(alone)} supporters arriving one after another)"
    )
    print(f"  errors        {errors}")
    print(f"  signed PDFs per second, served:       {served:6.2f}  ({len(submits)} in {wall:.1f} s)")
    print(
        f"  signed PDFs per second, `pdf batch`:  {batched:6.2f}  ({args.n} in {batch_seconds:.1f} s, same processes)"
    )
    print(f"  served / batch, wall clock: {served / batched:.2f}x")
    whole_served, whole_batch = served_cpu / max(1, len(submits)), batch_cpu / args.n
    print(f"  CPU seconds per signed PDF, whole runs: served {whole_served:.3f}, batch {whole_batch:.3f}")
    print(f"  CPU seconds per signed PDF, marginal:   served {served_marginal:.3f}, batch {batch_marginal:.3f}")
    print(f"  served / batch per core, whole runs: {whole_batch / whole_served:.2f}x")
    print(f"  served / batch per core, marginal:   {batch_marginal / served_marginal:.2f}x  (aim ≥ 0.8x)")
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    print(
        "  note: with N supporters arriving at once, submit → PDF is mostly waiting for a worker; one PDF "
        f"costs a worker about {served_marginal * 1000:.0f} ms of CPU"
    )


# ---------------------------------------------------------------------------
# The organisers' area


def admin_session(base: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=120, follow_redirects=False)
    page = client.get("/admin/login")
    form_token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert form_token is not None, page.text[:500]
    signed = client.post("/admin/login", data={"token": token, "form_token": form_token.group(1)})
    assert signed.status_code == 303, signed.text[:500]
    return client


def timed(client: httpx.Client, paths: list[str], rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        path = paths[i % len(paths)]
        t0 = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return times


def admin(letters: int, rounds: int, existing: Path | None = None) -> None:
    from tests.support.review import mixed_campaign

    with tempfile.TemporaryDirectory(prefix="bench-admin-") as tmp:
        base = Path(tmp)
        os.environ["HOME"] = str(base / "home")
        os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"

        class Env:
            def setenv(self, key: str, value: str) -> None:
                os.environ[key] = value

        start = time.perf_counter()
        copies = max(1, -(-letters // 20_000))  # recipients.yaml stays under its 5 MB limit
        if existing is not None:
            ws = existing.resolve()
        else:
            ws = mixed_campaign(base / "ws", letters // copies, Env(), letters=copies)
        built = time.perf_counter() - start
        campaign = "peace-agreement"
        with ServeProcess(ws, processes=0, extra=("--admin-only",)) as server:
            client = admin_session(server.admin_url, server.admin_token)
            client.get(f"/admin/overview?c={campaign}")  # the first request opens the registry
            overview = timed(client, [f"/admin/overview?c={campaign}"], rounds)
            pages = [
                f"/admin/letters?c={campaign}",
                f"/admin/letters?c={campaign}&sort=sent&order=desc",
                f"/admin/letters?c={campaign}&status=delivered&page=40",
                f"/admin/letters?c={campaign}&tag=special&sort=changed",
                f"/admin/letters?c={campaign}&sort=status&page=500",
            ]
            table = timed(client, pages, rounds)
            client.close()
        status_cli = []
        env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws)}
        for _ in range(max(5, rounds // 4)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "campaign", "status", "--json"], cwd=ROOT, env=env, check=True,
                           capture_output=True)  # fmt: skip
            status_cli.append(time.perf_counter() - t0)
        from campaign import api
        from campaign.api.review import ReviewService

        workspace = api.open_workspace(ws)
        status_call = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            api.status(workspace)
            status_call.append(time.perf_counter() - t0)
        service = ReviewService(workspace)
        overview_call = []
        try:
            service.overview(campaign)  # the first call opens the registry, as the server's first request does
            for _ in range(rounds):
                t0 = time.perf_counter()
                service.overview(campaign)
                overview_call.append(time.perf_counter() - t0)
        finally:
            service.close()

    def row(label: str, values: list[float]) -> str:
        return f"  {label:<44} p50 {statistics.median(values) * 1000:7.0f} ms   p95 {pct(values, 95) * 1000:7.0f} ms"

    if existing is not None:
        print(f"organisers' area: the campaign in {existing} ({letters_in(existing):,} letters)")
    else:
        print(
            f"organisers' area: one campaign of {letters:,} letters in mixed states, {letters // copies:,} "
            f"institutions x {copies} letters (built in {built:.0f} s)"
        )
    print(row("overview (GET /admin/overview)", overview))
    print(row("one page of the table (50 rows; 5 kinds)", table))
    print(row("`campaign status --json` (a process)", status_cli))
    print(row("api.status() in process (its store work)", status_call))
    print(row("ReviewService.overview() in process (ditto)", overview_call))
    print(
        f"  p95 overview / p95 status --json: {pct(overview, 95) / pct(status_cli, 95):.2f}x, "
        f"table / status --json: {pct(table, 95) / pct(status_cli, 95):.2f}x (aim: p95 < 300 ms and <= 1x); "
        f"in process, overview / status: {pct(overview_call, 95) / pct(status_call, 95):.2f}x"
    )


def letters_in(ws: Path) -> int:
    from campaign import api

    with api.open_store(api.open_workspace(ws), create=False) as store:
        return sum(sum(per.values()) for per in store.counts().values())


if __name__ == "__main__":
    main()
