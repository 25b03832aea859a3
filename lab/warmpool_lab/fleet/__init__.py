"""Lab for shared runtime fleets: multi-tenant traces, the shared-fleet simulator, references and bench."""
