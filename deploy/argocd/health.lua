-- Argo CD health check for tensorwasm.dev/WarmPool (install: see docs/gitops.md).
-- Reads what the operator writes (kstatus conventions): status.observedGeneration and the
-- Ready / Reconciling / Stalled conditions, each with its own observedGeneration.
--   Degraded    Stalled=True: no progress until someone changes something (reason says what).
--   Healthy     Ready=True for the current generation.
--   Progressing everything else: not yet observed, an older generation, rolling out, prewarming.
-- Written for Lua 5.1 (Argo CD's interpreter).
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the warmpool operator to observe the WarmPool"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation ..
    " (status is for generation " .. status.observedGeneration .. ")"
  return hs
end

local conditions = status.conditions or {}
local current = {}
for _, kind in ipairs({"Ready", "Reconciling", "Stalled"}) do
  local c = condition(conditions, kind)
  -- A condition written for an older generation says nothing about the current spec.
  if c ~= nil and (generation == nil or c.observedGeneration == nil or c.observedGeneration >= generation) then
    current[kind] = c
  end
end

if current.Stalled ~= nil and current.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(current.Stalled)
  return hs
end

if current.Ready ~= nil and current.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(current.Ready)
  return hs
end

hs.status = "Progressing"
if current.Reconciling ~= nil and current.Reconciling.status == "True" then
  hs.message = describe(current.Reconciling)
elseif current.Ready ~= nil then
  hs.message = describe(current.Ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
