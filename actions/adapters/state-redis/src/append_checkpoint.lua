local cur = redis.call('HGET', KEYS[1], 'next_offset')
if cur ~= ARGV[1] then return 0 end
local state = redis.call('HGET', KEYS[1], 'state') or ''
redis.call('HSET', KEYS[1], 'next_offset', ARGV[2], 'state', state .. ARGV[3], 'head', ARGV[4], 'lost', ARGV[5])
return 1
