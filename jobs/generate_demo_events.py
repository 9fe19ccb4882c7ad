"""Write the demo events table (Delta, partitioned by event_date) and the generator's ground truth.

    python -m jobs.generate_demo_events --conf local [--users 6000 --days 100 --end-date 2026-06-01 --seed 7]
                                        [--campaigns]

The events overwrite the table at `events.path`; the ground truth goes to `<output.root>/demo_ground_truth`.
Both are written with delta-rs straight from Arrow batches (no Spark needed), one day in memory at a time.

With --campaigns the history has randomized campaigns (segments_lib/intake/campaigns.py): every 7 days
back from the end date each active user is sent one ("Campaign Sent" at 00:00 UTC) with probability 0.5,
which changes their carts per session for 7 days by a true effect of their own; the ground truth then also
has the true uplift on a purchase within 7 days at each campaign day, in
`<output.root>/demo_uplift_ground_truth`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from jobs.options import EXIT_INVALID, EXIT_OK, job_parser
from segments_lib.config import ConfigError, load_config
from segments_lib.intake import campaigns as campaign_model
from segments_lib.intake import demo
from segments_lib.progress import StageTimer, configure_logging
from segments_lib.store import tables

log = logging.getLogger("jobs.generate_demo_events")
LABEL_HORIZON_DAYS = 15  # longest demo window (14 days) plus the 24 h abandonment horizon
UPLIFT_GROUND_TRUTH = "demo_uplift_ground_truth"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = job_parser(__doc__, "jobs.generate_demo_events", {
        EXIT_OK: "the events (and the ground truth, when asked for) were written",
        EXIT_INVALID: "bad arguments or config (one line names the key)",
    })
    history = parser.add_argument_group("the generated history")
    history.add_argument("--users", type=int, default=None, help="users (default: demo.users in config)")
    history.add_argument("--days", type=int, default=None, help="days of history (default: demo.days)")
    history.add_argument("--end-date", type=date.fromisoformat, default=None,
                         help="first day after the history, YYYY-MM-DD (default: demo.end_date)")
    history.add_argument("--seed", type=int, default=None, help="random seed (default: demo.seed)")
    history.add_argument("--campaigns", action="store_true",
                         help="add randomized campaigns: every 7 days back from the end date, each active user "
                              "is sent one with probability 0.5 ('Campaign Sent' at 00:00 UTC), changing their "
                              "carts for 7 days; the ground truth adds the true uplift (demo_uplift_ground_truth)")
    truth = parser.add_argument_group("the ground truth")
    truth.add_argument("--truth-days", type=int, default=45, help="snapshot dates with ground truth (0: none)")
    truth.add_argument("--replicas", type=int, default=64, help="Monte Carlo replicas for the ground truth")
    return parser.parse_args(argv)


class _Tally:
    """Counts events while batches stream to Delta, keeping only the days the summary's labels need."""

    def __init__(self, keep_from: date, keep_until: date) -> None:
        self.per_event: Counter[str] = Counter()
        self.users: set[str] = set()
        self.kept: list[pa.RecordBatch] = []
        self.keep_from, self.keep_until = keep_from, keep_until

    def watch(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            counts = pc.value_counts(batch.column("event_name"))
            self.per_event.update({c["values"].as_py(): c["counts"].as_py() for c in counts})
            self.users.update(pc.unique(batch.column("user_id")).to_pylist())
            if len(batch) and self.keep_from <= batch.column("event_date")[0].as_py() < self.keep_until:
                self.kept.append(batch)
            yield batch


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        cfg = load_config(args.conf)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    users = args.users or cfg.demo.users
    days = args.days or cfg.demo.days
    end_date = args.end_date or date.fromisoformat(cfg.demo.end_date)
    seed = cfg.demo.seed if args.seed is None else args.seed
    campaigns = campaign_model.CampaignSpec() if args.campaigns else None
    timer = StageTimer(log)

    # The last snapshot whose labels are complete inside the history: the summary's base rates.
    summary_snapshot = end_date - timedelta(days=LABEL_HORIZON_DAYS)
    tally = _Tally(summary_snapshot - timedelta(days=28), end_date)
    treated = " with randomized campaigns" if campaigns else ""
    with timer.stage(f"generate and write {users} users x {days} days{treated} to {cfg.events.path}"):
        batches = demo.generate_event_batches(users=users, days=days, end_date=end_date, seed=seed,
                                              campaigns=campaigns)
        tables.write_arrow_delta(tally.watch(batches), cfg.events.path, demo.EVENTS_ARROW_SCHEMA, ["event_date"])

    truth_path = tables.output_path(cfg, tables.DEMO_GROUND_TRUTH)
    if args.truth_days > 0:
        snapshot_dates = demo.default_snapshot_dates(end_date, min(args.truth_days, days - 1))
        with timer.stage(f"ground truth for {len(snapshot_dates)} snapshots ({args.replicas} replicas)"):
            truth = demo.iter_ground_truth(users=users, days=days, end_date=end_date, seed=seed,
                                           snapshot_dates=snapshot_dates, replicas=args.replicas,
                                           campaigns=campaigns)
            tables.write_arrow_delta(truth, truth_path, demo.GROUND_TRUTH_SCHEMA, ["segment"])
    if args.truth_days > 0 and campaigns is not None:
        spec = demo.DemoSpec(users, days, end_date, seed)
        # The campaign days among the ground truth's snapshots whose 7 days ahead lie in the history.
        uplift_dates = sorted(set(campaign_model.default_uplift_snapshot_dates(spec, campaigns))
                              & set(snapshot_dates))
        with timer.stage(f"uplift ground truth for {len(uplift_dates)} campaign days ({args.replicas} replicas)"):
            uplift = campaign_model.iter_ground_truth_uplift(users, days, end_date, seed, campaigns,
                                                             snapshot_dates=uplift_dates, replicas=args.replicas)
            tables.write_arrow_delta(uplift, tables.output_path(cfg, UPLIFT_GROUND_TRUTH),
                                     campaign_model.UPLIFT_TRUTH_SCHEMA)

    total = sum(tally.per_event.values())
    log.info("events: %d from %d users over %d days (%s .. %s), seed %d", total, len(tally.users), days,
             end_date - timedelta(days=days), end_date - timedelta(days=1), seed)
    for name, count in tally.per_event.most_common():
        log.info("  %-20s %9d", name, count)
    if days > 28 + LABEL_HORIZON_DAYS:
        with timer.stage(f"base rates at snapshot {summary_snapshot}"):
            labels = demo.realised_labels(pa.Table.from_batches(tally.kept, demo.EVENTS_ARROW_SCHEMA),
                                          summary_snapshot)
        log.info("base rates among %d users active in the 28 days before %s:", len(labels), summary_snapshot)
        for segment in demo.DEMO_SEGMENTS:
            log.info("  %-20s %6d positives (%.1f%%)", segment, int(labels[segment].sum()),
                     100.0 * labels[segment].mean())
    log.info("done in %.1fs: %s", timer.total, ", ".join(f"{k} {v:.1f}s" for k, v in timer.durations.items()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
