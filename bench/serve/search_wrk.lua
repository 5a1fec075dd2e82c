-- wrk script for POST /search with the word-pair queries of http_load.py (a C load generator costs the
-- 2-core machine less CPU than the Python client, so more of it is left to the server).
--   wrk -t2 -c16 -d20s -s bench/serve/search_wrk.lua http://127.0.0.1:8765/search
local words = {}
for w in string.gmatch("license warranty copyright patent notice source software distribute modify terms liability " ..
  "permission condition contributor trademark object code derivative work agreement termination " ..
  "redistribution binary documentation merchantability fitness purpose damages indemnity law " ..
  "jurisdiction version library program user interface compatible exception linking", "%S+") do
  words[#words + 1] = w
end
local pairs_ = {}
for _, a in ipairs(words) do
  for _, b in ipairs(words) do
    if a ~= b then pairs_[#pairs_ + 1] = a .. " " .. b end
  end
end
local n = 0
local offset = 0
local thread_no = 0

function setup(thread)
  thread:set("offset", thread_no * 997)
  thread_no = thread_no + 1
end

function request()
  n = n + 1
  local q = pairs_[((offset + n) % #pairs_) + 1]
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, '{"query": "' .. q .. '", "k": 10}')
end

function done(summary, latency, requests)
  local codes = summary.errors.status
  io.write(string.format("requests %d, non-2xx %d, p50 %.1f ms, p99 %.1f ms\n", summary.requests, codes,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
