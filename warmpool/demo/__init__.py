"""`make demo`: the local control plane, the operator and an autoscaled WarmPool under real load."""
