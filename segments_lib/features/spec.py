"""What the feature pass computes: the spec, the stable column names and the generated catalog.

Kept apart from `features.py` (the Spark pass) so that naming and documentation need no Spark.
Every name is `<family>[_<window>]__<event slug>[__<second event slug>]`, e.g. `freq_7d__purchase_completed`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta

from segments_lib.language.definitions import DurationPair, SegmentDefinition, format_duration, target_events

TREND_RECENT = timedelta(days=7)
GAP_STATS = ("mean", "min", "max", "std", "last")


@dataclass(frozen=True)
class FeatureSpec:
    """Which events, windows and pairs one feature pass covers.

    `windows` are ascending and the largest is `past_window` (P1). `history` bounds how far back
    recency, tenure and the customer-base features look; None means every event before T.
    `base_events` (a subset of `event_names`, the target's events) get the customer-base family:
    whole-history count, first occurrence, span, rate and silence relative to the user's own pace.
    """

    event_names: tuple[str, ...]
    windows: tuple[timedelta, ...]
    past_window: timedelta
    duration_pairs: tuple[DurationPair, ...] = ()
    value_events: tuple[str, ...] = ()
    history: timedelta | None = None
    base_events: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.event_names:
            raise ValueError("FeatureSpec.event_names is empty: there is no event to build features for")
        if len(set(self.event_names)) != len(self.event_names):
            raise ValueError(f"FeatureSpec.event_names has duplicates: {self.event_names}")
        if list(self.windows) != sorted(set(self.windows)) or not self.windows:
            raise ValueError(f"FeatureSpec.windows must be non-empty, unique and ascending, got {self.windows}")
        if self.windows[-1] != self.past_window:
            raise ValueError(
                f"FeatureSpec.windows must end with past_window {format_duration(self.past_window)}, "
                f"got {[format_duration(w) for w in self.windows]}"
            )
        unknown = [e for e in self.value_events if e not in self.event_names]
        if unknown:
            raise ValueError(f"FeatureSpec.value_events {unknown} are not in event_names {self.event_names}")
        outside = [e for e in self.base_events if e not in self.event_names]
        if outside or len(set(self.base_events)) != len(self.base_events):
            raise ValueError(f"FeatureSpec.base_events {self.base_events} must be distinct names in event_names")
        if self.history is not None and self.history < self.past_window:
            raise ValueError("FeatureSpec.history must be at least past_window")
        slugs: dict[str, str] = {}
        for name in self.event_names:
            other = slugs.setdefault(event_slug(name), name)
            if other != name:
                raise ValueError(f"events {other!r} and {name!r} both map to column suffix {event_slug(name)!r}")

    @property
    def p1(self) -> str:
        return format_duration(self.past_window)

    @property
    def has_trend(self) -> bool:
        return self.past_window > TREND_RECENT


@dataclass(frozen=True)
class FeatureInfo:
    name: str
    family: str
    description: str


def event_slug(event_name: str) -> str:
    """'Purchase Completed' → 'purchase_completed'; the suffix used in column names."""
    slug = re.sub(r"[^0-9a-z]+", "_", event_name.lower()).strip("_")
    if not slug:
        raise ValueError(f"event name {event_name!r} has no letters or digits to build a column name from")
    return slug


def feature_spec_for(
    segment: SegmentDefinition,
    event_counts: Mapping[str, int],
    valued_events: Collection[str] = (),
    history: timedelta | None = None,
) -> FeatureSpec:
    """The spec for one segment, given how often each event occurs (see `features.event_profile`).

    Scope: `segment.feature_events` if set, else the `segment.top_events` most frequent events (ties
    by name), else every event seen, sorted by name so the column order is stable. Value features
    are built for the in-scope events listed in `valued_events` (events whose `event_value` is
    non-null somewhere); pass them explicitly, since only the data knows.
    """
    if segment.feature_events is not None:
        names = tuple(segment.feature_events)
    elif segment.top_events is not None:
        ranked = sorted(event_counts.items(), key=lambda item: (-item[1], item[0]))
        names = tuple(sorted(name for name, _ in ranked[: segment.top_events]))
    else:
        names = tuple(sorted(event_counts))
    if not names:
        raise ValueError(f"segment {segment.name!r}: no events to build features from (event_counts is empty)")
    # The customer-base family describes the target's own events: how often, since when, at what pace.
    base = tuple(e for e in target_events(segment.target) if e in names)
    return FeatureSpec(
        event_names=names,
        windows=segment.windows,
        past_window=segment.past_window,
        duration_pairs=segment.duration_pairs,
        value_events=tuple(n for n in names if n in set(valued_events)),
        history=history,
        base_events=base,
    )


def freq_name(window: timedelta, event: str) -> str:
    return f"freq_{format_duration(window)}__{event_slug(event)}"


def recency_name(event: str) -> str:
    return f"recency_days__{event_slug(event)}"


def gap_name(stat: str, event: str) -> str:
    return f"gap_{stat}_h__{event_slug(event)}"


def value_name(stat: str, spec: FeatureSpec, event: str) -> str:
    window = f"_{spec.p1}" if stat == "sum" else ""
    return f"value_{stat}{window}__{event_slug(event)}"


BASE_STATS = ("count_all", "first_days", "span_days", "rate_all", "silence_to_gap")


def base_name(stat: str, event: str) -> str:
    """A customer-base feature: `count_all__purchase_completed`, `silence_to_gap__purchase_completed`, …"""
    return f"{stat}__{event_slug(event)}"


def pair_mean_name(pair: DurationPair) -> str:
    return f"pair_mean_h__{event_slug(pair.first)}__{event_slug(pair.then)}"


def pair_unfollowed_name(pair: DurationPair) -> str:
    return f"pair_unfollowed_{format_duration(pair.within)}__{event_slug(pair.first)}__{event_slug(pair.then)}"


def feature_catalog(spec: FeatureSpec) -> list[FeatureInfo]:
    """Every feature column, in output order, with what it means and what null means."""
    return [*_overall_features(spec), *_frequency_features(spec), *_recency_features(spec), *_gap_features(spec),
            *_value_features(spec), *_pair_features(spec), *_base_features(spec)]


def _overall_features(spec: FeatureSpec) -> list[FeatureInfo]:
    p1 = spec.p1
    infos = [
        FeatureInfo("tenure_days", "overall", "Days from the user's first event (within `history`) to T."),
        FeatureInfo(
            f"active_days_{p1}", "overall",
            f"Number of 24 h periods counted back from T, within the last {p1}, with any event "
            "(equal to calendar UTC days when T is midnight). 0 when none.",
        ),
        FeatureInfo(
            f"distinct_events_{p1}", "overall", f"Number of in-scope event types seen in the last {p1}. 0 when none."
        ),
    ]
    if spec.has_trend:
        infos.append(FeatureInfo(
            "trend_7d_vs_rest", "overall",
            f"(r7 − rrest) / (r7 + rrest), where r7 is events per day (any type) in the last 7d and rrest "
            f"events per day in the rest of the last {p1}; in [−1, 1], null when there is no event in {p1}.",
        ))
    return infos


def _frequency_features(spec: FeatureSpec) -> list[FeatureInfo]:
    return [
        FeatureInfo(freq_name(w, event), "frequency",
                    f"Count of '{event}' in [T − {format_duration(w)}, T). 0 when none.")
        for event in spec.event_names
        for w in spec.windows
    ]


def _recency_features(spec: FeatureSpec) -> list[FeatureInfo]:
    return [
        FeatureInfo(recency_name(e), "recency", f"Days from the last '{e}' before T to T. Null when it never happened.")
        for e in spec.event_names
    ]


_GAP_WORDS = {"mean": "mean", "min": "minimum", "max": "maximum", "std": "population standard deviation",
              "last": "most recent"}


def _gap_features(spec: FeatureSpec) -> list[FeatureInfo]:
    return [
        FeatureInfo(
            gap_name(stat, event), "gap",
            f"Hours between consecutive '{event}' events, both in the last {spec.p1}: {_GAP_WORDS[stat]}. "
            "Null with fewer than two occurrences.",
        )
        for event in spec.event_names
        for stat in GAP_STATS
    ]


def _value_features(spec: FeatureSpec) -> list[FeatureInfo]:
    meanings = {"sum": "Sum of event_value of '{event}' in the last {p1}. 0 when none.",
                "mean": "Mean event_value of '{event}' in the last {p1}. Null when no valued event.",
                "max": "Largest event_value of '{event}' in the last {p1}. Null when no valued event."}
    return [
        FeatureInfo(value_name(stat, spec, event), "value", meaning.format(event=event, p1=spec.p1))
        for event in spec.value_events
        for stat, meaning in meanings.items()
    ]


def _pair_features(spec: FeatureSpec) -> list[FeatureInfo]:
    infos: list[FeatureInfo] = []
    for pair in spec.duration_pairs:
        first, then, within = pair.first, pair.then, format_duration(pair.within)
        infos += [
            FeatureInfo(
                pair_mean_name(pair), "pair",
                f"Mean hours from each '{first}' in the last {spec.p1} to the next '{then}' before T "
                f"(same instant counts, 0 h). Null when no '{first}' was followed.",
            ),
            FeatureInfo(
                pair_unfollowed_name(pair), "pair",
                f"Count of '{first}' in the last {spec.p1} with no '{then}' within {within} after it, "
                f"as seen at T (a '{then}' exactly {within} later counts as followed; a recent "
                f"'{first}' whose {within} is not over yet counts as unfollowed so far). 0 when none.",
            ),
        ]
    return infos


_BASE_MEANINGS = {
    "count_all": "Count of '{e}' over the whole history before T (BG/NBD's x + 1). 0 when none.",
    "first_days": "Days from the first '{e}' to T (BG/NBD's T, the customer's age). Null when it never happened.",
    "span_days": "Days from the first to the last '{e}' before T (BG/NBD's t_x); 0 with one occurrence. "
                 "Null when it never happened.",
    "rate_all": "count_all / first_days: occurrences of '{e}' per day since the first one, a pace that means the "
                "same at any age. 0 when it never happened.",
    "silence_to_gap": "Days since the last '{e}' divided by the user's own mean gap between occurrences "
                      "(span_days / (count_all − 1)): 1 means \"as quiet as usual\", 5 means five usual gaps. "
                      "Null with fewer than two occurrences or a zero span.",
}


def _base_features(spec: FeatureSpec) -> list[FeatureInfo]:
    return [
        FeatureInfo(base_name(stat, event), "customer base", _BASE_MEANINGS[stat].format(e=event))
        for event in spec.base_events
        for stat in BASE_STATS
    ]


def feature_columns(spec: FeatureSpec) -> list[str]:
    """The feature column names, in the order `build_features` returns them."""
    return [info.name for info in feature_catalog(spec)]


def catalog_markdown(spec: FeatureSpec, title: str) -> str:
    """The catalog as a Markdown page (docs/features.md is generated from this)."""
    lines = [
        f"# Feature catalog — {title}",
        "",
        "Generated by `python -m segments_lib.features.engine --catalog > docs/features.md`; "
        "a test checks it is current.",
        "",
        "Every feature at snapshot T uses only events with `event_time < T`. A window `w` is `[T − w, T)`.",
        "Null means *never happened* (no occurrence, no gap, no follow-up): recency, gap, pair-mean,",
        "value mean/max and trend are null then; counts, value sums and active days are 0. The model",
        "imputes nulls explicitly. All columns are doubles.",
        "",
        f"Events: {', '.join(spec.event_names)}. Windows: {', '.join(format_duration(w) for w in spec.windows)}.",
        "",
        "| feature | family | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{i.name}` | {i.family} | {i.description} |" for i in feature_catalog(spec)]
    return "\n".join([*lines, "", *_GUIDANCE]) + "\n"


# Written once here so the generated page carries it; the numbers are in benchmarks/RESULTS.md.
_GUIDANCE = [
    "## Customer-base features and what trees cannot extrapolate",
    "",
    "The customer-base family (for the target's own events) is what the classic customer-base models",
    "(BG/NBD, Pareto/NBD) read: `count_all` is x + 1, `span_days` is t_x and `first_days` is T, over the",
    "whole history rather than the past window. Trees split on thresholds seen in training and predict a",
    "constant beyond them: a user silent for longer, or a customer older, than anyone in the training",
    "snapshots gets the score of the most extreme training user, whatever the extra time says. The two",
    "ratios are made for that: `rate_all` (pace since the first occurrence) and `silence_to_gap` (days",
    "of silence in units of the user's own mean gap) mean the same at any age, so a customer older than",
    "every training example but buying at a familiar pace lands inside the training range.",
    "",
    "## The BG/NBD blend",
    "",
    "For a target that means \"does the event (again)\" (`occurs`, or `any_of` of `occurs`), the score the",
    "calibrator reads is not the GBT's alone. The `BgNbd` stage fits BG/NBD on the training rows and gives",
    "every user three inputs per event: `bgnbd_p_alive__<event>`; `bgnbd_rate__<event>`, the expected",
    "occurrences per day now (P(alive) · (r + x) / (α + T)); and `bgnbd_p_any__<event>`, the chance of at",
    "least one occurrence within the segment's prediction window H,",
    "",
    "    P(alive) · (1 − ((α + T) / (α + T + H))^(r + x)),",
    "",
    "because alive at T the rate's posterior is Gamma(r + x, α + T) and a dropout can only follow an event.",
    "That is the question an `occurs` segment asks. Over a long horizon it differs from the rate: a heavy",
    "buyer who may have lapsed has a high rate, yet a steady light buyer is likelier to buy at all. On",
    "Online Retail at H = 90d ranking by it beat ranking by the rate by 0.004–0.006 AUC-ROC",
    "(benchmarks/RESULTS.md, \"Third round of issue 19\"). The `QuantileBlend` stage",
    "(segments_lib/model/blend.py) can then average two quantiles among the training rows:",
    "",
    "    raw_score = (1 − ε) · (½ · F_gbt(gbt_score) + ½ · F_any(Σ bgnbd_p_any over the target's"
    " events)) + ε · gbt_score,  ε = 10⁻⁶",
    "",
    "(models trained before `bgnbd_p_any` existed blend `bgnbd_rate` and keep doing so).",
    "",
    "Why: the chance is a GBT input too, but trees use it through a few thresholds and cannot extrapolate it,",
    "while the parametric model ranks every customer by their own pace over the whole history. On Online",
    "Retail the GBT and BG/NBD are about equally good and wrong about different customers, so their average",
    "ranks better than either (benchmarks/RESULTS.md, \"Model quality\"). The quantile knots (201, every half",
    "percentile) are stored in the model, so the night needs nothing else; the tiny GBT term keeps users",
    "apart where both quantile maps are flat. The GBT's own score is kept in the model output as",
    "`gbt_score`. `absent` (\"does not occur\"), `sequence` and `value_sum` targets are left to the GBT: BG/NBD",
    "models the repeat process itself and says nothing direct about them.",
    "",
    "Whether the blend stays is measured, not assumed. With `training.score_blend: auto` (the default) the",
    "time-based search fits each candidate on the older training snapshots and judges both the blended",
    "score and the GBT's own score (`gbt_score`) on the newest one; the better AUC-PR wins, the GBT alone on",
    "a tie. On Online Retail the blend won most (cutoff, horizon) cells; on the demo generator, whose",
    "behaviour the windows already capture, the GBT alone ranked better (benchmarks/RESULTS.md).",
    "`score_blend: bgnbd` always blends, `none` never does; MLflow records the outcome as the `score.blend`",
    "param.",
    "",
    "## Sparse purchase data: which past window and horizon",
    "",
    "Purchases are rare events: on Online Retail the median customer buys a few times a year. A past",
    "window of a few weeks then holds zero or one purchase for most users, so pick one that holds several",
    "of a typical customer's gaps: 180d on Online Retail, with 30d/90d/180d windows (the only past window",
    "the baselines benchmark measured there). The customer-base family covers the whole history either",
    "way, so the past window mainly sets how much recent detail the windowed counts and gaps keep.",
    "",
    "For the horizon, 30d suited Online Retail best, and the reason is the precision levels more than the",
    "ranking (AUC-ROC was similar at 7d, 30d and 90d for every method): at 7d the base rate is 7–8 % and no",
    "precision level was reachable at any of three cutoffs (too few positives above any threshold for a",
    "40 % lower bound); at 90d half the customers buy, so the low level is everyone (lift 1.0) and medium",
    "lifts only 1.3; at 30d (base rate 24–29 %) low and medium were reachable with lifts 1.6–3.6. Measured",
    "in benchmarks/RESULTS.md (\"Model quality\", issue 19 baselines).",
]
