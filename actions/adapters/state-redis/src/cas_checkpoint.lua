local cur = redis.call('HGET', KEYS[1], 'next_offset')
if ARGV[1] == '' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'next_offset', ARGV[2], 'state', ARGV[3], 'head', ARGV[4], 'lost', ARGV[5])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
