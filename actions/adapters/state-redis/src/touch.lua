local last = redis.call('HGET', KEYS[1], 'touch')
redis.call('HSET', KEYS[1], 'touch', ARGV[1])
if last then return last end
return ARGV[1]
