-- wrk script: same as post.lua, but every request asks for an SSE stream
-- (with a usage chunk, as OpenAI clients usually do). wrk times until the
-- last chunk, so latencies here are full-stream times.

local dir = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or ""
dofile(dir .. "post.lua")

wrk.body = '{"model":"default-chat","messages":[{"role":"user","content":"hi"}],' ..
  '"stream":true,"stream_options":{"include_usage":true}}'
