"""The autoscaling decider: load from scrapes, windows, surge forecasts, sizing (pure; imports no other operator module)."""
