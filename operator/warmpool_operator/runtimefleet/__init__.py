"""RuntimeFleet: shared runtime pods hosting the tuples of many WarmPools (the pure sizing core is `fleet`)."""
