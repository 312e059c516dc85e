-- wrk script for bench/ingest.py: batches of realistic tracking messages with unique ids.
--
-- Run with as many wrk threads as connections (-t N -c N): each thread then drives one
-- connection, so every response belongs to the thread's last request and the script can
-- time each request itself (wrk's own histogram would mix in the requests below).
--
-- Configuration comes from the environment (bench/ingest.py sets it):
--   BENCH_PATH     batch route, e.g. /v1/batch or /bench/noop/v1/batch
--   BENCH_AUTH     value of the Authorization header (HTTP Basic, write key as user)
--   BENCH_PREFIX   per-run random prefix of every messageId
--   BENCH_BATCH    messages per request (100)
--   BENCH_RATE     requests per second per connection; 0 = as fast as possible
--   BENCH_STOP     seconds after which no batch is sent any more: the connections then
--                  send GET /version every 100 ms until wrk stops, so every batch sent
--                  gets its answer counted (wrk drops requests in flight when it stops)
--   BENCH_CONNECTIONS  number of connections (= wrk threads)
--   BENCH_MAX_BATCHES  optional: batches per connection, after which it stops sending
--                  batches as after BENCH_STOP (bench/realtime.py then ends wrk early)
--   BENCH_OUT      where done() writes the figures as JSON
--
-- Another script can run this one with its own messages: it defines the global
-- message_hooks = { init = function() end, stamp = function() return "..." end,
-- message = function(stamp) return body end } and then dofile()s this file (see
-- bench/realtime.lua). Without it, messages cycle through a fixed pool of 256 bodies.
--
-- With BENCH_RATE set the load is open loop: request k of a connection is due at
-- start + k / rate, and its latency is counted from that due time, not from when it
-- was sent, so a slow answer that delays the next send is charged to that next request
-- as well (the correction wrk2 makes for coordinated omission).

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } onefold_timespec;
  int clock_gettime(int clk_id, onefold_timespec *tp);
]])
local ts = ffi.new("onefold_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC, shared by every thread
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local path = os.getenv("BENCH_PATH") or "/v1/batch"
local auth = os.getenv("BENCH_AUTH") or ""
local prefix = os.getenv("BENCH_PREFIX") or "run"
local batch_size = tonumber(os.getenv("BENCH_BATCH") or "100")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local stop_after = tonumber(os.getenv("BENCH_STOP") or "1e9") * 1000000
local out_path = os.getenv("BENCH_OUT")
local max_batches = tonumber(os.getenv("BENCH_MAX_BATCHES") or "0")
local hooks = message_hooks

local nthreads = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")

-- per thread (each wrk thread has its own Lua state; setup() sets tid)
tid = 0
local counter = 0
local started_us = nil
local due_us = nil -- when the next request is due (rate mode)
local sent_at_us = nil -- when the request in flight was sent or due
local in_flight_kind = nil -- "batch" or "probe"
local pool = nil
local pool_next = 0

sent = 0 -- batches sent
body_bytes = 0 -- bytes of their bodies
acked = 0 -- batches answered 200 {"success":true}
refused = 0 -- batches answered otherwise
statuses = {} -- status -> count, for batches
latencies = {} -- microseconds, one per answered batch
first_us = 0
last_us = 0

local threads = {}

function setup(thread)
  -- runs in wrk's main Lua state before the thread starts
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- A pool of message bodies (everything but messageId), generated once per thread.
local products = {
  { "sku-1001", "Trail Running Shoe", "Footwear", 129.95 },
  { "sku-1002", "Merino Wool Socks", "Accessories", 18.5 },
  { "sku-1003", "Waterproof Shell Jacket", "Outerwear", 249.0 },
  { "sku-1004", "Insulated Water Bottle", "Accessories", 34.99 },
  { "sku-1005", "Ultralight Day Pack", "Bags", 89.0 },
  { "sku-1006", "Fleece Midlayer", "Outerwear", 74.25 },
}
local events = { "Product Viewed", "Product Added", "Checkout Started", "Order Completed" }
local pages = {
  { "/", "Home" }, { "/collections/footwear", "Footwear" },
  { "/products/trail-running-shoe", "Trail Running Shoe" }, { "/cart", "Cart" },
}
local agents = {
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
}

local function context(i)
  return string.format(
    '"context":{"ip":"10.%d.%d.%d","locale":"en-GB","userAgent":"%s",'
      .. '"library":{"name":"analytics.js","version":"5.2.0"}}',
    i % 200, (i * 7) % 250, (i * 13) % 250, agents[i % #agents + 1])
end

local function make_pool(stamp)
  local bodies = {}
  for i = 1, 256 do
    local user = string.format("user-%05d", (i * 7919 + tid * 104729) % 50000)
    local anon = string.format("anon-%08x", (i * 2654435761 + tid) % 4294967296)
    local common = string.format(
      '"anonymousId":"%s","userId":"%s","originalTimestamp":"%s",%s',
      anon, user, stamp, context(i))
    local body
    local kind = i % 10
    if kind == 0 then
      body = string.format(
        '"type":"identify",%s,"traits":{"email":"%s@example.com","firstName":"Alex",'
          .. '"lastName":"Morgan","plan":"%s","city":"Leeds","country":"GB"}}',
        common, user, (i % 3 == 0) and "pro" or "free")
    elseif kind <= 3 then
      local page = pages[i % #pages + 1]
      body = string.format(
        '"type":"page","name":"%s",%s,"properties":{"path":"%s","url":"https://shop.example.com%s",'
          .. '"title":"%s | Example Outdoor","referrer":"https://www.google.com/"}}',
        page[2], common, page[1], page[1], page[2])
    else
      local p = products[i % #products + 1]
      local qty = i % 3 + 1
      body = string.format(
        '"type":"track","event":"%s",%s,"properties":{"product_id":"%s","name":"%s",'
          .. '"category":"%s","price":%.2f,"quantity":%d,"currency":"GBP","value":%.2f,'
          .. '"order_id":"ord-%06d","coupon":"SUMMER10"}}',
        events[i % #events + 1], common, p[1], p[2], p[3], p[4], qty, p[4] * qty, i * 31)
    end
    bodies[i] = body
  end
  return bodies
end

local function batch_body()
  local stamp = hooks and hooks.stamp() or pool.stamp
  local parts = { '{"sentAt":"', stamp, '","batch":[' }
  local n = #parts
  for k = 1, batch_size do
    counter = counter + 1
    n = n + 1
    parts[n] = (k > 1 and ',{"messageId":"' or '{"messageId":"')
    n = n + 1
    parts[n] = prefix .. "-" .. tid .. "-" .. counter
    n = n + 1
    parts[n] = '",'
    n = n + 1
    if hooks then
      parts[n] = hooks.message(stamp)
    else
      pool_next = pool_next % #pool + 1
      parts[n] = pool[pool_next]
    end
  end
  parts[n + 1] = "]}"
  return table.concat(parts)
end

function init(args)
  if hooks then
    hooks.init()
    return
  end
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
  pool = make_pool(stamp)
  pool.stamp = stamp
  pool_next = tid * 17
end

local batch_headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = auth,
}

local function start(now)
  if started_us == nil then
    started_us = now
    if rate > 0 then
      -- spread the connections' schedules evenly over one interval
      due_us = now + math.floor(1000000 / rate * tid / nthreads)
    end
  end
end

local function stopped(now)
  return now - started_us >= stop_after or (max_batches > 0 and sent >= max_batches)
end

function delay()
  local now = now_us()
  start(now)
  if stopped(now) then
    return 100
  end
  if rate > 0 and due_us > now then
    return math.floor((due_us - now) / 1000)
  end
  return 0
end

local verified = false

function request()
  if tid == 0 and not verified then
    -- wrk calls request() once in thread 0's state to check the script before the run
    -- starts; that request is never sent, so it must not count
    verified = true
    return wrk.format("GET", "/version")
  end
  local now = now_us()
  start(now)
  if stopped(now) then
    in_flight_kind = "probe"
    return wrk.format("GET", "/version")
  end
  in_flight_kind = "batch"
  if rate > 0 then
    -- a timer may fire up to a millisecond early or late; latency counts from due time
    sent_at_us = math.min(due_us, now)
    due_us = due_us + math.floor(1000000 / rate)
  else
    sent_at_us = now
  end
  if first_us == 0 then
    first_us = sent_at_us
  end
  sent = sent + 1
  local body = batch_body()
  body_bytes = body_bytes + #body
  return wrk.format("POST", path, batch_headers, body)
end

function response(status, headers, body)
  if in_flight_kind ~= "batch" then
    return
  end
  in_flight_kind = nil
  local now = now_us()
  last_us = now
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and string.sub(body, 1, 15) == '{"success":true' then
    if string.find(body, "rejected", 1, true) then
      refused = refused + 1
    else
      acked = acked + 1
      latencies[#latencies + 1] = now - sent_at_us
    end
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local parts = {}
  local function add(s)
    parts[#parts + 1] = s
  end
  add('{"threads":[')
  for i, t in ipairs(threads) do
    if i > 1 then
      add(",")
    end
    local st = {}
    for code, count in pairs(t:get("statuses") or {}) do
      st[#st + 1] = string.format('"%d":%d', code, count)
    end
    local lat = t:get("latencies") or {}
    local lats = {}
    for j = 1, #lat do
      lats[j] = string.format("%d", lat[j])
    end
    add(string.format(
      '{"sent":%d,"body_bytes":%d,"acked":%d,"refused":%d,"first_us":%d,"last_us":%d,"statuses":{%s},'
        .. '"latencies_us":[%s]}',
      t:get("sent") or 0, t:get("body_bytes") or 0, t:get("acked") or 0, t:get("refused") or 0,
      t:get("first_us") or 0, t:get("last_us") or 0, table.concat(st, ","),
      table.concat(lats, ",")))
  end
  add(string.format(
    '],"wrk":{"requests":%d,"bytes":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d}}}',
    summary.requests, summary.bytes, summary.duration, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
  if out_path then
    local f = assert(io.open(out_path, "w"))
    f:write(table.concat(parts))
    f:close()
  else
    print(table.concat(parts))
  end
end
