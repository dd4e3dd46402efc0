local cur = redis.call('HGET', KEYS[1], 'revision') or '0'
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'version', ARGV[3], 'record', ARGV[4])
local n = tonumber(ARGV[6])
if n > 0 then
  redis.call('RPUSH', KEYS[2], ARGV[5])
  redis.call('LTRIM', KEYS[2], -n, -1)
else
  redis.call('DEL', KEYS[2])
end
return 1
