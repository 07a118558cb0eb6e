"""Offers and the next-best-offer decision: what a callcenter agent offers the customer on the line.

- `catalogue`: the live offers, compiled once (their eligibility segments into one query) and
  kept for a few seconds per process;
- `decisions`: `offer_decide`, the ranked offers for one contact with the reason for each;
- `services`: writing offers (with their measurement), recording responses, and recording the
  top offers in the offers' measurements.
"""
