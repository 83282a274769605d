-- wrk script of bench/load: sends GET requests for the digests listed in a file, one per line,
-- each appended to the path of the URL, cycling through the file in order. When the run ends it
-- prints the BENCH_JSON line of wrk_report.lua, which bench/load/loadgen.py parses.
--
--   wrk -s sample_paths.lua http://127.0.0.1:PORT/v2/REMOTE/REPO/manifests/ -- DIGEST_FILE
--
-- Every wrk thread starts at the top of the file, so with several threads (-t) the same digests
-- are requested at about the same time.

-- wrk_report.lua sits next to this script, and wrk loads a script file by its path.
local script_folder = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(script_folder .. "wrk_report.lua")

-- The requests are formatted once, so that request() only picks the next one.
local requests = {}
local next_request = 1

function init(args)
  local digest_file = args[1]
  if digest_file == nil then
    error("sample_paths.lua: the digest file is missing; pass it after -- on the wrk command line")
  end
  local file, open_error = io.open(digest_file, "r")
  if file == nil then
    error("sample_paths.lua: cannot open the digest file: " .. open_error)
  end
  for line in file:lines() do
    if line ~= "" then
      requests[#requests + 1] = wrk.format(nil, wrk.path .. line)
    end
  end
  file:close()
  if #requests == 0 then
    error("sample_paths.lua: the digest file " .. digest_file .. " lists no digest")
  end
end

function request()
  local formatted = requests[next_request]
  next_request = next_request % #requests + 1
  return formatted
end
