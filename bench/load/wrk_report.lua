-- wrk script of bench/load: when the run ends, prints one line "BENCH_JSON {...}" with the
-- totals and the latency percentiles in microseconds, which bench/load/loadgen.py parses in
-- place of wrk's human-readable report.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %.0f, "requests": %.0f, "bytes": %.0f, ' ..
    '"connect_errors": %.0f, "read_errors": %.0f, "write_errors": %.0f, ' ..
    '"status_errors": %.0f, "timeouts": %.0f, ' ..
    '"p50_us": %.0f, "p99_us": %.0f, "p999_us": %.0f, "max_us": %.0f}\n',
    summary.duration, summary.requests, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
