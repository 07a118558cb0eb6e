from campaigns.models import Campaign


def campaign_create(*, name: str, description: str = "", goal=None) -> Campaign:
    campaign = Campaign(name=name, description=description, goal=goal)
    campaign.full_clean()
    campaign.save()
    return campaign


def campaign_update(*, campaign: Campaign, **fields) -> Campaign:
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.full_clean()
    campaign.save()
    return campaign
