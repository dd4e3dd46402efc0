local cps = redis.call('SMEMBERS', KEYS[1])
for _, k in ipairs(cps) do redis.call('DEL', k) end
redis.call('DEL', unpack(KEYS))
return #cps
