from rest_framework import serializers, viewsets

from goals.models import Goal
from goals.services import goal_create, goal_update


class GoalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Goal
        fields = ["id", "name", "description", "owner", "starts_on", "deadline", "created_at", "updated_at"]
        read_only_fields = ["owner", "created_at", "updated_at"]


class GoalViewSet(viewsets.ModelViewSet):
    """SMART goals that campaigns serve."""

    serializer_class = GoalSerializer
    queryset = Goal.objects.all()
    filterset_fields = ["owner"]
    ordering_fields = ["deadline", "name", "created_at"]

    def perform_create(self, serializer):
        serializer.instance = goal_create(owner=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = goal_update(goal=serializer.instance, **serializer.validated_data)
