-- Argo CD health of an ilp.ilpfleet.dev Account.
-- Healthy: Ready=True for the current generation (every reference resolves).
-- Progressing: the operator has not observed the current generation or written Ready yet.
-- Degraded: Ready=False: its Connector, a Secret or key its link uses, or its SettlementEngine is missing, or that engine settles another asset;
-- or the connector pods leave it out (ConfigNotApplied) or run it not as its current generation says (ConfigNotFullyApplied).
-- Runs without Lua's standard string library: Argo CD does not load it for argocd-cm scripts.
local hs = {status = "Progressing", message = "Waiting for the operator to report the Account's status"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local gen = obj.metadata.generation
local observed = obj.status.observedGeneration
if gen ~= nil and (observed == nil or observed < gen) then
  hs.message = "Waiting for the operator to observe generation " .. gen
  return hs
end
local ready = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    ready = c
  end
end
if ready == nil or (gen ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < gen) then
  hs.message = "Waiting for the operator to report Ready for generation " .. (gen or "?")
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready.status ~= "False" then
  hs.message = "Ready is " .. (ready.status or "unset") .. ": " .. (ready.message or "")
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
