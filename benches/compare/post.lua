-- wrk script for benches/compare/run.sh: POSTs one V2 JSON infer request, the body in the file
-- named by $WRK_BODY (target/compare/models/request.json, the body quiver bench sends with
-- --input-tensor-format json --output-tensor-format json --input-data input-data.json), and
-- prints a JSON summary line after wrk's own report.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(assert(os.getenv("WRK_BODY"), "WRK_BODY is not set"), "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"tool":"wrk","requests":%d,"duration_us":%d,"requests_per_s":%.1f,"socket_errors":%d,"non_2xx":%d,"latency_us":{"p50":%d,"p99":%d,"mean":%.1f,"max":%d}}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
