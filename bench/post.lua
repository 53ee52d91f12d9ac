-- wrk script: POST a small non-streamed chat completion on every request.
-- Usage: wrk -t1 -c16 -d10s -s bench/post.lua http://127.0.0.1:PORT/v1/chat/completions
-- done() prints one line "WRK_JSON {...}" that bench/run.py parses.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"default-chat","messages":[{"role":"user","content":"hi"}]}'

-- Gateways that want a client key (e.g. one given with --gateway-url) get it here.
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
