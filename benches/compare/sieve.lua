-- Sieve of Eratosthenes: the primes below LIMIT, on a 0-based array of booleans, sieved REPEAT
-- times over. Prints the number of primes and the total over all repetitions. Same algorithm
-- and output as sieve.kl and sieve.c.

local LIMIT = 1000000
local REPEAT = 400

local composite = {}
for i = 0, LIMIT - 1 do
  composite[i] = false
end

-- The number of primes below `n` (n <= LIMIT).
local function sieve(n)
  for i = 0, n - 1 do
    composite[i] = false
  end
  local count = 0
  for i = 2, n - 1 do
    if not composite[i] then
      count = count + 1
      local j = i * i
      while j < n do
        composite[j] = true
        j = j + i
      end
    end
  end
  return count
end

local total = 0
local count = 0
for _ = 1, REPEAT do
  count = sieve(LIMIT)
  total = total + count
end
print(string.format("%d", count))
print(string.format("%d", total))
