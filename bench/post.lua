-- wrk script: POST one pre-built body (BODY_FILE) with a token, print a JSON summary at the end.
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = file:read("*all")
file:close()
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local encoding = os.getenv("CONTENT_ENCODING")
if encoding and encoding ~= "" then
  wrk.headers["Content-Encoding"] = encoding
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
