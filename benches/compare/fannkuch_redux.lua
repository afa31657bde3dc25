-- fannkuch-redux (Computer Language Benchmarks Game): for every permutation of 0..N, in the
-- benchmark's order, count the flips of prefixes until 0 comes first. Prints the checksum and
-- the maximum number of flips. Same algorithm and output as fannkuch_redux.kl and .c.

local rshift = require("bit").rshift

local N = 11

local perm, perm1, count = {}, {}, {}
for i = 0, 15 do
  perm[i], perm1[i], count[i] = 0, 0, 0
end
local checksum = 0

-- The maximum flip count over all permutations of 0..n; leaves the checksum in `checksum`.
local function fannkuch(n)
  local max_flips = 0
  local perm_count = 0
  checksum = 0
  for i = 0, n - 1 do
    perm1[i] = i
  end
  local r = n
  while true do
    while r ~= 1 do
      count[r - 1] = r
      r = r - 1
    end
    for i = 0, n - 1 do
      perm[i] = perm1[i]
    end
    local flips = 0
    local k = perm[0]
    while k ~= 0 do
      local k2 = rshift(k + 1, 1)
      for i = 0, k2 - 1 do
        local t = perm[i]
        perm[i] = perm[k - i]
        perm[k - i] = t
      end
      flips = flips + 1
      k = perm[0]
    end
    if flips > max_flips then
      max_flips = flips
    end
    if perm_count % 2 == 0 then
      checksum = checksum + flips
    else
      checksum = checksum - flips
    end
    -- The next permutation: rotate the first r + 1 elements until one rotation count is not
    -- exhausted.
    while true do
      if r == n then
        return max_flips
      end
      local perm0 = perm1[0]
      local i = 0
      while i < r do
        local j = i + 1
        perm1[i] = perm1[j]
        i = j
      end
      perm1[r] = perm0
      count[r] = count[r] - 1
      if count[r] > 0 then
        break
      end
      r = r + 1
    end
    perm_count = perm_count + 1
  end
end

local max_flips = fannkuch(N)
print(string.format("%d", checksum))
print(string.format("%d", max_flips))
