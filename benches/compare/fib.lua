-- Naive doubly recursive Fibonacci: almost nothing but calls and returns. Prints fib(N).
-- Same algorithm and output as fib.kl and fib.c.

local N = 43

local function fib(n)
  if n < 2 then
    return n
  end
  return fib(n - 1) + fib(n - 2)
end

print(string.format("%d", fib(N)))
