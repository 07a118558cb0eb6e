"""The goals' admin: the goal page, campaign measurements, channel costs, the global control group."""

from goals.admin import experiments, goals

__all__ = ["experiments", "goals"]
