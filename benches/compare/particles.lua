-- Particles: P particles in a W x H box, state in 0-based float arrays, STEPS steps of DT each
-- under gravity, a weak pull toward the centre, drag and a speed limit, bouncing off the walls
-- with some energy lost. The initial state comes from a Park-Miller generator (its products
-- stay below 2^53, so Lua's doubles compute it exactly). Prints the number of bounces and
-- checksums of the final positions and speeds, times 1e6, truncated. Same algorithm and output
-- as particles.kl and particles.c.

local sqrt, floor, ceil = math.sqrt, math.floor, math.ceil

local P = 1000
local STEPS = 300000
local DT = 0.001
local GRAVITY = -9.81
local PULL = 0.5
local DRAG = 0.999995
local BOUNCE = 0.9
local MAX_SPEED = 40.0
local W = 100.0
local H = 100.0

-- Truncation toward zero, as Kiln's `as int` and C's cast.
local function trunc(v)
  if v >= 0 then return floor(v) else return ceil(v) end
end

local function array(n)
  local a = {}
  for i = 0, n - 1 do a[i] = 0.0 end
  return a
end

local x, y, vx, vy = array(P), array(P), array(P), array(P)
local seed = 42
local bounces = 0

-- A uniform float in [0, 1).
local function random()
  seed = seed * 16807 % 2147483647
  return seed / 2147483647.0
end

local function init()
  for i = 0, P - 1 do
    x[i] = random() * W
    y[i] = random() * H
    vx[i] = random() * 20.0 - 10.0
    vy[i] = random() * 20.0 - 10.0
  end
end

local function step()
  for i = 0, P - 1 do
    local px = x[i]
    local py = y[i]
    local nvx = (vx[i] + (W * 0.5 - px) * PULL * DT) * DRAG
    local nvy = (vy[i] + (GRAVITY + (H * 0.5 - py) * PULL) * DT) * DRAG
    local speed2 = nvx * nvx + nvy * nvy
    if speed2 > MAX_SPEED * MAX_SPEED then
      local s = MAX_SPEED / sqrt(speed2)
      nvx = nvx * s
      nvy = nvy * s
    end
    local nx = px + nvx * DT
    local ny = py + nvy * DT
    if nx < 0.0 then
      nx = -nx
      nvx = -nvx * BOUNCE
      bounces = bounces + 1
    elseif nx > W then
      nx = 2.0 * W - nx
      nvx = -nvx * BOUNCE
      bounces = bounces + 1
    end
    if ny < 0.0 then
      ny = -ny
      nvy = -nvy * BOUNCE
      bounces = bounces + 1
    elseif ny > H then
      ny = 2.0 * H - ny
      nvy = -nvy * BOUNCE
      bounces = bounces + 1
    end
    x[i] = nx
    y[i] = ny
    vx[i] = nvx
    vy[i] = nvy
  end
end

init()
for _ = 1, STEPS do
  step()
end
local pos = 0.0
local speed = 0.0
for i = 0, P - 1 do
  pos = pos + x[i] + y[i]
  speed = speed + sqrt(vx[i] * vx[i] + vy[i] * vy[i])
end
print(string.format("%d", bounces))
print(string.format("%d", trunc(pos * 1e6)))
print(string.format("%d", trunc(speed * 1e6)))
