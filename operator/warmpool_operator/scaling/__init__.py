"""Autoscaling: pure decision, observation windows, fleet simulator and baseline policies."""
