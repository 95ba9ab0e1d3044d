"""Prometheus metrics of a worker, served on ``/metrics`` by the Faust web server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("shopstream_events_in", "Input records consumed.", ["topic"])
EVENTS_OUT = Counter("shopstream_events_out", "Input events processed successfully.", ["topic"])
DEAD_LETTERS = Counter("shopstream_dead_letters", "Input records sent to the dead-letter topic.",
                       ["topic", "reason"])
UNSENT_LETTERS = Counter("shopstream_unsent_dead_letters",
                         "Dead letters that Kafka refused, kept in the worker's local file of unsent "
                         "letters (settings.home/unsent-dead-letters.jsonl) instead.", ["topic"])
OUTPUTS = Counter("shopstream_outputs", "Records emitted on output topics.", ["topic"])
CONSUMER_LAG = Gauge("shopstream_consumer_lag",
                     "Records between the committed offset and the end of the partition.",
                     ["topic", "partition"])
LATE_UPDATES = Counter("shopstream_late_updates",
                      "Entity updates ignored because their event was later than the allowed lateness.",
                      ["entity"])
COMMIT_REPAIRS = Counter("shopstream_commit_repairs",
                         "Repairs of partitions whose commits Faust's books held back "
                         "(faust-streaming#596): stale acknowledgements dropped, or records "
                         "read but never acknowledged read again, or a partition read again "
                         "from a record that never reached its agent (skipped).", ["topic", "repair"])
REBALANCE_WAITS_CUT = Counter(
    "shopstream_rebalance_waits_cut",
    "Rebalances (or stops) that went on with messages still unacknowledged after "
    "REBALANCE_WAIT_S: they are read again (streams.commits.Consumer.wait_empty).")
READ_FIRST_TIMEOUTS = Counter(
    "shopstream_read_first_timeouts",
    "Batches of orders whose own feature updates were routed before the fraud agent had "
    "read their features, because it had not done so within scoring.read_first_s.")
WRITE_RETRIES = Counter("shopstream_write_retries", "Failed writes to a sink, retried.", ["sink"])
WRITE_FAILURES = Counter("shopstream_write_failures",
                         "Writes to a sink that failed with an error that retrying cannot fix.",
                         ["sink", "exception"])
SINK_UP = Gauge("shopstream_sink_up", "Whether the last write to a sink succeeded (1) or not (0).",
                ["sink"])
RECORDS = Counter("shopstream_records",
                  "Input records by outcome: processed, dead_lettered or unsent_letter (a dead "
                  "letter Kafka refused, kept in the worker's file of unsent letters). For every "
                  "input topic, their sum = shopstream_events_in once a batch is done.",
                  ["topic", "outcome"])
WRITE_SECONDS = Histogram("shopstream_write_seconds", "Time of one micro-batch write to a sink.",
                          ["sink"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
BATCH_ROWS = Histogram("shopstream_online_batch_rows", "Rows per online micro-batch write.",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
UNREADABLE_STATES = Counter("shopstream_unreadable_states_total",
                            "Saved entity states that could not be decoded and were started afresh.")
STATE_FLUSHES = Histogram("shopstream_state_flush_states",
                          "Entity states written to the changelog per flush of the write-back cache.",
                          buckets=(1, 10, 100, 1000, 2500, 5000, 10000, 25000, 50000))
FRESHNESS = Histogram("shopstream_feature_freshness_seconds",
                      "From the oldest input record of a batch reaching Kafka to its features "
                      "being written online.",
                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DUPLICATE_LABELS = Counter("shopstream_duplicate_labels",
                           "Labels for an order that already had one: the first counts, these "
                           "change nothing.")
EXPIRED_STATES = Counter("shopstream_expired_states",
                         "Saved states deleted because their event time to live had passed.",
                         ["table"])
STATES = Gauge("shopstream_states", "Saved states this worker owns, as of its last expiry sweep.",
               ["table"])
DUPLICATE_ORDERS = Counter("shopstream_duplicate_orders",
                           "Copies of an order id already seen (a shop's resend): the first "
                           "counts in the features, these change nothing.")
PENDING_LABELS = Counter("shopstream_pending_labels",
                         "Labels that arrived before their order and wait for it.")
SERVED_ROWS_DROPPED = Counter("shopstream_served_rows_dropped",
                              "Feature rows served to fraud scoring that the offline log could not "
                              "keep (a full disk): scoring went on without them.")
REPEATED_ORDERS = Counter("shopstream_repeated_orders",
                          "Orders whose id had a decision already: sent that decision again, "
                          "and counted in no prediction, drift input or served row.")
PREDICTIONS = Counter("ml_model_predictions", "Fraud scores emitted.", ["model", "version", "decision"])
CHALLENGER = Gauge("shopstream_challenger_share",
                   "The challenger a worker follows: its share of users or sessions (1 for a shadow, "
                   "which answers all beside the champion), by model, version and mode; none without one.",
                   ["model", "version", "mode"])
MODEL_PREDICTIONS = Counter("shopstream_model_predictions",
                            "Answers given, by model, version and variant (champion, challenger, "
                            "shadow, interleaved).", ["model", "version", "variant"])
SCORE_LATENCY = Histogram("ml_model_latency_seconds",
                          "From an order being consumed to its score being sent.", ["model"],
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
SCORING_STAGE_SECONDS = Histogram("shopstream_scoring_stage_seconds",
                                  "Time of one scoring micro-batch in each stage.", ["stage"],
                                  buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
SCORING_BATCH = Histogram("shopstream_scoring_batch_orders",
                          "Orders per scoring micro-batch (sized by arrival: 1 when idle, more under load).",
                          buckets=(1, 2, 5, 10, 25, 50, 100, 256, 1000))
MODEL_VERSION = Gauge("shopstream_model_version",
                      "The model version a worker scores with (0: the rules).", ["model"])
MODEL_RELOADS = Counter("shopstream_model_reloads", "Champion changes picked up, and failures.",
                        ["model", "outcome"])
REGISTRY_CHECKS = Counter("shopstream_registry_checks", "Times the worker asked the model registry for a "
                          "model's champion (at the start and every reload interval).", ["model"])
LABELLED_SCORES = Counter("shopstream_labelled_scores",
                          "Scored orders whose label arrived, by outcome (tp, fp, fn, tn) of "
                          "the decision (review or block counts as flagged).", ["outcome"])
ONLINE_PRECISION = Gauge("shopstream_fraud_precision", "Precision of flagged orders, from labels so far.")
ONLINE_RECALL = Gauge("shopstream_fraud_recall", "Recall of flagged orders, from labels so far.")


def graded(outcome: str) -> None:
    """Count a labelled score (tp, fp, fn, tn) and refresh precision and recall."""
    LABELLED_SCORES.labels(outcome).inc()
    counts = {o: LABELLED_SCORES.labels(o)._value.get() for o in ("tp", "fp", "fn")}  # noqa: SLF001
    if counts["tp"] + counts["fp"]:
        ONLINE_PRECISION.set(counts["tp"] / (counts["tp"] + counts["fp"]))
    if counts["tp"] + counts["fn"]:
        ONLINE_RECALL.set(counts["tp"] / (counts["tp"] + counts["fn"]))

UNACCOUNTED = Gauge("shopstream_records_unaccounted",
                    "Records read but neither processed nor dead-lettered: the micro-batch in "
                    "hand; anything that stays above 0 once traffic stops was lost.", ["topic"])


def account() -> None:
    """Refresh ``shopstream_records_unaccounted`` from the counters (on every scrape)."""
    read = {s.labels["topic"]: s.value for s in _totals(EVENTS_IN)}
    done: dict[str, float] = {}
    for sample in _totals(RECORDS):
        done[sample.labels["topic"]] = done.get(sample.labels["topic"], 0.0) + sample.value
    for topic, count in read.items():
        UNACCOUNTED.labels(topic).set(count - done.get(topic, 0.0))


def _totals(counter: Counter):
    return [s for metric in counter.collect() for s in metric.samples if s.name.endswith("_total")]
DRIFT_SCORE = Gauge("shopstream_drift_score",
                    "The last drift statistic of a watched stream over its threshold (1 or more: "
                    "a finding), per model, stream (fraud, recs) and subject.", ["model", "stream", "subject"])
DRIFT_SIGNALS = Counter("shopstream_drift_signals", "Drift signals sent on signals.drift.",
                        ["model", "stream", "severity"])
ONLINE_GRADED = Counter(
    "shopstream_online_graded",
    "Answers graded by what followed them, per model, version and variant (champion, "
    "challenger, shadow, interleaved): fraud scores by the outcome of their decision once "
    "the order's label arrives (tp, fp, fn, tn; review or block counts as flagged), "
    "recommendation lists by the session's next click (hit, miss). Counted by the drift role.",
    ["model", "version", "variant", "outcome"])
DRIFT_INPUTS = Counter("shopstream_drift_inputs",
                       "Records the drift role read, by kind (scored, label) and outcome (watched, "
                       "no_profile, unmatched, unreadable).", ["kind", "outcome"])

TASK_FAILURES = Counter("shopstream_task_failures",
                        "Exceptions raised by a worker's timers and start-up tasks, logged and survived "
                        "(``streams.app.survives``).", ["task"])

_challenges: dict[str, tuple[str, str, str]] = {}


def follow_challenge(model: str, challenge) -> None:
    """Set ``shopstream_challenger_share`` for ``model``'s challenge (a
    ``scorers.challenge.Challenge``, or None when it ended)."""
    if model in _challenges:
        CHALLENGER.remove(*_challenges.pop(model))
    if challenge is not None:
        _challenges[model] = (model, challenge.version, challenge.mode)
        CHALLENGER.labels(*_challenges[model]).set(1.0 if challenge.mode == "shadow" else challenge.weight)
