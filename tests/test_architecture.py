"""The shape of the house (../shared/STYLE.md): imports point one way, each library has
one home, the CLI stays thin, the core never prints or exits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "campaign"

# Lower numbers sit lower; a module may import only from strictly lower levels
# (and from inside its own package, e.g. store.sql → store).
LEVELS = {
    "errors": 0,
    "transitions": 0,
    "wording": 0,
    "models": 1,
    "chain": 1,
    "files": 1,
    "pacing": 2,
    "signing": 2,
    "config": 3,
    "registry": 3,
    "render": 3,
    "store": 3,
    "transport": 3,
    "pdf": 3,
    "localserver": 3,
    "imap": 3,
    "outbox": 4,
    "ledger": 4,
    "cases": 4,
    "roster": 4,
    "evidence": 4,
    "report": 4,  # a campaign under review: the report's data, HTML and charts (render's page templates)
    "dispatch": 5,
    "receipts": 5,
    "submission": 5,
    "api": 6,
    "cli": 7,
    "web": 7,  # beside the CLI on the top floor; nothing imports it (see test_nothing_imports_web)
}

# The only import of the web layer: `campaign serve` starts it.
WEB_LAUNCHER = PACKAGE / "cli" / "serve.py"

# Third-party libraries and the only modules allowed to import them.
HOMES = {
    "ruamel": {"registry"},
    "yaml": {"registry"},
    "jinja2": {"render", "web"},  # web: its own page templates; letters are rendered by render
    "markupsafe": {"render", "web"},
    "markdown_it": {"render"},
    "babel": {"render", "wording"},
    "sqlite3": {"store"},
    "psycopg": {"store"},
    "aiosmtplib": set(),  # benchmarks only: campaign speaks SMTP itself (transport.py)
    "dkim": {"transport"},
    "keyring": {"config"},
    "pydantic": {"models", "config"},
    "email_validator": {"models"},
    "aiosmtpd": {"localserver"},
    "weasyprint": {"pdf"},
    "pyhanko": {"pdf"},
    "pyhanko_certvalidator": {"pdf"},
    "pikepdf": {"pdf"},
    "cryptography": {"pdf", "transport", "signing"},  # signing: the LAN certificate of `serve --lan`
    "nacl": {"signing"},
    "segno": {"pdf"},
    "leather": {"report"},  # charts as SVG, drawn on the server (campaign/report/charts.py)
    "PIL": {"pdf"},
    "starlette": {"web"},
    "uvicorn": {"web"},
    "multipart": {"web"},
    "python_multipart": {"web"},
    "httpx": set(),  # tests and benchmarks only
    "playwright": set(),  # tests only
    "imapclient": {"imap"},
    "docx": {"submission"},
    "openpyxl": {"roster"},
    "typer": {"cli"},
    "rich": {"cli"},
    "click": {"cli"},
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top in ("__init__", "__main__"):
            continue
        found.append((top, path))
    return found


def imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.module, node.lineno))
    return names


def test_every_module_has_a_level() -> None:
    for top, path in modules():
        assert top in LEVELS, f"{path}: add {top!r} to LEVELS in tests/test_architecture.py"


@pytest.mark.parametrize(("top", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else v.name)
def test_imports_point_one_way(top: str, path: Path) -> None:
    for name, line in imports(path):
        parts = name.split(".")
        if parts[0] != "campaign" or len(parts) < 2:
            continue
        target = parts[1]
        if target == top or target == "__init__":
            continue
        assert target != "cli", f"{path}:{line}: nothing may import the CLI"
        if target == "web" and path == WEB_LAUNCHER:
            continue
        assert LEVELS[target] < LEVELS[top], (
            f"{path}:{line}: {top} (level {LEVELS[top]}) imports {target} (level {LEVELS[target]})"
        )


@pytest.mark.parametrize(("top", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else v.name)
def test_each_library_has_one_home(top: str, path: Path) -> None:
    for name, line in imports(path):
        root = name.split(".")[0]
        if root in HOMES:
            assert top in HOMES[root], f"{path}:{line}: {root} belongs in {sorted(HOMES[root])}, not {top}"


@pytest.mark.parametrize(("top", "path"), modules(), ids=lambda v: str(v) if isinstance(v, str) else v.name)
def test_core_never_prints_or_exits(top: str, path: Path) -> None:
    if top == "cli":
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            assert name not in ("print", "exit", "_exit"), (
                f"{path}:{node.lineno}: core modules return, they do not {name}()"
            )


def test_nothing_imports_web() -> None:
    """The web layer calls api like the CLI does; only `campaign serve` starts it."""
    for top, path in modules():
        if top == "web" or path == WEB_LAUNCHER:
            continue
        for name, line in imports(path):
            assert not name.startswith("campaign.web"), f"{path}:{line}: nothing imports the web layer"


def test_web_never_touches_the_store() -> None:
    for path in (PACKAGE / "web").rglob("*.py"):
        for name, line in imports(path):
            parts = name.split(".")
            assert not (parts[0] == "campaign" and len(parts) > 1 and parts[1] in ("store", "registry", "render")), (
                f"{path}:{line}: the web layer calls campaign.api, never {name}"
            )


def test_cli_never_catches_bare_exception() -> None:
    for path in (PACKAGE / "cli").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler):
                assert node.type is not None, f"{path}:{node.lineno}: bare except"
                names = [n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)]
                assert "Exception" not in names and "BaseException" not in names, (
                    f"{path}:{node.lineno}: the CLI catches CampaignError, never Exception"
                )


def test_app_hides_locals_in_tracebacks() -> None:
    from campaign.cli import app

    assert app.pretty_exceptions_show_locals is False


def test_every_module_states_its_contract() -> None:
    for _, path in modules():
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path}: open the module with a docstring stating its contract"
