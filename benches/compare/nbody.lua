-- n-body (Computer Language Benchmarks Game): the Sun and the four gas giants, state in
-- 0-based float arrays, STEPS steps of 0.01. Prints the energy before and after, times 1e12,
-- truncated. Same algorithm and output as nbody.kl and nbody.c.

local sqrt, floor, ceil = math.sqrt, math.floor, math.ceil

local STEPS = 20000000
local BODIES = 5
local PI = 3.141592653589793
local SOLAR_MASS = 4.0 * PI * PI
local DAYS_PER_YEAR = 365.24

-- Truncation toward zero, as Kiln's `as int` and C's cast.
local function trunc(x)
  if x >= 0 then return floor(x) else return ceil(x) end
end

local function array(n)
  local a = {}
  for i = 0, n - 1 do a[i] = 0.0 end
  return a
end

local px, py, pz = array(BODIES), array(BODIES), array(BODIES)
local vx, vy, vz = array(BODIES), array(BODIES), array(BODIES)
local mass = array(BODIES)

local function set_body(i, x, y, z, dx, dy, dz, m)
  px[i] = x
  py[i] = y
  pz[i] = z
  vx[i] = dx * DAYS_PER_YEAR
  vy[i] = dy * DAYS_PER_YEAR
  vz[i] = dz * DAYS_PER_YEAR
  mass[i] = m * SOLAR_MASS
end

local function init()
  set_body(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
  set_body(1, 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
    1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05,
    9.54791938424326609e-04)
  set_body(2, 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
    -2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05,
    2.85885980666130812e-04)
  set_body(3, 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
    2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05,
    4.36624404335156298e-05)
  set_body(4, 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
    2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05,
    5.15138902046611451e-05)
  local mx, my, mz = 0.0, 0.0, 0.0
  for i = 0, BODIES - 1 do
    mx = mx + vx[i] * mass[i]
    my = my + vy[i] * mass[i]
    mz = mz + vz[i] * mass[i]
  end
  vx[0] = -mx / SOLAR_MASS
  vy[0] = -my / SOLAR_MASS
  vz[0] = -mz / SOLAR_MASS
end

local function advance(dt)
  for i = 0, BODIES - 1 do
    for j = i + 1, BODIES - 1 do
      local dx = px[i] - px[j]
      local dy = py[i] - py[j]
      local dz = pz[i] - pz[j]
      local d2 = dx * dx + dy * dy + dz * dz
      local mag = dt / (d2 * sqrt(d2))
      local mi = mass[i] * mag
      local mj = mass[j] * mag
      vx[i] = vx[i] - dx * mj
      vy[i] = vy[i] - dy * mj
      vz[i] = vz[i] - dz * mj
      vx[j] = vx[j] + dx * mi
      vy[j] = vy[j] + dy * mi
      vz[j] = vz[j] + dz * mi
    end
  end
  for i = 0, BODIES - 1 do
    px[i] = px[i] + dt * vx[i]
    py[i] = py[i] + dt * vy[i]
    pz[i] = pz[i] + dt * vz[i]
  end
end

local function energy()
  local e = 0.0
  for i = 0, BODIES - 1 do
    e = e + 0.5 * mass[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i])
    for j = i + 1, BODIES - 1 do
      local dx = px[i] - px[j]
      local dy = py[i] - py[j]
      local dz = pz[i] - pz[j]
      e = e - mass[i] * mass[j] / sqrt(dx * dx + dy * dy + dz * dz)
    end
  end
  return e
end

init()
print(string.format("%d", trunc(energy() * 1e12)))
for _ = 1, STEPS do
  advance(0.01)
end
print(string.format("%d", trunc(energy() * 1e12)))
