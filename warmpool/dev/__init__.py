"""Local development cluster: a Kubernetes control plane built from Go modules, and a node agent."""
