-- oltp_read_only (without BEGIN/COMMIT) as the tablets of a 2-shard keyspace
-- get it from a proxy: each range query of 100 ids is sent as two queries of
-- 50. The load harness runs it straight against one tablet to show what
-- scattering costs MariaDB before any proxy's own cost (goal 2's bound).
require("oltp_common")

function prepare_statements()
   prepare_point_selects()
   prepare_simple_ranges()
   prepare_sum_ranges()
   prepare_order_ranges()
   prepare_distinct_ranges()
end

local function halves(key)
   local tnum = sysbench.rand.uniform(1, sysbench.opt.tables)
   local half = math.floor(sysbench.opt.range_size / 2)
   for i = 1, sysbench.opt[key] do
      local id = sysbench.rand.default(1, sysbench.opt.table_size)
      param[tnum][key][1]:set(id)
      param[tnum][key][2]:set(id + half - 1)
      stmt[tnum][key]:execute()
      param[tnum][key][1]:set(id + half)
      param[tnum][key][2]:set(id + sysbench.opt.range_size - 1)
      stmt[tnum][key]:execute()
   end
end

function event()
   execute_point_selects()
   halves("simple_ranges")
   halves("sum_ranges")
   halves("order_ranges")
   halves("distinct_ranges")
end
