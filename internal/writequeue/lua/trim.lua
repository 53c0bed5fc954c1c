local function trim(stream, group, backlog)
	local p = redis.call('XPENDING', stream, group)
	local minid
	if p[1] > 0 then
		minid = p[2]
	else
		for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
			local f = fields(g)
			if f['name'] == group then
				local ms, seq = string.match(f['last-delivered-id'], '^(%d+)-(%d+)$')
				minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
			end
		end
	end
	if minid then
		redis.call('XTRIM', stream, 'MINID', minid)
	end
	if redis.call('XLEN', stream) == 0 then
		redis.call('SET', backlog, 0)
	end
end
