"""The pure planner: (pool, snapshot) -> Plan, with reasons and vetoes."""

from powerpool.planner.core import plan
from powerpool.planner.ladder import needed

__all__ = ["needed", "plan"]
