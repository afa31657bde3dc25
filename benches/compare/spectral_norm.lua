-- spectral-norm (Computer Language Benchmarks Game): the spectral norm of the infinite matrix
-- A(i, j) = 1 / ((i + j) * (i + j + 1) / 2 + i + 1), truncated to N x N, by 10 steps of the
-- power method. u, v and the temporary vector are slices of one 0-based array, passed by
-- offset. Prints the norm times 1e9, truncated. Same algorithm and output as
-- spectral_norm.kl and .c.

local sqrt, floor, ceil = math.sqrt, math.floor, math.ceil

local N = 4000
local U = 0
local V = N
local TMP = 2 * N
local VECS = 3 * N

-- Truncation toward zero, as Kiln's `as int` and C's cast.
local function trunc(x)
  if x >= 0 then return floor(x) else return ceil(x) end
end

local vecs = {}
for i = 0, VECS - 1 do vecs[i] = 0.0 end

-- Kiln and C divide integers here; (i + j) * (i + j + 1) is even, so `/ 2` is exact in floats.
local function a(i, j)
  return 1.0 / ((i + j) * (i + j + 1) / 2 + i + 1)
end

-- vecs[dst..dst + N] = A * vecs[src..src + N]
local function mul_av(src, dst)
  for i = 0, N - 1 do
    local sum = 0.0
    for j = 0, N - 1 do
      sum = sum + a(i, j) * vecs[src + j]
    end
    vecs[dst + i] = sum
  end
end

-- vecs[dst..dst + N] = transpose(A) * vecs[src..src + N]
local function mul_atv(src, dst)
  for i = 0, N - 1 do
    local sum = 0.0
    for j = 0, N - 1 do
      sum = sum + a(j, i) * vecs[src + j]
    end
    vecs[dst + i] = sum
  end
end

local function mul_atav(src, dst)
  mul_av(src, TMP)
  mul_atv(TMP, dst)
end

for i = 0, N - 1 do
  vecs[U + i] = 1.0
end
for _ = 1, 10 do
  mul_atav(U, V)
  mul_atav(V, U)
end
local vbv, vv = 0.0, 0.0
for i = 0, N - 1 do
  vbv = vbv + vecs[U + i] * vecs[V + i]
  vv = vv + vecs[V + i] * vecs[V + i]
end
print(string.format("%d", trunc(sqrt(vbv / vv) * 1e9)))
