"""Guard: no float, and no rounding of its own, on a money path. The modules that read, compare, sum or send
amounts convert them with sync_ledger.money (to_money / to_decimal) only; a `round(float(x), 2)` coming back is
caught here, not by a bookkeeper. Precise on purpose: `float(per_minute)` for a rate limit is no money."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONEY_HELPER = "sync-ledger/sync_ledger/money.py"
MONEY_MODULES = (
    MONEY_HELPER,
    "target-quickbooks-merge/target_quickbooks_merge/mapping.py",
    "target-quickbooks-merge/target_quickbooks_merge/payments.py",
    "target-quickbooks-merge/target_quickbooks_merge/invoices.py",
    "target-coperniq/target_coperniq/mapping.py",
    "target-coperniq/target_coperniq/payments.py",
    "target-coperniq/target_coperniq/invoices.py",
    "target-coperniq/target_coperniq/invoice_update.py",
    "target-coperniq/target_coperniq/catalog.py",
    "target-coperniq/target_coperniq/coperniq.py",
    "tap-quickbooks-merge/tap_quickbooks_merge/client.py",
    "tap-quickbooks-merge/tap_quickbooks_merge/streams.py",
    "tap-coperniq/tap_coperniq/streams.py",
    "tap-coperniq/tap_coperniq/budget.py",
)
#: Names that make a statement (or the function it is in) money.
MONEY_WORDS = re.compile(r"amount|price|cost|total|balance|paid|money|cents|applied", re.IGNORECASE)


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def money_findings(source: str, *, helper: bool = False) -> list[str]:
    """`line: what` for each float or rounding on money in `source` (helper: the one module allowed to round)."""
    findings: list[str] = []

    def visit(node: ast.AST, function: str, statement: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        elif isinstance(node, ast.stmt):
            statement = ast.unparse(node)
        if isinstance(node, ast.Call):
            name = _called(node)
            where = f"{node.lineno}: {ast.unparse(node)}"
            if name == "float" and (helper or MONEY_WORDS.search(f"{statement} {function}")):
                findings.append(f"{where} (float on money: use sync_ledger.to_money / to_decimal)")
            elif (name == "round" and isinstance(node.func, ast.Name)) or (name == "quantize" and not helper):
                findings.append(f"{where} (rounding: sync_ledger.to_money is the one rounding rule)")
            elif name == "Decimal" and not helper and not all(isinstance(a, ast.Constant) for a in node.args):
                findings.append(f"{where} (conversion: sync_ledger.to_decimal reads every number and string)")
        for child in ast.iter_child_nodes(node):
            visit(child, function, statement)

    visit(ast.parse(source), "", "")
    return findings


@pytest.mark.parametrize("path", MONEY_MODULES)
def test_no_float_and_no_own_rounding_on_money(path: str) -> None:
    source = (ROOT / path).read_text(encoding="utf-8")
    assert money_findings(source, helper=path == MONEY_HELPER) == []


def test_the_guard_catches_what_the_money_paths_held_before() -> None:
    """What target-quickbooks-merge and target-coperniq did before sync_ledger.money, and what stays allowed."""
    before = """
def money(value):
    return round(float(value or 0), 2)

def invoice_line(line, price):
    return {"total_amount": round(float(line["quantity"]) * price, 2)}

def twin(p, body, CENT):
    return Decimal(str(p.get("amount") or 0)).quantize(CENT) == Decimal(str(body["amount"]))

def catalog_item(cost):
    return {"cost": float(cost or 0)}
"""
    found = money_findings(before)
    assert len(found) == 8, found
    allowed = """
def rate_limiter(per_minute):
    return RateLimiter(float(per_minute) / 60.0, Decimal(0), Decimal("0.01"))

def sweep_interval(value):
    return max(0.0, float(value))
"""
    assert money_findings(allowed) == []
