local n = redis.call('HINCRBY', KEYS[1], 'refs', ARGV[1])
if n < 0 then
  redis.call('HSET', KEYS[1], 'refs', '0')
  n = 0
end
return n
