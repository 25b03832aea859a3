"""The local node agent: runs the pods bound to its Node as processes on loopback addresses."""
