-- A wrk script for the tracking benchmark (tests/bench/bench_tracking.py): every request is a
-- distinct path from a file, each requested exactly once.
--
--   wrk -t T -c C -d 600s -s wrk_paths.lua URL -- PATHS_FILE T MARKER EXPECTED_STATUS
--
-- Thread k (of T) takes the paths k, k+T, k+2T…; once its share is sent, its connections go
-- quiet; once its share is answered it writes the time (CLOCK_REALTIME, comparable with
-- Python's time.time()) to MARKER.k and stops. wrk itself sleeps for -d: the benchmark sends
-- it SIGINT once every marker is there, and done() prints one line:
--   BENCH {"began": …, "ended": …, "answered": …, "ok": …}
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local function now()
  local t = ffi.new("bench_timespec")
  ffi.C.clock_gettime(0, t) -- CLOCK_REALTIME
  return tonumber(t.tv_sec) + tonumber(t.tv_nsec) / 1e9
end

local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- globals: done() reads them from each thread (thread:get)
mine, next_i, answered, ok, began, ended = {}, 1, 0, 0, 0, 0
local expect, marker, checking

function init(args)
  local file, total = args[1], tonumber(args[2])
  marker = args[3] .. "." .. id
  expect = tonumber(args[4])
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % total == id then
        mine[#mine + 1] = wrk.format("GET", line)
      end
      i = i + 1
    end
  end
  -- wrk calls request() once on the first thread to check it before connecting: that call
  -- must not use up a path
  checking = id == 0
  began = now()
  if #mine == 0 then -- nothing to do: done already
    ended = began
    local f = io.open(marker, "w")
    f:write(string.format("%.6f", ended))
    f:close()
  end
end

function request()
  local r = mine[next_i]
  if checking then
    checking = false
    return r or wrk.format("GET", "/")
  end
  if r == nil then
    return "" -- this thread's share is sent: the connection goes quiet
  end
  next_i = next_i + 1
  return r
end

function response(status, headers, body)
  answered = answered + 1
  if status == expect then
    ok = ok + 1
  end
  if answered == #mine then
    ended = now()
    local f = io.open(marker, "w")
    f:write(string.format("%.6f", ended))
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local b, e, a, o = math.huge, 0, 0, 0
  for _, t in ipairs(threads) do
    b = math.min(b, t:get("began"))
    e = math.max(e, t:get("ended"))
    a = a + t:get("answered")
    o = o + t:get("ok")
  end
  io.write(string.format(
    '\nBENCH {"began": %.6f, "ended": %.6f, "answered": %d, "ok": %d}\n', b, e, a, o))
end
