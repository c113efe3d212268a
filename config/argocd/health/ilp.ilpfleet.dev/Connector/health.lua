-- Argo CD health of an ilp.ilpfleet.dev Connector.
-- Healthy: Ready=True for the current generation and no rollout in progress.
-- Progressing: the operator has not observed the current generation yet, has not written
-- Ready yet, or the pods are rolling out (Progressing=True) or still starting.
-- Degraded: Ready=False for a reason that needs a person (a missing Secret, a bad
-- inheritAddressFrom, a config the pods refused, an operator error), or pods that became
-- unavailable after the rollout had completed.
-- Runs without Lua's standard string library: Argo CD does not load it for argocd-cm scripts.
local hs = {status = "Progressing", message = "Waiting for the operator to report the Connector's status"}
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
local progressing = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Progressing" then
    progressing = c
  end
end
if ready == nil or (gen ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < gen) then
  hs.message = "Waiting for the operator to report Ready for generation " .. (gen or "?")
  return hs
end
local rolling = progressing ~= nil and progressing.status == "True"
if ready.status == "True" then
  if rolling then
    hs.message = "Rolling out: " .. (progressing.message or progressing.reason or "")
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready.status ~= "False" then
  hs.message = "Ready is " .. (ready.status or "unset") .. ": " .. (ready.message or "")
  return hs
end
-- Pods not available yet are part of a rollout (Progressing=True, or not reported yet);
-- after a completed rollout they mean crashing or evicted pods.
if ready.reason == "WorkloadUnavailable" and (progressing == nil or rolling) then
  hs.message = "Waiting for pods: " .. (ready.message or "")
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
