import Metrics

/// One stream's metrics, named `mongoshift_*` with a `stream` label. Recorded through swift-metrics; the
/// executable decides where they go (Prometheus at `/metrics`).
public struct StreamMetrics: Sendable {
    let rowsExtracted: Counter
    let rowsApplied: Counter
    let rowsDeadLettered: Counter
    let staleSkipped: Counter
    let retries: Counter
    let errors: Counter
    let applyLatency: Timer
    let spoolBytes: Gauge
    let lagSeconds: Gauge
    /// Integer watermarks: how many units (sequence numbers) the applied watermark is behind the source's newest.
    let lagUnits: Gauge
    /// 1 when the last lag measurement succeeded, 0 when it failed (the lag gauges then keep their last value).
    let lagMeasured: Gauge
    /// Rows a lookback re-read that had not changed (not re-written).
    let rowsRescanned: Counter
    /// How far below `now - safety_lag` an open transaction writing the table holds the watermark (0: not held).
    let watermarkHoldSeconds: Gauge
    /// Reconcile cycles that deleted nothing because too many documents were missing (`max_delete_ratio`).
    let reconcileRefusals: Counter

    public init(stream: String) {
        let labels = [("stream", stream)]
        rowsExtracted = Counter(label: "mongoshift_rows_extracted_total", dimensions: labels)
        rowsApplied = Counter(label: "mongoshift_rows_applied_total", dimensions: labels)
        rowsDeadLettered = Counter(label: "mongoshift_rows_deadlettered_total", dimensions: labels)
        staleSkipped = Counter(label: "mongoshift_stale_skipped_total", dimensions: labels)
        retries = Counter(label: "mongoshift_retries_total", dimensions: labels)
        errors = Counter(label: "mongoshift_errors_total", dimensions: labels)
        applyLatency = Timer(label: "mongoshift_batch_apply_seconds", dimensions: labels, preferredDisplayUnit: .seconds)
        spoolBytes = Gauge(label: "mongoshift_spool_bytes", dimensions: labels)
        lagSeconds = Gauge(label: "mongoshift_lag_seconds", dimensions: labels)
        lagUnits = Gauge(label: "mongoshift_lag_units", dimensions: labels)
        lagMeasured = Gauge(label: "mongoshift_lag_measured", dimensions: labels)
        rowsRescanned = Counter(label: "mongoshift_rows_rescanned_total", dimensions: labels)
        watermarkHoldSeconds = Gauge(label: "mongoshift_watermark_hold_seconds", dimensions: labels)
        reconcileRefusals = Counter(label: "mongoshift_reconcile_refusals_total", dimensions: labels)
    }
}

/// One lag measurement: seconds (time watermarks, cluster times) or units (integer watermarks, which say nothing
/// about time).
public enum LagMeasure: Sendable, Equatable {
    case seconds(Double)
    case units(Int64)
}
