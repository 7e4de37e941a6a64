//! Platform adapters: how the gateway starts one serverless request per actor (AWS Lambda
//! Invoke, an HTTP serverless URL such as Vercel or Cloud Run, a local process). The trait and
//! its modules arrive with the serverless issue; the gateway core is already shaped for them
//! (`GoingAway` stops and reallocation in `gateway::actor`).
