local removed = 0
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, sub = pcall(cjson.decode, raw)
  if ok and type(sub) == 'table' and sub.url == ARGV[1] then
    removed = removed + redis.call('LREM', KEYS[1], 0, raw)
  end
end
return removed
