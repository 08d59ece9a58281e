"""Usage totals from the `db` host: who used which model how much, and how fast it was.

    python -m hx_gateway.usage inventory.py [--since 7d] [--by key|alias|backend|day|gateway]
                                            [--format table|csv|json]

Per group: requests, errors (HTTP status >= 400), prompt and completion tokens, p50 and p95 latency
of the answered requests (ms). The query runs on the `db` host as PostgreSQL's `postgres` user over
the deploy's own connection (SSH or Docker): the database stays closed to everyone but the gateways.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections.abc import Sequence

from pyinfra.api.connect import disconnect_all

from hx_gateway.model.plan import run_plans
from hx_gateway.model.refusal import Refusal
from hx_gateway.proof.usage import query
from hx_gateway.verify import add_group_data_option, connected, load_inventory, refused

GROUPS = {
    "key": "client_key",
    "alias": "coalesce(alias, '(none)')",
    "backend": "coalesce(backend, '(none)')",
    "day": "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "gateway": "gateway",
}
COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "p50_ms", "p95_ms")
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_RE = re.compile(r"^(\d{1,6})([mhdw])$")


def since_seconds(value: str) -> int:
    """`30m`, `24h`, `7d`, `2w` as seconds (argparse type: a bad value is refused with its reason)."""
    found = SINCE_RE.match(value.strip())
    if not found or int(found[1]) == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a number and a unit, m, h, d or w (e.g. 7d)")
    return int(found[1]) * UNITS[found[2]]


def report_sql(by: str, since: int) -> str:
    """The totals per group over the last `since` seconds (both validated: nothing here comes from a client)."""
    group = GROUPS[by]
    return (f"SELECT {group} AS {by}, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors, "
            "coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
            "coalesce(sum(completion_tokens), 0) AS completion_tokens, "
            "round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)) AS p50_ms, "
            "round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)) AS p95_ms "
            f"FROM usage_requests WHERE at >= now() - interval '{int(since)} seconds' GROUP BY 1 ORDER BY 1")


def render(rows: list[dict[str, str]], by: str, form: str) -> str:
    if form == "json":
        return json.dumps([{by: r[by], **{c: int(float(r[c])) if r[c] else None for c in COLUMNS}} for r in rows],
                          indent=2) + "\n"
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[by, *COLUMNS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    header = [by, *COLUMNS]
    table = [header] + [[r[by], *(r[c] or "-" for c in COLUMNS)] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))
             for row in table]
    return "\n".join(lines) + ("\n" if rows else "\n(no requests in this period)\n")


def usage(inventory: str, by: str, since: int, form: str, group_data: Sequence[str] = ()) -> str:
    state = load_inventory(inventory, group_data)
    plans = run_plans(state)
    db = next((plan.db for plan in plans.values() if plan.db), None)
    if db is None:
        raise Refusal(f"{inventory}: no `db` group, so no usage is recorded; add a PostgreSQL host to the `db` "
                      f"group and deploy (README: Usage records)")
    connected(state)
    try:
        return render(query(state.inventory.get_host(db.settings.host), db.settings, report_sql(by, since)), by, form)
    finally:
        disconnect_all(state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Usage totals per client key, alias, backend, day or gateway")
    parser.add_argument("inventory")
    parser.add_argument("--since", type=since_seconds, default="7d", help="how far back: 30m, 24h, 7d, 2w (7d)")
    parser.add_argument("--by", choices=sorted(GROUPS), default="key")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    add_group_data_option(parser)
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(usage(args.inventory, args.by, args.since, args.format, args.group_data))
    except Refusal as refusal:
        return refused(refusal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
