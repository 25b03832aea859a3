"""Shared runtime fleets: many tuples warm in the same pods, sized at two levels (pods, warm per tuple)."""
