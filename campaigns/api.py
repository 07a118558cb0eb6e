from rest_framework import serializers, viewsets

from campaigns.models import Campaign
from campaigns.services import campaign_create, campaign_update


class CampaignSerializer(serializers.ModelSerializer):
    class Meta:
        model = Campaign
        fields = ["id", "name", "description", "goal", "status", "created_at", "updated_at"]
        # Status moves only through the campaign services (activation comes with its issue).
        read_only_fields = ["status", "created_at", "updated_at"]


class CampaignViewSet(viewsets.ModelViewSet):
    """Campaigns, each serving a goal."""

    serializer_class = CampaignSerializer
    queryset = Campaign.objects.all()
    filterset_fields = ["status", "goal"]
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer):
        serializer.instance = campaign_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = campaign_update(campaign=serializer.instance, **serializer.validated_data)
