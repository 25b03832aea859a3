"""The autoscaling decider: load from scrapes, windows, surge forecasts, sizing (pure; no other operator module)."""
