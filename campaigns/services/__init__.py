"""Writes and workflows of the delivery layer. Each module holds one part of it:

- lifecycle: creating and changing campaigns, and their status (activate, pause, resume, cancel);
- runs: the dispatcher's tick, planning a run's deliveries and fanning out its batches;
- sending: a worker's batch: claim, contact policies, render, hand over, record;
- policies: the contact policy's single row, suppressions, throttles.
"""

from campaigns.services.lifecycle import (
    campaign_activate,
    campaign_cancel,
    campaign_create,
    campaign_pause,
    campaign_resume,
    campaign_transition,
    campaign_update,
)

__all__ = [
    "campaign_activate",
    "campaign_cancel",
    "campaign_create",
    "campaign_pause",
    "campaign_resume",
    "campaign_transition",
    "campaign_update",
]
