-- Mandelbrot: iterates z = z^2 + c for the points of a SIZE x SIZE grid over
-- [-1.5, 0.5] x [-1, 1], at most MAX_ITER times each: a float loop with no memory traffic.
-- Prints how many points stayed bounded and the sum of the iteration counts at which the
-- others escaped. Same algorithm and output as mandelbrot.kl and .c.

local SIZE = 4000
local MAX_ITER = 50

local count = 0
local escaped = 0
local scale = 2.0 / SIZE
for y = 0, SIZE - 1 do
  local ci = y * scale - 1.0
  for x = 0, SIZE - 1 do
    local cr = x * scale - 1.5
    local zr = 0.0
    local zi = 0.0
    local inside = true
    for i = 0, MAX_ITER - 1 do
      local zr2 = zr * zr
      local zi2 = zi * zi
      if zr2 + zi2 > 4.0 then
        inside = false
        escaped = escaped + i
        break
      end
      zi = 2.0 * zr * zi + ci
      zr = zr2 - zi2 + cr
    end
    if inside then
      count = count + 1
    end
  end
end
print(string.format("%d", count))
print(string.format("%d", escaped))
