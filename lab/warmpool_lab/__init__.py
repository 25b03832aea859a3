"""The lab: simulators, benchmarks, baselines and plots around the product; product code never imports it."""
