-- Rotates through pre-signed Chatwoot webhooks (one per line: delivery, timestamp, signature, body,
-- tab-separated; written by bench/gen.py just before the run so the timestamps are fresh).
-- Environment: BENCH_FILE (the requests), BENCH_PATH (URL path, default /webhook/chatwoot),
-- Thread i of n sends lines i, i+n, i+2n... so no two threads ever send the same delivery.
-- done() prints one "BENCH_JSON {...}" line that bench/run.py parses.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file = os.getenv("BENCH_FILE")
  local path = os.getenv("BENCH_PATH") or "/webhook/chatwoot"
  local nthreads = counter
  if nthreads == 0 then nthreads = 1 end
  requests = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      local delivery, stamp, signature, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {
        ["Content-Type"] = "application/json",
        ["X-Chatwoot-Delivery"] = delivery,
        ["X-Chatwoot-Timestamp"] = stamp,
        ["X-Chatwoot-Signature"] = signature,
      }
      table.insert(requests, wrk.format("POST", path, headers, body))
    end
    i = i + 1
  end
  idx = 0
  wraps = 0
end

function request()
  idx = idx + 1
  if idx > #requests then
    idx = 1
    wraps = wraps + 1
  end
  return requests[idx]
end

function done(summary, latency, requests_)
  local wrapped = 0
  for _, t in ipairs(threads) do
    wrapped = wrapped + (t:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"wraps":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    wrapped, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
