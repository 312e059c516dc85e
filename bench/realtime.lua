-- wrk script for bench/realtime.py: the messages of a population of people, so that the
-- identity graph gets new identifiers, merges, refused links and trait updates.
--
-- Everything but the messages is bench/ingest.lua (loaded below): open-loop rate, per-
-- request timing, unique messageIds (<prefix>-<thread>-<counter>), the JSON it writes.
-- Extra configuration from the environment (bench/realtime.py sets it):
--   BENCH_PEOPLE   people in the population (200000)
--   BENCH_KNOWN    percentage of people with an account (60): they identify with userId,
--                  e-mail and traits, are logged in on half their page/track calls and
--                  place orders; the others stay anonymous
--
-- Per message: a person p drawn with a skew (p = floor(N * u^2): a few people are very
-- active, most are seen once or twice), one of p's 1-3 devices (a stable anonymousId per
-- person and device), then
--   known people:   8% identify, 30% page, 54% track (Product Viewed / Added /
--                   Checkout Started), 8% Order Completed (with revenue and category)
--   anonymous ones: 35% page, 65% track (Product Viewed / Added)
-- with 3% of messages on a fresh anonymousId (cookies cleared: a new identifier that a
-- logged-in message links), 0.5% of a known person's messages sent from a device of the
-- next person (a shared computer: merge protection refuses the second userId), and 10% of
-- e-mails in another case (normalisation makes them one identifier). identify traits:
-- email, names, city (stable) and plan (drawn each time, so the trait changes).

local people = tonumber(os.getenv("BENCH_PEOPLE") or "200000")
local known_pct = tonumber(os.getenv("BENCH_KNOWN") or "60")
local run = os.getenv("BENCH_PREFIX") or "run"

local random = math.random
local floor = math.floor
local format = string.format

local first_names = { "Alex", "Sam", "Jordan", "Maria", "Chen", "Aisha", "Lucas", "Emma",
  "Noah", "Olivia", "Mateo", "Sofia", "Liam", "Amara", "Yuki", "Priya" }
local last_names = { "Morgan", "Smith", "Garcia", "Khan", "Müller", "Rossi", "Dubois",
  "Kowalski", "Silva", "Nguyen", "O'Brien", "Jensen", "Novak", "Haddad" }
local cities = { "Leeds", "Madrid", "Lyon", "Berlin", "Porto", "Milan", "Dublin", "Kraków" }
local plans = { "free", "pro", "team" }
local products = {
  { "sku-1001", "Trail Running Shoe", "Footwear", 129.95 },
  { "sku-1002", "Merino Wool Socks", "Accessories", 18.5 },
  { "sku-1003", "Waterproof Shell Jacket", "Outerwear", 249.0 },
  { "sku-1004", "Insulated Water Bottle", "Accessories", 34.99 },
  { "sku-1005", "Ultralight Day Pack", "Bags", 89.0 },
  { "sku-1006", "Fleece Midlayer", "Outerwear", 74.25 },
}
local pages = {
  { "/", "Home" }, { "/collections/footwear", "Footwear" },
  { "/products/trail-running-shoe", "Trail Running Shoe" }, { "/cart", "Cart" },
  { "/account", "Account" },
}
local agents = {
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
}

local made = 0 -- messages made by this thread, for fresh anonymous ids and order ids

local function hash(p)
  return (p * 2654435761) % 4294967296
end

local function known(p)
  return hash(p) % 100 < known_pct
end

local function anon(p, d)
  return format("anon-%06d-%d", p, d)
end

local function context(p, d)
  local h = hash(p)
  return format(
    '"context":{"ip":"10.%d.%d.%d","locale":"en-GB","userAgent":"%s",'
      .. '"library":{"name":"analytics.js","version":"5.2.0"}}',
    h % 200, floor(h / 256) % 250, d, agents[(p + d) % #agents + 1])
end

local function track(common, event, p, price_index)
  local item = products[price_index]
  local qty = p % 3 + 1
  if event == "Order Completed" then
    return format(
      '"type":"track","event":"Order Completed",%s,"properties":{"order_id":"ord-%s-%d-%d",'
        .. '"product_id":"%s","category":"%s","revenue":%.2f,"quantity":%d,"currency":"EUR"}}',
      common, run, tid, made, item[1], item[3], item[4] * qty, qty)
  end
  return format(
    '"type":"track","event":"%s",%s,"properties":{"product_id":"%s","name":"%s",'
      .. '"category":"%s","price":%.2f,"quantity":%d,"currency":"EUR"}}',
    event, common, item[1], item[2], item[3], item[4], qty)
end

local function message(stamp)
  made = made + 1
  local u = random()
  local p = floor(people * u * u)
  local h = hash(p)
  local is_known = known(p)
  local d = 1 + random(0, floor(h / 256) % 3)
  local anonymous_id
  local r = random()
  if r < 0.03 then
    anonymous_id = format("anon-%s-%d-%d", run, tid, made)
  elseif is_known and r < 0.035 then
    anonymous_id = anon((p + 1) % people, 1)
  else
    anonymous_id = anon(p, d)
  end
  local k = random()
  local user_id = nil
  if is_known and (k < 0.08 or k >= 0.92 or random() < 0.5) then
    user_id = format("u%06d", p)
  end
  local common
  if user_id then
    common = format('"anonymousId":"%s","userId":"%s","originalTimestamp":"%s",%s',
      anonymous_id, user_id, stamp, context(p, d))
  else
    common = format('"anonymousId":"%s","originalTimestamp":"%s",%s',
      anonymous_id, stamp, context(p, d))
  end
  local item = random(#products)
  if is_known and k < 0.08 then
    local email = format("person%06d@example.com", p)
    if random() < 0.1 then
      email = format("Person%06d@Example.com", p)
    end
    local city = cities[h % #cities + 1]
    if random() < 0.05 then
      city = cities[random(#cities)]
    end
    return format(
      '"type":"identify",%s,"traits":{"email":"%s","firstName":"%s","lastName":"%s",'
        .. '"city":"%s","plan":"%s"}}',
      common, email, first_names[h % #first_names + 1], last_names[p % #last_names + 1],
      city, plans[random(#plans)])
  end
  if (is_known and k < 0.38) or (not is_known and k < 0.35) then
    local page = pages[random(#pages)]
    return format(
      '"type":"page","name":"%s",%s,"properties":{"path":"%s","url":"https://shop.example.com%s",'
        .. '"title":"%s | Example Outdoor"}}',
      page[2], common, page[1], page[1], page[2])
  end
  if is_known and k >= 0.92 then
    return track(common, "Order Completed", p, item)
  end
  local e = random()
  local event = "Product Viewed"
  if e >= 0.85 and is_known then
    event = "Checkout Started"
  elseif e >= 0.6 then
    event = "Product Added"
  end
  return track(common, event, p, item)
end

message_hooks = {
  init = function()
    math.randomseed(os.time() * 1000 + tid * 7919)
  end,
  stamp = function()
    return os.date("!%Y-%m-%dT%H:%M:%S.000Z")
  end,
  message = message,
}

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "ingest.lua")
