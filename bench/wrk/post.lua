-- POST /api/transactions through wrk: a deposit of 0.01 USD per request, a unique Idempotency-Key each (per thread
-- and run), players round-robin. BENCH_TOKEN is an operator's access token, BENCH_PLAYERS their ids, comma-separated.
local players = {}
for p in string.gmatch(os.getenv("BENCH_PLAYERS") or "", "[^,]+") do players[#players + 1] = p end
local token = os.getenv("BENCH_TOKEN") or ""
local threads = 0

function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

function init(args)
  counter = 0
  prefix = string.format("wrk-%d-%d-", thread_id or 0, os.time())
end

function request()
  counter = counter + 1
  local user = players[(counter % #players) + 1]
  local body = '{"user_id":"' .. user .. '","type":"deposit","amount":"0.01","currency":"USD"}'
  return wrk.format("POST", "/api/transactions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = prefix .. counter,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format("WRK requests=%d seconds=%.3f non2xx=%d socket_errors=%d p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end

-- BENCH_DELAY_MS paces each connection (a pause before each request): connections × 1000 / (pause + latency) requests
-- per second, for the phases that run below the maximum rate.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  function delay() return pause end
end
